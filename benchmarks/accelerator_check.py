r"""The accelerator check: PreResNet-20 populations, matmul peaks, the LMC kernel, a quick sweep.

  benchmarks/accelerator_check.sh            # on a GPU machine: install what is missing, run this
  python benchmarks/accelerator_check.py     # this module alone (--cpu-smoke: tiny sizes)

At the sizes `FULL` (meant for about 4 minutes on one H100-class GPU; never run on a GPU yet) it
prints the versions and devices, then measures large f32 and bf16 matmuls (the peaks of this
run); PreResNet-20 retraining images/s for 1 member, M members vmapped and the same M one after
another (measured), f32 and bf16, with the achieved FLOP/s as a fraction of the matmul peak of
the dtype and, where the device's published peak for the dtype is known
(`benchmarks/measures.py`), of that peak;
the LMC kernel with point_batching 'vmap' and 'map' and as a Python loop over points; and
`configs/cifar10_epochs.py:quick` end to end on synthetic CIFAR-shaped uint8 data held in memory
(no tfds), with its stage times. On a CPU backend, or with --cpu-smoke, the same code runs at
the sizes `SMOKE` (a small MLP, f32 only) so that tests/test_accelerator_check.py keeps it
working. docs/performance.md has the details.

The last five lines are machine-readable; the prefix is the platform (`gpu_`, `tpu_`), or
`cpu_smoke_` for the reduced run:
  gpu_population_speedup: X   f32, the largest M measured: M one after another / M vmapped
  gpu_matmul_fraction: X      best achieved FLOP/s / the FLOP/s of a large matmul of the same
                              dtype measured in this run, over the population runs
  gpu_mfu: X                  best achieved FLOP/s / the device's published dense peak for the
                              dtype, over the runs of a dtype whose peak is known; else
                              `gpu_mfu: n/a (no published peak for DEVICE_KIND)`
  gpu_lmc_speedup: X          the Python loop over points / the kernel of point_batching='auto'
  quick_sweep_s: X            wall seconds of the quick sweep, all stages
A section that fails or does not fit the time budget says so, and its numbers are nan.
(Until 2026-12-03 the matmul fraction was printed as `gpu_mfu`.)
"""

import argparse
import dataclasses
import functools
import importlib.metadata
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
START = time.perf_counter()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

# prunephase as installed (accelerator_check.sh installs it), the repository's copy otherwise;
# the benchmarks package always from the repository (appended: an installed prunephase wins).
sys.path.append(str(REPO))
# pylint: disable=g-import-not-at-top,wrong-import-position
import prunephase
from prunephase import config as config_lib
from prunephase import data as data_lib
from prunephase import dispatch
from prunephase import lmc
from prunephase import models
from prunephase import population as population_lib
from prunephase import pruning
from prunephase import sweep as sweep_lib
from prunephase import tfds_data
from prunephase import train_steps as train_lib
from prunephase import workdir as workdir_lib
from benchmarks import cifar_population
from benchmarks import measures
from benchmarks.common import median_seconds
# pylint: enable=g-import-not-at-top,wrong-import-position

PACKAGES = ('jax', 'jaxlib', 'jax-cuda12-plugin', 'jax-cuda12-pjrt', 'jax-cuda13-plugin',
            'jax-cuda13-pjrt', 'libtpu', 'flax', 'optax', 'orbax-checkpoint', 'chex', 'absl-py',
            'numpy', 'matplotlib', 'ml-collections', 'PyYAML', 'mnist1d', 'tensorflow-datasets',
            'prunephase')


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What one run measures.

  Attributes:
    model: 'preresnet20', or 'mlp' (one hidden layer of 32) for the smoke run, of the population
      and LMC measurements.
    batch: training batch size.
    steps: steps of one timed population epoch.
    members: population sizes M measured besides 1: the first right after M = 1 in every dtype,
      then the others while the time budget lasts.
    dtypes: population runs: 'f32' and/or 'bf16' (mixed precision).
    repeats: timed repetitions after the first (compiling) call; the median is reported.
    matmul: size n of the n x n x n peak matmuls.
    lmc_pairs: pairs P measured at once by the LMC kernel.
    lmc_points: points on each path.
    lmc_train: train images the BN recalibration and the train error pass over.
    lmc_test: test images evaluated at every point.
    bn_batch: BN recalibration batch size.
    sweep_model: model of the quick sweep.
    sweep_train: train images of the quick sweep (0 = the quick config's own, 256).
    sweep_test: test images of the quick sweep (0 = the quick config's own, 512).
    budget_s: seconds after which remaining population runs are skipped (0 = no limit).
    reserve_s: seconds kept for the LMC and sweep sections when deciding to skip.
  """

  model: str
  batch: int
  steps: int
  members: tuple[int, ...]
  dtypes: tuple[str, ...]
  repeats: int
  matmul: int
  lmc_pairs: int
  lmc_points: int
  lmc_train: int
  lmc_test: int
  bn_batch: int
  sweep_model: str
  sweep_train: int
  sweep_test: int
  budget_s: float
  reserve_s: float


FULL = Sizes(model='preresnet20', batch=64, steps=16, members=(16, 4, 27), dtypes=('f32', 'bf16'),
             repeats=2, matmul=8192, lmc_pairs=4, lmc_points=11, lmc_train=4096, lmc_test=1024,
             bn_batch=64, sweep_model='preresnet20', sweep_train=0, sweep_test=0, budget_s=200,
             reserve_s=90)
SMOKE = Sizes(model='mlp', batch=8, steps=2, members=(2,), dtypes=('f32',), repeats=1, matmul=256,
              lmc_pairs=2, lmc_points=3, lmc_train=32, lmc_test=16, bn_batch=16,
              sweep_model='mlp', sweep_train=64, sweep_test=32, budget_s=0, reserve_s=0)

NAN = float('nan')


def elapsed() -> float:
  return time.perf_counter() - START


def timed(fn, repeats: int) -> tuple[float, float]:
  """(median seconds of `repeats` calls after the first, seconds of the first); `fn` blocks."""
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  return median_seconds(fn, repeats), first


def one_line(error: BaseException) -> str:
  text = ' '.join(str(error).split())
  return f'{type(error).__name__}: {text[:300]}'


def is_out_of_memory(error: BaseException) -> bool:
  text = str(error)
  return 'RESOURCE_EXHAUSTED' in text or 'out of memory' in text.lower()


def print_environment(smoke: bool) -> None:
  print(f'python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPU cores')
  versions = []
  for name in PACKAGES:
    try:
      versions.append(f'{name} {importlib.metadata.version(name)}')
    except importlib.metadata.PackageNotFoundError:
      if name in ('ml-collections', 'mnist1d', 'tensorflow-datasets', 'prunephase'):
        versions.append(f'{name} absent')
  print('packages: ' + ', '.join(versions))
  print(f'prunephase imported from {pathlib.Path(prunephase.__file__).parent}')
  devices = jax.devices()
  memory = (devices[0].memory_stats() or {}).get('bytes_limit') if devices else None
  print(f'backend {jax.default_backend()}: {len(devices)} x {devices[0].device_kind}'
        + (f', {memory / 2**30:.1f} GiB' if memory else '')
        + f"; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  print(f'sizes: {"SMOKE (reduced, CPU)" if smoke else "FULL"}')


def matmul_peak(dtype, size: int, repeats: int) -> float:
  """Achieved FLOP/s of an n x n x n matmul of `dtype` (JAX's default precision)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32).astype(dtype)
  f = jax.jit(lambda x: x @ x)
  seconds, _ = timed(lambda: f(a).block_until_ready(), max(repeats, 3))
  return 2 * size ** 3 / seconds


def random_images(num_train: int, num_test: int, seed: int = 0) -> data_lib.Dataset:
  """CIFAR-10-shaped uint8 images and labels held in memory, with CIFAR-10's normalisation."""
  rng = np.random.default_rng(seed)
  mean, std = tfds_data.NORMALISATION['cifar10']
  return data_lib.Dataset(
      x_train=jnp.asarray(rng.integers(0, 256, (num_train, 32, 32, 3), np.uint8)),
      y_train=jnp.asarray(rng.integers(0, 10, num_train), jnp.int32),
      x_test=jnp.asarray(rng.integers(0, 256, (num_test, 32, 32, 3), np.uint8)),
      y_test=jnp.asarray(rng.integers(0, 10, num_test), jnp.int32),
      mean=jnp.asarray(mean, jnp.float32), std=jnp.asarray(std, jnp.float32),
      name='cifar10', num_classes=10)


def make_model(name: str, dtype=None):
  if name == 'preresnet20':
    return models.PreResNet(10, 20, dtype=dtype)
  return models.MLP(10, (32,), dtype=dtype)


@functools.cache
def first_member(name: str):
  """One initialised member (leading axis 1) and its masks at the paper's densities.

  The bf16 model has the same float32 parameters, so both dtypes share this; populations are
  built from it without compiling an initialisation per population size.
  """
  model = make_model(name)
  state = train_lib.init_population(model, (32, 32, 3), [0], [0])
  params = train_lib.unstack_member(state, 0).params
  masks = pruning.make_masks(params, models.prunable_tree(params), cifar_population.DENSITIES)
  return state, masks


def population(name: str, members: int):
  """(states, hparams, masks) of M retraining members: the first member's weights, pruned to
  the paper's densities in turn, each member with its own data order."""
  state, masks = first_member(name)
  index = jnp.arange(members) % len(cifar_population.DENSITIES)
  member_masks = jax.tree.map(lambda mask: mask[index], masks)
  states = jax.tree.map(lambda leaf: jnp.repeat(leaf, members, axis=0), state)
  states = states.replace(params=pruning.apply_mask(states.params, member_masks),
                          data_key=jnp.stack([train_lib.data_key(m) for m in range(members)]))
  hparams = train_lib.Hparams(lr=jnp.full(members, 0.1), weight_decay=jnp.full(members, 1e-4),
                              sam_rho=jnp.zeros(members))
  return states, hparams, member_masks


def step_flops(model, spec, name: str) -> float:
  """FLOPs of one training step of one member, from XLA's cost analysis (nan if unavailable)."""
  states, hparams, masks = population(name, 1)
  x = jnp.zeros((1, spec.batch_size, 32, 32, 3))
  y = jnp.zeros((1, spec.batch_size), jnp.int32)
  step = jax.jit(jax.vmap(functools.partial(train_lib.train_step, model, spec)))
  lowered = step.lower(states, hparams, masks, x, y)
  for analysis in (lowered.cost_analysis, lambda: lowered.compile().cost_analysis()):
    cost = analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    if cost and cost.get('flops', 0) > 0:
      return float(cost['flops'])
  return NAN


@functools.cache
def population_setup(sizes: Sizes, dtype_name: str):
  """(program, dataset, FLOPs of one member-step) of one dtype, built once per run."""
  model = make_model(sizes.model, jnp.bfloat16 if dtype_name == 'bf16' else None)
  dataset = random_images(sizes.batch * sizes.steps, 16)
  spec = train_lib.TrainSpec(sizes.batch, sizes.steps, augmentation='crop_flip')
  steps_per_call = dispatch.resolve_steps_per_call('auto', model, (32, 32, 3))
  # members_per_chunk=None: all members in one vmapped program, the layout whose speed-up over
  # one member at a time this check measures (the sweep's 'auto' on a GPU or TPU).
  program = population_lib.PopulationProgram(model, spec, masked=True,
                                             steps_per_call=steps_per_call,
                                             members_per_chunk=None)
  flops = step_flops(model, spec, sizes.model)
  print(f'[{dtype_name}] {sizes.model}, batch {sizes.batch}, {sizes.steps} steps per '
        f'timed epoch, steps per call: {steps_per_call or "the whole epoch"}, members per '
        f'chunk: all, one device; {flops / sizes.batch / 1e9:.3f} GFLOP per training image',
        flush=True)
  return program, dataset, flops


def population_item(sizes: Sizes, dtype_name: str, m: int, peak: float) -> dict:
  """Images/s of M members vmapped and (M > 1) the same M one after another.

  M = 1 of the same dtype must have run first: it compiles the one-member program that the
  sequential run reuses.
  """
  program, dataset, flops = population_setup(sizes, dtype_name)
  states, hparams, masks = population(sizes.model, m)
  box = [states]

  def run():
    box[0], metrics = program.epoch(box[0], hparams, masks, dataset, 0)
    jax.block_until_ready(metrics)
  vmapped, first = timed(run, sizes.repeats)
  sequential = NAN
  if m > 1:
    singles = [list(population(sizes.model, 1)) for _ in range(m)]

    def run_sequential():
      for single in singles:
        single[0], metrics = program.epoch(single[0], single[1], single[2], dataset, 0)
        jax.block_until_ready(metrics)
    sequential = median_seconds(run_sequential, max(1, sizes.repeats - 1))
  images = m * sizes.batch * sizes.steps
  epoch_flops = flops * m * sizes.steps
  achieved = epoch_flops / vmapped
  matmul_fraction = measures.fraction(epoch_flops, vmapped, peak)
  published = measures.published_peak(jax.devices()[0].device_kind, dtype_name)
  mfu = (f', {measures.fraction(epoch_flops, vmapped, published):.1%} of the published '
         f'{dtype_name} peak' if published else '')
  _, per_chunk = population_lib.chunk_layout(m, program.members_per_chunk)
  print(f'[{dtype_name}] M={m:3d}: {"vmapped" if per_chunk > 1 else "alone"} '
        f'{images / vmapped:10.1f} images/s ({achieved / 1e12:.2f} TFLOP/s = '
        f'{matmul_fraction:.1%} of the {dtype_name} matmul peak{mfu}; first call {first:.1f} s)'
        + (f'; one after another {images / sequential:10.1f} images/s, vmapped '
           f'{measures.speedup(sequential, vmapped):.2f}x' if m > 1 else ''), flush=True)
  return {'dtype': dtype_name, 'members': m, 'vmapped_s': vmapped, 'sequential_s': sequential,
          'flops': epoch_flops, 'seconds': vmapped, 'fraction': matmul_fraction}


def measure_populations(sizes: Sizes, peaks: dict[str, float]) -> tuple[list, list]:
  """Every dtype at M = 1 and the first of `sizes.members`, then the other sizes, while the
  time budget lasts; a dtype stops at its first failure (e.g. out of memory).

  Returns (one result dict per measured run, failure descriptions).
  """
  first, rest = sizes.members[:1], sizes.members[1:]
  schedule = [(d, m) for d in sizes.dtypes for m in (1, *first)]
  schedule += [(d, m) for m in rest for d in sizes.dtypes]
  results, failures, stopped, cost = [], [], set(), {}
  for dtype_name, m in schedule:
    if dtype_name in stopped:
      continue
    estimate = cost.get(dtype_name, 0.0) * max(1.0, m / 16)
    if sizes.budget_s and elapsed() + estimate + sizes.reserve_s > sizes.budget_s:
      print(f'[{dtype_name}] M={m}: skipped (time budget {sizes.budget_s:.0f} s)', flush=True)
      continue
    start = time.perf_counter()
    try:
      results.append(population_item(sizes, dtype_name, m, peaks[dtype_name]))
    except Exception as error:  # pylint: disable=broad-except
      stopped.add(dtype_name)
      reason = 'out of memory' if is_out_of_memory(error) else f'failed: {one_line(error)}'
      print(f'[{dtype_name}] M={m}: {reason}; no larger M of {dtype_name}', flush=True)
      if not is_out_of_memory(error):
        failures.append(f'population {dtype_name} M={m}')
    cost[dtype_name] = time.perf_counter() - start
  return results, failures


def measure_lmc(sizes: Sizes) -> float:
  """Seconds of the LMC kernel by point batching; returns loop / auto-kernel time."""
  model = make_model(sizes.model)
  dataset = random_images(sizes.lmc_train, sizes.lmc_test, seed=1)
  states, _, _ = population(sizes.model, 2)  # Two members pruned to different densities.
  pairs = sizes.lmc_pairs
  take = lambda i: jax.tree.map(lambda leaf: jnp.repeat(leaf[i:i + 1], pairs, axis=0), states)
  a, b = take(0), take(1)
  timings = {}
  for mode in ('vmap', 'map'):
    fn = lmc.make_pair_measurer(model, sizes.lmc_points, sizes.bn_batch, mode, True)
    timings[mode] = timed(lambda fn=fn: jax.block_until_ready(
        fn(a.params, b.params, a.batch_stats, dataset)), sizes.repeats)
  point_fn = jax.jit(jax.vmap(
      lambda pa, pb, s, t, ds: lmc.path_point(model, pa, pb, s, ds, t, sizes.bn_batch),
      in_axes=(0, 0, 0, None, None)))
  ts = np.linspace(0, 1, sizes.lmc_points)
  timings['loop'] = timed(lambda: [jax.block_until_ready(point_fn(
      a.params, b.params, a.batch_stats, t, dataset)) for t in ts], sizes.repeats)
  auto = lmc.resolve_point_batching('auto')
  print(f'LMC, {sizes.model}, {sizes.lmc_points} points x {pairs} pairs, '
        f'{sizes.lmc_train} train + {sizes.lmc_test} test images: '
        + ', '.join(f'{k} {v[0]:.2f} s (first {v[1]:.1f} s)' for k, v in timings.items())
        + f"; 'auto' here is {auto}; loop / vmap {timings['loop'][0] / timings['vmap'][0]:.2f}, "
        f"loop / map {timings['loop'][0] / timings['map'][0]:.2f}", flush=True)
  return timings['loop'][0] / timings[auto][0]


def quick_sweep(sizes: Sizes, workdir: pathlib.Path) -> float:
  """Runs configs/cifar10_epochs.py:quick on in-memory random images; returns wall seconds."""
  config = config_lib.load_config_file(REPO / 'configs' / 'cifar10_epochs.py').get_config('quick')
  config.model.name = sizes.sweep_model
  config.dataset.num_train = sizes.sweep_train or config.dataset.num_train
  config.dataset.num_test = sizes.sweep_test or config.dataset.num_test
  start = time.perf_counter()
  config_lib.validate(config)
  dataset = random_images(config.dataset.num_train, config.dataset.num_test, seed=2)
  # The sweep's dataset is loaded lazily from config.dataset; hand it the arrays instead.
  sweep = sweep_lib.Sweep(config, workdir, _dataset=dataset)
  config_lib.validate_against_data(config, dataset.num_train)
  opened = workdir_lib.Workdir(workdir, config.to_dict())
  try:
    summary = sweep_lib.run_stages(sweep, sweep_lib.STAGES)
  finally:
    opened.release()
  seconds = time.perf_counter() - start
  print(f'quick sweep ({config.model.name}, {config.dataset.num_train} train / '
        f'{config.dataset.num_test} test random images, {summary.get("num_rows")} result rows): '
        + ', '.join(f'{k} {v:.1f} s' for k, v in sweep.timings.items())
        + f'; total {seconds:.1f} s', flush=True)
  return seconds


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--cpu-smoke', action='store_true',
                      help='tiny sizes (the default on a CPU backend)')
  parser.add_argument('--full', action='store_true', help='accelerator sizes even on a CPU')
  parser.add_argument('--members', help='comma-separated M besides 1, the first measured first '
                      '(default 16,4,27)')
  parser.add_argument('--budget_s', type=float, help='skip population runs after this')
  parser.add_argument('--workdir', help='scratch directory of the quick sweep (default: a '
                      'temporary one, removed afterwards)')
  parser.add_argument('--cache_dir', help='JAX persistent compilation cache directory')
  args = parser.parse_args(argv)
  smoke = args.cpu_smoke or (jax.default_backend() == 'cpu' and not args.full)
  sizes = SMOKE if smoke else FULL
  if args.members:
    sizes = dataclasses.replace(sizes, members=tuple(int(m) for m in args.members.split(',')))
  if args.budget_s is not None:
    sizes = dataclasses.replace(sizes, budget_s=args.budget_s)
  if args.cache_dir:
    jax.config.update('jax_compilation_cache_dir', args.cache_dir)
  print_environment(smoke)
  lmc_speedup, sweep_seconds = NAN, NAN
  peaks = {}
  for name, dtype in (('f32', jnp.float32), ('bf16', jnp.bfloat16)):
    peaks[name] = matmul_peak(dtype, sizes.matmul, sizes.repeats)
    print(f'matmul peak {name} ({sizes.matmul}^3): {peaks[name] / 1e12:.2f} TFLOP/s', flush=True)
  population, failures = measure_populations(sizes, peaks)
  print(f'(population done at {elapsed():.0f} s)', flush=True)
  for section in ('lmc', 'sweep'):
    try:
      if section == 'lmc':
        lmc_speedup = measure_lmc(sizes)
      else:
        workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix='accel_sweep_'))
        try:
          sweep_seconds = quick_sweep(sizes, workdir)
        finally:
          if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    except Exception as error:  # pylint: disable=broad-except
      failures.append(section)
      print(f'{section} failed: {one_line(error)}', flush=True)
    print(f'({section} done at {elapsed():.0f} s)', flush=True)
  f32 = [r for r in population if r['dtype'] == 'f32' and r['members'] > 1]
  largest = max(f32, key=lambda r: r['members'], default=None)
  speedup = (measures.speedup(largest['sequential_s'], largest['vmapped_s']) if largest
             else NAN)
  best = max(population, key=lambda r: r['fraction'], default=None)
  if best:
    print(f"best population FLOP/s as a fraction of the measured matmul peak: {best['dtype']}, "
          f"M={best['members']}")
  device_kind = jax.devices()[0].device_kind
  mfu, best_mfu = measures.best_mfu(population, device_kind)
  if best_mfu:
    peak = measures.published_peak(device_kind, best_mfu['dtype'])
    print(f"best model FLOP/s utilisation: {best_mfu['dtype']}, M={best_mfu['members']}, "
          f"against the published dense {best_mfu['dtype']} peak of {device_kind}, "
          f'{peak / 1e12:.0f} TFLOP/s (vendor data sheet)')
  print(f'total {elapsed():.1f} s' + (f'; failed: {", ".join(failures)}' if failures else ''))
  prefix = 'cpu_smoke_' if smoke else f'{jax.default_backend()}_'
  print(f'{prefix}population_speedup: {speedup:.2f}')
  print(f"{prefix}matmul_fraction: {best['fraction'] if best else NAN:.3f}")
  print(measures.mfu_line(prefix, mfu, device_kind))
  print(f'{prefix}lmc_speedup: {lmc_speedup:.2f}')
  print(f'{"cpu_smoke_" if smoke else ""}quick_sweep_s: {sweep_seconds:.1f}')
  return 1 if failures else 0


if __name__ == '__main__':
  sys.exit(main())
