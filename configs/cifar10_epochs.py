r"""The paper's Figure 2: temperature = dense training epochs x load = density, PreResNet-20.

Command (prepare the tfds data first, see `prunephase/tfds_data.py`):

  prunephase --config=configs/cifar10_epochs.py --workdir=runs/cifar10_epochs \
      --config.dataset.data_dir=DIR

  --config=configs/cifar10_epochs.py:quick            smoke-sized grid (CPU or GPU)
  --config=configs/cifar10_epochs.py:cifar100         the same family on CIFAR-100
  --config=configs/cifar10_epochs.py:svhn             ... on SVHN (tfds svhn_cropped)
  --config=configs/cifar10_epochs.py:cifar100,quick   tokens combine

Settings (`configs/paper.py`): PreResNet-20, SGD lr 0.1 / momentum 0.9 / weight decay 1e-4,
batch 64, crop+flip augmentation, ONE 160-epoch dense run per seed with lr x0.1 after epochs 80
and 120; the temperature is the epoch of its checkpoint, 10, 20, ..., 160 (16 rows, fewer epochs
= hotter); one-shot layerwise-uniform magnitude pruning of all convs (classifier and BN dense)
to densities 5, 6, 7, 8, 10, 14, 20, 40, 80 %; retraining by lr rewinding (the full 160-epoch
schedule again, batch 64); 3 dense seeds x 3 retrain seeds -> 432 pruned models, 1,296
retrainings, 1,296 LMC/CKA pairs.

Expected run time on one GPU: not measured yet. Estimate (from a FLOP count, not a timing):
PreResNet-20 costs about 82 MFLOP per 32x32 image forward, about 0.25 GFLOP per training
image; retraining is 1,296 x 160 epochs x 50k images = 1.0e10 training images = 2.6e18 FLOP,
i.e. 30 to 150 GPU-hours at an assumed 5 to 25 TFLOP/s sustained for these small convs;
dense training (3 runs) and the measure stage (1,296 pairs x 11 points x 110k forward images)
add a few percent (the README's "Reproducing the paper" gives all three families). The
`:quick` grid on 64 train / 32 test mock images (tests/test_tfds_data.py, every stage) takes
1 min 26 s on the project's 2-core CPU, about half of it compiling (one step and one member per
jitted call there, `prunephase/dispatch.py`); with its own 256 / 512 images, not measured.

What the paper's figure shows (transcribed in `docs/paper_figure2/`): four 16 x 9 heat maps,
epochs 10 (top, hottest) to 160 (bottom) against density 5 ... 80 %: test error with the regime
boundaries (II-A top, I bottom-left, II-B bottom-right), test error normalised per density
column, LMC (a deep barrier in the corner of low density and many epochs) and CKA of softmax
outputs. At the lowest densities the best checkpoints are those just before the first lr decay
(epoch 80) and longer training is worse (Regime I: LMC barrier, lowest CKA); at high densities
LMC is about 0 everywhere and longer training helps or is flat, CKA rising as training gets
colder. The I/II transition sits at the dense run's first lr decay.
"""

import pathlib

import ml_collections

from prunephase.config import load_config_file


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """Figure 2's family; `arg` is comma-separated tokens: cifar10|cifar100|svhn, quick."""
  paper = load_config_file(pathlib.Path(__file__).with_name('paper.py'))
  dataset, quick = paper.parse_arg(arg)
  config = paper.base_config(dataset)
  # The temperature is base_config's: epochs 10, 20, ..., 160 (checkpoints of the 160-epoch run).
  if quick:
    paper.make_quick(config)
    config.temperature.grid = (1, 2)
  return config
