"""tfds image datasets without TensorFlow: mock data, a real tiny ArrayRecord build, offline errors.

`tfds.testing.mock_data(policy=USE_CODE)` mocks `builder.as_data_source` with random examples;
it does not make `builder.is_prepared()` true, so `mock_tfds` also patches that (the mock's
promise is "the dataset exists"). The real read path (is_prepared, ArrayRecord files, batched
reads, PNG decoding) is tested on a tiny CIFAR-10 written by tfds' own writer from known images.
"""

import csv
import io
import json
import shutil
import socket
import time
from unittest import mock

import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core.data_sources import base as data_source_base
from tensorflow_datasets.image_classification import cifar

from conftest import REPO  # pylint: disable=g-bad-import-order
from conftest import mock_tfds  # pylint: disable=g-bad-import-order
from prunephase import checkpoints
from prunephase import config as config_lib
from prunephase import data as data_lib
from prunephase import sweep as sweep_lib
from prunephase import tfds_data


SHAPES = {'cifar10': ((32, 32, 3), 10), 'cifar100': ((32, 32, 3), 100),
          'svhn_cropped': ((32, 32, 3), 10), 'mnist': ((28, 28, 1), 10),
          'fashion_mnist': ((28, 28, 1), 10)}


@pytest.fixture
def no_network(monkeypatch):
  """Any attempt to resolve a name or open a connection is recorded and fails at once."""
  attempts = []

  def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError('network disabled by the test')

  monkeypatch.setattr(socket, 'getaddrinfo', refuse)
  monkeypatch.setattr(socket, 'create_connection', refuse)
  monkeypatch.setattr(socket.socket, 'connect', lambda self, *a: refuse(*a))
  return attempts


def load_config_module(name):
  return config_lib.load_config_file(REPO / 'configs' / f'{name}.py')


# ----------------------------------------------------------------------------- mock data


@pytest.mark.parametrize('name', tfds_data.DATASETS)
def test_mock_dataset_shapes_dtypes_classes_and_normalisation(name, no_network):
  shape, classes = SHAPES[name]
  with mock_tfds(12):
    dataset = tfds_data.load(name, data_dir='/nonexistent')
  assert dataset.x_train.shape == (12, *shape) and dataset.x_test.shape == (12, *shape)
  assert dataset.x_train.dtype == jnp.uint8 and dataset.x_test.dtype == jnp.uint8
  assert dataset.y_train.shape == (12,) and dataset.y_train.dtype == jnp.int32
  assert dataset.y_test.dtype == jnp.int32
  assert dataset.num_classes == classes and dataset.name == name
  assert dataset.input_shape == shape
  labels = np.concatenate([np.asarray(dataset.y_train), np.asarray(dataset.y_test)])
  assert labels.min() >= 0 and labels.max() < classes
  assert len(np.unique(np.asarray(dataset.x_train))) > 10  # Real random pixels, not zeros.
  mean, std = tfds_data.NORMALISATION[name]
  assert dataset.mean.dtype == dataset.std.dtype == jnp.float32
  np.testing.assert_array_equal(np.asarray(dataset.mean), np.asarray(mean, np.float32))
  np.testing.assert_array_equal(np.asarray(dataset.std), np.asarray(std, np.float32))
  assert dataset.mean.shape == (shape[-1],)
  assert not no_network


def test_paper_normalisation_values():
  cifar = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
  assert tfds_data.NORMALISATION['cifar10'] == cifar
  assert tfds_data.NORMALISATION['cifar100'] == cifar
  assert tfds_data.NORMALISATION['svhn_cropped'] == ((0.4377, 0.4438, 0.4728),
                                                     (0.1980, 0.2010, 0.1970))


def test_prepare_inputs_normalises_known_pixels():
  with mock_tfds(4):
    dataset = tfds_data.load('cifar10')
  pixels = np.array([[[[0, 128, 255], [10, 20, 30]]]], np.uint8)  # (1, 1, 2, 3)
  out = np.asarray(data_lib.prepare_inputs(dataset, jnp.asarray(pixels)))
  mean = np.array([0.4914, 0.4822, 0.4465])
  std = np.array([0.2023, 0.1994, 0.2010])
  expected = (pixels / 255.0 - mean) / std
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
  # Spelled out for one value: red channel 0 -> -0.4914 / 0.2023.
  np.testing.assert_allclose(out[0, 0, 0, 0], -0.4914 / 0.2023, rtol=1e-6)


def test_num_train_reads_only_the_first_examples():
  with mock_tfds(20):
    full = tfds_data.load('cifar10')
    part = tfds_data.load('cifar10', num_train=7)
  assert part.x_train.shape[0] == 7 and part.x_test.shape[0] == 20
  np.testing.assert_array_equal(np.asarray(part.x_train), np.asarray(full.x_train[:7]))
  np.testing.assert_array_equal(np.asarray(part.y_train), np.asarray(full.y_train[:7]))


def test_load_dataset_dispatches_to_tfds():
  config = ml_collections.ConfigDict({'name': 'cifar100', 'data_dir': '', 'num_train': 5})
  with mock_tfds(8):
    dataset = data_lib.load_dataset(config)
  assert dataset.name == 'cifar100' and dataset.num_classes == 100
  assert dataset.x_train.shape == (5, 32, 32, 3)


# ----------------------------------------------------------------------------- offline


def test_missing_data_fails_fast_offline_with_a_one_line_how_to(tmp_path, no_network):
  start = time.perf_counter()
  with pytest.raises(data_lib.DataError) as error:
    tfds_data.load('cifar10', data_dir=str(tmp_path))
  elapsed = time.perf_counter() - start
  message = str(error.value)
  assert elapsed < 10, elapsed
  assert not no_network  # tfds never tried the network.
  assert '\n' not in message
  assert str(tmp_path) in message
  assert 'tfds build cifar10 --file_format=array_record --data_dir=DIR' in message
  assert '--config.dataset.data_dir=DIR' in message
  assert list(tmp_path.iterdir()) == []  # Nothing downloaded or created.


def test_missing_data_through_load_dataset(tmp_path, no_network):
  config = ml_collections.ConfigDict({'name': 'svhn_cropped', 'data_dir': str(tmp_path),
                                      'num_train': 0})
  with pytest.raises(data_lib.DataError, match='tfds build svhn_cropped'):
    data_lib.load_dataset(config)
  assert not no_network


def test_unknown_dataset_raises():
  with pytest.raises(data_lib.DataError, match='unknown tfds dataset'):
    tfds_data.load('imagenet2012')
  with pytest.raises(data_lib.DataError, match='unknown dataset'):
    data_lib.load_dataset(ml_collections.ConfigDict({'name': 'cifar11'}))


# ----------------------------------------------------------------------------- real ArrayRecord


def _png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


def known_image(value: int) -> np.ndarray:
  """Image number `value`: a gradient identifiable from its first pixel."""
  base = np.arange(32 * 32 * 3, dtype=np.int64).reshape(32, 32, 3)
  return ((base + value * 7) % 256).astype(np.uint8)


@pytest.fixture(scope='module')
def prepared_cifar10(tmp_path_factory):
  """A real prepared CIFAR-10 (tfds' writer, ArrayRecord files) of known images, offline.

  Building CIFAR-10 normally needs TensorFlow and a download; we replace only the builder's
  source of examples with 40 train and 12 test images given as PNG bytes.
  """
  data_dir = tmp_path_factory.mktemp('tfds')

  def split_generators(self, dl_manager):
    del dl_manager
    self.info.features['label'].names = [f'class{i}' for i in range(10)]

    def examples(prefix, values):
      for value in values:
        yield value, {'id': f'{prefix}{value:05d}', 'image': _png(known_image(value)),
                      'label': value % 10}

    return {'train': examples('train_', range(40)), 'test': examples('test_', range(100, 112))}

  with mock.patch.object(cifar.Cifar10, '_split_generators', split_generators):
    builder = tfds.builder('cifar10', data_dir=str(data_dir), file_format='array_record')
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return data_dir


def _values(images: np.ndarray) -> list[int]:
  """Recovers each known image's number from its first pixel (value * 7 mod 256)."""
  return [int(np.flatnonzero((np.arange(256) * 7) % 256 == img[0, 0, 0])[0]) for img in images]


def test_real_arrayrecord_read_is_exact(prepared_cifar10, monkeypatch, no_network):
  assert list(prepared_cifar10.glob('cifar10/*/cifar10-train.array_record-*'))
  monkeypatch.setattr(tfds_data, '_CHUNK', 16)  # Several batched reads per split.
  def one_at_a_time(self, key):
    raise AssertionError(f'record {key} read one at a time: batched reads expected')
  monkeypatch.setattr(data_source_base.BaseDataSource, '__getitem__', one_at_a_time)
  dataset = tfds_data.load('cifar10', data_dir=str(prepared_cifar10))
  x_train, y_train = np.asarray(dataset.x_train), np.asarray(dataset.y_train)
  x_test, y_test = np.asarray(dataset.x_test), np.asarray(dataset.y_test)
  assert x_train.shape == (40, 32, 32, 3) and x_test.shape == (12, 32, 32, 3)
  assert x_train.dtype == np.uint8 and y_train.dtype == np.int32
  train_values = _values(x_train)
  assert sorted(train_values) == list(range(40))  # Every record once (tfds shuffles order).
  assert sorted(_values(x_test)) == list(range(100, 112))
  for image, label, value in zip(x_train, y_train, train_values):
    np.testing.assert_array_equal(image, known_image(value))  # PNG round trip is exact.
    assert label == value % 10
  np.testing.assert_array_equal(y_test, np.array(_values(x_test)) % 10)
  again = tfds_data.load('cifar10', data_dir=str(prepared_cifar10), num_train=10)
  np.testing.assert_array_equal(np.asarray(again.x_train), x_train[:10])  # Same order.
  assert not no_network


def test_prepared_in_an_unreadable_format_gives_a_data_error(prepared_cifar10, tmp_path):
  # A copy whose dataset_info says TFRecord: readable only through TensorFlow.
  copy = tmp_path / 'tfds'
  shutil.copytree(prepared_cifar10, copy)
  (version_dir,) = (copy / 'cifar10').iterdir()
  info_path = version_dir / 'dataset_info.json'
  info = json.loads(info_path.read_text())
  info['fileFormat'] = 'tfrecord'
  info_path.write_text(json.dumps(info))
  with pytest.raises(data_lib.DataError, match='cannot be read without TensorFlow') as error:
    tfds_data.load('cifar10', data_dir=str(copy))
  assert '\n' not in str(error.value)
  assert '--file_format=array_record' in str(error.value)


# ----------------------------------------------------------------------------- sweep


def quick_sweep_config():
  """`configs/cifar10_epochs.py:quick` (PreResNet-20, crop+flip, epochs 1 and 2 as temperatures,
  densities 10 and 50 %, 1 dense x 2 retrain seeds) on 64 train and 32 test images."""
  config = load_config_module('cifar10_epochs').get_config('quick')
  config.dataset.num_train = 64
  config.dataset.num_test = 32
  config.measure.cka_examples = 32
  config.regimes.bootstrap = 5
  return config


def check_finished_sweep(sweep, summary: dict, num_rows: int):
  path = sweep.path
  with open(path / 'results.csv') as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == num_rows == summary['num_rows']
  for row in rows:
    assert 0.0 <= float(row['test_error']) <= 1.0
    assert 0.0 <= float(row['train_error']) <= 1.0
    assert -1.0 <= float(row['lmc']) <= 1.0
    assert -1e-4 <= float(row['cka_softmax']) <= 1.0 + 1e-4
  assert {float(r['temperature']) for r in rows} == {1.0, 2.0}
  assert {float(r['density']) for r in rows} == {0.1, 0.5}
  for name in ('cells.csv', 'phase_diagram.png', 'regimes.json', 'findings.json'):
    assert (path / name).stat().st_size > 0, name
  measured = sweep.store.measurement(1)
  assert measured['cka_examples'] == 32


@pytest.mark.slow  # About 75 s on 2 CPU cores, mostly compiling PreResNet-20.
def test_quick_preresnet20_sweep_on_mock_cifar10_every_stage(tmp_path, no_network):
  # About 2 minutes on the project's 2 CPU cores (one step per call and one member per call on
  # XLA:CPU, `dispatch.py`).
  config = quick_sweep_config()
  with mock_tfds(128):
    sweep, summary = sweep_lib.run_sweep(config, tmp_path)
  assert sweep.dataset.x_train.shape == (64, 32, 32, 3)
  assert sweep.dataset.x_test.shape == (32, 32, 32, 3)  # dataset.num_test applied.
  assert config.model.name == 'preresnet20' and config.dense.optimizer == 'sgd'
  assert config.dense.augmentation == config.retrain.augmentation == 'crop_flip'
  # One dense run, its epoch checkpoints the two temperatures.
  assert checkpoints.steps(tmp_path / 'dense' / 'all' / 'epochs') == [1, 2]
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  train_rows = [r for r in rows if r['stage'] == 'train']
  assert [r['epoch'] for r in train_rows] == [1, 2]
  assert all(np.isfinite(r['loss']) and 0 <= r['test_error'] <= 1 for r in train_rows)
  # lr 0.1 in epoch 1, x0.1 after the quick schedule's decay at epoch 1.
  np.testing.assert_allclose([r['lr'] for r in train_rows], [0.1, 0.01], rtol=1e-6)
  check_finished_sweep(sweep, summary, num_rows=2 * 2 * 1 * 1)  # T x D x dense x pairs.
  assert set(sweep.timings) == set(sweep_lib.STAGES)
  assert not no_network
