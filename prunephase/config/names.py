"""The names a config may use, and which way each temperature knob is hotter.

The one place these facts are stated: the kernel modules (`models`, `pruning`, `cka`, ...)
read their name tuples from here, so a config can be validated without importing them (and
JAX). Importing this module imports nothing outside the standard library.
"""

# knob -> True where a LARGER value is hotter (more training noise).
KNOBS = {'epochs': False, 'batch_size': False, 'lr': True, 'weight_decay': True,
         'sam_rho': True}
# knob -> (what "increase the temperature" means, what "decrease" means), in words.
MOVES = {
    'epochs': ('train fewer epochs (an earlier checkpoint)', 'train more epochs'),
    'batch_size': ('use a smaller batch', 'use a larger batch'),
    'lr': ('raise the learning rate', 'lower the learning rate'),
    'weight_decay': ('raise the weight decay', 'lower the weight decay'),
    'sam_rho': ('raise SAM rho', 'lower SAM rho'),
}

TFDS_DATASETS = ('cifar10', 'cifar100', 'svhn_cropped', 'mnist', 'fashion_mnist')
DATASETS = ('mnist1d',) + TFDS_DATASETS
MODELS = ('mlp', 'cnn1d', 'preresnet20', 'preresnet56', 'vgg11', 'vgg16')
# Models that take each dataset's inputs: MNIST-1D is 1D (length, channels), the rest images.
MODELS_FOR_INPUTS = {'1d': ('mlp', 'cnn1d'),
                     'image': ('mlp', 'preresnet20', 'preresnet56', 'vgg11', 'vgg16')}
PRUNE_METHODS = ('uniform', 'global', 'lamp', 'random')
OPTIMIZERS = ('sgd', 'sam')
RETRAIN_MODES = ('lr_rewinding', 'finetune')
AUGMENTATIONS = ('none', 'crop_flip')
POINT_BATCHING = ('auto', 'vmap', 'map')
CKA_ESTIMATORS = ('biased', 'unbiased')
REGIME_RULES = ('transition', 'threshold')
STEPS_PER_CALL = ('auto', 'epoch')  # ... or a whole number of steps >= 1.


def parse_steps_per_call(value: str | int) -> str | int:
  """'auto', 'epoch' or an int >= 1 from a config value such as 'auto', 'epoch', 4 or '4'."""
  if isinstance(value, str) and value.strip().isdigit():
    value = int(value)
  if isinstance(value, str) and value in STEPS_PER_CALL:
    return value
  if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
    return value
  raise ValueError(f"train.steps_per_call must be 'auto', 'epoch' or a whole number >= 1, "
                   f'got {value!r}')


def hot_to_cold(knob: str, values) -> list[float]:
  """Temperature values ordered from the hottest to the coldest."""
  return sorted(values, reverse=KNOBS[knob])
