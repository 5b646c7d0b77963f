r"""Your own metric in the three-regime study: a config file that registers it.

  prunephase --config=examples/own_metric.py --workdir=/tmp/own_metric

Registers `disagreement` (below) when the file is loaded, which happens in the process that
runs the sweep, and returns `configs/default.py:quick` (MNIST-1D, batch size as the
temperature, a 2 x 2 grid) with its panel in the phase diagram. The measure stage computes it
for every seed pair of retrained members; results.csv gets a `disagreement` column (one value
per pair), cells.csv its cell mean (over the seed pairs of each dense seed, then over the dense
seeds), phase_diagram.png a panel, and `prunephase.load_run(DIR).results` the column.

What prunephase needs of a metric (the contract in `prunephase/metrics.py`): a function of one
pair's eval-mode test-set logits (n_test, classes), the test labels (n_test,) and the entry's
settings (its `config.measure` fields) returning {column: scalar}, written with jax.numpy (it
runs jitted and vmapped over pairs). Its fields get their defaults in every config built on
configs/default.py: `--config.measure.disagreement_examples=100` works.
"""

import pathlib
from typing import Any

import jax.numpy as jnp

from prunephase import config as config_lib
from prunephase import metrics


def disagreement(logits_a, logits_b, labels, settings: dict[str, Any]) -> dict[str, Any]:
  """Fraction of test inputs where the two members' predicted classes differ.

  Args:
    logits_a: (n_test, classes) float32 eval-mode logits of member a.
    logits_b: the same of member b.
    labels: (n_test,) int32 test labels (unused: disagreement needs no labels).
    settings: {'disagreement_examples': N}: the first N test inputs (0 = all).

  Returns:
    {'disagreement': scalar in [0, 1]}.
  """
  del labels
  count = int(settings['disagreement_examples']) or logits_a.shape[0]
  differ = jnp.argmax(logits_a[:count], -1) != jnp.argmax(logits_b[:count], -1)
  return {'disagreement': jnp.mean(differ.astype(jnp.float32))}


metrics.register_metric(
    'disagreement', on='pairs', needs=('test_logits',), compute=disagreement,
    fields={'disagreement_examples': 0},
    columns=[metrics.Column('disagreement', title='Prediction disagreement of seed pairs',
                            cmap='viridis_r', colorbar='disagreement (fraction of test inputs)')])

DEFAULT = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'default.py'


def get_config(arg: str = ''):
  """`configs/default.py:quick` with the disagreement panel beside the paper's four."""
  del arg
  config = config_lib.load_config_file(DEFAULT).get_config('quick')
  config.report.panels = (*config.report.panels, 'disagreement')
  return config
