"""Shared settings of the paper's phase-diagram families; not a config itself.

`configs/cifar10_epochs.py`, `configs/cifar10_batch_size.py` and `configs/cifar10_sam_rho.py`
load this file by path (as absl loads config files, `configs` is not an importable package) with
`prunephase.config.load_config_file`, and build on `configs/default.py`'s `get_config()`. The
paper's grids themselves are stated in `prunephase/config/paper.py`.

Config argument: comma-separated tokens, e.g. `:quick`, `:cifar100`, `:svhn`, `:cifar100,quick`.
  cifar10 (default) | cifar100 | svhn   the dataset (tfds `cifar10`, `cifar100`, `svhn_cropped`)
  quick                                 a smoke-sized grid (2 temperatures x 2 densities)
"""

import pathlib

import ml_collections

from prunephase.config import load_config_file
from prunephase.config import paper
from prunephase.config import parse_arg as parse_config_arg

# Config token -> tfds dataset name.
DATASET_TOKENS = {'cifar10': 'cifar10', 'cifar100': 'cifar100', 'svhn': 'svhn_cropped'}
TOKENS = (*DATASET_TOKENS, 'quick')
# Train examples of each dataset (tfds train split), for fixed-iteration budgets.
TRAIN_SIZES = {'cifar10': 50_000, 'cifar100': 50_000, 'svhn_cropped': 73_257}


def parse_arg(arg: str) -> tuple[str, bool]:
  """(tfds dataset name, quick) from a config argument such as 'cifar100,quick'.

  Raises:
    ValueError: an unknown or repeated token, or two datasets.
  """
  tokens = parse_config_arg(arg, **{token: False for token in TOKENS})
  datasets = [t for t in DATASET_TOKENS if tokens[t]]
  if len(datasets) > 1:
    raise ValueError(f'config argument {arg!r} names {len(datasets)} datasets; choose one of '
                     f'{", ".join(DATASET_TOKENS)}')
  return DATASET_TOKENS[datasets[0] if datasets else 'cifar10'], tokens['quick']


def base_config(dataset: str) -> ml_collections.ConfigDict:
  """default.py's config with the paper's data, model, optimiser and measurement settings.

  PreResNet-20; SGD lr 0.1, momentum 0.9, weight decay 1e-4 for dense training and retraining;
  batch 64, 160 epochs, lr x0.1 after epochs 80 and 120 (dense and lr-rewinding retraining);
  random crop (4-pixel black padding of the raw image) + horizontal flip for dense training and
  retraining;
  one-shot layerwise-uniform magnitude pruning of all convs to the paper's 9 densities;
  3 dense x 3 retrain seeds; test error = mean of the last 5 retraining epochs; LMC on 11
  points with BN recomputed at batch 64; CKA of softmax outputs on the first 6,464 train images.
  """
  default = load_config_file(pathlib.Path(__file__).with_name('default.py'))
  config = default.get_config()
  config.dataset.name = dataset
  config.dataset.data_dir = ''  # '' = tfds' default; pass --config.dataset.data_dir=DIR.
  config.dataset.num_train = 0

  config.model.name = 'preresnet20'
  config.model.width = 1
  config.model.prune_head = False  # The paper prunes convs only; classifier and BN stay dense.

  for section in (config.dense, config.retrain):
    section.lr = 0.1
    section.momentum = 0.9
    section.weight_decay = 1e-4
    section.batch_size = 64
    section.epochs = 160
    section.lr_decay = 0.1
    section.lr_decay_epochs = (80, 120)
    section.lr_decay_fractions = ()
    section.augmentation = 'crop_flip'
    section.seeds = (1, 2, 3)
  config.dense.optimizer = 'sgd'
  config.dense.iterations = 0
  config.retrain.mode = 'lr_rewinding'
  # Long runs: resume points every 10 epochs, so a preempted job loses little.
  config.dense.resume_every = 10
  config.retrain.resume_every = 10

  config.temperature.knob = 'epochs'
  config.temperature.grid = paper.EPOCHS

  config.prune.method = 'uniform'
  config.prune.densities = paper.DENSITIES

  config.measure.test_error_epochs = 5
  config.measure.lmc_points = 11
  config.measure.bn_batch_size = 64
  config.measure.lmc_test = True
  config.measure.point_batching = 'map'  # 11 BN passes over 50k images: one point at a time.
  config.measure.pairs_per_call = 9  # Bounds device memory of the measure stage.
  config.measure.cka_examples = 6464
  config.measure.cka_estimator = 'biased'
  # The paper's fixed seeds; adaptive ones can multiply a paper-scale run's cost, so they are
  # an explicit choice there (--config.seeds.adaptive=True).
  config.seeds.adaptive = False
  return config


def make_quick(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a paper config to a smoke-sized grid.

  256 train and 512 test examples, batch 32, 2 epochs with one lr decay, 2 densities,
  1 dense x 2 retrain seeds, LMC on 3 points, CKA on 64 examples. The family's `get_config`
  then shrinks its own temperature grid to 2 values.
  """
  config.dataset.num_train = 256
  config.dataset.num_test = 512
  for section in (config.dense, config.retrain):
    section.batch_size = 32
    section.epochs = 2
    section.lr_decay_epochs = (1,)
    section.lr_decay_fractions = ()
    section.resume_every = 0
  config.dense.seeds = (1,)
  config.retrain.seeds = (1, 2)
  config.prune.densities = (0.1, 0.5)
  config.measure.test_error_epochs = 1
  config.measure.lmc_points = 3
  config.measure.bn_batch_size = 32
  config.measure.cka_examples = 64
  config.measure.pairs_per_call = 0  # All pairs in one call.
  config.regimes.bootstrap = 10
  return config
