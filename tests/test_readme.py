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


def _shell_commands(script: str) -> list[str]:
  """The commands of a shell script, in order: its non-comment lines split at `&&`."""
  commands = []
  for line in script.splitlines():
    if line.strip() and not line.lstrip().startswith('#'):
      commands += [part.strip() for part in line.split('&&')]
  return commands


def test_ci_runs_the_readme_test_command():
  # .ci/run may split the README's test command over several lines (to time the tests, say),
  # but must run each of its parts, in the README's order, with no argument added or dropped:
  # a part may only be followed by a pipe, `||` or `;` (e.g. `| tee LOG || status=$?`).
  second = _readme_commands()[1].strip()
  commands = _shell_commands((REPO / '.ci' / 'run').read_text())
  position = 0
  for part in (p.strip() for p in second.split('&&')):
    found = [i for i in range(position, len(commands))
             if commands[i] == part
             or (commands[i].startswith(part) and re.match(r'\s*(\||;)', commands[i][len(part):]))]
    assert found, f'.ci/run must run the README test command part by part; missing: {part}'
    position = found[0] + 1


# Documents the repository does not contain, and words that only made sense to whoever was
# writing at the time; the README and docs/ are the product's pages and cite only what is here.
_OUTSIDE_DOCUMENT = 'paper' + '_notes'  # Split so that this file does not cite it either.
_SESSION_TALK = re.compile(r'\b(?:issue\s+#?\d+|issue\s+#|this session|this task|'
                           r'(?:previous|earlier|later) session)\b|(?:^|[\s(])#\d+\b', re.I)
_TEXT_SUFFIXES = ('.py', '.md', '.sh', '.sbatch', '.toml', '.ipynb', '.txt', '.cfg')


def _repository_text_files():
  for top in ('README.md', 'pyproject.toml', '.ci', 'prunephase', 'configs', 'docs', 'tests',
              'benchmarks', 'examples', 'launch'):
    path = REPO / top
    files = [path] if path.is_file() else sorted(path.rglob('*'))
    for file in files:
      if file.is_file() and (file.suffix in _TEXT_SUFFIXES or file.parent.name == '.ci'):
        yield file


def test_the_repository_cites_no_document_outside_it():
  citing = [str(f.relative_to(REPO)) for f in _repository_text_files()
            if _OUTSIDE_DOCUMENT in f.read_text(errors='replace')]
  assert not citing, f'cite what is in the repository instead of {_OUTSIDE_DOCUMENT}: {citing}'


def test_readme_and_docs_carry_no_issue_numbers_or_session_talk():
  found = []
  for file in [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]:
    for number, line in enumerate(file.read_text().splitlines(), 1):
      if _SESSION_TALK.search(line):
        found.append(f'{file.relative_to(REPO)}:{number}: {line.strip()}')
  assert not found, 'state dates and commits instead:\n' + '\n'.join(found)


def test_readme_and_docs_links_and_paths_exist():
  missing = []
  for file in [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]:
    text = file.read_text()
    for target in re.findall(r'\]\(([^)#\s]+)\)', text):  # Markdown links and images.
      if '://' not in target and not (file.parent / target).exists():
        missing.append(f'{file.relative_to(REPO)}: link {target}')
    for path in re.findall(r'`((?:prunephase|configs|docs|tests|benchmarks|launch|examples)/'
                           r'[\w./-]*\w)/?`', text):
      if not (REPO / path).exists():
        missing.append(f'{file.relative_to(REPO)}: path {path}')
  assert not missing, '\n'.join(missing)


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
  readme.write_text(f'before\n{module.BEGIN}\nSTALE TEXT\n{module.END}\nafter\n')
  import sys  # pylint: disable=import-outside-toplevel
  argv, sys.argv = sys.argv, ['readme_results.py', str(path), str(path), f'--write={readme}']
  try:
    module.main()
  finally:
    sys.argv = argv
  written = readme.read_text()
  assert written.startswith('before\n') and written.endswith('after\n')
  assert 'STALE TEXT' not in written
