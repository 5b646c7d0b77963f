r"""Your own temperature knob in the three-regime study: a config file that registers it.

  prunephase --config=examples/own_knob.py --workdir=/tmp/own_knob

Registers `label_smoothing` (below) when the file is loaded, which happens in the process that
runs the sweep, and returns `configs/default.py:quick` (MNIST-1D, a 2 x 2 grid) with
`temperature.knob = 'label_smoothing'` and `temperature.grid = (0.0, 0.3)`: each dense member
trains on targets smoothed by its temperature (more smoothing = hotter: a noisier target), then
the whole study (prune, retrain, measure, report) runs as for a built-in knob, on a CPU in
about a minute. `--config.temperature.grid=(0.0,0.1,0.3)` picks other values.

What prunephase needs of a knob (the contract in `prunephase/knobs.py`, `Knob`): which way
is hotter, the words for a move (`prunephase-advise` prints them), the figures' axis label, the
training field(s) a member's value sets, and optionally a config check and a loss. A field that
is not one of `train.Hparams`'s (lr, weight_decay, sam_rho) reaches the loss per member in
`hparams.extra[name]`; the loss replaces dense training's cross-entropy (retraining keeps it).
This file imports JAX (the loss is traced), unlike `configs/*.py`.
"""

import pathlib

import jax
import optax

from prunephase import config as config_lib
from prunephase import knobs


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, hparams) -> jax.Array:
  """Mean cross-entropy against smoothed targets, (1 - a) * one_hot + a / classes.

  Args:
    logits: (batch, classes) float32.
    labels: (batch,) int32.
    hparams: this member's `train.Hparams` (scalars); `extra['label_smoothing']` is a.
  """
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  targets = optax.smooth_labels(targets, hparams.extra['label_smoothing'])
  return optax.softmax_cross_entropy(logits, targets).mean()


def check_label_smoothing(config, values) -> None:
  """Smoothing a in [0, 1): a = 1 is a uniform target (nothing to learn)."""
  del config
  if not all(0 <= v < 1 for v in values):
    raise ValueError(f'temperature.grid (label_smoothing) must be in [0, 1), got {values}')


knobs.register_knob(
    'label_smoothing', larger_is_hotter=True, increase='smooth the labels more',
    decrease='smooth the labels less', label='Label smoothing', sets='label_smoothing',
    check=check_label_smoothing, loss=smoothed_cross_entropy)

DEFAULT = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'default.py'


def get_config(arg: str = ''):
  """`configs/default.py:quick` with label smoothing as the temperature (no arguments)."""
  if arg:
    raise ValueError(f'examples/own_knob.py takes no argument, got {arg!r}')
  config = config_lib.load_config_file(DEFAULT).get_config('quick')
  config.temperature.knob = 'label_smoothing'
  config.temperature.grid = (0.0, 0.3)  # Hottest is the largest: 0.3 heads the tables.
  return config
