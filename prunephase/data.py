"""Datasets as device arrays: MNIST-1D (generated offline, the embedded default) and tfds images.

A `Dataset` holds the whole train and test splits on device. Image datasets keep uint8 pixels
and normalise per batch (`prepare_inputs`), so CIFAR-10 costs 150 MB, not 600 MB, of device
memory. Every population member draws its own batch order from its own key (`epoch_order`):
the paper's retraining seed changes the data order (and augmentation) only.
"""

from collections.abc import Mapping
import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from prunephase import registry
from prunephase import runtime
from prunephase.config import names

AUGMENTATIONS = names.AUGMENTATIONS


class DataError(ValueError):
  """A dataset cannot be loaded as configured; the message is one line saying why."""


@flax.struct.dataclass
class Dataset:
  """Train and test splits on device.

  Attributes:
    x_train: (n_train, *input_shape) float32 (MNIST-1D, standardised) or uint8 (images).
    y_train: (n_train,) int32 labels.
    x_test: (n_test, *input_shape), same dtype as `x_train`.
    y_test: (n_test,) int32.
    mean: (channels,) float32 per-channel mean subtracted from uint8 inputs scaled to [0, 1].
    std: (channels,) float32 per-channel std.
    name: dataset name.
    num_classes: number of classes.
  """

  x_train: jax.Array
  y_train: jax.Array
  x_test: jax.Array
  y_test: jax.Array
  mean: jax.Array
  std: jax.Array
  name: str = flax.struct.field(pytree_node=False, default='')
  num_classes: int = flax.struct.field(pytree_node=False, default=10)

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.x_train.shape[1:])

  @property
  def num_train(self) -> int:
    return int(self.x_train.shape[0])


def prepare_inputs(dataset: Dataset, x: jax.Array) -> jax.Array:
  """Turns stored inputs into float32 model inputs (uint8 pixels -> normalised floats)."""
  return normalise_inputs(x, dataset.mean, dataset.std)


def normalise_inputs(x: jax.Array, mean, std) -> jax.Array:
  """uint8 pixels scaled to [0, 1] minus the per-channel `mean`, over `std`; float inputs
  (already model inputs) only cast to float32."""
  if x.dtype == jnp.uint8:
    return (x.astype(jnp.float32) / 255.0 - jnp.asarray(mean)) / jnp.asarray(std)
  return x.astype(jnp.float32)


def black_value(dataset: Dataset) -> jax.Array:
  """The normalised value of a black pixel, (channels,): what the paper's crop pads with.

  torchvision pads the raw image with 0 (black) before `Normalize`, so after normalisation the
  border is (0 - mean) / std per channel, not 0 (the mean colour). Float datasets (already
  model inputs) pad with 0.
  """
  if dataset.x_train.dtype == jnp.uint8:
    return (0.0 - dataset.mean) / dataset.std
  return jnp.zeros_like(dataset.mean)


def epoch_order(member_key: jax.Array, epoch: jax.Array, num_examples: int) -> jax.Array:
  """The permutation of the train set one member uses in one epoch (0-based epoch)."""
  return jax.random.permutation(jax.random.fold_in(member_key, epoch), num_examples)


def augment(key: jax.Array, x: jax.Array, kind: str,
            pad_value: jax.Array | float = 0.0) -> jax.Array:
  """Augments one batch of float (normalised) inputs for one member.

  Args:
    key: PRNG key of this member and step.
    x: (batch, height, width, channels) for 'crop_flip'; anything for 'none'.
    kind: 'none', or 'crop_flip' = random crop of the 4-pixel padded image back to its size,
      then a horizontal flip with probability 1/2 (torchvision's RandomCrop(32, padding=4) +
      RandomHorizontalFlip).
    pad_value: scalar or (channels,) value of the border. The paper pads the raw image with
      black before normalising: pass `black_value(dataset)` for that.

  Returns:
    Augmented batch, same shape and dtype.
  """
  if kind == 'none':
    return x
  if kind != 'crop_flip':
    raise ValueError(f'unknown augmentation {kind!r}; choose one of {AUGMENTATIONS}')
  if x.ndim != 4:
    raise ValueError(f'crop_flip needs (batch, height, width, channels) inputs, got {x.shape}')
  pad = 4
  batch, height, width, _ = x.shape
  crop_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(crop_key, (batch, 2), 0, 2 * pad + 1)
  flips = jax.random.bernoulli(flip_key, 0.5, (batch,))
  border = jnp.broadcast_to(jnp.asarray(pad_value, x.dtype), (x.shape[3],))
  padded = jnp.pad(x - border, ((0, 0), (pad, pad), (pad, pad), (0, 0))) + border

  def crop_one(image, offset, flip):
    image = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, x.shape[3]))
    return jnp.where(flip, image[:, ::-1], image)

  return jax.vmap(crop_one)(padded, offsets, flips)


def load_mnist1d(num_samples: int = 5000, train_split: float = 0.8,
                 data_seed: int = 42) -> Dataset:
  """Generates MNIST-1D procedurally (no download) and puts it on the default device.

  Uses `mnist1d.data.make_dataset` with the package's standard arguments, changing only the
  number of samples, the train fraction and the seed. The generator already standardises the
  signals (zero mean, unit std over the whole set); inputs are (n, 40, 1) float32.

  Args:
    num_samples: train + test examples (the package splits them by `train_split`).
    train_split: fraction of `num_samples` used for training.
    data_seed: seed of the generator (it seeds NumPy's global generator; we restore its state).
  """
  if num_samples < 20:
    raise DataError(f'mnist1d needs num_samples >= 20, got {num_samples}')
  if not 0.0 < train_split < 1.0:
    raise DataError(f'mnist1d train_split must be in (0, 1), got {train_split}')
  from mnist1d import data as mnist1d_data  # pylint: disable=import-outside-toplevel

  args = mnist1d_data.get_dataset_args()
  args.num_samples = int(num_samples)
  args.train_split = float(train_split)
  args.seed = int(data_seed)
  saved_state = np.random.get_state()  # make_dataset reseeds NumPy's global generator.
  try:
    raw = mnist1d_data.make_dataset(args)
  finally:
    np.random.set_state(saved_state)
  as_inputs = lambda a: jnp.asarray(np.asarray(a, np.float32)[..., None])
  return Dataset(
      x_train=as_inputs(raw['x']), y_train=jnp.asarray(raw['y'], jnp.int32),
      x_test=as_inputs(raw['x_test']), y_test=jnp.asarray(raw['y_test'], jnp.int32),
      mean=jnp.zeros((1,), jnp.float32), std=jnp.ones((1,), jnp.float32),
      name='mnist1d', num_classes=10)


def mnist1d_loader(dataset_config) -> Dataset:
  """'mnist1d': `dataset.num_samples`, `train_split` and `data_seed` of the generator."""
  return load_mnist1d(dataset_config.num_samples, dataset_config.train_split,
                      dataset_config.data_seed)


def from_arrays(arrays, name: str) -> Dataset:
  """A `Dataset` on the default device from NumPy arrays (a user loader's dict).

  Args:
    arrays: mapping with x_train (n_train, *input_shape), y_train (n_train,) integer labels,
      x_test (n_test, *input_shape), y_test (n_test,), and optionally num_classes. Float inputs
      are model inputs as they are (cast to float32); uint8 inputs are images, normalised per
      channel (last axis) by the mean and std of x_train scaled to [0, 1].
    name: the dataset's name (for messages and `Dataset.name`).

  Raises:
    DataError: a missing key, mismatched lengths or shapes, or inputs neither float nor uint8.
  """
  if not isinstance(arrays, Mapping):
    raise DataError(f'dataset {name!r}: its loader returned {type(arrays).__name__}; return a '
                    'data.Dataset or a dict with x_train, y_train, x_test, y_test')
  missing = [k for k in ('x_train', 'y_train', 'x_test', 'y_test') if k not in arrays]
  if missing:
    raise DataError(f'dataset {name!r}: its loader returned no {", ".join(missing)}; return a '
                    'data.Dataset or a dict with x_train, y_train, x_test, y_test')
  x_train, x_test = np.asarray(arrays['x_train']), np.asarray(arrays['x_test'])
  y_train, y_test = np.asarray(arrays['y_train']), np.asarray(arrays['y_test'])
  for split, x, y in (('train', x_train, y_train), ('test', x_test, y_test)):
    if x.ndim < 2 or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
      raise DataError(f'dataset {name!r}: x_{split} {x.shape} and y_{split} {y.shape} '
                      f'{y.dtype} must be (n, *input_shape) inputs and (n,) integer labels')
  if x_train.shape[1:] != x_test.shape[1:] or x_train.dtype != x_test.dtype:
    raise DataError(f'dataset {name!r}: x_train {x_train.shape} {x_train.dtype} and x_test '
                    f'{x_test.shape} {x_test.dtype} differ in input shape or dtype')
  channels = x_train.shape[-1]
  if x_train.dtype == np.uint8:
    # Per-channel statistics of the train pixels in [0, 1], as prepare_inputs expects.
    pixels = x_train.reshape(-1, channels).astype(np.float64) / 255.0
    mean, std = pixels.mean(0), np.maximum(pixels.std(0), 1e-8)
  elif np.issubdtype(x_train.dtype, np.floating):
    x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
    mean, std = np.zeros(channels), np.ones(channels)
  else:
    raise DataError(f'dataset {name!r}: inputs must be float (used as they are) or uint8 '
                    f'(images), got {x_train.dtype}')
  num_classes = int(arrays.get('num_classes') or 1 + max(y_train.max(), y_test.max()))
  return Dataset(
      x_train=jnp.asarray(x_train), y_train=jnp.asarray(y_train, jnp.int32),
      x_test=jnp.asarray(x_test), y_test=jnp.asarray(y_test, jnp.int32),
      mean=jnp.asarray(mean, jnp.float32), std=jnp.asarray(std, jnp.float32),
      name=name, num_classes=num_classes)


def load_dataset(dataset_config) -> Dataset:
  """Loads the dataset named by `dataset_config.name` (a name in `prunephase.registry`: mnist1d,
  a tfds image dataset or a user's), keeping only the first `num_train` / `num_test` examples
  where those are set (> 0).

  Raises:
    DataError: unknown name, or the loader raised or returned something else than a Dataset
      or a dict of arrays (one line naming the dataset).
  """
  name = dataset_config.name
  num_train = dataset_config.get('num_train') or None
  num_test = dataset_config.get('num_test') or None
  try:
    loader = registry.dataset_loader(name)
  except registry.RegistryError as error:
    raise DataError(str(error)) from None
  try:
    dataset = loader(dataset_config)
  except DataError:
    raise
  except Exception as error:  # pylint: disable=broad-except  # A user's loader: any bug.
    raise DataError(f'dataset {name!r} cannot be loaded: {runtime.one_line(error)}') from error
  if not isinstance(dataset, Dataset):
    dataset = from_arrays(dataset, name)
  return subset(dataset, num_train, num_test) if (num_train or num_test) else dataset


def subset(dataset: Dataset, num_train: int | None = None, num_test: int | None = None) -> Dataset:
  """The first `num_train` train and `num_test` test examples (for tests and smoke runs)."""
  return dataclasses.replace(
      dataset,
      x_train=dataset.x_train[:num_train], y_train=dataset.y_train[:num_train],
      x_test=dataset.x_test[:num_test], y_test=dataset.y_test[:num_test])
