"""The adaptive search in the sweep (`search.mode = 'adaptive'`), end to end through the
`prunephase` command on the quick config with a 4 x 4 grid: the outputs mark inferred cells, a
rerun redoes nothing, and a run stopped in the middle of the search resumes to identical results.
The round logic on synthetic tables is tests/test_adaptive_search.py's."""

import csv
import json
import re
import subprocess
import sys

import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order
from conftest import one_line_error
from conftest import run_command
from prunephase import adaptive_cells
from prunephase import adaptive_search
from prunephase import artifacts
from prunephase import config as config_lib
from prunephase.config import identity
from configs import default as default_config  # pylint: disable=g-bad-import-order

GRID = (16, 32, 64, 128)
DENSITIES = (0.06, 0.12, 0.2, 0.4)
# The quick config, its measurement shrunk, on a grid where the search takes 2 rounds (10 cells).
ARGS = ('--config=configs/default.py:quick', '--config.search.mode=adaptive',
        f'--config.temperature.grid={GRID}', f'--config.prune.densities={DENSITIES}',
        '--config.retrain.epochs=3', '--config.measure.test_error_epochs=2',
        '--config.measure.cka_examples=200',
        '--config.measure.lmc_points=5', '--config.regimes.bootstrap=5')
# The tests of the command's run share one worker (the run is made once).
pytestmark = pytest.mark.xdist_group('adaptive_sweep')
OUTPUTS = ('results.csv', 'cells.csv', 'regimes.json', 'findings.json')
# Stops the command in the measure stage of the first unit after the coarse subgrid (round 2).
STOPPING = '''import sys
from prunephase import adaptive_search, sweep
from prunephase.cli import main
coarse = set(adaptive_search.coarse_cells({t}, {d}))
measure = sweep.RUN['measure']
temperatures, densities = {temperatures}, {densities}
def stopping(sweep):
  cells = {{(temperatures.index(t), densities.index(d))
           for t in sweep.temperatures for d in sweep.densities}}
  if not cells <= coarse:
    raise KeyboardInterrupt('stopped in round 2')
  return measure(sweep)
sweep.RUN['measure'] = stopping
sys.argv[0] = 'prunephase'
main.run()
'''


def _command(workdir):
  result = run_command('prunephase', *ARGS, f'--workdir={workdir}', timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return result.stdout


def _artifacts(path):
  """{file: mtime} of every stored model, mask and measurement."""
  return {p: p.stat().st_mtime_ns for p in path.rglob('*')
          if p.is_file() and (p.relative_to(path).parts[0] == 'dense'
                              or p.relative_to(path).parts[0].startswith('prune-'))
          and p.name != 'spec.json'}


@pytest.fixture(scope='module')
def searched(tmp_path_factory):
  """(workdir, printed output) of the adaptive search through the command."""
  path = tmp_path_factory.mktemp('search') / 'run'
  return path, _command(path)


def test_the_search_measures_part_of_the_grid_and_marks_the_rest_inferred(searched):
  path, output = searched
  assert re.search(r'^\[search\] round 1: measuring 9 cells \(batch_size=16 at 6%, 20%, 40%; ',
                   output, re.M), output
  assert re.search(r'^\[search\] round 2: measuring \d+ cells? \(', output, re.M), output
  found = re.findall(r'^adaptive_cells: (\d+)/16$', output, re.M)
  assert found and 9 < int(found[-1]) < 16, output
  measured = int(found[-1])
  steps = re.search(r'^adaptive_member_steps: (\d+) of (\d+) \((\d+)%\)$', output, re.M)
  assert steps and int(steps[1]) < int(steps[2]), output
  cells = list(csv.DictReader(open(path / 'cells.csv')))
  assert len(cells) == 16 and {c['inferred'] for c in cells} == {'True', 'False'}
  assert sum(c['inferred'] == 'False' for c in cells) == measured
  for cell in cells:
    assert cell['regime'] in ('I', 'II-A', 'II-B')  # Measured or inferred, every cell labelled.
    assert (cell['num_pairs'] == '0') == (cell['inferred'] == 'True')
  record = json.loads((path / 'regimes.json').read_text())
  assert [c['inferred'] for c in record['labels']] == [c['inferred'] == 'True' for c in cells]
  search = record['adaptive_search']
  assert search['finished'] and search['measured_cells'] == measured
  assert search['inferred_cells'] == 16 - measured
  assert record['adaptive_cost']['cells'] == measured
  rows = list(csv.DictReader(open(path / 'results.csv')))
  assert {(float(r['temperature']), float(r['density'])) for r in rows} == {
      (float(c['temperature']), float(c['density'])) for c in cells if c['inferred'] == 'False'}
  # Units under keys of their own in the sweep's branch; dense models per temperature trained.
  names = {p.name for p in path.glob('prune-*/retrain-*/measure-*/*.json')} - {'spec.json'}
  assert 'batch_size=16+density=0.06_0.2_0.4.json' in names
  assert {p.name for p in (path / 'dense').iterdir()} <= {f'batch_size={t}' for t in GRID}


def test_case_studies_never_use_inferred_cells(searched):
  path, _ = searched
  cells = list(csv.DictReader(open(path / 'cells.csv')))
  cell = next(c for c in cells if c['inferred'] == 'True')
  result = run_command('prunephase-advise', f'--workdir={path}',
                       f'--temperature={cell["temperature"]}', f'--density={cell["density"]}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert '-> not measured: no advice' in result.stdout
  result = run_command('prunephase-select', f'--workdir={path}')
  assert result.returncode == 0, result.stderr[-2000:]
  inferred = {(float(c['temperature']), float(c['density'])) for c in cells
              if c['inferred'] == 'True'}
  picks = json.loads((path / 'regimes' / 'select.json').read_text())['records']
  rule = [r for r in picks if r['method'] == 'three-regime rule' and r['temperature'] is not None]
  assert rule and all((r['temperature'], r['density']) not in inferred for r in rule)


def test_a_rerun_redoes_nothing(searched):
  path, _ = searched
  before, tables = _artifacts(path), {n: (path / n).read_text() for n in OUTPUTS}
  output = _command(path)
  assert _artifacts(path) == before
  assert re.search(r'^\[search\] round 1: .*\(done earlier\)$', output, re.M)
  assert not re.search(r'^\[(train|prune|retrain|measure)\] .*epoch', output, re.M)
  assert {n: (path / n).read_text() for n in OUTPUTS} == tables


def test_a_run_stopped_mid_search_resumes_to_identical_results(searched, tmp_path):
  path = tmp_path / 'run'
  script = tmp_path / 'stopping.py'
  script.write_text(STOPPING.format(t=len(GRID), d=len(DENSITIES), temperatures=list(GRID),
                                    densities=list(DENSITIES)))
  stopped = subprocess.run([sys.executable, str(script), *ARGS, f'--workdir={path}'], cwd=REPO,
                           capture_output=True, text=True, timeout=600, check=False)
  assert stopped.returncode != 0 and 'stopped in round 2' in stopped.stderr, stopped.stderr[-2000:]
  assert not (path / 'cells.csv').exists()
  output = _command(path)
  assert re.search(r'^\[search\] round 1: .*\(done earlier\)$', output, re.M), output
  for name in OUTPUTS:
    assert (path / name).read_text() == (searched[0] / name).read_text(), name


# ----------------------------------------------------------------------------- config and keys


def test_search_fields_are_validated_in_one_line():
  config = default_config.get_config()
  config_lib.validate(config)
  for field, value, words in (('mode', 'smart', "unknown search.mode 'smart'"),
                              ('max_cells', -1, 'search.max_cells must be a whole number'),
                              ('remeasure_below', 1.5, 'search.remeasure_below must be a '
                               'confidence in [0, 1], got 1.5')):
    bad = default_config.get_config()
    bad.search[field] = value
    with pytest.raises(config_lib.ConfigError, match=re.escape(words)):
      config_lib.validate(bad)
  # The config states the search's own default (the replay's, `--remeasure_below`).
  assert config.search.remeasure_below == adaptive_search.REMEASURE_BELOW
  bad = default_config.get_config()
  bad.search.mode, bad.seeds.adaptive = 'adaptive', True
  with pytest.raises(config_lib.ConfigError, match='does not combine with seeds.adaptive'):
    config_lib.validate(bad)


def test_a_bad_mode_is_one_line_from_the_command(tmp_path):
  result = run_command('prunephase', '--config=configs/default.py:quick',
                       f'--workdir={tmp_path / "run"}', '--config.search.mode=smart')
  assert 'search.mode' in one_line_error(result)
  assert not (tmp_path / 'run').exists()


def test_the_search_section_forks_no_workdir_and_units_have_keys_of_their_own(tmp_path):
  config = default_config.get_config()
  adaptive = default_config.get_config()
  adaptive.search.mode, adaptive.search.max_cells = 'adaptive', 12
  assert identity.branch_path(config) == identity.branch_path(adaptive)
  assert not identity.changed_dense_fields(config, adaptive)
  facts = artifacts.DataFacts('mnist1d', (40, 1), 10, 4000, 1000, (0.0,), (1.0,), False)
  base = artifacts.Store(tmp_path, adaptive, facts)
  unit = adaptive_cells.CellStore(base, 64, (0.04, 0.2))
  assert unit.key(64) == 'batch_size=64+density=0.04_0.2'
  assert unit.measure_dir == base.measure_dir and unit.densities == [0.04, 0.2]
  assert [g.name for g in unit.dense_groups()] == ['batch_size=64']
  adaptive.temperature.knob, adaptive.temperature.grid = 'lr', (0.05, 0.1)
  lr_unit = adaptive_cells.CellStore(artifacts.Store(tmp_path, adaptive, facts), 0.1, (0.4,))
  assert [g.name for g in lr_unit.dense_groups()] == ['lr=0.1']
  units = adaptive_cells.units_of([(256, 0.4), (16, 0.2), (16, 0.04)], [16, 64, 256],
                                  [0.04, 0.2, 0.4])
  assert units == [adaptive_cells.Unit(16, (0.04, 0.2)), adaptive_cells.Unit(256, (0.4,))]
  assert adaptive_search.coarse_cells(4, 4)[:4] == [(0, 0), (0, 3), (3, 0), (3, 3)]
