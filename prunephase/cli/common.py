"""Flags shared by `prunephase` and the case-study commands, and the way every command runs.

Defined once here so that all commands' modules import together in one process.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from prunephase import runtime

WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory of a run: prunephase creates it (or resumes the run in it); '
    'prunephase-regimes/-advise/-select read its results.csv and config.json; '
    'prunephase-advise --probe runs a probe into it.')
CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, optionally with an argument: configs/default.py:quick '
    '(prunephase, prunephase-advise --probe).', lock_config=True)


def fail_on(errors: tuple[type[Exception], ...], function, *args, **kwargs):
  """`function(*args, **kwargs)`, ending the program with one line on one of `errors`."""
  try:
    return function(*args, **kwargs)
  except errors as error:
    runtime.fail(str(error))


def run(main) -> None:
  """Runs `main(argv)` as a console script: absl flags with one-line flag errors."""
  app.run(main, flags_parser=runtime.parse_flags)
