"""The paper's configs: every argument loads and validates; the other families train on mock
CIFAR-10 (the cifar10_epochs family runs every stage in tests/test_tfds_data.py)."""

import json

import numpy as np
import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order
from conftest import mock_tfds  # pylint: disable=g-bad-import-order
from prunephase import config as config_lib
from prunephase import grid
from prunephase import sweep as sweep_lib
from prunephase.config import paper

FAMILIES = ('cifar10_epochs', 'cifar10_batch_size', 'cifar10_sam_rho')
ARGS = ('', 'quick', 'cifar10', 'cifar100', 'svhn', 'cifar10,quick', 'cifar100,quick',
        'svhn,quick', 'quick,svhn', ' cifar100 , quick ')
DATASET_OF = {'': 'cifar10', 'cifar10': 'cifar10', 'cifar100': 'cifar100',
              'svhn': 'svhn_cropped'}


def load(name):
  """Loads configs/<name>.py by path, as absl's config_flags does (no package import)."""
  return config_lib.load_config_file(REPO / 'configs' / f'{name}.py')


def dataset_of(arg):
  names = [t.strip() for t in arg.split(',') if t.strip() and t.strip() != 'quick']
  return DATASET_OF[names[0] if names else '']


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('arg', ARGS)
def test_every_config_and_argument_loads_and_validates(family, arg):
  config = load(family).get_config(arg)
  config_lib.validate(config)
  assert config.dataset.name == dataset_of(arg)
  assert config.model.name == 'preresnet20'
  assert config.dense.augmentation == config.retrain.augmentation == 'crop_flip'
  assert (config.dense.lr, config.dense.momentum, config.dense.weight_decay) == (0.1, 0.9, 1e-4)
  assert (config.retrain.lr, config.retrain.momentum, config.retrain.weight_decay) == (
      0.1, 0.9, 1e-4)
  assert config.retrain.mode == 'lr_rewinding' and config.prune.method == 'uniform'
  assert config.measure.point_batching == 'map'
  quick = 'quick' in arg
  if quick:
    assert config.dataset.num_train == 256 and len(config.temperature.grid) == 2
    assert len(config.prune.densities) == 2 and len(config.retrain.seeds) == 2
    assert config.measure.lmc_points == 3 and config.measure.cka_examples == 64
    config_lib.validate_against_data(config, config.dataset.num_train)
  else:
    assert config.dataset.num_train == 0 and config.dataset.num_test == 0
    assert tuple(config.prune.densities) == paper.DENSITIES
    assert config.measure.cka_examples == 6464 and config.measure.bn_batch_size == 64
    assert config.measure.lmc_points == 11 and config.measure.test_error_epochs == 5
    assert config.measure.pairs_per_call == 9
    config_lib.validate_against_data(config, 50_000)


def test_epochs_family_is_figure_2():
  config = load('cifar10_epochs').get_config()
  assert config.temperature.knob == 'epochs'
  assert tuple(config.temperature.grid) == tuple(range(10, 161, 10))
  for section in (config.dense, config.retrain):
    assert section.batch_size == 64 and section.epochs == 160
    assert tuple(section.lr_decay_epochs) == (80, 120) and not section.lr_decay_fractions
  assert tuple(config.dense.seeds) == tuple(config.retrain.seeds) == (1, 2, 3)
  assert config.dense.optimizer == 'sgd'
  (group,) = grid.dense_groups(config, 50_000)
  assert group.save_epochs == tuple(range(10, 161, 10))
  assert group.total_steps == 160 * 781  # Full batches of 64 in 50,000 images.


def test_batch_size_family():
  config = load('cifar10_batch_size').get_config()
  assert config.temperature.knob == 'batch_size'
  assert tuple(config.temperature.grid) == (16, 32, 64, 128, 256, 512)
  assert config.dense.iterations == 62_400 and tuple(config.dense.lr_decay_fractions) == (0.5,
                                                                                         0.75)
  assert config.retrain.batch_size == 128 and config.retrain.epochs == 160
  assert tuple(config.retrain.lr_decay_fractions) == (0.5, 0.75)
  assert tuple(config.dense.seeds) == (1,) and tuple(config.retrain.seeds) == (1, 2)
  groups = grid.dense_groups(config, 50_000)
  assert [g.batch_size for g in groups] == [16, 32, 64, 128, 256, 512]  # Hottest first.
  assert [g.save_epochs for g in groups] == [(20,), (40,), (80,), (160,), (320,), (644,)]
  assert all(g.total_steps == 62_400 for g in groups)
  assert 50_000 // 128 * config.retrain.epochs == 62_400
  # SVHN keeps the fixed iteration budget: 109 epochs x 572 steps = 62,348 iterations.
  svhn = load('cifar10_batch_size').get_config('svhn')
  assert svhn.retrain.epochs == 109 and svhn.dense.iterations == 62_400


def test_sam_rho_family():
  config = load('cifar10_sam_rho').get_config()
  assert config.dense.optimizer == 'sam' and config.temperature.knob == 'sam_rho'
  np.testing.assert_allclose(config.temperature.grid, np.arange(1, 9) / 10)
  assert config.dense.epochs == config.retrain.epochs == 160
  (group,) = grid.dense_groups(config, 50_000)
  assert group.temperatures[0] == 0.8 and group.save_epochs == (160,)  # Hottest first.
  assert len(group.seeds) == 8 * 3  # All rho x dense seeds in one vmapped program.


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('arg', ['quick,quick', 'imagenet', 'cifar100,svhn', 'fast', 'Quick'])
def test_unknown_or_conflicting_arguments_raise(family, arg):
  with pytest.raises(ValueError, match='cifar10, cifar100, svhn, quick|repeated|datasets'):
    load(family).get_config(arg)


def test_unknown_argument_message_names_the_choices():
  with pytest.raises(ValueError) as error:
    load('cifar10_epochs').get_config('imagenet')
  assert 'imagenet' in str(error.value) and 'cifar10, cifar100, svhn, quick' in str(error.value)


def test_configs_load_through_absl_config_flags():
  # The CLI's path: `--config=configs/<family>.py:ARG`.
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  path = REPO / 'configs' / 'cifar10_batch_size.py'
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config file', flag_values=flag_values)
  flag_values(['prunephase', f'--config={path}:svhn,quick'])
  config = flag_values.config
  assert config.dataset.name == 'svhn_cropped' and config.dataset.num_train == 256
  config_lib.validate(config)


def _train_quick(family, tmp_path, num_train=32):
  config = load(family).get_config('quick')
  config.dataset.num_train = num_train  # 1 step per epoch at batch 32.
  config.dataset.num_test = 32
  with mock_tfds(64):
    sweep, _ = sweep_lib.run_sweep(config, tmp_path, stages=('train',))
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  return config, sweep, rows


@pytest.mark.slow
@pytest.mark.parametrize('family', ['cifar10_batch_size', 'cifar10_sam_rho'])
def test_other_quick_families_train_on_mock_cifar10(family, tmp_path):
  # About 45 s each on the project's 2 CPU cores, most of it compiling PreResNet-20's dense
  # programs (a SAM step; one program per batch size): behind `pytest -m slow` so that the
  # suite stays under 15 minutes there.
  config, _, rows = _train_quick(family, tmp_path, num_train=64)
  train_rows = [r for r in rows if r['stage'] == 'train']
  assert train_rows and all(np.isfinite(r['loss']) for r in train_rows)
  if family == 'cifar10_batch_size':
    assert sorted({r['group'] for r in train_rows}) == ['batch_size=16', 'batch_size=32']
  else:
    assert sorted({r['temperature'] for r in train_rows}) == [0.1, 0.5]


@pytest.mark.parametrize('arg', ['', 'quick'])
def test_mnist1d_configs_validate(arg):
  for name in ('default', 'mnist1d_sam_rho'):
    config = load(name).get_config(arg)
    config_lib.validate(config)
  sam = load('mnist1d_sam_rho').get_config(arg)
  assert sam.temperature.knob == 'sam_rho' and sam.dense.optimizer == 'sam'
  assert 0.0 in sam.temperature.grid  # Plain SGD is a member of the family.


def test_default_config_states_the_regime_rule_defaults():
  from prunephase import regimes  # pylint: disable=import-outside-toplevel
  config = load('default').get_config()
  assert config.regimes.to_dict() == regimes.DEFAULTS
