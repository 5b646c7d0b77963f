"""Config validation that needs no JAX: every check raises ConfigError with a one-line message.

`validate` checks the fields the sweep relies on before anything runs; `validate_against_data`
the few that need the dataset's size. Model, dataset, pruning method and knob names are checked
against `prunephase.registry` and `prunephase.knobs`, so names a config file registered are
accepted.
"""

import json
import os

from prunephase import knobs
from prunephase import metrics
from prunephase import registry
from prunephase.config import identity
from prunephase.config import names


class ConfigError(ValueError):
  """A config value that cannot work; the message is one line naming the field."""


def _check(condition: bool, message: str):
  if not condition:
    raise ConfigError(message)


def _check_registered(check, *args):
  """ConfigError 'unknown <kind> ...; choose one of ...': `check(*args)`'s message (`check`:
  registry.check or knobs.check_name)."""
  try:
    check(*args)
  except registry.RegistryError as error:
    raise ConfigError(str(error)) from None


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
  _check(section.augmentation in names.AUGMENTATIONS,
         f'unknown {name}.augmentation {section.augmentation!r}; '
         f'choose one of {", ".join(names.AUGMENTATIONS)}')


def _check_init_from(config) -> None:
  """`dense.init_from` names a workdir whose dense models this config would train."""
  source = config.dense.get('init_from') or ''
  if not source:
    return
  config_file = os.path.join(source, 'config.json')
  _check(os.path.isfile(config_file),
         f'dense.init_from={source} holds no config.json: not a prunephase workdir')
  try:
    with open(config_file) as f:
      stored = json.load(f)
  except (OSError, json.JSONDecodeError) as error:
    raise ConfigError(f'dense.init_from={source}: unreadable config.json ({error})') from None
  changed = identity.changed_dense_fields(stored, config)
  _check(not changed, f'dense.init_from={source} holds dense models of another config '
         f'({"; ".join(changed[:4])})')


def _check_landscape(config) -> None:
  """The beyond-the-paper fields: Hessian, Bezier curves, IMP with rewinding, panels."""
  measure, prune, retrain = config.measure, config.prune, config.retrain
  for name in ('hessian_batches', 'hessian_iters', 'hessian_probes'):
    _check(name in measure, f'missing config field measure.{name}')
    _check(int(measure[name]) >= 1, f'measure.{name} must be >= 1, got {measure[name]}')
  _check(int(measure.get('curve_epochs', 0)) >= 0, 'measure.curve_epochs must be >= 0')
  _check(int(measure.get('curve_points', 2)) >= 2, 'measure.curve_points must be >= 2')
  _check(float(measure.get('curve_lr', 1.0)) > 0, 'measure.curve_lr must be > 0')
  schedule = prune.get('schedule', 'one_shot')
  _check(schedule in names.PRUNE_SCHEDULES,
         f'unknown prune.schedule {schedule!r}; choose one of {", ".join(names.PRUNE_SCHEDULES)}')
  if schedule == 'iterative':
    _check(0 < float(prune.rate_per_level) < 1,
           f'prune.rate_per_level must be in (0, 1), got {prune.rate_per_level}')
    _check(prune.method in names.IMP_METHODS,
           f'prune.schedule=iterative ranks by magnitude: prune.method must be one of '
           f'{", ".join(names.IMP_METHODS)}, got {prune.method!r}')
  if retrain.mode == 'weight_rewinding':
    _check(int(retrain.rewind_epoch) >= 0, 'retrain.rewind_epoch must be >= 0 (0 = the init)')
  panels = tuple(config.get('report', {}).get('panels', ()))
  for panel in panels:
    _check(panel in names.panels(),
           f'unknown report.panels entry {panel!r}; choose from {", ".join(names.panels())}')
    needs = names.panel_needs().get(panel)
    _check(needs is None or bool(measure.get(needs)),
           f'report.panels has {panel} but measure.{needs} is False')


def validate(config) -> None:
  """Checks every field the sweep relies on; raises ConfigError with a one-line message."""
  _check_registered(registry.check, registry.DATASET, config.dataset.name)
  _check_registered(registry.check, registry.MODEL, config.model.name)
  inputs = registry.dataset_inputs(config.dataset.name)
  if inputs is not None:  # A user's dataset may leave its input kind undeclared.
    takers = registry.models_for_inputs(inputs)
    _check(config.model.name in takers,
           f'model {config.model.name!r} does not take {config.dataset.name} inputs; choose '
           f'one of {", ".join(takers)}')
  model = config.model
  if model.name == 'cnn1d':
    _check(len(model.widths) >= 1 and len(model.widths) == len(model.kernel_sizes)
           == len(model.strides), 'model.widths, model.kernel_sizes and model.strides (cnn1d) '
           'need one entry per conv layer, equal lengths')
  if model.name == 'mlp':
    _check(len(model.widths) >= 1 or model.prune_head,
           'model.widths (mlp) is empty: there is no prunable layer (or set model.prune_head)')
  _check_registered(registry.check, registry.PRUNING_METHOD, config.prune.method)
  densities = tuple(config.prune.densities)
  _check(len(densities) > 0, 'empty grid: prune.densities is empty')
  for d in densities:
    _check(isinstance(d, (int, float)) and 0 < d <= 1,
           f'density {d!r} is outside (0, 1]: prune.densities are fractions of weights kept')
  _check(len(set(densities)) == len(densities), f'prune.densities has repeats: {densities}')
  knob = config.temperature.knob
  _check_registered(knobs.check_name, knob)
  values = tuple(config.temperature.grid)
  _check(len(values) > 0, 'empty grid: temperature.grid is empty')
  _check(len(set(values)) == len(values), f'temperature.grid has repeats: {values}')
  _check(all(isinstance(v, (int, float)) and v >= 0 for v in values),
         f'temperature.grid must be non-negative numbers, got {values}')
  _check(config.dense.optimizer in names.OPTIMIZERS,
         f'unknown dense.optimizer {config.dense.optimizer!r}; choose one of {names.OPTIMIZERS}')
  _check_schedule('dense', config.dense)
  _check_schedule('retrain', config.retrain)
  _check(config.retrain.mode in names.RETRAIN_MODES,
         f'unknown retrain.mode {config.retrain.mode!r}; choose one of {names.RETRAIN_MODES}')
  _check_seeds('dense.seeds', config.dense.seeds, 1)
  _check_init_from(config)
  _check_seeds('retrain.seeds', config.retrain.seeds, 2)  # LMC and CKA need pairs.
  _check_knob(config, knob, values)
  measure = config.measure
  _check(measure.lmc_points >= 2, f'measure.lmc_points must be >= 2, got {measure.lmc_points}')
  _check(1 <= measure.test_error_epochs <= config.retrain.epochs,
         'measure.test_error_epochs must be in [1, retrain.epochs]')
  _check(measure.point_batching in names.POINT_BATCHING,
         f'unknown measure.point_batching {measure.point_batching!r}; choose one of '
         f'{", ".join(names.POINT_BATCHING)}')
  _check(measure.cka_estimator in names.CKA_ESTIMATORS,
         f'unknown measure.cka_estimator {measure.cka_estimator!r}; choose one of '
         f'{", ".join(names.CKA_ESTIMATORS)}')
  _check(measure.pairs_per_call >= 0, 'measure.pairs_per_call must be >= 0 (0 = all at once)')
  train = config.get('train')
  if train is not None:
    try:
      names.parse_steps_per_call(train.steps_per_call)
      names.parse_members_per_chunk(train.get('members_per_chunk', 'auto'))
    except ValueError as error:
      raise ConfigError(str(error)) from None
  mesh = config.get('mesh')
  if mesh is not None:
    _check(mesh.members >= 0 and mesh.data >= 1,
           f'mesh.members must be >= 0 (0 = all devices) and mesh.data >= 1, got '
           f'{mesh.members} x {mesh.data}')
  _check(measure.cka_examples >= 4, 'measure.cka_examples must be >= 4')
  _check(measure.bn_batch_size >= 2, 'measure.bn_batch_size must be >= 2')
  _check_landscape(config)
  _check_metrics(config)
  rule = config.regimes
  _check(rule.rule in names.REGIME_RULES,
         f'unknown regimes.rule {rule.rule!r}; choose one of {", ".join(names.REGIME_RULES)}')
  for name in ('min_drop', 'noise_factor', 'cka_tolerance'):
    _check(rule[name] >= 0, f'regimes.{name} must be >= 0, got {rule[name]}')
  _check(rule.bootstrap >= 0, f'regimes.bootstrap must be >= 0, got {rule.bootstrap}')
  _check(rule.confidence in names.CONFIDENCE_ESTIMATORS,
         f'unknown regimes.confidence {rule.confidence!r}; choose one of '
         f'{", ".join(names.CONFIDENCE_ESTIMATORS)}')
  _check(0 <= rule.min_confidence <= 1,
         f'regimes.min_confidence must be in [0, 1], got {rule.min_confidence}')
  _check_adaptive_seeds(config)
  _check_search(config)


def _check_search(config) -> None:
  """The `search` section (absent in configs of earlier versions: every cell measured)."""
  search = config.get('search')
  if search is None:
    return
  mode, max_cells = search.get('mode', 'grid'), search.get('max_cells', 0)
  _check(mode in ('grid', 'adaptive'),
         f'unknown search.mode {mode!r}; choose one of grid, adaptive')
  _check(isinstance(max_cells, int) and not isinstance(max_cells, bool) and max_cells >= 0,
         f'search.max_cells must be a whole number >= 0 (0 = no limit), got {max_cells!r}')
  remeasure_below = search.get('remeasure_below', 0.0)  # Absent: the search's own default.
  _check(isinstance(remeasure_below, (int, float)) and not isinstance(remeasure_below, bool)
         and 0 <= remeasure_below <= 1,
         f'search.remeasure_below must be a confidence in [0, 1], got {remeasure_below!r}')
  if mode != 'adaptive':
    return
  _check(config.prune.get('schedule', 'one_shot') == 'one_shot',
         "search.mode='adaptive' needs prune.schedule='one_shot' (iterative pruning levels "
         'depend on every density)')


def _check_metrics(config) -> None:
  """Each measured metric entry's own check (`metrics.Metric.check`): a one-line ConfigError."""
  for entry in metrics.entries(config.measure):
    if entry.check is None:
      continue
    try:
      metrics.resolve(entry.check)(config)
    except Exception as error:  # pylint: disable=broad-except  # A user's check: one line.
      message = ' '.join(str(error).split()) or type(error).__name__
      raise ConfigError(message if isinstance(error, ValueError) else
                        f'the check of metric {entry.name!r} failed: {type(error).__name__}: '
                        f'{message}') from None


def _check_knob(config, knob: str, values) -> None:
  """The knob entry's own checks (`knobs.Knob.check`): any error is a one-line ConfigError."""
  try:
    knobs.knob(knob).check_config(config, values)
  except ConfigError:
    raise
  except Exception as error:  # pylint: disable=broad-except  # A user's check: one line.
    message = ' '.join(str(error).split()) or type(error).__name__
    raise ConfigError(message if isinstance(error, ValueError) else
                      f'the check of knob {knob!r} failed: {type(error).__name__}: {message}'
                      ) from None


def _check_adaptive_seeds(config) -> None:
  """The `seeds` section (absent in configs of earlier versions: adaptive seeds off)."""
  seeds = config.get('seeds')
  if seeds is None:
    return
  adaptive, maximum = seeds.get('adaptive', False), seeds.get('max_dense_seeds', 8)
  _check(isinstance(adaptive, bool), f'seeds.adaptive must be True or False, got {adaptive!r}')
  _check(isinstance(maximum, int) and not isinstance(maximum, bool) and maximum >= 1,
         f'seeds.max_dense_seeds must be a whole number >= 1, got {maximum!r}')
  if not adaptive:
    return
  base = tuple(config.dense.seeds)
  _check(maximum >= len(base), f'seeds.max_dense_seeds={maximum} is smaller than the '
         f'{len(base)} dense.seeds {base}')
  # The rounds act on the labels' confidence; with no draws it is not computed (NaN everywhere).
  _check(int(config.regimes.bootstrap) > 0,
         'seeds.adaptive needs regimes.bootstrap > 0 (it adds seeds where the labels\' '
         'confidence is low)')


def validate_against_data(config, num_train: int) -> None:
  """Checks that need the dataset size."""
  batches = [config.dense.batch_size, config.retrain.batch_size]
  if knobs.knob(config.temperature.knob).programs:  # The grid's values are batch sizes.
    batches += [int(v) for v in config.temperature.grid]
  for batch in batches:
    _check(batch <= num_train, f'batch size {batch} exceeds the {num_train} train examples')
  measure = config.measure
  if measure.get('hessian'):
    count = int(measure.hessian_batches) * int(measure.bn_batch_size)
    _check(count <= num_train, f'measure.hessian_batches x bn_batch_size = {count} exceeds the '
           f'{num_train} train examples')
