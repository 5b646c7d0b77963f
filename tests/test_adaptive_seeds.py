"""Adaptive dense seeds (`seeds.adaptive`): the round logic on synthetic tables, the keys and cost
of added seeds, and end to end on the tiny sweep: nothing redone, resume, the maximum, errors."""

import contextlib
import csv
import io
import json
import re
import shutil

import numpy as np
import pytest

from conftest import one_line_error  # pylint: disable=g-bad-import-order
from conftest import read_results
from conftest import run_command
from conftest import tiny_config
from prunephase import adaptive_seeds
from prunephase import artifacts
from prunephase import checkpoints
from prunephase import config as config_lib
from prunephase import grid
from prunephase import sweep as sweep_lib
from prunephase.config import identity

NAN = float('nan')
LABELS = np.array([['I', 'II-A', 'II-B'], ['I', 'II-A', 'II-B'], ['', 'II-B', 'II-B']], object)


# ----------------------------------------------------------------------------- round logic


def test_each_temperature_with_an_unconfident_cell_gets_its_next_seed():
  confidence = np.array([[0.9, 0.5, 0.9], [0.9, 0.9, 0.9], [NAN, 0.9, 0.69]])
  decided = adaptive_seeds.decide(LABELS, confidence, [16, 64, 256], [0.04, 0.1, 0.4],
                                  [[1, 2, 3], [1, 2, 3], [1, 2, 3, 4]], 0.7, 8)
  assert decided.additions == (
      adaptive_seeds.Addition((16,), 4, ((16, 0.1),), 3),
      adaptive_seeds.Addition((256,), 5, ((256, 0.4),), 4))  # The next integer above its seeds.
  assert decided.at_max == ()


def test_added_seeds_come_from_a_block_of_the_configured_seeds():
  # Two runs of disjoint configured seeds add disjoint seeds, so they stay independent.
  assert adaptive_seeds.first_added_seed((1, 2, 3)) == 3001
  assert adaptive_seeds.first_added_seed((4, 5, 6)) == 6001
  confidence = np.full((3, 3), 0.1)
  first = adaptive_seeds.decide(LABELS, confidence, [16, 64, 256], [0.04, 0.1, 0.4],
                                [[1, 2, 3], [1, 2, 3, 3001], [1, 2, 3]], 0.7, 8,
                                first_added=3001)
  assert [a.seed for a in first.additions] == [3001, 3002, 3001]


def test_nan_confidence_of_a_labelled_cell_asks_for_a_seed_an_unlabelled_cell_does_not():
  # One dense seed: every labelled cell's confidence is NaN (nothing to resample). The
  # unlabelled cell (a diverged member) stays unlabelled whatever is added.
  confidence = np.full((3, 3), NAN)
  confidence[1] = 1.0
  decided = adaptive_seeds.decide(LABELS, confidence, [16, 64, 256], [0.04, 0.1, 0.4],
                                  [[1], [1], [7]], 0.7, 8)
  assert [(a.temperatures, a.seed) for a in decided.additions] == [((16,), 2), ((256,), 8)]
  assert decided.additions[1].cells == ((256, 0.1), (256, 0.4))
  labels = LABELS.copy()
  labels[0] = labels[2] = ''
  assert not adaptive_seeds.decide(labels, confidence, [16, 64, 256], [0.04, 0.1, 0.4],
                                   [[1], [1], [7]], 0.7, 8).additions


def test_temperatures_at_max_dense_seeds_get_none_and_every_cell_confident_ends_it():
  confidence = np.full((3, 3), 0.1)
  decided = adaptive_seeds.decide(LABELS, confidence, [16, 64, 256], [0.04, 0.1, 0.4],
                                  [[1, 2], [1, 2, 3], [1, 2]], 0.7, 2)
  assert decided.additions == ()
  assert len(decided.at_max) == 8  # Every labelled cell, none can get more.
  decided = adaptive_seeds.decide(LABELS, confidence, [16, 64, 256], [0.04, 0.1, 0.4],
                                  [[1, 2], [1, 2], [1]], 0.7, 2)
  assert [a.temperatures for a in decided.additions] == [(256,)]
  confident = adaptive_seeds.decide(LABELS, np.full((3, 3), 0.7), [16, 64, 256],
                                    [0.04, 0.1, 0.4], [[1]] * 3, 0.7, 8)
  assert confident.additions == confident.at_max == ()


def test_the_epoch_knob_adds_one_seed_to_the_whole_run():
  confidence = np.full((3, 3), 0.9)
  confidence[2, 1] = 0.2
  decided = adaptive_seeds.decide(LABELS, confidence, [1, 2, 4], [0.04, 0.1, 0.4],
                                  [[1, 2]] * 3, 0.7, 8, whole_run=True)
  assert decided.additions == (adaptive_seeds.Addition((1, 2, 4), 3, ((4, 0.1),), 2),)
  assert not adaptive_seeds.decide(LABELS, confidence, [1, 2, 4], [0.04, 0.1, 0.4],
                                   [[1, 2]] * 3, 2, 2, whole_run=True).additions


# ----------------------------------------------------------------------------- keys and cost


def _store(tmp_path, knob='lr', grid_values=(0.05, 0.2)):
  config = tiny_config()
  config.temperature.knob, config.temperature.grid = knob, grid_values
  facts = artifacts.DataFacts('mnist1d', (40, 1), 10, 480, 120, (0.0,), (1.0,), False)
  return artifacts.Store(tmp_path, config, facts)


def test_an_added_seed_has_keys_of_its_own_in_the_same_branch(tmp_path):
  base = _store(tmp_path)
  unit = adaptive_seeds.SeedStore(base, (0.2,), 4)
  assert unit.dense_seeds == [4] and unit.temperatures == [0.2]
  assert unit.key(0.2) == 'lr=0.2+seed4'
  assert unit.measure_dir == base.measure_dir and unit.prune_dir == base.prune_dir
  assert unit.measure_file(0.2).name == 'lr=0.2+seed4.json'
  # A vmapped knob's dense population is one group 'all': the unit is named by its temperature.
  (group,) = unit.dense_groups()
  assert group.name == 'lr=0.2+seed4' and unit.dense_dir(group) == tmp_path / 'dense' / group.name
  epochs = adaptive_seeds.SeedStore(_store(tmp_path, 'epochs', (1, 2)), (2, 1), 3)
  assert epochs.dense_dir(epochs.dense_groups()[0]).name == 'all+seed3'
  assert not unit.config.seeds.adaptive and not unit.config.dense.init_from
  base.config.prune.method = 'random'  # Random masks keyed by the seed's position, as in a
  assert adaptive_seeds.SeedStore(base, (0.2,), 4, 3).config.prune.seed == 3000  # population.


def test_store_locations_keep_the_workdir_layout(tmp_path):
  """Every location the stages train into comes from the store, at the paths of earlier
  versions (existing workdirs resume); an added seed's are under its keys in the same branch."""
  base = _store(tmp_path)
  branch = base.prune_dir.parent
  assert base.prune_dir == branch / 'masks' and base.retrain_dir.parent == branch
  (group,) = base.dense_groups()
  assert base.dense_run(group).epochs == tmp_path / 'dense' / 'all' / 'epochs'
  assert base.dense_run(group).resume == tmp_path / 'dense' / 'all' / 'resume'
  assert base.retrain_run(0.2).epochs == base.retrain_dir / 'lr=0.2' / 'epochs'
  assert base.retrain_run(0.2).path == base.retrain_run_dir(0.2)
  assert base.imp_mask_dir(0.2, 3) == branch / 'levels' / 'lr=0.2' / '3' / 'mask'
  assert base.imp_run(0.2, 3).resume == branch / 'levels' / 'lr=0.2' / '3' / 'train' / 'resume'
  unit = adaptive_seeds.SeedStore(base, (0.2,), 4)
  assert unit.imp_level_dir(0.2, 1) == branch / 'levels' / 'lr=0.2+seed4' / '1'
  assert unit.retrain_run(0.2).path == base.retrain_dir / 'lr=0.2+seed4'


def test_cost_is_training_steps_times_members(tmp_path):
  store = _store(tmp_path, 'batch_size', (16, 64))
  retrain = 2 * (480 // 64) * 2 * 3  # epochs x steps per epoch, x densities x retrain seeds.
  dense = store.config.dense.iterations
  assert adaptive_seeds.member_steps(store, [1, 3]) == 4 * (dense + retrain)
  store = _store(tmp_path, 'epochs', (1, 2))  # One run of 2 epochs gives both temperatures.
  assert adaptive_seeds.member_steps(store, [2, 2]) == 2 * (2 * (480 // 64) + 2 * retrain)


# ----------------------------------------------------------------------------- end to end


def adaptive_config(max_dense_seeds=2):
  config = tiny_config()  # Epoch knob, 1 dense seed: every label's confidence is NaN.
  config.seeds.adaptive = True
  config.seeds.max_dense_seeds = max_dense_seeds
  return config


def _artifacts(path):
  """{file: mtime} of every stored model, mask and measurement (not the report, not specs)."""
  return {p: p.stat().st_mtime_ns for p in path.rglob('*')
          if p.is_file() and (p.relative_to(path).parts[0] == 'dense'
                              or p.relative_to(path).parts[0].startswith('prune-'))
          and p.name != 'spec.json'}


def _run(config, path):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    _, summary = sweep_lib.run_sweep(config, path)
  return out.getvalue(), summary


@pytest.fixture(scope='module')
def adaptive_run(finished_run, tmp_path_factory):
  """(workdir, artifacts before, printed output, summary) of `adaptive_config()` run on a copy of
  the finished tiny sweep."""
  path = tmp_path_factory.mktemp('adaptive') / 'run'
  shutil.copytree(finished_run[0], path)
  before = _artifacts(path)
  output, summary = _run(adaptive_config(), path)
  return path, before, output, summary


def test_added_seeds_reuse_every_existing_artifact(adaptive_run, finished_run):
  path, before, output, _ = adaptive_run
  after = _artifacts(path)
  assert {p: after.get(p) for p in before} == before  # Nothing rewritten: nothing redone.
  assert any('+seed1001' in str(p) for p in set(after) - set(before))
  assert re.search(r'^\[seeds\] round 1: adding dense seed 1001 to the whole run \(epochs: one run '
                   r'gives every temperature\) \(unconfident cells: epochs=1 at 20%, 60%; '
                   r'epochs=2 at 20%, 60%\)$', output, re.M), output
  rows, base = read_results(path), read_results(finished_run[0])
  assert len(rows) == 2 * len(base)
  assert {r['dense_seed'] for r in rows} == {'1', '1001'}
  key = lambda r: (r['temperature'], r['density'], r['dense_seed'], r['seed_a'], r['seed_b'])
  added = {key(r): r for r in rows}
  for row in base:  # The configured seed's rows are its measurements, unchanged.
    assert added[key(row)]['lmc'] == row['lmc']
    assert added[key(row)]['cka_softmax'] == row['cka_softmax']


def test_regimes_json_records_seeds_per_temperature_and_the_cost(adaptive_run):
  path, _, output, summary = adaptive_run
  record = json.loads((path / 'regimes.json').read_text())
  assert record['dense_seeds'] == [{'temperature': 1, 'dense_seeds': [1, 1001]},
                                   {'temperature': 2, 'dense_seeds': [1, 1001]}]
  cost = record['adaptive_seed_cost']
  assert cost['member_steps'] == cost['max_seeds_member_steps'] > 0  # Max 2 seeds: all of it.
  assert f'[seeds] adaptive_seed_cost: {cost["member_steps"]} member-steps (100% of ' in output
  assert any('adaptive_seed_cost' in line for line in summary['seeds'])
  cells = list(csv.DictReader(open(path / 'cells.csv')))
  assert {c['num_dense_seeds'] for c in cells} == {'2'}


def test_max_dense_seeds_stops_the_rounds_and_a_rerun_redoes_nothing(adaptive_run):
  path, _, _, _ = adaptive_run
  record = json.loads((path / 'regimes.json').read_text())
  assert len(record['adaptive_seeds']['rounds']) == 1 and record['adaptive_seeds']['finished']
  before, results = _artifacts(path), (path / 'results.csv').read_text()
  output, _ = _run(adaptive_config(), path)
  assert _artifacts(path) == before
  assert '[seeds] round 1: adding dense seed 1001 to the whole run' in output
  assert '(done earlier)' in output
  assert (path / 'results.csv').read_text() == results


def _crash_saving(monkeypatch, fragment):
  original = checkpoints.save

  def save(directory, *args, **kwargs):
    if fragment in str(directory):
      raise KeyboardInterrupt('simulated kill')
    return original(directory, *args, **kwargs)

  monkeypatch.setattr(checkpoints, 'save', save)
  return original


def test_a_run_killed_inside_an_added_seed_resumes_to_identical_results(
    adaptive_run, finished_run, tmp_path, monkeypatch):
  path = tmp_path / 'run'
  shutil.copytree(finished_run[0], path)
  original = _crash_saving(monkeypatch, 'retrain-')  # Retraining of the added seed 1001.
  with pytest.raises(KeyboardInterrupt):
    _run(adaptive_config(), path)
  assert (path / 'dense' / 'all+seed1001').is_dir()
  monkeypatch.setattr(checkpoints, 'save', original)
  _run(adaptive_config(), path)
  assert (path / 'results.csv').read_text() == (adaptive_run[0] / 'results.csv').read_text()
  assert ((path / 'regimes.json').read_text()
          == (adaptive_run[0] / 'regimes.json').read_text())


def test_rounds_are_replayed_from_the_stored_results_after_a_kill(adaptive_run, tmp_path,
                                                                  monkeypatch):
  # Every label unconfident (confidence NaN) forces a second round; the run is killed in it.
  real_label = adaptive_seeds.label
  monkeypatch.setattr(adaptive_seeds, 'label', lambda store, rows: {
      **real_label(store, rows), 'confidence': np.full((2, 2), np.nan)})
  uninterrupted, killed = tmp_path / 'uninterrupted', tmp_path / 'killed'
  for path in (uninterrupted, killed):
    shutil.copytree(adaptive_run[0], path)  # Round 1 (seed 1001) done.
  _run(adaptive_config(3), uninterrupted)
  original = _crash_saving(monkeypatch, 'all+seed1002')
  with pytest.raises(KeyboardInterrupt):
    _run(adaptive_config(3), killed)
  monkeypatch.setattr(checkpoints, 'save', original)
  output, _ = _run(adaptive_config(3), killed)
  assert re.search(r'^\[seeds\] round 1: adding dense seed 1001 .*\(done earlier\)$', output, re.M)
  assert re.search(r'^\[seeds\] round 2: adding dense seed 1002 to the whole run', output, re.M)
  assert (killed / 'results.csv').read_text() == (uninterrupted / 'results.csv').read_text()
  assert {r['dense_seed'] for r in read_results(killed)} == {'1', '1001', '1002'}


def test_a_per_temperature_knob_adds_seeds_per_temperature(tmp_path):
  config = adaptive_config()
  config.temperature.knob, config.temperature.grid = 'batch_size', (16, 64)
  config.dense.iterations = 30
  output, summary = _run(config, tmp_path)
  assert re.search(r'^\[seeds\] round 1: adding dense seed 1001 to batch_size=16 \(unconfident '
                   r'cells: 20%, 60%\); dense seed 1001 to batch_size=64 \(', output, re.M), output
  assert {p.name for p in (tmp_path / 'dense').iterdir()} == {
      'batch_size=16', 'batch_size=64', 'batch_size=16+seed1001', 'batch_size=64+seed1001'}
  rows = read_results(tmp_path)
  assert sorted({(r['temperature'], r['dense_seed']) for r in rows}) == [
      ('16', '1'), ('16', '1001'), ('64', '1'), ('64', '1001')]
  assert summary['num_rows'] == len(rows) == 2 * 2 * 2 * 3


@pytest.mark.slow  # About 35 s on 2 cores: an uninterrupted command, 2 killed, the last.
def test_a_command_killed_inside_an_added_seed_resumes_to_identical_results(tmp_path):
  from test_resume_kill import Runs  # pylint: disable=import-outside-toplevel
  from test_resume_kill import assert_same_tables  # pylint: disable=import-outside-toplevel
  from test_resume_kill import mnist1d_args  # pylint: disable=import-outside-toplevel
  args = mnist1d_args(tmp_path, '--config.seeds.adaptive=True',
                      '--config.seeds.max_dense_seeds=2')
  Runs(tmp_path, tmp_path / 'reference', args).finish()
  runs = Runs(tmp_path, tmp_path / 'killed', args)
  retrain = 'prune-*/retrain-*'
  runs.kill_before(f'{retrain}/epochs=2+seed1001/epochs/2',  # SIGKILL in the added retraining.
                   present=('dense/all+seed1001/epochs/2', f'{retrain}/epochs=1+seed1001/epochs/2'),
                   absent=(f'{retrain}/measure-*/epochs=1+seed1001.json',))
  output = runs.kill_before(f'{retrain}/measure-*/epochs=2+seed1001.json',  # ... in its measure.
                            present=(f'{retrain}/measure-*/epochs=1+seed1001.json',),
                            absent=('results.csv',))
  assert '[train] all+seed1001 done earlier' in output
  output = runs.finish()
  assert re.search(r'^\[seeds\] round 1: adding dense seed 1001 to the whole run', output, re.M)
  assert_same_tables(runs.workdir, tmp_path / 'reference')


def test_without_adaptive_seeds_the_tables_are_the_configured_seeds_only(finished_run):
  path, _, _ = finished_run
  assert {r['dense_seed'] for r in read_results(path)} == {'1'}
  assert 'dense_seeds' not in json.loads((path / 'regimes.json').read_text())


# ----------------------------------------------------------------------------- config


def test_the_seeds_section_decides_no_artifact_and_old_workdirs_open():
  assert identity.stage_of('seeds.adaptive') is None
  assert identity.stage_of('seeds.max_dense_seeds') is None
  old = tiny_config().to_dict()
  del old['seeds']  # A workdir made before the section existed.
  assert identity.changed_dense_fields(old, adaptive_config(5)) == []
  assert grid.temperature_key('epochs', 2) + adaptive_seeds.SUFFIX + '3' == 'epochs=2+seed3'


def test_bad_seeds_fields_are_one_line_config_errors():
  config = adaptive_config()
  config.seeds.max_dense_seeds = 0
  with pytest.raises(config_lib.ConfigError,
                     match='^seeds.max_dense_seeds must be a whole number >= 1, got 0$'):
    config_lib.validate(config)
  config = adaptive_config()
  config.regimes.bootstrap = 0
  with pytest.raises(config_lib.ConfigError, match='seeds.adaptive needs regimes.bootstrap > 0'):
    config_lib.validate(config)


def test_max_dense_seeds_below_the_configured_seeds_is_a_one_line_error(tmp_path):
  result = run_command('prunephase', '--config=configs/default.py:quick',
                       f'--workdir={tmp_path / "w"}', '--config.seeds.adaptive=True',
                       '--config.dense.seeds=(1,2,3)', '--config.seeds.max_dense_seeds=2',
                       timeout=120)
  assert one_line_error(result) == ('seeds.max_dense_seeds=2 is smaller than the 3 dense.seeds '
                                    '(1, 2, 3)')
  assert not (tmp_path / 'w').exists()
