"""The experiment grid: temperature knobs, cell keys, dense groups, and config validation.

A *cell* is one (temperature, density) pair. The temperature is the value of one dense-training
hyperparameter (`config.temperature.knob`); rows of every table and figure run from the hottest
(noisiest dense training) to the coldest.
"""

from collections.abc import Sequence
import dataclasses
import importlib.util
import itertools
import math
import os
import pathlib

from prunephase import cka
from prunephase import data as data_lib
from prunephase import dispatch
from prunephase import landscape
from prunephase import models
from prunephase import pruning
from prunephase import tfds_data

# knob -> True where a LARGER value is hotter (more training noise).
KNOBS = {'epochs': False, 'batch_size': False, 'lr': True, 'weight_decay': True,
         'sam_rho': True}
RETRAIN_MODES = ('lr_rewinding', 'finetune')
OPTIMIZERS = ('sgd', 'sam')
DATASETS = ('mnist1d',) + tfds_data.DATASETS
# Models that take each dataset's inputs: MNIST-1D is 1D (length, channels), the rest images.
MODELS_FOR_INPUTS = {'1d': ('mlp', 'cnn1d'),
                     'image': ('mlp', 'preresnet20', 'preresnet56', 'vgg11', 'vgg16')}


def load_config_file(path: str | os.PathLike):
  """Imports a config file by path, so configs can build on each other however absl, pytest or
  a notebook found them (`configs/` is not a package on sys.path)."""
  path = pathlib.Path(path).resolve()
  spec = importlib.util.spec_from_file_location(f'prunephase_config_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class ConfigError(ValueError):
  """A config value that cannot work; the message is one line naming the field."""


def hot_to_cold(knob: str, values: Sequence[float]) -> list[float]:
  """Temperature values ordered from the hottest to the coldest."""
  return sorted(values, reverse=KNOBS[knob])


def temperature_key(knob: str, value: float) -> str:
  """A stable, path-safe key such as 'epochs=8' or 'lr=0.05'."""
  return f'{knob}={value:g}'


def seed_pairs(seeds: Sequence[int]) -> list[tuple[int, int]]:
  """All unordered pairs (a, b), a before b in `seeds` order: (1,2), (1,3), (2,3)."""
  return list(itertools.combinations(seeds, 2))


@dataclasses.dataclass(frozen=True)
class DenseGroup:
  """Dense members trained by one compiled program.

  Attributes:
    name: directory name ('all' or 'batch_size=64').
    batch_size: dense batch size.
    total_steps: steps of the run.
    temperatures: temperature value of each member (None for the epoch family, whose
      temperatures are checkpoints of every member).
    seeds: dense seed of each member.
    save_epochs: epochs (1-based) whose checkpoints are artifacts.
  """

  name: str
  batch_size: int
  total_steps: int
  temperatures: tuple
  seeds: tuple
  save_epochs: tuple


def steps_per_epoch(num_train: int, batch_size: int) -> int:
  """Full batches in one epoch (the incomplete last batch is dropped)."""
  return num_train // batch_size


def epochs_of(total_steps: int, steps_per_epoch: int) -> int:
  """Epochs a run of `total_steps` spans (the last one may be partial)."""
  return math.ceil(total_steps / steps_per_epoch)


def dense_groups(config, num_train: int) -> list[DenseGroup]:
  """How the dense family splits into programs (one per batch size)."""
  knob, dense = config.temperature.knob, config.dense
  values = hot_to_cold(knob, config.temperature.grid)
  seeds = tuple(dense.seeds)
  if knob == 'batch_size':
    groups = []
    for batch in values:
      spe = steps_per_epoch(num_train, int(batch))
      epochs = epochs_of(dense.iterations, spe)
      groups.append(DenseGroup(f'batch_size={batch:g}', int(batch), int(dense.iterations),
                               (batch,) * len(seeds), seeds, (epochs,)))
    return groups
  spe = steps_per_epoch(num_train, dense.batch_size)
  if knob == 'epochs':
    return [DenseGroup('all', dense.batch_size, dense.epochs * spe, (None,) * len(seeds), seeds,
                       tuple(sorted(int(v) for v in values)))]
  members = [(v, s) for v in values for s in seeds]
  return [DenseGroup('all', dense.batch_size, dense.epochs * spe,
                     tuple(v for v, _ in members), tuple(s for _, s in members),
                     (dense.epochs,))]


def _check(condition: bool, message: str):
  if not condition:
    raise ConfigError(message)


def _check_seeds(name: str, seeds, minimum: int):
  _check(len(seeds) >= minimum, f'{name} needs at least {minimum} seed(s), got {tuple(seeds)}')
  _check(len(set(seeds)) == len(seeds), f'{name} has repeated seeds: {tuple(seeds)}')
  _check(all(isinstance(s, int) and s >= 0 for s in seeds),
         f'{name} must be non-negative integers, got {tuple(seeds)}')


def _check_schedule(name: str, section):
  _check(section.lr > 0, f'{name}.lr must be > 0, got {section.lr}')
  _check(section.weight_decay >= 0, f'{name}.weight_decay must be >= 0')
  _check(0 <= section.momentum < 1, f'{name}.momentum must be in [0, 1)')
  _check(section.batch_size >= 1, f'{name}.batch_size must be >= 1')
  _check(section.epochs >= 1, f'{name}.epochs must be >= 1, got {section.epochs}')
  _check(not (section.lr_decay_epochs and section.lr_decay_fractions),
         f'{name}: give lr_decay_epochs or lr_decay_fractions, not both')
  for fraction in section.lr_decay_fractions:
    _check(0 < fraction < 1, f'{name}.lr_decay_fractions must be in (0, 1), got {fraction}')
  _check(section.augmentation in data_lib.AUGMENTATIONS,
         f'unknown {name}.augmentation {section.augmentation!r}; '
         f'choose one of {", ".join(data_lib.AUGMENTATIONS)}')


def validate(config) -> None:
  """Checks every field the sweep relies on; raises ConfigError with a one-line message."""
  _check(config.dataset.name in DATASETS,
         f'unknown dataset {config.dataset.name!r}; choose one of {", ".join(DATASETS)}')
  _check(config.model.name in models.MODEL_NAMES,
         f'unknown model {config.model.name!r}; choose one of {", ".join(models.MODEL_NAMES)}')
  inputs = '1d' if config.dataset.name == 'mnist1d' else 'image'
  _check(config.model.name in MODELS_FOR_INPUTS[inputs],
         f'model {config.model.name!r} does not take {config.dataset.name} inputs; choose one of '
         f'{", ".join(MODELS_FOR_INPUTS[inputs])}')
  model = config.model
  if model.name == 'cnn1d':
    _check(len(model.widths) >= 1 and len(model.widths) == len(model.kernel_sizes)
           == len(model.strides), 'model.widths, model.kernel_sizes and model.strides (cnn1d) '
           'need one entry per conv layer, equal lengths')
  if model.name == 'mlp':
    _check(len(model.widths) >= 1 or model.prune_head,
           'model.widths (mlp) is empty: there is no prunable layer (or set model.prune_head)')
  _check(config.prune.method in pruning.METHODS, f'unknown pruning method '
         f'{config.prune.method!r}; choose one of {", ".join(pruning.METHODS)}')
  densities = tuple(config.prune.densities)
  _check(len(densities) > 0, 'empty grid: prune.densities is empty')
  for d in densities:
    _check(isinstance(d, (int, float)) and 0 < d <= 1,
           f'density {d!r} is outside (0, 1]: prune.densities are fractions of weights kept')
  _check(len(set(densities)) == len(densities), f'prune.densities has repeats: {densities}')
  knob = config.temperature.knob
  _check(knob in KNOBS, f'unknown temperature.knob {knob!r}; choose one of {", ".join(KNOBS)}')
  values = tuple(config.temperature.grid)
  _check(len(values) > 0, 'empty grid: temperature.grid is empty')
  _check(len(set(values)) == len(values), f'temperature.grid has repeats: {values}')
  _check(all(isinstance(v, (int, float)) and v >= 0 for v in values),
         f'temperature.grid must be non-negative numbers, got {values}')
  _check(config.dense.optimizer in OPTIMIZERS,
         f'unknown dense.optimizer {config.dense.optimizer!r}; choose one of {OPTIMIZERS}')
  _check_schedule('dense', config.dense)
  _check_schedule('retrain', config.retrain)
  _check(config.retrain.mode in RETRAIN_MODES,
         f'unknown retrain.mode {config.retrain.mode!r}; choose one of {RETRAIN_MODES}')
  _check_seeds('dense.seeds', config.dense.seeds, 1)
  _check_seeds('retrain.seeds', config.retrain.seeds, 2)  # LMC and CKA need pairs.
  if knob == 'epochs':
    _check(all(float(v).is_integer() and 1 <= v <= config.dense.epochs for v in values),
           f'temperature.grid (epochs) must be whole numbers in [1, dense.epochs='
           f'{config.dense.epochs}], got {values}')
  if knob == 'batch_size':
    _check(all(float(v).is_integer() and v >= 1 for v in values),
           f'temperature.grid (batch sizes) must be whole numbers >= 1, got {values}')
    _check(config.dense.iterations > 0,
           'temperature.knob=batch_size needs dense.iterations > 0 (a fixed step budget)')
  if knob == 'sam_rho':
    _check(config.dense.optimizer == 'sam', 'temperature.knob=sam_rho needs dense.optimizer=sam')
  if knob in ('lr',):
    _check(all(v > 0 for v in values), f'temperature.grid (lr) must be > 0, got {values}')
  measure = config.measure
  _check(measure.lmc_points >= 2, f'measure.lmc_points must be >= 2, got {measure.lmc_points}')
  _check(1 <= measure.test_error_epochs <= config.retrain.epochs,
         'measure.test_error_epochs must be in [1, retrain.epochs]')
  _check(measure.point_batching in landscape.POINT_BATCHING,
         f'unknown measure.point_batching {measure.point_batching!r}; choose one of '
         f'{", ".join(landscape.POINT_BATCHING)}')
  _check(measure.cka_estimator in cka.ESTIMATORS,
         f'unknown measure.cka_estimator {measure.cka_estimator!r}; choose one of '
         f'{", ".join(cka.ESTIMATORS)}')
  _check(measure.pairs_per_call >= 0, 'measure.pairs_per_call must be >= 0 (0 = all at once)')
  train = config.get('train')
  if train is not None:
    try:
      dispatch.parse_steps_per_call(train.steps_per_call)
    except ValueError as error:
      raise ConfigError(str(error)) from error
  mesh = config.get('mesh')
  if mesh is not None:
    _check(mesh.members >= 0 and mesh.data >= 1,
           f'mesh.members must be >= 0 (0 = all devices) and mesh.data >= 1, got '
           f'{mesh.members} x {mesh.data}')
  _check(measure.cka_examples >= 4, 'measure.cka_examples must be >= 4')
  _check(measure.bn_batch_size >= 2, 'measure.bn_batch_size must be >= 2')


def validate_against_data(config, num_train: int) -> None:
  """Checks that need the dataset size."""
  batches = [config.dense.batch_size, config.retrain.batch_size]
  if config.temperature.knob == 'batch_size':
    batches += [int(v) for v in config.temperature.grid]
  for batch in batches:
    _check(batch <= num_train, f'batch size {batch} exceeds the {num_train} train examples')
