"""The README's two set-up commands are the ones CI and users run."""

import pathlib
import re

import pytest

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


def _results_module():
  import importlib.util  # pylint: disable=import-outside-toplevel
  spec = importlib.util.spec_from_file_location('readme_results',
                                                REPO / 'docs' / 'readme_results.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# Engineered (LMC, CKA) of every seed pair, per (epochs, density) cell of the tiny sweep
# (epochs 1 is the hotter row), for two "runs" A and B that differ in one cell. Every drop and
# CKA gap is far larger than the default min_drop (0.05) or cka_tolerance (0.001), and the tiny
# sweep has one dense seed (no seed noise):
#   A: density 0.2 drops by 0.5 (a transition): [II-A, I]; density 0.6 has no drop and is
#      at LMC 0 (below no barrier scale or level), its CKA reaches the plateau when cold: [II-A,
#      II-B].
#   B: as A, but density 0.2 does not drop either (no transition anywhere): [II-A, II-B].
# So over the runs A, B, B, the pairs (A, B) twice share 3 of 4 labels and (B, B) all 4.
_RUN_A = {(1, 0.2): (0.0, 0.5), (2, 0.2): (-0.5, 0.9), (1, 0.6): (0.0, 0.5), (2, 0.6): (0.0, 0.9)}
_RUN_B = {**_RUN_A, (2, 0.2): (0.0, 0.9)}


def _engineered_run(finished, directory, cells):
  """A copy of the files docs/readme_results.py reads from the finished tiny sweep, with the
  results' LMC and CKA set to `cells`."""
  import csv  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  directory.mkdir()
  for name in ('config.json', 'findings.json', 'cells.csv'):
    shutil.copy(finished / name, directory / name)
  with open(finished / 'results.csv', newline='') as f:
    reader = csv.DictReader(f)
    columns, rows = reader.fieldnames, list(reader)
  assert {(float(r['temperature']), float(r['density'])) for r in rows} == set(cells)
  for row in rows:
    row['lmc'], row['cka_softmax'] = cells[float(row['temperature']), float(row['density'])]
  with open(directory / 'results.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  return directory


def test_results_section_script_runs_on_a_finished_sweep(finished_run, tmp_path):
  # docs/readme_results.py writes the README's results section; it must not rot.
  module = _results_module()
  path, _, _ = finished_run
  text = module.section(str(path), str(path), str(path))
  assert '**transition' in text and 'CS1 out of sample' in text and 'CS2 out of sample' in text
  assert 'bootstrap, min_confidence 0.7 (earlier)' in text
  # The same run thrice: every label replicates, over 3 pairs x 4 cells.
  assert 'label_replication (cells both sets label alike) 1.000 (12/12)' in text
  with pytest.raises(ValueError, match='at least 3 workdirs'):
    module.section(str(path), str(path))
  readme = tmp_path / 'README.md'
  readme.write_text(f'before\n{module.BEGIN}\nSTALE TEXT\n{module.END}\nafter\n')
  import sys  # pylint: disable=import-outside-toplevel
  argv, sys.argv = sys.argv, ['readme_results.py', *[str(path)] * 3, f'--write={readme}']
  try:
    module.main()
  finally:
    sys.argv = argv
  written = readme.read_text()
  assert written.startswith('before\n') and written.endswith('after\n')
  assert 'STALE TEXT' not in written


def test_label_replication_counts_the_cells_two_runs_label_alike(finished_run, tmp_path):
  module = _results_module()
  path, _, _ = finished_run
  run_a = _engineered_run(path, tmp_path / 'a', _RUN_A)
  run_b = _engineered_run(path, tmp_path / 'b', _RUN_B)
  text = module.section(str(run_a), str(run_b), str(run_b))
  assert 'label_replication (cells both sets label alike) 0.833 (10/12)' in text


def test_results_section_shows_the_sets_before_their_added_seeds(finished_run, tmp_path):
  # A run whose every cell gained an added dense seed (1001, as `seeds.adaptive` numbers them):
  # the section shows each set's findings at its configured seeds in brackets, the most seeds
  # per cell, and a replication row for the configured seeds only.
  import csv  # pylint: disable=import-outside-toplevel
  module = _results_module()
  path, _, _ = finished_run
  run = _engineered_run(path, tmp_path / 'a', _RUN_A)
  with open(run / 'results.csv', newline='') as f:
    reader = csv.DictReader(f)
    columns, rows = reader.fieldnames, list(reader)
  added = [{**row, 'dense_seed': '1001'} for row in rows]
  with open(run / 'results.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows + added)
  text = module.section(str(run), str(run), str(run))
  # One configured seed per cell: no seed noise, so the transition and similarity checks can
  # only say 'partly' there; with the added seed they have their noise and pass.
  assert ('| 1 | 1 | 2 | reproduced [partly] | reproduced [reproduced] | reproduced [partly] |'
          in text)
  assert ('| replicate, min_confidence 0.8 (configured seeds) | n/a (0/0) | n/a (0/0) | '
          '0.000 (0/12) |') in text
  # Without added seeds there is nothing to compare: no such row.
  assert '(configured seeds)' not in module.section(str(path), str(path), str(path))
