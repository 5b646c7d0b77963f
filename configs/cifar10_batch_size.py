r"""Temperature = dense batch size at a fixed 62,400 iterations x load = density, PreResNet-20.

Command (prepare the tfds data first, see `prunephase/tfds_data.py`):

  prunephase --config=configs/cifar10_batch_size.py --workdir=runs/cifar10_batch_size \
      --config.dataset.data_dir=DIR

  --config=configs/cifar10_batch_size.py:quick            smoke-sized grid (CPU or GPU)
  --config=configs/cifar10_batch_size.py:cifar100         the same family on CIFAR-100
  --config=configs/cifar10_batch_size.py:svhn             ... on SVHN (tfds svhn_cropped)
  --config=configs/cifar10_batch_size.py:svhn,quick       tokens combine

Settings (the others as `configs/paper.py`): B in {16, 32, 64, 128, 256, 512} (smaller = hotter),
each trained for exactly 62,400 iterations (= 160 epochs at B=128 on CIFAR, incomplete last batches
dropped, so epochs = ceil(62400 / floor(50000 / B)) = 20 ... 644), lr 0.1 for every B (no
scaling), lr x0.1 at 50 % and 75 % of the iterations; one program per batch size (shapes
differ); only the final dense model of each B is pruned. Retraining: lr rewinding at batch 128,
160 epochs (62,400 iterations on CIFAR) with decays at 50 % / 75 %, identical for every B.
Dense seed 1, retrain seeds 1 and 2 (one LMC/CKA pair per cell), as the paper's
`batch_size/write_experiments.py`. Other settings as `configs/cifar10_epochs.py`.
On SVHN (73,257 train images) the dense budget stays 62,400 iterations and retraining runs
109 epochs (62,348 iterations at B=128), keeping the paper's fixed iteration budget.

Expected run time on one GPU: not measured yet. Estimate (from a FLOP count, not a timing):
retraining is 6 x 9 x 2 = 108 runs x 62,400 x 128 = 8.6e8 training images, at about 0.25 GFLOP
per PreResNet-20 training image = 2.2e17 FLOP, i.e. 2.5 to 12 GPU-hours at an assumed 5 to 25
TFLOP/s sustained; dense training (62,400 x (16 + ... + 512) = 6.3e7 images) and the measure
stage (54 pairs) add little, though the small batches (B=16) run far below that throughput.
The `:quick` variant: not measured yet; on a CPU expect tens of minutes (see
`configs/cifar10_epochs.py`).

What the paper's figure shows: the paper's batch-size diagram and its values are not in its
released code, so nothing here is checked against them. By the three-regime model (as drawn for
the epoch family, `configs/cifar10_epochs.py`) we expect the same partition with batch size as
temperature: small batches (hot) at the top, large batches (cold) at the bottom; Regime I (LMC
barrier, low CKA) at low density and large batch, II-A (connected, lower CKA) at small batch,
II-B at high density and large batch.
"""

import pathlib

import ml_collections

from prunephase.config import load_config_file

ITERATIONS = 62_400  # 160 epochs x 390 steps at B=128 on CIFAR (paper's --iterations).
RETRAIN_BATCH = 128


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """The batch-size family; `arg` is comma-separated tokens: cifar10|cifar100|svhn, quick."""
  paper = load_config_file(pathlib.Path(__file__).with_name('paper.py'))
  dataset, quick = paper.parse_arg(arg)
  config = paper.base_config(dataset)
  config.temperature.knob = 'batch_size'
  config.temperature.grid = (16, 32, 64, 128, 256, 512)
  config.dense.iterations = ITERATIONS  # Every batch size trains exactly this many steps.
  config.dense.batch_size = RETRAIN_BATCH  # Unused by the family (the grid sets it).
  config.dense.epochs = 160  # Unused: dense.iterations fixes the length.
  config.dense.lr_decay_epochs = ()
  config.dense.lr_decay_fractions = (0.5, 0.75)  # Of the 62,400 iterations.
  config.dense.seeds = (1,)
  config.retrain.batch_size = RETRAIN_BATCH
  steps_per_epoch = paper.TRAIN_SIZES[dataset] // RETRAIN_BATCH
  config.retrain.epochs = round(ITERATIONS / steps_per_epoch)  # 160 on CIFAR, 109 on SVHN.
  config.retrain.lr_decay_epochs = ()
  config.retrain.lr_decay_fractions = (0.5, 0.75)
  config.retrain.seeds = (1, 2)
  if quick:
    paper.make_quick(config)
    config.temperature.grid = (16, 32)
    config.dense.iterations = 16  # 1 epoch at B=16, 2 at B=32 on 256 examples.
    config.dense.batch_size = 32
    for section in (config.dense, config.retrain):
      section.lr_decay_epochs = ()
      section.lr_decay_fractions = (0.5, 0.75)
  return config
