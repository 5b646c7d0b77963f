"""Temperature knobs (prunephase.knobs): the built-ins' data, a user's knob (label smoothing,
examples/own_knob.py) through training, the `prunephase` command and prunephase-advise, and the
one-line errors of bad knobs and bad knob configs."""

import json

import jax
import jax.numpy as jnp
import pytest

from conftest import one_line_error
from conftest import read_results
from conftest import REPO
from conftest import run_command
from conftest import tiny_config
from prunephase import config as config_lib
from prunephase import knobs
from prunephase import models
from prunephase import plots
from prunephase import registry
from prunephase import train_steps
from prunephase import workdir as workdir_lib

EXAMPLE = REPO / 'examples' / 'own_knob.py'
# The built-ins' data before knobs were entries: which way is hotter and the words of a move.
HOTTER_WHEN_LARGER = {'epochs': False, 'batch_size': False, 'lr': True, 'weight_decay': True,
                      'sam_rho': True}
MOVES = {
    'epochs': ('train fewer epochs (an earlier checkpoint)', 'train more epochs'),
    'batch_size': ('use a smaller batch', 'use a larger batch'),
    'lr': ('raise the learning rate', 'lower the learning rate'),
    'weight_decay': ('raise the weight decay', 'lower the weight decay'),
    'sam_rho': ('raise SAM rho', 'lower SAM rho'),
}
LABELS = {'epochs': 'Training epochs', 'batch_size': 'Batch size', 'lr': 'Learning rate',
          'weight_decay': 'Weight decay', 'sam_rho': 'SAM rho'}


@pytest.fixture(name='own_knob')
def fixture_own_knob():
  """The example's config (its knob registered), unregistered after the test."""
  config = config_lib.load_config_file(EXAMPLE).get_config()
  yield config
  knobs.unregister('label_smoothing')


# ----------------------------------------------------------------------------- built-ins


def test_builtin_entries_keep_their_direction_words_and_labels():
  assert knobs.names() == tuple(HOTTER_WHEN_LARGER)
  for name, larger in HOTTER_WHEN_LARGER.items():
    entry = knobs.knob(name)
    assert entry.larger_is_hotter is larger
    assert (entry.increase, entry.decrease) == MOVES[name]
    assert entry.label == LABELS[name] == plots.knob_label(name)
  assert knobs.knob('epochs').checkpoints and knobs.knob('batch_size').programs
  assert [knobs.knob(n).sets for n in ('lr', 'weight_decay', 'sam_rho')] == [
      ('lr',), ('weight_decay',), ('sam_rho',)]
  assert dict(knobs.knob('sam_rho').baselines) == {'SAM default rho=0.05': 0.05,
                                                   'plain SGD (rho=0)': 0.0}
  assert config_lib.hot_to_cold('epochs', [40, 10, 20]) == [10, 20, 40]
  assert config_lib.hot_to_cold('lr', [0.01, 0.1]) == [0.1, 0.01]
  with pytest.raises(registry.RegistryError, match='built in'):
    knobs.unregister('lr')


def test_a_member_gets_the_dense_section_unless_the_knob_sets_the_field():
  config = tiny_config()
  config.temperature.knob, config.temperature.grid = 'weight_decay', (0.0, 0.01)
  fields = knobs.dense_member_fields(config, [0.01, 0.0])
  assert fields == {'lr': [0.1, 0.1], 'weight_decay': [0.01, 0.0], 'sam_rho': [0.05, 0.05]}
  config.temperature.knob = 'epochs'
  assert knobs.dense_member_fields(config, [None])['lr'] == [0.1]


def test_an_apply_hook_sets_several_fields_of_a_member():
  def scale_lr_and_decay(fields, value):  # The lr and weight decay grow together.
    return {**fields, 'lr': fields['lr'] * value, 'weight_decay': fields['weight_decay'] * value}
  knobs.register_knob('scale', larger_is_hotter=True, increase='scale up',
                      decrease='scale down', label='Scale', sets=scale_lr_and_decay)
  try:
    config = tiny_config()
    config.temperature.knob, config.temperature.grid = 'scale', (2.0, 1.0)
    config_lib.validate(config)
    fields = knobs.dense_member_fields(config, [2.0, 1.0])
    assert fields['lr'] == [0.2, 0.1] and fields['weight_decay'] == [2e-4, 1e-4]
    assert fields['sam_rho'] == [0.05, 0.05]
  finally:
    knobs.unregister('scale')
  assert 'scale' not in knobs.names()


def test_hparams_fields_have_defaults_broadcast_to_the_members():
  assert train_steps.Hparams().weight_decay == 0.0 and train_steps.Hparams().extra == {}
  hparams = train_steps.Hparams.for_members(3, lr=[0.1, 0.2, 0.3], smoothing=0.5)
  assert hparams.sam_rho.shape == (3,) and hparams.extra['smoothing'].tolist() == [0.5] * 3
  broadcast = train_steps.broadcast_members(train_steps.Hparams(lr=jnp.ones(2)), 2)
  assert broadcast.weight_decay.shape == (2,)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize('kwargs, message', [
    ({'sets': 7}, 'sets must be'),
    ({'sets': ('not a field',)}, 'field names'),
    ({'increase': ''}, 'increase must be one line'),
    ({'label': 'two\nlines'}, 'label must be one line'),
    ({'check': 3}, 'check must be a callable'),
])
def test_bad_registrations_are_one_line(kwargs, message):
  args = {'larger_is_hotter': True, 'increase': 'up', 'decrease': 'down', 'label': 'K',
          'sets': 'k', **kwargs}
  with pytest.raises(registry.RegistryError, match=message) as error:
    knobs.register_knob('k', **args)
  assert '\n' not in str(error.value) and 'k' not in knobs.names()
  with pytest.raises(registry.RegistryError, match='already registered'):
    knobs.register_knob('lr', larger_is_hotter=True, increase='u', decrease='d', label='L',
                        sets='lr')


def test_knob_checks_are_one_line_config_errors(own_knob):
  config = tiny_config()
  config.temperature.knob, config.temperature.grid = 'sam_rho', (0.0, 0.1)
  with pytest.raises(config_lib.ConfigError, match='needs dense.optimizer=sam'):
    config_lib.validate(config)
  own_knob.temperature.grid = (0.0, 1.5)
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(own_knob)
  assert str(error.value) == ('temperature.grid (label_smoothing) must be in [0, 1), got '
                              '(0.0, 1.5)')
  own_knob.temperature.knob = 'smoothing'
  with pytest.raises(config_lib.ConfigError, match="unknown temperature.knob 'smoothing'"):
    config_lib.validate(own_knob)


def test_a_bad_knob_config_through_the_command_is_one_line(tmp_path):
  result = run_command('prunephase', f'--config={EXAMPLE}', f'--workdir={tmp_path / "w"}',
                       '--config.temperature.grid=(0.1,1.0)', timeout=120)
  assert 'temperature.grid (label_smoothing) must be in [0, 1)' in one_line_error(result)
  assert not (tmp_path / 'w').exists()


# ----------------------------------------------------------------------------- label smoothing


def test_label_smoothing_changes_the_dense_loss(own_knob):
  entry = knobs.knob('label_smoothing')
  assert entry.larger_is_hotter and entry.label == 'Label smoothing'
  assert config_lib.hot_to_cold('label_smoothing', [0.0, 0.3, 0.1]) == [0.3, 0.1, 0.0]
  model = models.make_model(own_knob.model, 10)
  state = train_steps.init_population(model, (40, 1), [0], [0])
  state = jax.tree.map(lambda a: a[0], state)
  x = jax.random.normal(jax.random.PRNGKey(0), (8, 40, 1))
  y = jnp.arange(8) % 10
  spec = train_steps.TrainSpec(batch_size=8, steps_per_epoch=1, loss=entry.loss_fn())
  loss = lambda spec, a: float(train_steps.train_step(
      model, spec, state, train_steps.Hparams(extra={'label_smoothing': jnp.float32(a)}), None, x,
      y)[1]['loss'])
  plain = loss(train_steps.TrainSpec(batch_size=8, steps_per_epoch=1), 0.0)
  assert loss(spec, 0.0) == pytest.approx(plain, rel=1e-6)
  assert abs(loss(spec, 0.3) - plain) > 1e-3


def test_own_knob_runs_through_the_command_and_advise_uses_its_words(tmp_path):
  workdir = tmp_path / 'own_knob'
  result = run_command(
      'prunephase', f'--config={EXAMPLE}', f'--workdir={workdir}',
      '--config.dataset.num_samples=600', '--config.model.widths=(8,8,8)',
      '--config.dense.epochs=2', '--config.retrain.epochs=2',
      '--config.measure.test_error_epochs=2', '--config.measure.cka_examples=100',
      '--config.measure.lmc_points=3', '--config.regimes.bootstrap=2', timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = read_results(workdir)
  assert {r['knob'] for r in rows} == {'label_smoothing'}
  temperatures = list(dict.fromkeys(float(r['temperature']) for r in rows))
  assert temperatures == [0.3, 0.0]  # Hottest (most smoothing) first.
  record = json.loads((workdir / workdir_lib.KNOB_FILE).read_text())
  assert record['increase'] == 'smooth the labels more'
  # A fresh process that never loaded the config: the workdir's record gives the words. The
  # threshold rule with a huge threshold labels every cell Regime I: "increase".
  advice = run_command('prunephase-advise', f'--workdir={workdir}', '--density=0.4',
                       '--temperature=0.3', '--rule=threshold', '--lmc_threshold=100',
                       '--bootstrap=0', f'--out={tmp_path / "advice"}', timeout=120)
  assert advice.returncode == 0, advice.stderr[-3000:]
  assert 'increase the temperature: smooth the labels more' in advice.stdout
