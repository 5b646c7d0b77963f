"""Tests for prunephase.registry: built-in and user models, datasets and pruning methods by
name, the one-line errors, and examples/own_model.py through the `prunephase` command."""

import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import error_lines  # pylint: disable=g-bad-import-order
from conftest import EXAMPLE_FLAGS
from conftest import make_params
from conftest import read_results
from conftest import REPO
from conftest import run_command
from conftest import tiny_config
from prunephase import config as config_lib
from prunephase import data as data_lib
from prunephase import models
from prunephase import pruning
from prunephase import registry
from prunephase import sweep as sweep_lib

KINDS = (registry.MODEL, registry.DATASET, registry.PRUNING_METHOD)
EXAMPLE = REPO / 'examples' / 'own_model.py'


@pytest.fixture(name='clean_registry')
def fixture_clean_registry():
  """Unregisters, after the test, every name the test registered."""
  before = {kind: registry.names(kind) for kind in KINDS}
  yield
  for kind in KINDS:
    for name in set(registry.names(kind)) - set(before[kind]):
      registry.unregister(kind, name)


class NoBatchNorm(nn.Module):
  """Two dense layers without BatchNorm (empty batch_stats), then the head."""

  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    x = nn.relu(nn.Dense(16, name='dense0')(x.reshape(x.shape[0], -1)))
    x = nn.relu(nn.Dense(16, name='dense1')(x))
    return nn.Dense(self.num_classes, name='head')(x)


class FlaxBatchNorm(nn.Module):
  """Flax's BatchNorm and no bn_momentum: LMC's recalibration could not clone it."""

  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.BatchNorm(use_running_average=not train)(nn.Dense(8)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes, name='head')(x)


class Raises(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    raise RuntimeError('shapes do not fit\nsecond line')


class FlatOutput(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(self.num_classes, name='head')(x.reshape(x.shape[0], -1)).ravel()


def _arrays(num_train=400, num_test=100, seed=0, dtype=np.float32, shape=(40, 1)):
  """A learnable random dataset: the label is the sign pattern of two input sums."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_train + num_test, *shape))
  y = (x[:, :4].sum(axis=tuple(range(1, x.ndim))) > 0) * 2 + (x[:, -4:].mean() > 0)
  if dtype == np.uint8:
    x = np.clip(x * 40 + 128, 0, 255)
  x = x.astype(dtype)
  return {'x_train': x[:num_train], 'y_train': y[:num_train], 'x_test': x[num_train:],
          'y_test': y[num_train:]}


def _config(**fields):
  return ml_collections.ConfigDict(fields)


# ----------------------------------------------------------------------------- the registry


def test_registry_and_config_import_without_jax():
  script = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {str(REPO)!r})
      from prunephase import config, knobs, metrics, registry
      registry.names(registry.MODEL)
      registry.check(registry.PRUNING_METHOD, 'lamp')
      knobs.check_name('sam_rho')
      metrics.metric('lmc')
      heavy = sorted(m for m in ('jax', 'flax', 'numpy', 'tensorflow_datasets')
                     if m in sys.modules)
      print('HEAVY', heavy)
      """)
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'HEAVY []' in result.stdout


def test_builtin_names():
  assert registry.names(registry.MODEL) == ('mlp', 'cnn1d', 'preresnet20', 'preresnet56',
                                            'vgg11', 'vgg16')
  assert registry.names(registry.DATASET) == ('mnist1d', *registry.TFDS_DATASETS)
  assert registry.names(registry.PRUNING_METHOD) == ('uniform', 'global', 'lamp', 'random')
  assert registry.models_for_inputs('1d') == ('mlp', 'cnn1d')
  assert registry.dataset_inputs('cifar10') == 'image'
  assert registry.model_factory('vgg11') is models.vgg_factory
  assert registry.pruning_method('lamp').scope == 'global'


def test_unknown_and_duplicate_names_are_one_line(clean_registry):
  del clean_registry
  with pytest.raises(registry.RegistryError) as error:
    registry.model_factory('resnet1000')
  assert str(error.value) == ("unknown model 'resnet1000'; choose one of mlp, cnn1d, "
                              'preresnet20, preresnet56, vgg11, vgg16')
  with pytest.raises(registry.RegistryError, match=r"^model 'mlp' is already registered \(by "
                     r'prunephase.models:mlp_factory\); choose another name$'):
    registry.register_model('mlp', lambda *args: None)
  registry.register_model('mine', models.mlp_factory)
  registry.register_model('mine', models.mlp_factory)  # Same place again (a reloaded config).
  with pytest.raises(registry.RegistryError, match="model 'mine' is already registered"):
    registry.register_model('mine', models.cnn1d_factory)
  with pytest.raises(registry.RegistryError, match='built in and cannot be unregistered'):
    registry.unregister(registry.PRUNING_METHOD, 'uniform')
  with pytest.raises(registry.RegistryError, match="scope must be one of layerwise, global"):
    registry.register_pruning_method('x', lambda w, k: w, scope='pooled')
  with pytest.raises(registry.RegistryError, match='inputs must be some of 1d, image'):
    registry.register_model('x', models.mlp_factory, inputs='3d')
  with pytest.raises(registry.RegistryError, match='register a callable'):
    registry.register_dataset('x', 42)


def test_validate_checks_names_against_the_registry(clean_registry):
  del clean_registry
  config = tiny_config()
  config.model.name = 'image_only'
  with pytest.raises(config_lib.ConfigError, match="unknown model 'image_only'; choose one of "
                     r'mlp, .*vgg16$'):
    config_lib.validate(config)
  registry.register_model('image_only', lambda c, n, d: NoBatchNorm(n), inputs='image')
  with pytest.raises(config_lib.ConfigError, match="model 'image_only' does not take mnist1d "
                     'inputs; choose one of mlp, cnn1d$'):
    config_lib.validate(config)
  registry.register_dataset('undeclared', lambda c: _arrays())  # Inputs not declared: any model.
  config.dataset.name = 'undeclared'
  config_lib.validate(config)


# ----------------------------------------------------------------------------- models


def _model_error(function, *args) -> str:
  """The message of the ModelError `function(*args)` raises (its str: pytest's `match` would
  also see the note JAX adds to exceptions raised under its transformations)."""
  with pytest.raises(models.ModelError) as error:
    function(*args)
  return str(error.value)


def test_models_that_cannot_work_raise_a_model_error(clean_registry):
  del clean_registry
  assert _model_error(models.check_model, Raises(10), (40, 1)) == (
      'model Raises failed to initialise on inputs of shape (2, 40, 1): RuntimeError: shapes '
      'do not fit')
  assert _model_error(models.check_model, FlatOutput(10), (40, 1)) == (
      'model FlatOutput returned (20,) for inputs of shape (2, 40, 1); it must return (batch, '
      'classes) logits')
  assert _model_error(models.check_model, FlaxBatchNorm(10), (40, 1)) == (
      'model FlaxBatchNorm has BatchNorm statistics but no bn_momentum attribute; pass '
      'momentum=self.bn_momentum to prunephase.models.BatchNorm')
  registry.register_model('typo', lambda c, n, d: NoBatchNorm(n, widths=3))
  assert _model_error(models.make_model, _config(name='typo'), 10).startswith(
      "model 'typo' cannot be built: TypeError: ")
  registry.register_model('not_a_module', lambda c, n, d: 'mlp')
  assert _model_error(models.make_model, _config(name='not_a_module'), 10) == (
      "model 'not_a_module': its factory returned str, not a flax.linen.Module")


def test_a_model_without_batchnorm_has_empty_statistics():
  model = NoBatchNorm(3)
  params, stats = models.init_variables(model, jax.random.PRNGKey(0), (40, 1))
  assert stats == {} and 'head' in params
  assert models.with_bn_momentum(model, 1.0) is model
  assert set(jax.tree.leaves(models.prunable_tree(params))) == {True, False}


# ----------------------------------------------------------------------------- datasets


def test_an_arrays_dataset(clean_registry):
  del clean_registry
  registry.register_dataset('floats', lambda c: {**_arrays(), 'num_classes': 5}, inputs='1d')
  dataset = data_lib.load_dataset(_config(name='floats', num_train=300, num_test=0))
  assert (dataset.num_train, dataset.input_shape, dataset.num_classes) == (300, (40, 1), 5)
  assert dataset.x_train.dtype == jnp.float32 and dataset.y_train.dtype == jnp.int32
  np.testing.assert_array_equal(dataset.x_test, _arrays()['x_test'])  # Used as they are.
  images = _arrays(shape=(8, 8, 3), dtype=np.uint8)
  registry.register_dataset('images', lambda c: images, inputs='image')
  dataset = data_lib.load_dataset(_config(name='images'))
  normalised = data_lib.prepare_inputs(dataset, dataset.x_train)
  np.testing.assert_allclose(normalised.mean((0, 1, 2)), 0, atol=1e-4)  # Train statistics.
  np.testing.assert_allclose(normalised.std((0, 1, 2)), 1, atol=1e-3)
  assert dataset.num_classes == 1 + int(max(images['y_train'].max(), images['y_test'].max()))


@pytest.mark.parametrize('loader, message', [
    (lambda c: {'x_train': np.zeros((4, 2))}, "dataset 'bad': its loader returned no y_train, "
     'x_test, y_test; return a data.Dataset or a dict with x_train, y_train, x_test, y_test'),
    (lambda c: {**_arrays(), 'y_test': np.zeros(3, int)},
     r"dataset 'bad': x_test \(100, 40, 1\) and y_test \(3,\) int64 must be"),
    (lambda c: {**_arrays(), 'x_test': _arrays()['x_test'].astype(np.float64)},
     'differ in input shape or dtype'),
    (lambda c: 1 / 0, "dataset 'bad' cannot be loaded: ZeroDivisionError: division by zero"),
])
def test_a_bad_arrays_dataset_is_a_one_line_data_error(clean_registry, loader, message):
  del clean_registry
  registry.register_dataset('bad', loader)
  with pytest.raises(data_lib.DataError, match=message):
    data_lib.load_dataset(_config(name='bad'))


# ----------------------------------------------------------------------------- pruning


def _half_negated(weights, key):
  """A layerwise method: |w|, with a random half of the weights scored as if they were 0."""
  keys = jax.random.split(key, len(weights))
  return [jnp.abs(w) * jax.random.bernoulli(k, 0.5, w.shape) for k, w in zip(keys, weights)]


def _magnitude_times_position(weights, key):
  """A global method: |w| times (1 + position in the layer / layer size)."""
  del key
  return [jnp.abs(w) * (1 + jnp.arange(w.size) / w.size) for w in weights]


def test_a_registered_pruning_method_gives_the_density_asked_for(clean_registry):
  del clean_registry
  registry.register_pruning_method('half_negated', _half_negated, needs_key=True)
  registry.register_pruning_method('by_position', _magnitude_times_position, scope='global')
  params = make_params()
  prunable = models.prunable_tree(params)
  densities = (0.05, 0.3, 0.77)
  sizes = {'stem/kernel': 432, 'conv0/kernel': 40, 'conv1/kernel': 96}
  masks = pruning.make_masks(params, prunable, densities, 'half_negated', key=jax.random.key(1))
  by_position = pruning.make_masks(params, prunable, densities, 'by_position')
  for k, d in enumerate(densities):
    counts = pruning.kept_counts(pruning.mask_select(masks, k))
    assert counts == {n: (size - round((1 - d) * size), size) for n, size in sizes.items()}
    kept = sum(c for c, _ in pruning.kept_counts(pruning.mask_select(by_position, k)).values())
    assert kept == 568 - round((1 - d) * 568)
  uniform = pruning.make_masks(params, prunable, densities, 'uniform')
  assert not np.array_equal(masks['stem']['kernel'], uniform['stem']['kernel'])
  with pytest.raises(ValueError, match="method 'half_negated' needs a PRNG key"):
    pruning.make_masks(params, prunable, densities, 'half_negated')


def test_a_pruning_method_with_the_wrong_scores_is_a_config_error(clean_registry):
  del clean_registry
  registry.register_pruning_method('first_only', lambda ws, key: ws[:1])
  registry.register_pruning_method('raises', lambda ws, key: ws.nope)
  params = make_params()
  prunable = models.prunable_tree(params)
  with pytest.raises(config_lib.ConfigError, match=r"^pruning method 'first_only' returned "
                     r'\[40\] scores for layers of \[40, 96, 432\] weights; it must return one '):
    pruning.make_masks(params, prunable, (0.5,), 'first_only')
  with pytest.raises(config_lib.ConfigError, match=r"^pruning method 'raises' failed: "
                     "AttributeError: 'list' object has no attribute 'nope'$"):
    pruning.make_masks(params, prunable, (0.5,), 'raises')


# ----------------------------------------------------------------------------- the study


def test_own_model_dataset_and_method_run_the_sweep(tmp_path, clean_registry):
  """A model without BatchNorm, an arrays dataset and a user's pruning method, end to end."""
  del clean_registry
  registry.register_model('no_bn', lambda c, n, d: NoBatchNorm(n), inputs='1d')
  registry.register_dataset('arrays', lambda c: _arrays(), inputs='1d')
  registry.register_pruning_method('by_position', _magnitude_times_position, scope='global')
  config = tiny_config()
  config.model.name, config.dataset.name, config.prune.method = 'no_bn', 'arrays', 'by_position'
  # The smallest grid (1 epoch x 2 densities x 1 seed pair): compiling dominates its time.
  config.dense.epochs = config.retrain.epochs = config.measure.test_error_epochs = 1
  config.temperature.grid = (1,)
  config.retrain.seeds = (1, 2)
  config.measure.lmc_points = 3
  sweep_lib.run_sweep(config, tmp_path)
  rows = read_results(tmp_path)
  assert len(rows) == 2
  for row in rows:
    assert abs(float(row['actual_density']) - float(row['density'])) < 0.01
    assert float(row['lmc']) == float(row['lmc']) and row['diverged'] == 'False'


def test_the_example_runs_through_the_prunephase_command(tmp_path):
  workdir = tmp_path / 'own'
  result = run_command(
      'prunephase', f'--config={EXAMPLE}', f'--workdir={workdir}', *EXAMPLE_FLAGS,
      timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'model two_layer_mlp on mnist1d' in result.stdout
  rows = read_results(workdir)
  # 1 batch size x 2 densities x 3 seed pairs (retrain seeds 1, 2, 3).
  assert sorted((r['temperature'], r['density'], r['seed_a'], r['seed_b']) for r in rows) == [
      ('16', d, a, b) for d in ('0.06', '0.4') for a, b in (('1', '2'), ('1', '3'), ('2', '3'))]
  for row in rows:
    assert abs(float(row['actual_density']) - float(row['density'])) < 0.01
    assert float(row['lmc']) == float(row['lmc'])  # Not NaN.


# ----------------------------------------------------------------------------- one-line errors


def _config_file(tmp_path, body: str):
  path = tmp_path / 'config.py'
  path.write_text(f'import sys\nsys.path.insert(0, {str(REPO / "tests")!r})\n'
                  'import flax.linen as nn\nfrom conftest import tiny_config\n'
                  'from prunephase import registry\n' + textwrap.dedent(body))
  return path


def test_an_own_model_that_fails_to_initialise_is_one_line(tmp_path):
  path = _config_file(tmp_path, """
      class Broken(nn.Module):
        num_classes: int
        @nn.compact
        def __call__(self, x, train):
          return nn.Dense(self.num_classes, name='head')(x.reshape(3, -1))

      registry.register_model('broken', lambda c, n, d: Broken(n))

      def get_config(arg=''):
        config = tiny_config()
        config.model.name = 'broken'
        return config
      """)
  result = run_command('prunephase', f'--config={path}', f'--workdir={tmp_path / "w"}')
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert error_lines(result) == [
      'prunephase: error: model Broken failed to initialise on inputs of shape (2, 40, 1): '
      'TypeError: cannot reshape array of shape (2, 40, 1) (size 80) into shape (3, -1) '
      'because the product of specified axis sizes (3) does not evenly divide 80']
  assert not (tmp_path / 'w').exists()  # Checked before the workdir is touched.


def test_registering_a_builtin_name_again_is_one_line(tmp_path):
  path = _config_file(tmp_path, """
      registry.register_model('mlp', lambda c, n, d: None)

      def get_config(arg=''):
        return tiny_config()
      """)
  result = run_command('prunephase', f'--config={path}', f'--workdir={tmp_path / "w"}')
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr[-2000:]
  assert error_lines(result) == [
      f"prunephase: error: cannot load the config {path}: model 'mlp' is already registered "
      '(by prunephase.models:mlp_factory); choose another name']
  assert not (tmp_path / 'w').exists()
