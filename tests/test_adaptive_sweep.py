"""The adaptive search in the sweep (`search.mode = 'adaptive'`), end to end through the
`prunephase` command on the quick config with a 4 x 4 grid: the outputs mark inferred cells, a
rerun redoes nothing, and a run stopped in the middle of the search resumes to identical results.
With `seeds.adaptive` too, dense seeds are added at the measured cells only, after the search.
The round logic on synthetic tables is tests/test_adaptive_search.py's."""

import csv
import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order
from conftest import one_line_error
from conftest import read_results
from conftest import run_command
from prunephase import adaptive_cell_seeds
from prunephase import adaptive_cells
from prunephase import adaptive_search
from prunephase import adaptive_seeds
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


def _command(workdir, *extra):
  result = run_command('prunephase', *ARGS, *extra, f'--workdir={workdir}', timeout=600)
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


# ----------------------------------------------------------------------------- with added seeds

# One dense seed: every measured label's confidence is NaN (nothing to resample), so round 1 adds
# seed 1001 to every temperature with a measured cell and max_dense_seeds=2 ends the rounds.
SEEDS = ('--config.seeds.adaptive=True', '--config.seeds.max_dense_seeds=2')


def _cells(path):
  """{(temperature, density): its row of cells.csv}."""
  return {(float(c['temperature']), float(c['density'])): c
          for c in csv.DictReader(open(path / 'cells.csv'))}


@pytest.fixture(scope='module')
def seeded(searched, tmp_path_factory):
  """(workdir, printed output) of a copy of the finished search run again with adaptive seeds:
  the search is done earlier, the seeds' rounds follow it."""
  path = tmp_path_factory.mktemp('seeded') / 'run'
  shutil.copytree(searched[0], path)
  return path, _command(path, *SEEDS)


def test_seeds_are_added_after_the_search_at_its_measured_cells_only(searched, seeded):
  path, output = seeded
  lines = output.splitlines()
  order = [next(i for i, line in enumerate(lines) if line.startswith(start)) for start in (
      '[search] round 2: ', 'adaptive_cells: ', '[seeds] round 1: adding dense seed 1001 to '
      'batch_size=16 (unconfident cells: 6%, 20%, 40%); ', '[seeds] adaptive_seed_cost: ')]
  assert order == sorted(order), output
  measured = {k for k, c in _cells(searched[0]).items() if c['inferred'] == 'False'}
  cells = _cells(path)
  assert {k for k, c in cells.items() if c['inferred'] == 'False'} == measured
  for key, cell in cells.items():  # Two dense seeds at every measured cell, no row elsewhere.
    assert cell['num_dense_seeds'] == ('2' if key in measured else '0'), key
    assert cell['regime'] in ('I', 'II-A', 'II-B')
  rows, before = read_results(path), read_results(searched[0])
  assert {(float(r['temperature']), float(r['density'])) for r in rows} == measured
  assert len(rows) == 2 * len(before) and {r['dense_seed'] for r in rows} == {'1', '1001'}
  fields = lambda r: (r['temperature'], r['density'], r['seed_a'], r['seed_b'], r['lmc'])
  assert [fields(r) for r in rows if r['dense_seed'] == '1'] == [fields(r) for r in before]
  # Each added seed's unit: its temperature at the search's measured densities of it.
  densities = {}
  for t, d in sorted(measured):
    densities.setdefault(t, []).append(f'{d:g}')
  names = {p.name for p in path.glob('prune-*/retrain-*/measure-*/*+seed*.json')}
  assert names == {f'batch_size={t:g}+seed1001+density={"_".join(d)}.json'
                   for t, d in densities.items()}
  assert {p.name for p in (path / 'dense').glob('*+seed*')} == {
      f'batch_size={t:g}+seed1001' for t in densities}
  record = json.loads((path / 'regimes.json').read_text())
  searched_record = json.loads((searched[0] / 'regimes.json').read_text())
  assert record['adaptive_search'] == searched_record['adaptive_search']
  assert [s['dense_seeds'] for s in record['dense_seeds']] == [
      [1, 1001] if t in densities else [1] for t in GRID]
  assert record['adaptive_seeds']['finished'] and len(record['adaptive_seeds']['rounds']) == 1
  cost = record['adaptive_seed_cost']
  assert cost['measured_cells'] == len(measured)
  assert (f'[seeds] adaptive_seed_cost: {cost["member_steps"]} member-steps (100% of '
          f'{cost["member_steps"]} with 2 seeds at each of the {len(measured)} measured cells)'
          in lines)


def test_a_rerun_with_added_seeds_redoes_nothing(seeded):
  path, _ = seeded
  before, tables = _artifacts(path), {n: (path / n).read_text() for n in OUTPUTS}
  output = _command(path, *SEEDS)
  assert _artifacts(path) == before
  assert re.search(r'^\[search\] round 2: .*\(done earlier\)$', output, re.M), output
  assert re.search(r'^\[seeds\] round 1: adding dense seed 1001 .*\(done earlier\)$', output,
                   re.M), output
  assert not re.search(r'^\[(train|prune|retrain|measure)\] .*epoch', output, re.M)
  assert {n: (path / n).read_text() for n in OUTPUTS} == tables


def test_a_run_stopped_in_an_added_seed_resumes_to_identical_results(seeded, tmp_path):
  # What a kill in the last unit's measure stage leaves: the earlier units finished, its
  # measurement and the report not written (a real SIGKILL: the slow test below).
  path = tmp_path / 'run'
  shutil.copytree(seeded[0], path)
  for pattern in ('prune-*/retrain-*/measure-*/batch_size=128+seed1001+density=*.json',
                  *OUTPUTS):
    (found,) = path.glob(pattern)
    found.unlink()
  output = _command(path, *SEEDS)
  (line,) = [line for line in output.splitlines() if line.startswith('[seeds] round 1: ')]
  assert line.startswith('[seeds] round 1: adding dense seed 1001 ') and 'earlier' not in line
  # The replayed round runs its unfinished unit alone: nothing else is trained or measured.
  worked = set(re.findall(r'^\[(?:train|prune|retrain|measure)\] (\S+)', output, re.M))
  assert {w.split('+density=')[0] for w in worked} == {'batch_size=128+seed1001'}, output
  assert re.search(r'^\[measure\] batch_size=128\+seed1001\+density=\S+ \d+ pairs', output,
                   re.M), output
  for name in OUTPUTS:
    assert (path / name).read_text() == (seeded[0] / name).read_text(), name


@pytest.mark.slow  # About 35 s on 2 cores: an uninterrupted command, 2 killed, the last.
def test_a_command_killed_in_an_added_seed_after_the_search_resumes_to_identical_results(
    tmp_path):
  # The tiny grid (epochs: a seed adds a whole run, then one unit per measured temperature).
  from test_resume_kill import Runs  # pylint: disable=import-outside-toplevel
  from test_resume_kill import assert_same_tables  # pylint: disable=import-outside-toplevel
  from test_resume_kill import mnist1d_args  # pylint: disable=import-outside-toplevel
  args = mnist1d_args(tmp_path, '--config.dense.epochs=4', '--config.temperature.grid=(2,4)',
                      '--config.prune.densities=(0.2,0.4,0.6)', '--config.search.mode=adaptive',
                      *SEEDS)
  Runs(tmp_path, tmp_path / 'reference', args).finish()
  runs = Runs(tmp_path, tmp_path / 'killed', args)
  retrain = 'prune-*/retrain-*'
  hot, cold = 'epochs=2+seed1001+density=*', 'epochs=4+seed1001+density=*'  # The two units.
  runs.kill_before(f'{retrain}/{cold}/epochs/2',  # SIGKILL in the second unit's retraining.
                   present=('dense/all+seed1001/epochs/4', f'{retrain}/measure-*/{hot}.json',
                            f'{retrain}/{cold}/resume/1'),
                   absent=(f'{retrain}/measure-*/{cold}.json',))
  output = runs.kill_before(f'{retrain}/measure-*/{cold}.json',  # ... in its measure.
                            present=(f'{retrain}/{cold}/epochs/2',), absent=('results.csv',))
  assert '[train] all+seed1001 done earlier' in output
  output = runs.finish()
  assert re.search(r'^\[search\] round 1: .*\(done earlier\)$', output, re.M), output
  assert re.search(r'^\[seeds\] round 1: adding dense seed 1001 to the whole run', output, re.M)
  assert_same_tables(runs.workdir, tmp_path / 'reference')
  assert {r['dense_seed'] for r in read_results(runs.workdir)} == {'1', '1001'}


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
  both = default_config.get_config()  # The search with adaptive dense seeds: they combine.
  both.search.mode, both.seeds.adaptive = 'adaptive', True
  config_lib.validate(both)
  both.prune.schedule = 'iterative'
  with pytest.raises(config_lib.ConfigError, match="needs prune.schedule='one_shot'"):
    config_lib.validate(both)


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


def test_an_added_seed_at_measured_cells_has_keys_of_its_own_and_the_seeds_dense_models(tmp_path):
  config = default_config.get_config()
  config.search.mode, config.seeds.adaptive = 'adaptive', True
  assert identity.branch_path(config) == identity.branch_path(default_config.get_config())
  facts = artifacts.DataFacts('mnist1d', (40, 1), 10, 4000, 1000, (0.0,), (1.0,), False)
  base = artifacts.Store(tmp_path, config, facts)
  addition = adaptive_seeds.Addition((64,), 3001, ((64, 0.04),), 3)
  unit = adaptive_cell_seeds.CellSeedStore(base, adaptive_cell_seeds.Unit(addition, 64,
                                                                          (0.04, 0.2)))
  assert unit.key(64) == 'batch_size=64+seed3001+density=0.04_0.2'  # Neither unit kind's key.
  assert unit.measure_dir == base.measure_dir and unit.prune_dir == base.prune_dir
  assert (unit.temperatures, unit.densities, unit.dense_seeds) == ([64], [0.04, 0.2], [3001])
  # The dense models are the added seed's, as on a grid (`adaptive_seeds.SeedStore`).
  (group,) = unit.dense_groups()
  assert group.name == 'batch_size=64+seed3001' and group.seeds == (3001,)
  retrain = len(base.retrain_seeds) * config.retrain.epochs * (4000 // config.retrain.batch_size)
  assert adaptive_seeds.member_steps(base, [1, 2, 1, 1, 1], [(), (0.04, 0.2), (), (), ()]
                                     ) == 2 * (group.total_steps + 2 * retrain)
  config.temperature.knob, config.temperature.grid = 'epochs', (2, 4)
  base = artifacts.Store(tmp_path, config, facts)  # Epochs: the seed's run gives every one.
  addition = adaptive_seeds.Addition((4, 2), 3001, ((2, 0.2),), 3)
  unit = adaptive_cell_seeds.CellSeedStore(base, adaptive_cell_seeds.Unit(addition, 2, (0.2,)))
  assert unit.key(2) == 'epochs=2+seed3001+density=0.2'
  (group,) = unit.dense_groups()
  assert group.name == 'all+seed3001' and group.save_epochs == (2, 4)
