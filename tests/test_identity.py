"""Per-stage identity and reuse: which fields decide which artifacts, branches beside each other,
speed-only fields never refused, dense models imported from another workdir, old layouts moved."""

import shutil

import pytest

from conftest import tiny_config  # pylint: disable=g-bad-import-order
from prunephase import artifacts
from prunephase import config as config_lib
from prunephase import files
from prunephase import sweep as sweep_lib
from prunephase import workdir as workdir_lib
from prunephase.config import identity


def test_each_field_decides_one_stage():
  assert identity.stage_of('dense.lr') == 'dense'
  assert identity.stage_of('model.widths') == 'dense'
  assert identity.stage_of('temperature.grid') == 'dense'
  assert identity.stage_of('prune.method') == 'prune'
  assert identity.stage_of('retrain.epochs') == 'retrain'
  assert identity.stage_of('measure.lmc_points') == 'measure'
  for free in ('measure.pairs_per_call', 'measure.point_batching', 'dense.resume_every',
               'retrain.resume_every', 'dataset.data_dir', 'dense.init_from', 'mesh.members',
               'train.steps_per_call', 'regimes.min_drop', 'cpu_devices'):
    assert identity.stage_of(free) is None, free


def test_branch_names_change_only_with_their_own_or_upstream_fields():
  base = tiny_config()
  names = identity.branch_path(base)
  assert names[0].startswith('prune-uniform-') and names[1].startswith('retrain-lr_rewinding-')
  other = tiny_config()
  other.measure.lmc_points = 7
  assert identity.branch_path(other)[:2] == names[:2] and identity.branch_path(other)[2] != names[2]
  other = tiny_config()
  other.prune.method = 'lamp'
  assert identity.branch_path(other)[0].startswith('prune-lamp-')
  other = tiny_config()
  other.measure.pairs_per_call = 1
  other.regimes.min_drop = 0.2
  assert identity.branch_path(other) == names


def test_fields_added_later_keep_the_branch_names_of_older_workdirs():
  config = tiny_config()
  older = config.to_dict()  # A config.json written before these fields existed.
  for section, name in (('prune', 'schedule'), ('prune', 'rate_per_level'),
                        ('retrain', 'rewind_epoch'), ('measure', 'hessian'),
                        ('measure', 'hessian_iters'), ('measure', 'bezier_curve'),
                        ('measure', 'curve_epochs')):
    del older[section][name]
  assert identity.branch_path(older) == identity.branch_path(config)
  config.prune.seed = 5  # Decides nothing for magnitude pruning ...
  assert identity.branch_path(older) == identity.branch_path(config)
  config.prune.method = 'random'  # ... but names the random masks.
  assert identity.fields(config, 'prune')['prune.seed'] == 5


def test_changed_dense_fields_names_only_dense_fields():
  old = {'dense': {'lr': 0.1, 'seeds': [1, 2], 'resume_every': 0},
         'prune': {'method': 'uniform'}, 'regimes': {'min_drop': 0.05}}
  new = {'dense': {'lr': 0.05, 'seeds': (1, 2), 'resume_every': 5},
         'prune': {'method': 'lamp'}, 'regimes': {'min_drop': 0.1}}
  assert identity.changed_dense_fields(old, new) == ['dense.lr: 0.1 -> 0.05']


@pytest.fixture(scope='module')
def reused_run(finished_run, tmp_path_factory):
  """A copy of the tiny finished run, re-run with prune.method=lamp and a smaller
  pairs_per_call: (workdir, printed lines)."""
  path, _, _ = finished_run
  copy = tmp_path_factory.mktemp('reuse') / 'run'
  shutil.copytree(path, copy, ignore=shutil.ignore_patterns('.lock'))
  config = tiny_config()
  config.prune.method = 'lamp'
  config.measure.pairs_per_call = 1  # Memory only: never refused.
  return copy, config


def test_another_prune_method_reuses_the_dense_models(reused_run, capsys):
  copy, config = reused_run
  sweep_lib.run_sweep(config, copy)
  out = capsys.readouterr().out
  assert '[train] all done earlier' in out and '[train] all epoch' not in out
  old, new = artifacts.Store(copy, tiny_config()), artifacts.Store(copy, config)
  assert old.prune_dir != new.prune_dir
  for temperature in (1, 2):  # The old branch is kept beside the new one.
    assert old.has_measurement(temperature) and new.has_measurement(temperature)
  spec = files.read_json(new.prune_dir.parent / artifacts.SPEC_FILE)
  assert spec['prune.method'] == 'lamp'
  # Re-running the first config finds everything done: nothing is trained again.
  sweep_lib.run_sweep(tiny_config(), copy)
  out = capsys.readouterr().out
  assert 'epoch 1/' not in out and out.count('done earlier') >= 5


def test_a_dense_change_is_refused_naming_the_field(finished_run):
  path, _, _ = finished_run
  config = tiny_config()
  config.dense.lr = 0.05
  with pytest.raises(files.WorkdirError, match=r'dense.lr: 0.1 -> 0.05.*init_from'):
    sweep_lib.run_sweep(config, path, stages=('report',))


def test_init_from_imports_finished_dense_models(finished_run, tmp_path, capsys):
  path, _, _ = finished_run
  config = tiny_config()
  config.dense.init_from = str(path)
  sweep_lib.run_sweep(config, tmp_path / 'new', stages=('train',))
  out = capsys.readouterr().out
  assert 'imported from' in out and 'epoch 1/' not in out
  source, imported = artifacts.Store(path, tiny_config()), artifacts.Store(tmp_path / 'new', config)
  a, b = source.dense_models(2), imported.dense_models(2)
  assert (a['params']['head']['kernel'] == b['params']['head']['kernel']).all()


def test_init_from_of_other_dense_models_is_refused(finished_run):
  path, _, _ = finished_run
  config = tiny_config()
  config.dense.seeds = (7,)
  config.dense.init_from = str(path)
  with pytest.raises(config_lib.ConfigError, match=r'dense.seeds: \[1\] -> \[7\]'):
    config_lib.validate(config)


def test_legacy_layout_is_read_in_place_and_moved_on_resume(finished_run, tmp_path):
  path, _, _ = finished_run
  copy = tmp_path / 'old'
  shutil.copytree(path, copy, ignore=shutil.ignore_patterns('.lock'))
  store = artifacts.Store(copy, tiny_config())
  before = (copy / 'results.csv').read_text()
  masks, retrain, measure = store.prune_dir, store.retrain_dir, store.measure_dir
  shutil.move(str(measure), str(copy / 'measure'))  # The <= 0.1 layout.
  shutil.move(str(retrain), str(copy / 'retrain'))
  shutil.move(str(masks), str(copy / 'masks'))
  shutil.rmtree(masks.parent)
  legacy = artifacts.Store(copy, tiny_config())
  assert legacy.legacy and legacy.has_measurement(1) and legacy.has_retrained(2)
  sweep_lib.run_sweep(tiny_config(), copy)
  assert not (copy / 'masks').exists() and store.has_measurement(1) and store.has_retrained(2)
  assert (copy / 'results.csv').read_text() == before


def _dense(knob: str, optimizer: str = 'sgd', **dense) -> dict:
  return {'temperature': {'knob': knob, 'grid': [16, 64]},
          'dense': {'optimizer': optimizer, 'lr': 0.1, 'weight_decay': 1e-4, 'sam_rho': 0.05,
                    'batch_size': 64, 'epochs': 24, 'iterations': 1500, **dense}}


def test_dense_fields_the_knob_leaves_unused_decide_nothing():
  cases = {  # knob: (fields that may change, a field that still decides)
      'batch_size': (('batch_size', 'epochs'), 'iterations'),
      'epochs': (('iterations',), 'epochs'),
      'lr': (('lr', 'iterations'), 'weight_decay'),
      'weight_decay': (('weight_decay', 'iterations'), 'lr'),
  }
  for knob, (free, deciding) in cases.items():
    for field in free:
      changed = identity.changed_dense_fields(_dense(knob), _dense(knob, **{field: 7}))
      assert not changed, (knob, field, changed)
    changed = identity.changed_dense_fields(_dense(knob), _dense(knob, **{deciding: 7}))
    assert changed and changed[0].startswith(f'dense.{deciding}:'), (knob, changed)
  # SAM's radius decides only under SAM; under the sam_rho knob it is the temperature.
  assert not identity.changed_dense_fields(_dense('lr'), _dense('lr', sam_rho=0.1))
  assert identity.changed_dense_fields(_dense('lr', 'sam'), _dense('lr', 'sam', sam_rho=0.1))
  assert not identity.changed_dense_fields(_dense('sam_rho', 'sam'),
                                           _dense('sam_rho', 'sam', sam_rho=0.1))
  # Another knob is a change in itself, and the old knob's unused fields decide again.
  changed = identity.changed_dense_fields(_dense('lr'), _dense('batch_size', lr=0.2))
  assert changed == ['dense.lr: 0.1 -> 0.2', "temperature.knob: lr -> batch_size"]


def test_a_workdir_reopens_with_a_field_its_knob_leaves_unused(tmp_path):
  config = tiny_config()  # The epoch knob: dense.iterations decides nothing.
  workdir_lib.Workdir(tmp_path, config.to_dict()).release()
  config.dense.iterations = 12345
  workdir_lib.Workdir(tmp_path, config.to_dict()).release()  # Accepted: an unused field.
  config.dense.lr = config.dense.lr * 2
  with pytest.raises(files.WorkdirError, match='dense.lr'):
    workdir_lib.Workdir(tmp_path, config.to_dict())
