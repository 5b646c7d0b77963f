r"""Temperature = SAM radius rho of dense training x load = density, PreResNet-20.

Command (prepare the tfds data first, see `prunephase/tfds_data.py`):

  prunephase --config=configs/cifar10_sam_rho.py --workdir=runs/cifar10_sam_rho \
      --config.dataset.data_dir=DIR

  --config=configs/cifar10_sam_rho.py:quick            smoke-sized grid (CPU or GPU)
  --config=configs/cifar10_sam_rho.py:cifar100         the same family on CIFAR-100
  --config=configs/cifar10_sam_rho.py:svhn             ... on SVHN (tfds svhn_cropped)
  --config=configs/cifar10_sam_rho.py:cifar100,quick   tokens combine

Settings (the others as `configs/paper.py`): dense training with SAM (SGD base: lr 0.1, momentum
0.9, weight decay 1e-4) for rho in {0.1, 0.2, ..., 0.8} (larger = hotter, as presumed in
`prunephase/knobs.py`'s knob table), 160 epochs at batch 64 with lr x0.1 after epochs 80 and
120; the final (epoch-160) model of each rho is pruned (which epoch the paper used is not known;
the final one is the natural reading); all rho values train as ONE vmapped population.
Retraining with plain SGD, lr rewinding, as `configs/cifar10_epochs.py`. Seeds: 3 dense x 3
retrain as the epoch family (the paper's seeds for this diagram are not known).

Expected run time on one GPU: not measured yet. Estimate (from a FLOP count, not a timing):
retraining is 8 x 9 x 3 x 3 = 648 runs x 160 epochs x 50k = 5.2e9 training images at about
0.25 GFLOP each = 1.3e18 FLOP, i.e. 15 to 70 GPU-hours at an assumed 5 to 25 TFLOP/s sustained;
dense SAM training (24 members x 160 epochs, two gradients per step) adds about 5 %.
The `:quick` variant: not measured yet; on a CPU expect tens of minutes (see
`configs/cifar10_epochs.py`).

What the paper's figure shows: the paper's rho diagram and values are not in its released code,
so nothing here is checked against them. Expected from the three-regime model: larger rho
helps at low density (moves models out of Regime I), smaller rho at high density; the diagram
has rho 0.8 (hot) at the top and 0.1 at the bottom against density 5 ... 80 %.
"""

import pathlib

import ml_collections

from prunephase.config import load_config_file


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """The SAM-rho family; `arg` is comma-separated tokens: cifar10|cifar100|svhn, quick."""
  paper = load_config_file(pathlib.Path(__file__).with_name('paper.py'))
  dataset, quick = paper.parse_arg(arg)
  config = paper.base_config(dataset)
  config.dense.optimizer = 'sam'
  config.temperature.knob = 'sam_rho'
  config.temperature.grid = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
  if quick:
    paper.make_quick(config)
    config.temperature.grid = (0.1, 0.5)
  return config
