"""Analysis of an image run on a laptop: `load_run` on a (mock) CIFAR-10 workdir without its
dataset, uint8 images normalised from the workdir's data.json.

The run is made once per module inside `mock_tfds`, with the cheapest model that takes images
(an MLP with one hidden layer of 8 units) on 64 train and 32 test images, one temperature, one
density and one seed pair, every stage. The tests open it outside the mock with tfds and the
dataset loader made to fail, as on a laptop where the data was never prepared.
"""

import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import prunephase
from conftest import mock_tfds  # pylint: disable=g-bad-import-order
from conftest import tiny_config  # pylint: disable=g-bad-import-order
from prunephase import analysis
from prunephase import artifacts
from prunephase import data as data_lib
from prunephase import models
from prunephase import sweep as sweep_lib
from prunephase import tfds_data

# One xdist worker for this module: its module fixture runs the sweep once.
pytestmark = pytest.mark.xdist_group('test_image_run_analysis')

DENSITY = 0.5
LMC_POINTS = 3


def image_config():
  """Mock CIFAR-10, MLP (3072 -> 8 -> 10), epoch 1 of a 1-epoch run, density 50 %, retrain
  seeds 1 and 2: one seed pair, every stage in about 13 s of CPU (compiling)."""
  config = tiny_config()
  config.dataset.name = 'cifar10'
  config.dataset.num_train = 64
  config.dataset.num_test = 32
  config.model.name = 'mlp'
  config.model.widths = (8,)
  config.dense.epochs = 1
  config.dense.batch_size = 16
  config.temperature.grid = (1,)
  config.prune.densities = (DENSITY,)
  config.retrain.epochs = 1
  config.retrain.batch_size = 16
  config.retrain.seeds = (1, 2)
  config.measure.test_error_epochs = 1
  config.measure.cka_examples = 32
  config.measure.bn_batch_size = 16
  config.measure.lmc_points = LMC_POINTS
  return config


@pytest.fixture(scope='module')
def image_run(tmp_path_factory):
  """(workdir, the mock test images (32, 32, 32, 3) uint8, their labels) of the run."""
  path = tmp_path_factory.mktemp('image') / 'run'
  with mock_tfds(64):
    sweep, _ = sweep_lib.run_sweep(image_config(), path)
    x_test, y_test = np.asarray(sweep.dataset.x_test), np.asarray(sweep.dataset.y_test)
  assert set(sweep.timings) == set(sweep_lib.STAGES)
  assert x_test.dtype == np.uint8 and x_test.shape == (32, 32, 32, 3)
  return path, x_test, y_test


@pytest.fixture
def no_dataset(monkeypatch):
  """Loading any dataset fails: tfds cannot build or read one, and prunephase's loader raises
  (outside `mock_tfds` tfds would look in its default data_dir, which might hold CIFAR-10)."""

  def refuse(*args, **kwargs):
    raise AssertionError(f'the dataset was loaded: {args} {kwargs}')

  monkeypatch.setattr(tfds, 'builder', refuse)
  monkeypatch.setattr(tfds, 'data_source', refuse)
  monkeypatch.setattr(tfds_data, 'load', refuse)
  monkeypatch.setattr(data_lib, 'load_dataset', refuse)


@pytest.fixture
def run(image_run, no_dataset):
  del no_dataset
  return prunephase.load_run(str(image_run[0]))


def normalised(images: np.ndarray, path) -> np.ndarray:
  """uint8 images as model inputs, by data.json's per-channel statistics read here directly:
  pixels scaled to [0, 1], minus the mean, over the std (torchvision's ToTensor + Normalize)."""
  facts = json.loads((path / artifacts.DATA_FILE).read_text())
  mean, std = np.asarray(facts['mean'], np.float64), np.asarray(facts['std'], np.float64)
  return ((images.astype(np.float64) / 255.0 - mean) / std).astype(np.float32)


def test_members_and_masks_load_without_the_dataset(run):
  assert run.store.facts.uint8 and run.store.facts.input_shape == (32, 32, 3)
  assert run.members() == [
      {'temperature': 1.0, 'dense_seed': 1, 'density': DENSITY, 'retrain_seed': seed}
      for seed in (1, 2)]
  mask = run.mask(temperature=1, dense_seed=1, density=DENSITY)
  assert mask['head']['kernel'] is None  # The classifier is not pruned.
  kernel_mask = np.asarray(mask['dense0']['kernel'])
  assert kernel_mask.shape == (32 * 32 * 3, 8)
  assert run.density(mask) == pytest.approx(DENSITY, abs=1e-3)
  for seed in (1, 2):
    kernel = np.asarray(run.retrained(1, DENSITY, 1, seed)['params']['dense0']['kernel'])
    assert np.all(kernel[~kernel_mask] == 0.0) and np.all(kernel[kernel_mask] != 0.0)


def test_apply_normalises_uint8_images_with_the_stored_statistics(run, image_run):
  path, x_test, y_test = image_run
  # data.json holds the paper's CIFAR-10 statistics (float32-rounded), not 0 and 1.
  facts = json.loads((path / artifacts.DATA_FILE).read_text())
  mean, std = tfds_data.NORMALISATION['cifar10']
  np.testing.assert_allclose(facts['mean'], mean, rtol=1e-6)
  np.testing.assert_allclose(facts['std'], std, rtol=1e-6)
  images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  # The model built from the stored config alone, not the run's own.
  model = models.make_model(run.config.model, 10)
  evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
  for name, variables in (('retrained', run.retrained(1, DENSITY, 1, 2)),
                          ('dense', run.dense(1, 1))):
    variables = {'params': variables['params'], 'batch_stats': variables['batch_stats']}
    logits = np.asarray(run.apply(variables, images))
    assert logits.shape == (6, 10) and logits.dtype == np.float32, name
    expected = np.asarray(evaluate(variables, normalised(images, path)))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5, err_msg=name)
    # The normalisation matters: the same images only scaled to [0, 1] give other logits.
    scaled = np.asarray(evaluate(variables, images.astype(np.float32) / 255.0))
    assert not np.allclose(logits, scaled, atol=1e-2), name
    np.testing.assert_allclose(run.apply(variables, images[4]), logits[4], rtol=1e-5,
                               atol=1e-5, err_msg=name)
  # On the run's own test images, apply reproduces the test error the sweep recorded.
  member = run.retrained(1, DENSITY, 1, 1)
  error = np.mean(np.argmax(np.asarray(run.apply(member, x_test)), -1) != y_test)
  assert error == pytest.approx(float(member['history']['test_error'][-1]), abs=1e-6)
  with pytest.raises(analysis.AnalysisError, match=r'expected \(N, 32, 32, 3\) \(cifar10'):
    run.apply(member, images[..., :1])


def test_curves_and_tables_load(run):
  (curve,) = run.curves(temperature=1, density=DENSITY)
  assert (curve['dense_seed'], curve['seed_a'], curve['seed_b']) == (1, 1, 2)
  np.testing.assert_allclose(curve['alpha'], np.linspace(0, 1, LMC_POINTS))
  for key in ('train_error', 'test_error'):
    assert curve[key].shape == (LMC_POINTS,)
    assert np.all((curve[key] >= 0) & (curve[key] <= 1)), key
  (row,) = run.results.itertuples()
  assert row.lmc == pytest.approx(curve['lmc'], abs=1e-6)
  assert (row.temperature, row.density) == (1, DENSITY)
  assert len(run.cells) == 1
