r"""Hessian metrics and trained-curve connectivity of the default model, vmapped vs one by one.

  python benchmarks/landscape_metrics.py [--small]

On the default model (cnn1d on MNIST-1D, configs/default.py), with random members pruned to
density 0.2 (random masks: the timings do not depend on which weights are kept):

* Hessian: top eigenvalue (power iteration) and Hutchinson trace of 36 members over the first
  batches of the un-augmented train set: one vmapped program vs a loop over members.
* Curves: bend training plus an 11-point evaluation (BN recalibrated at each point) for 18 pairs:
  one vmapped program vs a loop over pairs.

Times are medians after one warm-up call (compilation excluded). `--small` shrinks everything
to finish in under a minute (a smoke run, not a measurement). Ends with two machine-readable
lines:

  hessian_speedup: X   (members one by one / vmapped)
  curve_speedup: Y     (pairs one by one / vmapped)
"""

import argparse
import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
from configs import default as default_config  # pylint: disable=wrong-import-position
from prunephase import curves  # pylint: disable=wrong-import-position
from prunephase import data as data_lib  # pylint: disable=wrong-import-position
from prunephase import hessian  # pylint: disable=wrong-import-position
from prunephase import models  # pylint: disable=wrong-import-position
from prunephase import train_steps as train_lib  # pylint: disable=wrong-import-position
from benchmarks.common import timed  # pylint: disable=wrong-import-position

# The default grid's population (36 members, 18 pairs per temperature); the metric settings are
# the config's (`full_settings`), i.e. what `configs/default.py:landscape` measures.
FULL = {'members': 36, 'pairs': 18, 'num_samples': 5000, 'repeats': 3}
# Compilation dominates the small run: fewer programs (no test split, 640 = 10 x 64 examples).
SMALL = {'members': 4, 'pairs': 2, 'num_samples': 800, 'hessian_batches': 2, 'iters': 4,
         'probes': 4, 'curve_epochs': 1, 'curve_lr': 0.05, 'points': 3, 'with_test': False,
         'repeats': 1}


def full_settings(config) -> dict:
  """FULL with the measure section's Hessian and curve settings."""
  measure = config.measure
  return {**FULL, 'hessian_batches': int(measure.hessian_batches),
          'iters': int(measure.hessian_iters), 'probes': int(measure.hessian_probes),
          'curve_epochs': int(measure.curve_epochs), 'curve_lr': float(measure.curve_lr),
          'points': int(measure.curve_points), 'with_test': bool(measure.lmc_test)}


def pruned_population(model, dataset, count: int, density: float = 0.2):
  """`count` random members of the model's shapes, sharing one random mask at `density`.

  Weights are N(0, 0.1^2) and masks uniformly random, drawn with NumPy: the timings do not
  depend on the values, and compiling Flax's init and the magnitude ranking would cost more
  than the whole --small run.
  """
  param_shapes, stat_shapes = jax.eval_shape(
      functools.partial(models.init_variables, model, input_shape=dataset.input_shape),
      jax.random.PRNGKey(0))
  rng = np.random.default_rng(count)
  params = jax.tree.map(
      lambda leaf: 0.1 * rng.normal(size=(count, *leaf.shape)).astype(np.float32), param_shapes)
  stats = jax.tree.map(lambda leaf: np.ones((count, *leaf.shape), np.float32), stat_shapes)
  masks = jax.tree.map(
      lambda flag, leaf: np.broadcast_to(rng.random(leaf.shape) < density, (count, *leaf.shape))
      if flag else None, models.prunable_tree(param_shapes), param_shapes)
  params = jax.tree.map(lambda m, p: p if m is None else p * m, masks, params,
                        is_leaf=lambda m: m is None)
  return jax.tree.map(jnp.asarray, (params, stats, masks))


def bench_hessian(model, dataset, settings) -> tuple[float, float]:
  """(vmapped seconds, one-by-one seconds) for the Hessian metrics of all members."""
  count = settings['members']
  params, stats, masks = pruned_population(model, dataset, count)
  x, y = hessian.train_batches(dataset, settings['hessian_batches'], 64)
  keys = jax.random.split(jax.random.PRNGKey(0), count)
  vmapped = hessian.make_population_hessian(model, settings['iters'], settings['probes'],
                                            masked=True)
  single = jax.jit(functools.partial(hessian.hessian_metrics, model,
                                     num_iters=settings['iters'],
                                     num_probes=settings['probes']))
  members = [train_lib.unstack_member((params, stats, masks), i) for i in range(count)]
  run_vmapped = lambda: jax.block_until_ready(vmapped(params, stats, masks, x, y, keys))
  run_loop = lambda: [jax.block_until_ready(single(p, s, x, y, keys[i], m))
                      for i, (p, s, m) in enumerate(members)]
  return timed(run_vmapped, settings['repeats']), timed(run_loop, settings['repeats'])


def bench_curves(model, dataset, settings) -> tuple[float, float]:
  """(vmapped seconds, one-by-one seconds) for training and evaluating all pairs' curves."""
  count = settings['pairs']
  params, stats, masks = pruned_population(model, dataset, 2 * count)
  take = lambda tree, start: jax.tree.map(lambda leaf: leaf[start::2], tree)
  a, b, pair_stats, pair_masks = take(params, 0), take(params, 1), take(stats, 0), take(masks, 0)
  keys = jax.random.split(jax.random.PRNGKey(1), count)
  spec = curves.CurveSpec(epochs=settings['curve_epochs'], lr=settings['curve_lr'],
                          batch_size=64, num_points=settings['points'],
                          with_test=settings['with_test'])
  vmapped = curves.make_pair_connector(model, spec, masked=True)
  single = jax.jit(functools.partial(curves.connect_pair, model, spec))
  pairs = [train_lib.unstack_member((a, b, pair_stats, pair_masks), i) for i in range(count)]
  run_vmapped = lambda: jax.block_until_ready(
      vmapped(a, b, pair_stats, pair_masks, keys, dataset))
  run_loop = lambda: [jax.block_until_ready(single(pa, pb, s, m, dataset, keys[i]))
                      for i, (pa, pb, s, m) in enumerate(pairs)]
  return timed(run_vmapped, settings['repeats']), timed(run_loop, settings['repeats'])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--small', action='store_true', help='smoke-sized run (< 1 min)')
  args = parser.parse_args()
  config = default_config.get_config('landscape')
  settings = SMALL if args.small else full_settings(config)
  dataset = data_lib.load_mnist1d(settings['num_samples'])
  model = models.make_model(config.model, dataset.num_classes)
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()} ({os.cpu_count()} CPU '
        f'cores); model {config.model.name} {tuple(config.model.widths)}; '
        f'{dataset.num_train} train examples; settings {settings}')

  h_vmap, h_loop = bench_hessian(model, dataset, settings)
  print(f'Hessian ({settings["iters"]} power iterations + {settings["probes"]} probes over '
        f'{settings["hessian_batches"]} x 64 examples), {settings["members"]} members: '
        f'vmapped {h_vmap:.2f} s, one by one {h_loop:.2f} s')
  c_vmap, c_loop = bench_curves(model, dataset, settings)
  print(f'Curves ({settings["curve_epochs"]} epochs of bend training + {settings["points"]} '
        f'points), {settings["pairs"]} pairs: vmapped {c_vmap:.2f} s, one by one {c_loop:.2f} s')
  print(f'hessian_speedup: {h_loop / h_vmap:.2f}')
  print(f'curve_speedup: {c_loop / c_vmap:.2f}')


if __name__ == '__main__':
  main()
