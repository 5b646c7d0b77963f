r"""PreResNet-20 retraining populations on CIFAR-sized inputs: images/s and seconds per epoch.

  python benchmarks/cifar_population.py                       # accelerator-sized: 27 members
  python benchmarks/cifar_population.py --members 3 --steps 2 # a CPU sanity figure
  python benchmarks/cifar_population.py --members 1 --steps 2 --steps_per_call epoch

Times `--steps` masked training steps (batch 64, random 32x32x3 uint8 images standing in for
CIFAR-10, crop+flip augmentation, masks at the paper's densities) for a population of
`--members` retrainings (the paper's 9 densities x 3 seeds = 27) in one vmapped program, and
for the same members one at a time. Extrapolates seconds per CIFAR-10 epoch (781 steps) and the
GPU-hours of the `cifar10_epochs` grid's retraining (1,296 runs x 160 epochs).
`--steps_per_call` is `config.train.steps_per_call` ('auto': one step per call on a CPU, a
whole-epoch `lax.scan` elsewhere; 'epoch'; N) and `--members_per_chunk` is
`config.train.members_per_chunk` ('auto': one member per call on a CPU, all at once elsewhere). The last line, `<backend>_images_per_s: X`, is
the vmapped population's training images/s (e.g. `cpu_images_per_s`).
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
from prunephase import population as population_lib
from prunephase import train as train_lib  # pylint: disable=wrong-import-position
from prunephase.config import paper  # pylint: disable=wrong-import-position
from benchmarks.common import time_epochs  # pylint: disable=wrong-import-position

DENSITIES = paper.DENSITIES
STEPS_PER_CIFAR_EPOCH = 50_000 // 64
GRID_RETRAIN_EPOCHS = 1296 * 160


def population(model, members: int, num_train: int):
  states = train_lib.init_population(model, (32, 32, 3), [0] * members, list(range(members)))
  params = train_lib.unstack_member(states, 0).params
  masks = pruning.make_masks(params, models.prunable_tree(params), DENSITIES)
  index = jnp.arange(members) % len(DENSITIES)
  masks = jax.tree.map(lambda m: m[index], masks)
  states = states.replace(params=pruning.apply_mask(states.params, masks))
  hparams = train_lib.Hparams(lr=jnp.full(members, 0.1), weight_decay=jnp.full(members, 1e-4),
                              sam_rho=jnp.zeros(members))
  return states, hparams, masks


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
  print(f'device: {jax.devices()[0].device_kind}; PreResNet-20, batch 64, {args.steps} steps, '
        f'{"bf16" if args.bf16 else "f32"}, steps per call: '
        f'{steps_per_call or "the whole epoch"} (train.steps_per_call={args.steps_per_call}), '
        f'members per chunk: {members_per_chunk or "all"} '
        f'(train.members_per_chunk={args.members_per_chunk})')
  states, hparams, masks = population(model, args.members, num_train)
  vmapped, compile_v = time_epochs(program, states, hparams, masks, dataset, args.repeats)
  one, compile_1 = vmapped, compile_v
  if args.members > 1:
    one, compile_1 = time_epochs(program, *population(model, 1, num_train), dataset,
                                 args.repeats)
  sequential = one * args.members
  images = args.members * args.steps * 64
  per_epoch = vmapped / args.steps * STEPS_PER_CIFAR_EPOCH
  print(f'{args.members} members vmapped: {images / vmapped:9.1f} images/s, '
        f'{per_epoch:8.1f} s per CIFAR-10 epoch of the whole population '
        f'(first call incl. compile {compile_v:.1f} s)')
  print(f'{args.members} members one at a time: {images / sequential:9.1f} images/s '
        f'(1 member: {one:.3f} s for {args.steps} steps; first call {compile_1:.1f} s)')
  print(f'vmapped / sequential speed-up: {sequential / vmapped:.2f}')
  hours = per_epoch / args.members * GRID_RETRAIN_EPOCHS / 3600
  print(f'projected retraining of the cifar10_epochs grid (1,296 x 160 epochs) on this device: '
        f'{hours:.1f} hours')
  print(f'{jax.default_backend()}_images_per_s: {images / vmapped:.1f}')


if __name__ == '__main__':
  main()
