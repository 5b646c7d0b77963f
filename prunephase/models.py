"""Models used by prunephase and the predicate that says which weights are prunable.

All models are Flax Linen modules called as
`model.apply({'params': p, 'batch_stats': s}, x, train=...)` and return logits of shape
(batch, num_classes) in float32. Inputs are channels-last: (batch, length, channels) for the
1D models and (batch, height, width, channels) for the image models.

BatchNorm follows PyTorch semantics exactly (see `BatchNorm`), because the paper's LMC
recalibration averages per-batch *unbiased* variances, which Flax's BatchNorm does not store.
Every classifier layer is named `head`; prunable weights are the `kernel` leaves outside it.
Models are built by name through `prunephase.registry` (the `*_factory` functions here are the
built-ins' factories); a user's model follows the contract stated there.
"""

from collections.abc import Callable, Sequence
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from prunephase import kernels
from prunephase import registry
from prunephase import runtime

HEAD_NAME = 'head'


class ModelError(ValueError):
  """A model that cannot be built or initialised; the message is one line naming it."""

# PyTorch's kaiming_normal_(mode='fan_out') as used by the paper's PreResNet: N(0, 2 / (k*k*C_out)).
he_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')
he_fan_in = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
# PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_linear = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


class BatchNorm(nn.Module):
  """Batch normalisation over all axes but the last, with PyTorch's semantics.

  Training mode normalises with the batch mean and the *biased* batch variance and updates
  the running statistics as `running = (1 - momentum) * running + momentum * batch`, storing
  the *unbiased* batch variance (n / (n - 1) times the biased one), exactly like
  `torch.nn.BatchNorm*d`. `momentum=1.0` makes the stored statistics equal to the last batch's,
  which is what BatchNorm recalibration uses.

  Attributes:
    momentum: weight of the new batch in the running statistics (PyTorch convention; Flax's
      `momentum=0.9` is PyTorch's 0.1).
    epsilon: added to the variance before the square root.
    dtype: computation dtype of the output; statistics are always float32.
  """

  momentum: float = 0.1
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    features = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    running_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    running_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    x32 = x.astype(jnp.float32)
    if train:
      y, mean, var = kernels.batch_norm_train(x32, scale, bias, self.epsilon)
      if not self.is_initializing():
        count = x.size // features
        unbiased = var * (count / max(count - 1, 1))
        running_mean.value = (1.0 - self.momentum) * running_mean.value + self.momentum * mean
        running_var.value = (1.0 - self.momentum) * running_var.value + self.momentum * unbiased
    else:
      inverse_std = jax.lax.rsqrt(running_var.value + self.epsilon)
      y = (x32 - running_mean.value) * inverse_std * scale + bias
    return y.astype(self.dtype or x.dtype)


class Conv1D(nn.Module):
  """1D convolution (cross-correlation, like PyTorch) written as im2col + matmul.

  `vmap` over a population turns this into one batched matmul; `vmap` of `lax.conv` lowers to a
  grouped convolution, which XLA:CPU runs slowly inside the epoch's loop (the default retrain
  epoch: about 39 s against 2.7 s). The patches are (batch, length, taps * in_channels) and the
  kernel is reshaped to match, so the product is a single-contraction matmul: with a
  (taps, in_channels) contraction XLA:CPU transposed the patches in a copy that cost more than
  the matmul. Default retrain epoch (36 members, 2 CPU devices, 2 members per chunk), in the
  order of these changes: about 2.0 s (taps x channels contraction) -> 1.6 s (single
  contraction) -> 1.15 s (`kernels.patch_matmul` in training mode); timings on the project's 2-core
  machine vary by about 10 %. In eval mode the product is plain autodiff, kernel first (the
  faster of the autodiff forms, 1.35 s), so forward mode (`jax.jvp`, the Hessian-vector
  products of `hessian.py`, which run in eval mode) works through it.
  `tests/test_models.py` pins values and gradients against `lax.conv_general_dilated`.

  Attributes:
    features: output channels.
    kernel_size: taps.
    stride: step between output positions.
    padding: zeros added on each side of the length axis.
    use_bias: add a bias (off where BatchNorm follows).
    dtype: computation dtype (params stay float32).
  """

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = False
  kernel_init: Callable[..., jax.Array] = he_fan_out
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps (batch, length, in_channels) to (batch, out_length, features); `train` picks the
    reverse-mode-only gradient rule (`kernels.patch_matmul`)."""
    in_features = x.shape[-1]
    kernel = self.param('kernel', self.kernel_init,
                        (self.kernel_size, in_features, self.features), jnp.float32)
    dtype = self.dtype or x.dtype
    x = jnp.pad(x.astype(dtype), ((0, 0), (self.padding, self.padding), (0, 0)))
    out_length = (x.shape[1] - self.kernel_size) // self.stride + 1
    span = (out_length - 1) * self.stride + 1
    patches = jnp.concatenate(
        [x[:, tap:tap + span:self.stride] for tap in range(self.kernel_size)], axis=2)
    kernel = kernel.reshape(self.kernel_size * in_features, self.features).astype(dtype)
    if train:
      y = kernels.patch_matmul(patches, kernel)
    else:
      y = jnp.einsum('fk,blk->blf', kernel.T, patches)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32).astype(dtype)
    return y


class MLP(nn.Module):
  """Dense -> BatchNorm -> ReLU blocks, then the linear head. Input (batch, ...) is flattened."""

  num_classes: int
  widths: Sequence[int] = (256, 256)
  bn_momentum: float = 0.1
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.widths):
      x = nn.Dense(width, use_bias=False, kernel_init=he_fan_in, dtype=self.dtype,
                   name=f'dense{i}')(x)
      x = BatchNorm(self.bn_momentum, dtype=self.dtype, name=f'bn{i}')(x, train)
      x = nn.relu(x)
    return nn.Dense(self.num_classes, kernel_init=torch_linear, name=HEAD_NAME)(
        x.astype(jnp.float32))


class CNN1D(nn.Module):
  """Conv1D -> BatchNorm -> ReLU blocks, flatten, linear head; sized for MNIST-1D (length 40)."""

  num_classes: int
  widths: Sequence[int] = (32, 32, 32)
  kernel_sizes: Sequence[int] = (5, 5, 5)
  strides: Sequence[int] = (2, 2, 2)
  bn_momentum: float = 0.1
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if not len(self.widths) == len(self.kernel_sizes) == len(self.strides):
      raise ValueError('cnn1d: widths, kernel_sizes and strides need equal lengths, got '
                       f'{len(self.widths)}, {len(self.kernel_sizes)}, {len(self.strides)}')
    for i, (width, size, stride) in enumerate(zip(self.widths, self.kernel_sizes, self.strides)):
      x = Conv1D(width, size, stride, padding=(size - 1) // 2, dtype=self.dtype,
                 name=f'conv{i}')(x, train)
      x = BatchNorm(self.bn_momentum, dtype=self.dtype, name=f'bn{i}')(x, train)
      x = nn.relu(x)
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    return nn.Dense(self.num_classes, kernel_init=torch_linear, name=HEAD_NAME)(x)


class PreActBlock(nn.Module):
  """Pre-activation BasicBlock: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus shortcut.

  The shortcut is the identity, or a bias-free 1x1 conv (no BN) of the block input where the
  shape changes, as in the paper's `preresnet.py`.
  """

  features: int
  stride: int
  bn_momentum: float
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(nn.Conv, use_bias=False, kernel_init=he_fan_out, dtype=self.dtype)
    out = nn.relu(BatchNorm(self.bn_momentum, dtype=self.dtype, name='bn1')(x, train))
    out = conv(self.features, (3, 3), self.stride, padding=1, name='conv1')(out)
    out = nn.relu(BatchNorm(self.bn_momentum, dtype=self.dtype, name='bn2')(out, train))
    out = conv(self.features, (3, 3), 1, padding=1, name='conv2')(out)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = conv(self.features, (1, 1), self.stride, padding=0, name='shortcut')(x)
    return out + shortcut


class PreResNet(nn.Module):
  """CIFAR pre-activation ResNet (depth = 6n + 2), widths 16/32/64 times `width`."""

  num_classes: int
  depth: int = 20
  width: int = 1
  bn_momentum: float = 0.1
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if (self.depth - 2) % 6:
      raise ValueError(f'preresnet depth must be 6n+2 (20, 56, ...), got {self.depth}')
    blocks = (self.depth - 2) // 6
    x = nn.Conv(16 * self.width, (3, 3), padding=1, use_bias=False, kernel_init=he_fan_out,
                dtype=self.dtype, name='stem')(x)
    for stage, features in enumerate((16, 32, 64)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = PreActBlock(features * self.width, stride, self.bn_momentum, self.dtype,
                        name=f'stage{stage}_block{block}')(x, train)
    x = nn.relu(BatchNorm(self.bn_momentum, dtype=self.dtype, name='bn_final')(x, train))
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=torch_linear, name=HEAD_NAME)(x)


VGG_LAYOUTS = {
    11: (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512),
    16: (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512),
}


class VGG(nn.Module):
  """CIFAR VGG with BatchNorm: conv3x3 (with bias) -> BN -> ReLU, max-pools, global average
  pool, linear head (no FC stack), as in the paper's `vgg.py`."""

  num_classes: int
  depth: int = 16
  bn_momentum: float = 0.1
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.depth not in VGG_LAYOUTS:
      raise ValueError(f'vgg depth must be one of {sorted(VGG_LAYOUTS)}, got {self.depth}')
    conv_index = 0
    for item in VGG_LAYOUTS[self.depth]:
      if item == 'M':
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        continue
      x = nn.Conv(item, (3, 3), padding=1, kernel_init=he_fan_in, dtype=self.dtype,
                  name=f'conv{conv_index}')(x)
      x = nn.relu(BatchNorm(self.bn_momentum, dtype=self.dtype, name=f'bn{conv_index}')(x, train))
      conv_index += 1
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01),
                    name=HEAD_NAME)(x)


def mlp_factory(model_config, num_classes: int, dtype: Any = None) -> nn.Module:
  """'mlp': `model.widths` units per hidden layer."""
  return MLP(num_classes, tuple(model_config.widths), dtype=dtype)


def cnn1d_factory(model_config, num_classes: int, dtype: Any = None) -> nn.Module:
  """'cnn1d': `model.widths`, `model.kernel_sizes`, `model.strides` per conv layer."""
  return CNN1D(num_classes, tuple(model_config.widths), tuple(model_config.kernel_sizes),
               tuple(model_config.strides), dtype=dtype)


def preresnet_factory(model_config, num_classes: int, dtype: Any = None) -> nn.Module:
  """'preresnet20', 'preresnet56': depth from the name, `model.width` multiplier."""
  return PreResNet(num_classes, int(model_config.name[len('preresnet'):]),
                   int(model_config.get('width', 1)), dtype=dtype)


def vgg_factory(model_config, num_classes: int, dtype: Any = None) -> nn.Module:
  """'vgg11', 'vgg16': depth from the name."""
  return VGG(num_classes, int(model_config.name[len('vgg'):]), dtype=dtype)


def make_model(model_config, num_classes: int, dtype: Any = None) -> nn.Module:
  """Builds the model named by `model_config.name` (a name in `prunephase.registry`).

  Args:
    model_config: ConfigDict with `name` and the model's own fields (`widths`, `kernel_sizes`,
      `strides` for cnn1d; `widths` for mlp; `width` for preresnet).
    num_classes: size of the classifier head.
    dtype: computation dtype (None = float32); parameters and BN statistics stay float32.

  Raises:
    registry.RegistryError: unknown name (a ValueError listing the registered ones).
    ModelError: the factory raised or returned something that is not a Flax module.
  """
  name = model_config.name
  factory = registry.model_factory(name)
  try:
    model = factory(model_config, num_classes, dtype)
  except Exception as error:  # pylint: disable=broad-except  # A user's factory: any bug.
    raise ModelError(f'model {name!r} cannot be built: {runtime.one_line(error)}') from error
  if not isinstance(model, nn.Module):
    raise ModelError(f'model {name!r}: its factory returned {type(model).__name__}, not a '
                     'flax.linen.Module')
  return model


def with_bn_momentum(model: nn.Module, momentum: float) -> nn.Module:
  """The same model (same parameter tree) with another BatchNorm momentum.

  A model without a `bn_momentum` attribute is returned as it is: `init_variables` refuses one
  that has BatchNorm statistics, so it has none to recalibrate.
  """
  if not hasattr(model, 'bn_momentum'):
    return model
  return model.clone(bn_momentum=momentum)


def init_variables(model: nn.Module, key: jax.Array, input_shape: Sequence[int]):
  """Returns (params, batch_stats) for one model; `input_shape` excludes the batch axis.

  `batch_stats` is an empty dict for a model without BatchNorm.

  Raises:
    ModelError: `init` raised, the output is not (batch, classes) logits, or the model has
      BatchNorm statistics but no `bn_momentum` attribute (see `prunephase.registry`).
  """
  _, params, batch_stats = _init_with_logits(model, key, input_shape)
  return params, batch_stats


def _init_with_logits(model: nn.Module, key: jax.Array, input_shape: Sequence[int]):
  """(logits on two zero inputs, params, batch_stats), with `init_variables`' checks."""
  name = type(model).__name__
  inputs = jnp.zeros((2, *input_shape), jnp.float32)
  try:
    logits, variables = model.init_with_output(key, inputs, train=False)
  except Exception as error:  # pylint: disable=broad-except  # A user's model: any bug.
    raise ModelError(f'model {name} failed to initialise on inputs of shape {inputs.shape}: '
                     f'{runtime.one_line(error)}') from error
  if getattr(logits, 'ndim', None) != 2 or logits.shape[0] != inputs.shape[0]:
    raise ModelError(f'model {name} returned {getattr(logits, "shape", type(logits).__name__)} '
                     f'for inputs of shape {inputs.shape}; it must return (batch, classes) logits')
  batch_stats = variables.get('batch_stats', {})
  if jax.tree.leaves(batch_stats) and not hasattr(model, 'bn_momentum'):
    raise ModelError(f'model {name} has BatchNorm statistics but no bn_momentum attribute; '
                     'pass momentum=self.bn_momentum to prunephase.models.BatchNorm')
  return logits, variables['params'], batch_stats


def check_model(model: nn.Module, input_shape: Sequence[int], num_classes: int | None = None,
                name: str | None = None, dataset: str | None = None) -> None:
  """Checks a model abstractly (shapes only, nothing computed), so a caller can check a user's
  model before it writes anything.

  Args:
    model: the module.
    input_shape: one example's shape (no batch axis).
    num_classes: the dataset's classes; when given, the model must output that many logits per
      example (a head of another size trains to NaN or to chance, sweep-long, without an error).
    name: the model's name in messages (default: its class name).
    dataset: the dataset's name in messages.

  Raises:
    ModelError: `init_variables`' errors on (2, *input_shape) inputs, or logits of another
      size than `num_classes`.
  """
  logits, _, _ = jax.eval_shape(
      lambda: _init_with_logits(model, jax.random.PRNGKey(0), input_shape))
  outputs = int(logits.shape[1])
  if num_classes is not None and outputs != int(num_classes):
    raise ModelError(f'model {name or type(model).__name__} outputs {outputs} logits per example '
                     f'but {dataset or "the dataset"} has {num_classes} classes')


def prunable_tree(params, prune_head: bool = False):
  """Pytree of Python bools shaped like `params`: True for conv/dense kernels.

  Biases and BatchNorm parameters are never prunable; the classifier (`head`) kernel is prunable
  only with `prune_head=True` (the paper keeps it dense).
  """

  def is_prunable(path, _):
    names = [getattr(k, 'key', str(k)) for k in path]
    return names[-1] == 'kernel' and (prune_head or names[0] != HEAD_NAME)

  return jax.tree_util.tree_map_with_path(is_prunable, params)
