r"""Population throughput of the default MNIST-1D model on this machine.

  python benchmarks/population.py [--members 8] [--epochs 3]

Prints train steps/s for one member, for M members vmapped in one program, and for the same M
members one after another; the achieved FLOP/s as a fraction of the machine's f32 matmul peak
(measured in the same run); the conv form (im2col matmul vs lax.conv) under vmap; and LMC
over 11 points vmapped vs point by point. Ends with three machine-readable lines:

  population_speedup: X        (M vmapped vs M sequential)
  lmc_speedup: Y               (the kernel prunephase uses vs a point-by-point loop)
  population_peak_fraction: Z  (the vmapped epoch's FLOP/s / the f32 matmul peak, same run)
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
from prunephase import data as data_lib  # pylint: disable=wrong-import-position
from prunephase import landscape  # pylint: disable=wrong-import-position
from prunephase import models  # pylint: disable=wrong-import-position
from prunephase import population as population_lib
from prunephase import train as train_lib  # pylint: disable=wrong-import-position
from benchmarks.common import timed  # pylint: disable=wrong-import-position


def matmul_peak(size: int = 2048) -> float:
  """Achieved f32 FLOP/s of a large square matmul: the practical peak."""
  a = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  seconds = timed(lambda: f(a).block_until_ready(), 5)
  return 2 * size ** 3 / seconds


def population(model, spec, dataset, members: int):
  states = train_lib.init_population(model, dataset.input_shape, list(range(members)),
                                     list(range(members)))
  hparams = train_lib.Hparams(lr=jnp.full((members,), 0.1), weight_decay=jnp.full((members,), 1e-4),
                              sam_rho=jnp.zeros((members,)))
  return states, hparams


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--members', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  config = default_config.get_config()
  dataset = data_lib.load_mnist1d(config.dataset.num_samples)
  model = models.make_model(config.model, 10)
  spe = dataset.num_train // config.dense.batch_size
  spec = train_lib.TrainSpec(config.dense.batch_size, spe)
  m = args.members
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()} ({os.cpu_count()} CPU cores); '
        f'model {config.model.name} {tuple(config.model.widths)}; batch {spec.batch_size}; '
        f'{spe} steps/epoch')

  program = population_lib.PopulationProgram(model, spec, masked=False)
  results = {}
  for name, size in (('one member', 1), (f'{m} members vmapped', m)):
    states, hparams = population(model, spec, dataset, size)
    box = [states]

    def run_epoch(box=box, hparams=hparams):
      box[0], metrics = program.epoch(box[0], hparams, None, dataset, 0)
      jax.block_until_ready(metrics)
    results[name] = timed(run_epoch, args.repeats)
  states, hparams = population(model, spec, dataset, 1)
  # Separate buffers per member: the epoch donates its input states.
  singles = [[jax.tree.map(jnp.copy, states)] for _ in range(m)]

  def run_sequential():
    for box in singles:
      box[0], metrics = program.epoch(box[0], hparams, None, dataset, 0)
      jax.block_until_ready(metrics)
  results[f'{m} members sequential'] = timed(run_sequential, args.repeats)

  for name, seconds in results.items():
    members = 1 if name == 'one member' else m
    print(f'{name:>24}: {members * spe / seconds:9.1f} member-steps/s  ({seconds:.3f} s/epoch)')
  population_speedup = results[f'{m} members sequential'] / results[f'{m} members vmapped']

  # Achieved FLOP/s of the vmapped epoch. XLA's cost analysis counts a loop body once, so
  # count one vmapped step and multiply by the steps of an epoch.
  states, hparams = population(model, spec, dataset, m)
  x = jnp.zeros((m, spec.batch_size, *dataset.input_shape))
  y = jnp.zeros((m, spec.batch_size), jnp.int32)
  step = jax.jit(jax.vmap(functools.partial(train_lib.train_step, model, spec),
                          in_axes=(0, 0, None, 0, 0)))
  cost = step.lower(states, hparams, None, x, y).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) * spe
  peak = matmul_peak()
  achieved = flops / results[f'{m} members vmapped']
  print(f'matmul peak (f32, 2048^3): {peak / 1e9:.1f} GFLOP/s; vmapped epoch: '
        f'{flops / 1e9:.2f} GFLOP -> {achieved / 1e9:.2f} GFLOP/s = {achieved / peak:.1%} of peak')

  # Conv form under vmap: im2col + matmul (used) vs lax.conv (vmap -> grouped convolution).
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 20, 32))
  kernels = jax.random.normal(jax.random.PRNGKey(1), (m, 5, 32, 32))
  conv = models.Conv1D(32, 5, padding=2)
  im2col = jax.jit(jax.vmap(lambda k: conv.apply({'params': {'kernel': k}}, x)))
  lax_conv = jax.jit(jax.vmap(lambda k: jax.lax.conv_general_dilated(
      x, k, (1,), ((2, 2),), dimension_numbers=('NWC', 'WIO', 'NWC'))))
  np.testing.assert_allclose(im2col(kernels), lax_conv(kernels), rtol=1e-4, atol=1e-4)
  t_im2col = timed(lambda: im2col(kernels).block_until_ready(), 20)
  t_conv = timed(lambda: lax_conv(kernels).block_until_ready(), 20)
  print(f'conv layer x{m} members vmapped: im2col {t_im2col * 1e3:.2f} ms, lax.conv '
        f'{t_conv * 1e3:.2f} ms -> im2col {t_conv / t_im2col:.1f}x faster')

  # LMC over 11 points for the default's 18 seed pairs per temperature: the kernel the sweep
  # uses (point_batching 'auto') vs a loop of one jitted program per point (vmapped over pairs).
  pairs = 18
  states, _ = population(model, spec, dataset, 2)
  take = lambda i: jax.tree.map(lambda leaf: jnp.repeat(leaf[i:i + 1], pairs, axis=0), states)
  a, b = take(0), take(1)
  mode = landscape.resolve_point_batching(config.measure.point_batching)
  kernel_fn = landscape.make_pair_measurer(model, 11, 64, mode, True)
  run_kernel = lambda: jax.block_until_ready(kernel_fn(a.params, b.params, a.batch_stats,
                                                       dataset))
  point_fn = jax.jit(jax.vmap(
      lambda pa, pb, s, t, ds: landscape.path_point(model, pa, pb, s, ds, t),
      in_axes=(0, 0, 0, None, None)))
  ts = np.linspace(0, 1, 11)
  run_loop = lambda: [jax.block_until_ready(point_fn(a.params, b.params, a.batch_stats, t,
                                                     dataset)) for t in ts]
  timings = {'kernel': timed(run_kernel, args.repeats), 'loop': timed(run_loop, args.repeats)}
  for other in ('vmap', 'map'):
    if other != mode:
      fn = landscape.make_pair_measurer(model, 11, 64, other, True)
      timings[other] = timed(lambda fn=fn: jax.block_until_ready(
          fn(a.params, b.params, a.batch_stats, dataset)), args.repeats)
  print(f'LMC, 11 points x {pairs} pairs: kernel ({mode}) {timings["kernel"]:.2f} s, '
        + ', '.join(f'{k} {v:.2f} s' for k, v in timings.items() if k != 'kernel'))
  t_loop, t_kernel = timings['loop'], timings['kernel']
  print(f'population_speedup: {population_speedup:.2f}')
  print(f'lmc_speedup: {t_loop / t_kernel:.2f}')
  print(f'population_peak_fraction: {achieved / peak:.3f}')  # Vmapped epoch / f32 matmul peak.


if __name__ == '__main__':
  main()
