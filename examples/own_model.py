r"""Your own model in the three-regime study: a config file that registers it.

  prunephase --config=examples/own_model.py --workdir=/tmp/own

Registers `two_layer_mlp` (below) when the file is loaded, which happens in the process that
runs the sweep, and returns `configs/default.py:quick` (MNIST-1D, batch size as the
temperature, a 2 x 2 grid) with `model.name = 'two_layer_mlp'`: the whole study (train, prune,
retrain, measure, report) runs on a CPU in under a minute. `--config=examples/own_model.py:
no_bn` drops BatchNorm (then there are no statistics to recalibrate along the LMC path).

What prunephase needs of a model (the contract in `prunephase/registry.py`): called as
`model.apply({'params', 'batch_stats'}, x, train=...)`, it returns (batch, classes) logits;
BatchNorm, if any, is `prunephase.models.BatchNorm(momentum=self.bn_momentum)` with a
`bn_momentum` attribute; the classifier layer is named `head` (kept dense); every other
`kernel` is pruned. This file imports JAX (it defines a Flax module), unlike `configs/*.py`.
"""

import pathlib
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from prunephase import config as config_lib
from prunephase import models
from prunephase import registry


class TwoLayerMLP(nn.Module):
  """Dense -> [BatchNorm] -> ReLU, twice, then the classifier `head`. Input (batch, ...) is
  flattened; output (batch, num_classes) float32 logits."""

  num_classes: int
  hidden: int = 64
  batch_norm: bool = True
  bn_momentum: float = 0.1  # LMC's BN recalibration clones the model with 1.0.
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    x = x.reshape(x.shape[0], -1)
    for i in range(2):
      x = nn.Dense(self.hidden, use_bias=not self.batch_norm, dtype=self.dtype,
                   name=f'dense{i}')(x)
      if self.batch_norm:
        x = models.BatchNorm(self.bn_momentum, dtype=self.dtype, name=f'bn{i}')(x, train)
      x = nn.relu(x)
    return nn.Dense(self.num_classes, name=models.HEAD_NAME)(x.astype(jnp.float32))


def make_two_layer_mlp(model_config, num_classes: int, dtype: Any = None) -> nn.Module:
  """The factory prunephase calls: the config's `model` section -> the module."""
  return TwoLayerMLP(num_classes, model_config.hidden, model_config.batch_norm, dtype=dtype)


registry.register_model('two_layer_mlp', make_two_layer_mlp)

DEFAULT = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'default.py'


def get_config(arg: str = ''):
  """`configs/default.py:quick` with the model above; `arg='no_bn'` drops its BatchNorm."""
  no_bn = config_lib.parse_arg(arg, no_bn=False)['no_bn']
  config = config_lib.load_config_file(DEFAULT).get_config('quick')
  config.model.name = 'two_layer_mlp'
  config.model.hidden = 64  # New fields of one's own model go in its section.
  config.model.batch_norm = not no_bn
  return config
