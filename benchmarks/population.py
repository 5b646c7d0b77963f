r"""Population throughput of the default MNIST-1D model on this machine.

  python benchmarks/population.py [--members 8] [--repeats 3]

Prints train steps/s for one member, for M members vmapped in one program, and for the same M
members one after another (measured), all on one device; the default sweep's retrain
population (36 masked members, the sweep's own device layout: one XLA device per core, 2
members per chunk) and its achieved FLOP/s as a fraction of the f32 matmul peak of the same
devices (measured in the same run: one matmul per device, all at once), beside the same
population with all of a device's members vmapped at once; the conv form (im2col matmul vs
lax.conv) under vmap; and LMC over 11 points vmapped vs point by point. Ends with three
machine-readable lines:

  population_speedup: X        (M vmapped vs M one after another, one device)
  lmc_speedup: Y               (the kernel prunephase uses vs a point-by-point loop)
  population_peak_fraction: Z  (the retrain population's epoch FLOP/s / the f32 matmul peak
                               of all the devices it is sharded over, measured concurrently)

Until 2026-12-03 the peak of `population_peak_fraction` was a matmul on one device while the
population ran on all of them: fair on a CPU, where one device already keeps every core busy,
but not on a host of several accelerators.
"""

import argparse
import functools
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
from prunephase import runtime  # pylint: disable=wrong-import-position

runtime.split_host_into_devices(os.cpu_count() or 1)  # As the sweep does (cpu_devices = 0).

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from configs import default as default_config  # pylint: disable=wrong-import-position
from prunephase import data as data_lib  # pylint: disable=wrong-import-position
from prunephase import dispatch  # pylint: disable=wrong-import-position
from prunephase import lmc  # pylint: disable=wrong-import-position
from prunephase import models  # pylint: disable=wrong-import-position
from prunephase import population as population_lib  # pylint: disable=wrong-import-position
from prunephase import pruning  # pylint: disable=wrong-import-position
from prunephase import train_steps as train_lib  # pylint: disable=wrong-import-position
from benchmarks import measures  # pylint: disable=wrong-import-position
from benchmarks.common import time_epochs  # pylint: disable=wrong-import-position
from benchmarks.common import timed  # pylint: disable=wrong-import-position


def matmul_peak(size: int = 2048) -> float:
  """Achieved f32 FLOP/s of a large square matmul on the default device."""
  a = jnp.ones((size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  seconds = timed(lambda: f(a).block_until_ready(), 5)
  return 2 * size ** 3 / seconds


def mesh_matmul_peak(mesh: jax.sharding.Mesh, size: int = 2048) -> float:
  """Achieved f32 FLOP/s of one large square matmul per device of `mesh`, all at once: the
  practical peak of the devices a population sharded over `mesh` runs on.

  A batch of one matrix per device, sharded over both mesh axes, so each device multiplies
  its own matrix and nothing crosses devices; devices that share hardware (CPU devices
  splitting one host's cores) share it here as they do in the population's epoch.
  """
  count = mesh.devices.size
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec((population_lib.MEMBERS, population_lib.DATA)))
  a = jax.device_put(jnp.ones((count, size, size), jnp.float32), sharding)
  f = jax.jit(lambda x: x @ x, out_shardings=sharding)
  seconds = timed(lambda: f(a).block_until_ready(), 5)
  return count * 2 * size ** 3 / seconds


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
  # The data its recorded figures used (docs/performance.md): 4,000 train examples.
  default_config.use_5000_samples(config)
  dataset = data_lib.load_mnist1d(config.dataset.num_samples)
  model = models.make_model(config.model, 10)
  spe = dataset.num_train // config.dense.batch_size
  spec = train_lib.TrainSpec(config.dense.batch_size, spe)
  m = args.members
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()} '
        f'({os.cpu_count()} CPU cores); '
        f'model {config.model.name} {tuple(config.model.widths)}; batch {spec.batch_size}; '
        f'{spe} steps/epoch')

  # One device (the first), all members vmapped at once: the population as such.
  program = population_lib.PopulationProgram(model, spec, masked=False)
  results = {}
  for name, size in (('one member', 1), (f'{m} members vmapped', m)):  # All at once.
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
  results[f'{m} members one by one'] = timed(run_sequential, args.repeats)

  for name, seconds in results.items():
    members = 1 if name == 'one member' else m
    print(f'{name:>24}: {members * spe / seconds:9.1f} member-steps/s  ({seconds:.3f} s/epoch)')
  population_speedup = measures.speedup(results[f'{m} members one by one'],
                                        results[f'{m} members vmapped'])

  # The default sweep's retrain population: 36 masked members (6 densities x 3 dense x 2
  # retrain seeds), lr decays at 50 % and 75 %, the sweep's layout (members sharded over the
  # devices, `train.members_per_chunk='auto'`), against all of a device's members at once.
  # XLA's cost analysis counts a loop body once, so FLOPs = one member's masked step x steps.
  members = 36
  retrain_spec = train_lib.TrainSpec(spec.batch_size, spe, lr_boundaries=(12 * spe, 18 * spe))
  states, hparams = population(model, retrain_spec, dataset, members)
  one = train_lib.unstack_member(states, 0).params
  masks = pruning.make_masks(one, models.prunable_tree(one), [0.04, 0.06, 0.08, 0.12, 0.2, 0.4] * 6)
  x = jnp.zeros((spec.batch_size, *dataset.input_shape))
  y = jnp.zeros((spec.batch_size,), jnp.int32)
  step = jax.jit(functools.partial(train_lib.train_step, model, retrain_spec))
  member_hparams = train_lib.unstack_member(hparams, 0)
  cost = step.lower(train_lib.unstack_member(states, 0), member_hparams,
                    train_lib.unstack_member(masks, 0), x, y).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) * spe * members
  mesh = population_lib.make_mesh()
  one_device_peak = matmul_peak()
  peak = mesh_matmul_peak(mesh)
  layouts = {'sweep layout': dispatch.resolve_members_per_chunk('auto', model,
                                                               dataset.input_shape),
             'all at once': None}
  fractions = {}
  for name, chunk in layouts.items():
    program = population_lib.PopulationProgram(model, retrain_spec, masked=True, mesh=mesh,
                                               members_per_chunk=chunk)
    placed = program.place((jax.tree.map(jnp.copy, states), hparams, masks))
    seconds, first = time_epochs(program, *placed, population_lib.replicate(mesh, dataset),
                                 max(args.repeats, 5))
    fractions[name] = measures.fraction(flops, seconds, peak)
    devices = population_lib.member_devices(mesh)
    how = measures.layout(members, devices, *population_lib.chunk_layout(members, chunk, devices))
    print(f'retrain population, {name}: {how}: {seconds:.3f} s/epoch '
          f'(first {first:.1f} s), {members * spe / seconds:.0f} member-steps/s, '
          f'{flops / seconds / 1e9:.1f} GFLOP/s = {fractions[name]:.1%} of their peak')
  print(f'matmul peak (f32, 2048^3) of the {mesh.devices.size} devices, one matmul each at '
        f'once: {peak / 1e9:.1f} GFLOP/s (one device alone: {one_device_peak / 1e9:.1f} '
        f'GFLOP/s); epoch: {flops / 1e9:.1f} GFLOP')

  # Conv form under vmap: im2col + matmul (used) vs lax.conv (vmap -> grouped convolution).
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 20, 32))
  kernels = jax.random.normal(jax.random.PRNGKey(1), (m, 5, 32, 32))
  # One device, as above.
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
  mode = lmc.resolve_point_batching(config.measure.point_batching)
  kernel_fn = lmc.make_pair_measurer(model, 11, 64, mode, True)
  run_kernel = lambda: jax.block_until_ready(kernel_fn(a.params, b.params, a.batch_stats,
                                                       dataset))
  point_fn = jax.jit(jax.vmap(
      lambda pa, pb, s, t, ds: lmc.path_point(model, pa, pb, s, ds, t),
      in_axes=(0, 0, 0, None, None)))
  ts = np.linspace(0, 1, 11)
  run_loop = lambda: [jax.block_until_ready(point_fn(a.params, b.params, a.batch_stats, t,
                                                     dataset)) for t in ts]
  timings = {'kernel': timed(run_kernel, args.repeats), 'loop': timed(run_loop, args.repeats)}
  for other in ('vmap', 'map'):
    if other != mode:
      fn = lmc.make_pair_measurer(model, 11, 64, other, True)
      timings[other] = timed(lambda fn=fn: jax.block_until_ready(
          fn(a.params, b.params, a.batch_stats, dataset)), args.repeats)
  print(f'LMC, 11 points x {pairs} pairs: kernel ({mode}) {timings["kernel"]:.2f} s, '
        + ', '.join(f'{k} {v:.2f} s' for k, v in timings.items() if k != 'kernel'))
  t_loop, t_kernel = timings['loop'], timings['kernel']
  print(f'population_speedup: {population_speedup:.2f}')
  print(f'lmc_speedup: {t_loop / t_kernel:.2f}')
  print(f'population_peak_fraction: {fractions["sweep layout"]:.3f}')


if __name__ == '__main__':
  main()
