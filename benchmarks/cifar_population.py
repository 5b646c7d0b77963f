r"""PreResNet-20 retraining populations on CIFAR-sized inputs: images/s and seconds per epoch.

  python benchmarks/cifar_population.py                       # accelerator-sized: 27 members
  python benchmarks/cifar_population.py --members 3 --steps 2 # a CPU sanity figure
  python benchmarks/cifar_population.py --members 1 --steps 2 --steps_per_call epoch

Times `--steps` masked training steps (batch 64, random 32x32x3 uint8 images standing in for
CIFAR-10, crop+flip augmentation, masks at the paper's densities) for a population of
`--members` retrainings (the paper's 9 densities x 3 seeds = 27) in one population program,
and, measured too, for the same members one at a time (each a one-member population, one after
another). Extrapolates seconds per CIFAR-10 epoch (781 steps) and the device-hours of the
`cifar10_epochs` grid's retraining (1,296 runs x 160 epochs).
`--steps_per_call` is `config.train.steps_per_call` ('auto': one step per call on a CPU, a
whole-epoch `lax.scan` elsewhere; 'epoch'; N) and `--members_per_chunk` is
`config.train.members_per_chunk` ('auto': one member per chunk on a CPU, all at once
elsewhere). The lines say which layout ran: with one member per chunk (a CPU's 'auto') nothing
is vmapped, and the speed-up then compares two ways of running members one at a time.
The last line, `<backend>_images_per_s: X`, is the population program's training images/s
(e.g. `cpu_images_per_s`).
"""

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
from prunephase import data as data_lib  # pylint: disable=wrong-import-position
from prunephase import dispatch  # pylint: disable=wrong-import-position
from prunephase import models  # pylint: disable=wrong-import-position
from prunephase import pruning  # pylint: disable=wrong-import-position
from prunephase import population as population_lib  # pylint: disable=wrong-import-position
from prunephase import train_steps as train_lib  # pylint: disable=wrong-import-position
from prunephase.config import paper  # pylint: disable=wrong-import-position
from benchmarks import measures  # pylint: disable=wrong-import-position
from benchmarks.common import median_seconds  # pylint: disable=wrong-import-position
from benchmarks.common import time_epochs  # pylint: disable=wrong-import-position

DENSITIES = paper.DENSITIES
STEPS_PER_CIFAR_EPOCH = 50_000 // 64
GRID_RETRAIN_EPOCHS = 1296 * 160


def population(model, members: int):
  """(states, hparams, masks) of `members` retrainings: one initial network pruned to the
  paper's densities in turn, each member with its own data order."""
  states = train_lib.init_population(model, (32, 32, 3), [0] * members, list(range(members)))
  params = train_lib.unstack_member(states, 0).params
  masks = pruning.make_masks(params, models.prunable_tree(params), DENSITIES)
  index = jnp.arange(members) % len(DENSITIES)
  masks = jax.tree.map(lambda m: m[index], masks)
  states = states.replace(params=pruning.apply_mask(states.params, masks))
  hparams = train_lib.Hparams(lr=jnp.full(members, 0.1), weight_decay=jnp.full(members, 1e-4),
                              sam_rho=jnp.zeros(members))
  return states, hparams, masks


def member(tree, index: int):
  """Member `index` of a population pytree as a population of one (its own buffers)."""
  return jax.tree.map(lambda leaf: jnp.copy(leaf[index:index + 1]), tree)


def time_one_at_a_time(program, singles, dataset, repeats: int) -> tuple[float, float]:
  """(median seconds of a pass after the first, seconds of the first incl. compile) of one
  epoch of each one-member population in `singles` ([states, hparams, masks] lists, states
  replaced in place: the epoch donates them), one after another."""
  epoch = [0]

  def one_pass():
    for single in singles:
      single[0], metrics = program.epoch(*single, dataset, epoch[0])
      jax.block_until_ready(metrics)
    epoch[0] += 1
  first = median_seconds(one_pass, 1)
  return median_seconds(one_pass, repeats), first


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--members', type=int, default=27)
  parser.add_argument('--steps', type=int, default=20, help='steps timed per "epoch"')
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--bf16', action='store_true', help='mixed precision')
  parser.add_argument('--steps_per_call', default='auto', help="'auto', 'epoch' or N")
  parser.add_argument('--members_per_chunk', default='auto',
                      help="'auto' (1 on a CPU, all elsewhere), 0 (all at once) or N")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  num_train = 64 * args.steps
  dataset = data_lib.Dataset(
      x_train=jnp.asarray(rng.integers(0, 256, (num_train, 32, 32, 3), np.uint8)),
      y_train=jnp.asarray(rng.integers(0, 10, num_train), jnp.int32),
      x_test=jnp.asarray(rng.integers(0, 256, (500, 32, 32, 3), np.uint8)),
      y_test=jnp.asarray(rng.integers(0, 10, 500), jnp.int32),
      mean=jnp.asarray([0.4914, 0.4822, 0.4465]), std=jnp.asarray([0.2023, 0.1994, 0.2010]),
      name='random-cifar', num_classes=10)
  model = models.PreResNet(10, 20, dtype=jnp.bfloat16 if args.bf16 else None)
  spec = train_lib.TrainSpec(64, args.steps, augmentation='crop_flip')
  steps_per_call = dispatch.resolve_steps_per_call(args.steps_per_call, model, (32, 32, 3))
  members_per_chunk = dispatch.resolve_members_per_chunk(args.members_per_chunk, model,
                                                         (32, 32, 3))
  program = population_lib.PopulationProgram(model, spec, masked=True,
                                             steps_per_call=steps_per_call,
                                             members_per_chunk=members_per_chunk)
  separate_calls = bool(steps_per_call) and steps_per_call < args.steps
  chunks, per_chunk = population_lib.chunk_layout(args.members, members_per_chunk)
  print(f'device: {jax.devices()[0].device_kind}; PreResNet-20, batch 64, {args.steps} steps, '
        f'{"bf16" if args.bf16 else "f32"}, steps per call: '
        f'{steps_per_call or "the whole epoch"} (train.steps_per_call={args.steps_per_call}), '
        f'members per chunk: {members_per_chunk or "all"} '
        f'(train.members_per_chunk={args.members_per_chunk})')
  states, hparams, masks = population(model, args.members)
  # The same members, each alone, split off before the population's first epoch donates them.
  singles = ([[member(tree, i) for tree in (states, hparams, masks)]
              for i in range(args.members)] if args.members > 1 else [])
  together, compile_p = time_epochs(program, states, hparams, masks, dataset, args.repeats)
  images = args.members * args.steps * 64
  per_epoch = together / args.steps * STEPS_PER_CIFAR_EPOCH
  how = measures.layout(args.members, 1, chunks, per_chunk, separate_calls)
  print(f'population program [{how}]: {images / together:9.1f} images/s, '
        f'{per_epoch:8.1f} s per CIFAR-10 epoch of the whole population '
        f'(first call incl. compile {compile_p:.1f} s)')
  if singles:
    alone, compile_1 = time_one_at_a_time(program, singles, dataset, args.repeats)
    print(f'the same {args.members} members one at a time, measured ({args.members} '
          f'one-member populations one after another): {images / alone:9.1f} images/s '
          f'({alone:.3f} s per pass of {args.steps} steps each; first pass incl. compile '
          f'{compile_1:.1f} s)')
    caveat = (' (both run one member at a time here: this compares one program over the '
              'members with separate one-member calls, not vmap)' if per_chunk == 1 else '')
    print(f'population program / one at a time speed-up: '
          f'{measures.speedup(alone, together):.2f}{caveat}')
  hours = per_epoch / args.members * GRID_RETRAIN_EPOCHS / 3600
  print(f'projected retraining of the cifar10_epochs grid (1,296 x 160 epochs) on this device '
        f'in this layout: {hours:.1f} hours')
  print(f'{jax.default_backend()}_images_per_s: {images / together:.1f}')

if __name__ == '__main__':
  main()
