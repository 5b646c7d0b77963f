"""The README's two set-up commands are the ones CI and users run."""

import re

from conftest import REPO  # pylint: disable=g-bad-import-order


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


def test_results_section_script_runs_on_a_finished_sweep(finished_run, tmp_path):
  # docs/readme_results.py writes the README's results section; it must not rot.
  import importlib.util  # pylint: disable=import-outside-toplevel
  path, _, _ = finished_run
  spec = importlib.util.spec_from_file_location('readme_results',
                                                REPO / 'docs' / 'readme_results.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  text = module.section(str(path), str(path))
  assert 'finding' not in text or '**transition' in text
  assert 'CS1 advice accuracy' in text and 'Label stability' in text
  # The same run twice: every label is stable.
  assert 'cells (100%) carry the same label' in text
  readme = tmp_path / 'README.md'
  readme.write_text(f'before\n{module.BEGIN}\nSTALE SECTION\n{module.END}\nafter\n')
  import sys  # pylint: disable=import-outside-toplevel
  argv, sys.argv = sys.argv, ['readme_results.py', str(path), str(path), f'--write={readme}']
  try:
    module.main()
  finally:
    sys.argv = argv
  written = readme.read_text()
  assert written.startswith('before\n') and written.endswith('after\n')
  assert 'STALE SECTION' not in written
