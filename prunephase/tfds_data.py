"""Image datasets from TensorFlow Datasets, read without TensorFlow, held on device as uint8.

`load(name)` reads a *prepared* tfds dataset's train and test splits once into device arrays:
uint8 images (N, H, W, C) and int32 labels, with the per-channel mean/std that
`data.prepare_inputs` uses to normalise each batch.

Reading path (decided by trying, tensorflow-datasets 4.9.10, array_record 0.8.6, no TensorFlow):
  * `tfds.load` / `builder.as_dataset` return `tf.data` pipelines and need TensorFlow
    (tensorflow-cpu adds about 1.4 GB).
  * `builder.as_data_source(split)` (what `tfds.data_source` calls) reads ArrayRecord files by
    random access and decodes examples with NumPy + Pillow: no TensorFlow. We use it, reading
    records in batches of `_CHUNK` with `__getitems__`. Measured on 2 shared CPU cores with a
    CIFAR-10-sized dataset written by tfds' own writer (50,000 + 10,000 random 32x32 PNGs):
    the 50,000 train records take 7.8 s batched vs 15.8 s one at a time; `load` of both splits
    onto the device takes 10.6 s.
  * The raw-bytes deserialisation (`DeserializeMethod.DESERIALIZE_NO_DECODE`) needs TensorFlow
    (`tf.train.Example`), so there is no cheaper path through tfds' own API.
  * `tfds.testing.mock_data(policy=MockPolicy.USE_CODE)` mocks `as_data_source`, so the same
    code runs on random examples in tests; its mocked `__getitems__` is broken in 4.9.10
    (called without `self`), so on a TypeError we fall back to one-at-a-time reads.
Install size of what this path needs (`du -sh` in the venv's site-packages): tensorflow_datasets
36 MB, array_record 11 MB, pyarrow 170 MB (a tfds 4.9.10 dependency, unused here), other small
tfds dependencies (protobuf, tensorflow_metadata, simple_parsing, promise, dm-tree, toml,
wrapt, psutil, importlib_resources, ...) about 9 MB; Pillow (decoding) already comes with
matplotlib.

Preparing the data needs TensorFlow and a network (the tfds builders of these datasets use
`tf.io.gfile` and TensorFlow's PNG encoder, and the `tfds` CLI imports TensorFlow): build once on a
connected machine with `tfds build NAME --file_format=array_record --data_dir=DIR`, copy DIR,
and pass `--config.dataset.data_dir=DIR`. Offline, `load` checks `builder.is_prepared()` (local
files only: no network, checked with sockets disabled; 0.05 s for the first builder, about
1 ms after that, with an empty data_dir; the whole `prunephase --config=configs/cifar10_epochs.py`
command exits with the message in 1.9 s) and raises `data.DataError` with that how-to instead of
letting tfds try to download (which, offline, spends about 200 s before failing).

Normalisation: CIFAR-10/100 and SVHN use the paper's values (`NORMALISATION`). The paper has no
MNIST/Fashion-MNIST; we use the commonly quoted statistics of their train sets (MNIST 0.1307 /
0.3081, Fashion-MNIST 0.2860 / 0.3530).
"""

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from prunephase import data as data_lib
from prunephase import registry

DATASETS = registry.TFDS_DATASETS

# Per-channel (mean, std) of pixels scaled to [0, 1].
NORMALISATION = {
    'cifar10': ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    'cifar100': ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),  # As the paper's code.
    'svhn_cropped': ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    'mnist': ((0.1307,), (0.3081,)),  # Not in the paper: the usual MNIST train statistics.
    'fashion_mnist': ((0.2860,), (0.3530,)),  # Not in the paper: the usual train statistics.
}

_CHUNK = 2048  # Records per batched read.


def prepare_command(name: str) -> str:
  """The shell command that prepares `name` for this module (on a connected machine)."""
  return (f'pip install tensorflow tensorflow-datasets && '
          f'tfds build {name} --file_format=array_record --data_dir=DIR')


def _missing_message(name: str, builder) -> str:
  root = builder.data_path.parent.parent
  return (f'tfds dataset {name} is not prepared in {root} (looked for {builder.data_path}); '
          f'on a machine with internet run `{prepare_command(name)}`, copy DIR here and pass '
          f'--config.dataset.data_dir=DIR')


def _read_records(source, start: int, stop: int, batched: list[bool]) -> Sequence[dict]:
  """Records [start, stop) of a tfds data source, batched where the source supports it."""
  keys = list(range(start, stop))
  if batched[0]:
    try:
      return source.__getitems__(keys)
    except TypeError:  # tfds.testing.mock_data's data source (tfds 4.9.10) cannot batch.
      batched[0] = False
  return [source[k] for k in keys]


def _read_split(source, count: int, image_shape: tuple[int, ...]) -> tuple[np.ndarray,
                                                                           np.ndarray]:
  """The first `count` (image, label) pairs of a data source as uint8 / int32 NumPy arrays."""
  images = np.empty((count, *image_shape), np.uint8)
  labels = np.empty((count,), np.int32)
  batched = [True]
  for start in range(0, count, _CHUNK):
    stop = min(count, start + _CHUNK)
    for i, record in enumerate(_read_records(source, start, stop, batched), start):
      images[i] = record['image']
      labels[i] = record['label']
  return images, labels


def load(name: str, data_dir: str | None = None, num_train: int | None = None
         ) -> data_lib.Dataset:
  """Loads a prepared tfds image dataset's train and test splits onto the default device.

  Args:
    name: one of `DATASETS`.
    data_dir: the tfds data_dir holding the prepared dataset (None = tfds' default,
      `$TFDS_DATA_DIR` or ~/tensorflow_datasets).
    num_train: read only the first N train examples (None or 0 = all).

  Returns:
    A `data.Dataset` with uint8 (N, H, W, C) images, int32 labels and the normalisation.

  Raises:
    data.DataError: unknown name, dataset not prepared (a one-line how-to, raised before tfds
      could touch the network), or prepared in a format that cannot be read without TensorFlow.
  """
  if name not in DATASETS:
    raise data_lib.DataError(f'unknown tfds dataset {name!r}; choose one of '
                             f'{", ".join(DATASETS)}')
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  builder = tfds.builder(name, data_dir=data_dir or None)  # Reads local files only.
  if not builder.is_prepared():
    raise data_lib.DataError(_missing_message(name, builder))
  try:
    sources = builder.as_data_source(split=['train', 'test'])
  except (NotImplementedError, ValueError) as error:  # e.g. prepared as tfrecord only.
    reason = str(error).splitlines()[0]
    raise data_lib.DataError(
        f'tfds dataset {name} in {builder.data_path} cannot be read without TensorFlow '
        f'({reason}); rebuild it with `{prepare_command(name)}`') from error
  features = builder.info.features
  image_shape = tuple(int(d) for d in features['image'].shape)
  num_classes = int(features['label'].num_classes)
  train, test = sources
  n_train = len(train) if not num_train else min(int(num_train), len(train))
  x_train, y_train = _read_split(train, n_train, image_shape)
  x_test, y_test = _read_split(test, len(test), image_shape)
  mean, std = NORMALISATION[name]
  return data_lib.Dataset(
      x_train=jnp.asarray(x_train), y_train=jnp.asarray(y_train),
      x_test=jnp.asarray(x_test), y_test=jnp.asarray(y_test),
      mean=jnp.asarray(mean, jnp.float32), std=jnp.asarray(std, jnp.float32),
      name=name, num_classes=num_classes)


def tfds_loader(dataset_config) -> data_lib.Dataset:
  """The registry's loader of a prepared tfds image dataset named by `dataset.name`, from
  `dataset.data_dir`; tfds reads only the first `dataset.num_train` records from disk."""
  return load(dataset_config.name, dataset_config.get('data_dir') or None,
              dataset_config.get('num_train') or None)
