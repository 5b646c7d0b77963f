"""The README's two set-up commands are the ones CI and users run."""

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
  readme = (REPO / 'README.md').read_text()
  return re.findall(r'```(?:bash|sh)\n(.*?)```', readme, flags=re.S)


def test_readme_opens_with_the_default_run_and_the_test_command():
  first, second = [block.strip() for block in _readme_commands()[:2]]
  assert 'prunephase --config=configs/default.py --workdir=' in first
  assert 'pytest' in second


def test_ci_runs_the_readme_test_command():
  second = _readme_commands()[1].strip()
  ci = (REPO / '.ci' / 'run').read_text()
  assert second in ci, f'.ci/run must run the README test command: {second}'
