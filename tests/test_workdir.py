"""The workdir: one run at a time holds it."""

import pytest

from prunephase import files
from prunephase import workdir as workdir_lib


def test_second_workdir_holder_is_refused(tmp_path):
  first = workdir_lib.Workdir(tmp_path, {'a': 1})
  try:
    with pytest.raises(files.WorkdirError, match='in use by pid'):
      workdir_lib.Workdir(tmp_path, {'a': 1})
  finally:
    first.release()
  workdir_lib.Workdir(tmp_path, {'a': 1}).release()  # Free again after release.
