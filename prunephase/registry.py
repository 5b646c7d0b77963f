"""Models, datasets, pruning methods and temperature knobs, looked up by name.

A config names its model (`model.name`), dataset (`dataset.name`), pruning method
(`prune.method`) and temperature knob (`temperature.knob`); prunephase finds each here. Built-ins
are registered as 'module:attribute' strings and imported on first lookup, so this module (and
config validation, and `prunephase --help`) imports nothing outside the standard library. A
user registers a callable, e.g. at the top of a config file (`examples/own_model.py`): the
config file is imported in the process that runs the sweep, before the config is validated.

  registry.register_model('tiny_mlp', TinyMLP.from_config, inputs=('1d',))
  registry.register_dataset('my_arrays', lambda dataset_config: {...}, inputs='1d')
  registry.register_pruning_method('magnitude_squared', lambda ws, key: [w * w for w in ws])
  registry.register_knob('label_smoothing', larger_is_hotter=True, ..., sets='label_smoothing',
                         loss=smoothed_cross_entropy)  # examples/own_knob.py
  registry.register_metric('disagreement', on='pairs', compute=fn, columns=[...])  # metrics.py

Contracts:

  model factory `factory(model_config, num_classes, dtype) -> flax.linen.Module`.
    `model_config` is the config's `model` section (any extra fields the model needs go there);
    `dtype` is the computation dtype (None = float32; bfloat16 with `model.mixed_precision`).
    The module is called as `model.apply({'params': p, 'batch_stats': s}, x, train=bool)` on
    float32 inputs x of shape (batch, *dataset input shape) and returns (batch, num_classes)
    logits. BatchNorm is optional. A model with BatchNorm must use `prunephase.models.BatchNorm`
    (PyTorch semantics: it stores the unbiased variance, which the LMC measurement's
    recalibration averages) with `momentum=self.bn_momentum`, and have a `bn_momentum`
    attribute: the recalibration clones the model with `bn_momentum=1.0`. A model without
    BatchNorm has an empty 'batch_stats' collection and needs no `bn_momentum`. Prunable
    weights are the leaves named `kernel` outside the top-level layer named `head` (the
    classifier, kept dense unless `model.prune_head`), see `models.prunable_tree`.
    `inputs`: the dataset input kinds the model takes, '1d' (batch, length, channels) and/or
    'image' (batch, height, width, channels).
  dataset loader `loader(dataset_config) -> data.Dataset | dict`.
    The dict holds NumPy arrays x_train (n_train, *input_shape), y_train (n_train,) integer
    labels, x_test, y_test and optionally num_classes (else 1 + the largest label). Float
    inputs are used as they are; uint8 inputs are images, normalised per channel with the
    mean and std of x_train. `inputs` at registration ('1d', 'image' or None = not checked)
    lets validation refuse a model that does not take them. `dataset.num_train`/`num_test`
    subset the result afterwards. tfds names go through `prunephase.tfds_data`, imported only
    when one of them is loaded.
  pruning method `fn(weights, key) -> scores`.
    `weights` is a list of the prunable leaves of one model, each flattened to shape (n_i,);
    `fn` returns one score array of shape (n_i,) per leaf: the lowest scores are pruned
    first, ties pruned in flat-index order (within a layer) and leaf order (across layers).
    `scope='layerwise'` prunes round((1 - d) * n_i) of each leaf; `scope='global'` prunes
    round((1 - d) * sum n_i) of the pooled scores (make them comparable across layers).
    `key` is a JAX PRNG key for methods registered with `needs_key=True`, else None. `fn` runs
    under `jax.jit`: write it with jax.numpy.
  temperature knob `register_knob(name, larger_is_hotter, increase, decrease, label, sets,
    check=None, loss=None)`, fields in `Knob`. `sets`: CHECKPOINTS (epochs), PROGRAMS (batch
    size), `train.Hparams` field names (any name but lr, weight_decay, sam_rho is a per-member
    value in `Hparams.extra[name]`) or `apply(fields, value) -> fields` on a member's dict of
    them. `loss(logits, labels, hparams) -> scalar` replaces the dense cross-entropy (logits
    (batch, classes) float32, labels (batch,) int32, this member's Hparams; under `jax.jit`).
    `check(config, values)` raises ValueError, one line, for a config the knob cannot run. The
    workdir records the plain data (knob.json): a finished sweep is read without registering.

Every error is a one-line `RegistryError` (a ValueError) naming the choices. Registering a
name twice is an error, except from the same place (the same module and qualified name: a
config file loaded again, a notebook cell run again), which replaces the entry.
"""

from collections.abc import Callable
import dataclasses
import importlib
import sys
from typing import Any

MODEL = 'model'
DATASET = 'dataset'
PRUNING_METHOD = 'pruning method'
KNOB = 'temperature.knob'
INPUT_KINDS = ('1d', 'image')
SCOPES = ('layerwise', 'global')

CHECKPOINTS = 'checkpoints'  # Knob.sets: the temperatures are checkpoints of one run.
PROGRAMS = 'programs'  # Knob.sets: one dense program per value (its shapes change).


class RegistryError(ValueError):
  """An unknown or twice-registered name, or a bad registration; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One registered name.

  Attributes:
    name: the name a config uses.
    target: 'module:attribute' (a built-in, imported on first use) or the callable itself.
    options: what the registry knows without importing the target (input kinds, scope, ...).
  """

  name: str
  target: str | Callable[..., Any]
  options: dict[str, Any]

  def resolve(self) -> Callable[..., Any]:
    if callable(self.target):
      return self.target
    module, _, attribute = self.target.partition(':')
    return getattr(importlib.import_module(module), attribute)


@dataclasses.dataclass(frozen=True)
class PruningMethod:
  """A resolved pruning method: `scores(weights, key)`, see the module docstring."""

  name: str
  scores: Callable[..., Any]
  scope: str
  needs_key: bool


_ENTRIES: dict[str, dict[str, Entry]] = {MODEL: {}, DATASET: {}, PRUNING_METHOD: {}}
_KNOBS: dict[str, 'Knob'] = {}


def _add(kind: str, name: str, target, **options) -> None:
  if not isinstance(name, str) or not name or name != name.strip() or ',' in name:
    raise RegistryError(f'a {kind} name must be a non-empty string without commas or '
                        f'surrounding spaces, got {name!r}')
  if not (callable(target) or (isinstance(target, str) and ':' in target)):
    raise RegistryError(f'{kind} {name!r}: register a callable, got {target!r}')
  old = _ENTRIES[kind].get(name)
  if old is not None and _origin(old.target) != _origin(target):
    raise RegistryError(f'{kind} {name!r} is already registered (by {_origin(old.target)}); '
                        'choose another name')
  _ENTRIES[kind][name] = Entry(name, target, options)


def _origin(target) -> str:
  """Where a target was defined: 'module:qualified.name' (built-ins are that string)."""
  if isinstance(target, str):
    return target
  if not hasattr(target, '__qualname__'):  # A partial or other callable object: itself only.
    return f'{type(target).__qualname__} object at {id(target):#x}'
  return f'{getattr(target, "__module__", "?")}:{target.__qualname__}'


def _entry(kind: str, name: str) -> Entry:
  check(kind, name)
  return _ENTRIES[kind][name]


def names(kind: str) -> tuple[str, ...]:
  """Every registered name of `kind` (MODEL, DATASET, PRUNING_METHOD or KNOB), built-ins
  first, then the user's in registration order."""
  if kind == KNOB:
    return tuple(_KNOBS)
  if kind not in _ENTRIES:
    raise RegistryError(f'unknown registry {kind!r}; choose one of {", ".join((*_ENTRIES, KNOB))}')
  return tuple(_ENTRIES[kind])


def check(kind: str, name: str) -> None:
  """RegistryError "unknown <kind> 'x'; choose one of ..." unless `name` is registered."""
  choices = names(kind)
  if name not in choices:
    raise RegistryError(f'unknown {kind} {name!r}; choose one of {", ".join(choices)}')


def unregister(kind: str, name: str) -> None:
  """Removes a user's entry (tests, notebooks); built-ins cannot be removed."""
  if kind == KNOB:
    check(kind, name)
    if _KNOBS[name].origin == __file__:
      raise RegistryError(f'{kind} {name!r} is built in and cannot be unregistered')
    del _KNOBS[name]
    return
  entry = _entry(kind, name)
  if isinstance(entry.target, str):
    raise RegistryError(f'{kind} {name!r} is built in and cannot be unregistered')
  del _ENTRIES[kind][name]


# ----------------------------------------------------------------------------- models


def register_model(name: str, factory: Callable[..., Any] | str,
                   inputs: tuple[str, ...] | str = INPUT_KINDS) -> None:
  """Registers `factory(model_config, num_classes, dtype) -> nn.Module` as model `name`.

  Args:
    name: the `model.name` a config uses.
    factory: the callable (or 'module:attribute'), see the module docstring.
    inputs: the input kinds it takes: '1d', 'image' or both.
  """
  inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
  if not inputs or any(kind not in INPUT_KINDS for kind in inputs):
    raise RegistryError(f'model {name!r}: inputs must be some of {", ".join(INPUT_KINDS)}, '
                        f'got {inputs}')
  _add(MODEL, name, factory, inputs=inputs)


def model_factory(name: str) -> Callable[..., Any]:
  """The factory of model `name` (imports a built-in's module)."""
  return _entry(MODEL, name).resolve()


def models_for_inputs(kind: str) -> tuple[str, ...]:
  """The models that take inputs of `kind` ('1d' or 'image')."""
  return tuple(name for name, entry in _ENTRIES[MODEL].items() if kind in entry.options['inputs'])


# ----------------------------------------------------------------------------- datasets


def register_dataset(name: str, loader: Callable[..., Any] | str,
                     inputs: str | None = None) -> None:
  """Registers `loader(dataset_config) -> data.Dataset | dict of arrays` as dataset `name`.

  Args:
    name: the `dataset.name` a config uses.
    loader: the callable (or 'module:attribute'), see the module docstring.
    inputs: '1d', 'image', or None (validation then accepts any model).
  """
  if inputs is not None and inputs not in INPUT_KINDS:
    raise RegistryError(f'dataset {name!r}: inputs must be one of {", ".join(INPUT_KINDS)} '
                        f'or None, got {inputs!r}')
  _add(DATASET, name, loader, inputs=inputs)


def dataset_loader(name: str) -> Callable[..., Any]:
  """The loader of dataset `name` (imports a built-in's module)."""
  return _entry(DATASET, name).resolve()


def dataset_inputs(name: str) -> str | None:
  """The input kind of dataset `name`: '1d', 'image' or None (not declared)."""
  return _entry(DATASET, name).options['inputs']


# ----------------------------------------------------------------------------- pruning


def register_pruning_method(name: str, fn: Callable[..., Any] | str, scope: str = 'layerwise',
                            needs_key: bool = False) -> None:
  """Registers the scoring function `fn(weights, key) -> scores` as pruning method `name`.

  Args:
    name: the `prune.method` a config uses.
    fn: the callable (or 'module:attribute'), see the module docstring.
    scope: 'layerwise' (every leaf pruned to the density) or 'global' (the pool is).
    needs_key: `fn` gets a PRNG key (the member's pruning key) instead of None.
  """
  if scope not in SCOPES:
    raise RegistryError(f'pruning method {name!r}: scope must be one of {", ".join(SCOPES)}, '
                        f'got {scope!r}')
  _add(PRUNING_METHOD, name, fn, scope=scope, needs_key=bool(needs_key))


def pruning_method(name: str) -> PruningMethod:
  """The scoring function of pruning method `name` with its scope and key need."""
  entry = _entry(PRUNING_METHOD, name)
  return PruningMethod(name, entry.resolve(), entry.options['scope'],
                       entry.options['needs_key'])


# ----------------------------------------------------------------------------- knobs


@dataclasses.dataclass(frozen=True)
class Knob:
  """A temperature knob: one dense-training hyperparameter whose values are the temperatures.

  Attributes:
    name: the `temperature.knob` a config uses (and results.csv's `knob` column).
    larger_is_hotter: True where a larger value means noisier dense training (lr), False where
      a smaller one does (epochs, batch size).
    increase: what "increase the temperature" means, in words ('raise the learning rate').
    decrease: what "decrease the temperature" means ('lower the learning rate').
    label: the temperature axis label of figures ('Learning rate').
    sets: how a member's value sets its training (see the module docstring): CHECKPOINTS,
      PROGRAMS, a tuple of Hparams field names, or `apply(fields, value) -> fields` (a callable
      or 'module:attribute'); None for a knob known from a workdir's record only.
    check: `check(config, values)` raising ValueError (one line), or None.
    loss: `loss(logits, labels, hparams) -> scalar` for dense training, or None (cross-entropy).
    baselines: (method name, value) pairs prunephase-select also scores ('plain SGD (rho=0)').
    origin: the file that registered it (a file registering again replaces its entry).
  """

  name: str
  larger_is_hotter: bool
  increase: str
  decrease: str
  label: str
  sets: Any = None
  check: Any = None
  loss: Any = None
  baselines: tuple[tuple[str, float], ...] = ()
  origin: str = dataclasses.field(default='', compare=False)

  @property
  def checkpoints(self) -> bool:
    """The temperatures are checkpoints of one run (the epoch knob)."""
    return self.sets == CHECKPOINTS

  @property
  def programs(self) -> bool:
    """One dense program per value (the batch-size knob)."""
    return self.sets == PROGRAMS

  def hot_to_cold(self, values) -> list[float]:
    """`values` ordered from the hottest to the coldest."""
    return sorted(values, reverse=self.larger_is_hotter)

  def apply(self, fields: dict[str, float], value: float) -> dict[str, float]:
    """One member's training fields (lr, weight_decay, sam_rho, extras) with its knob value."""
    if self.sets is None or self.checkpoints or self.programs:
      raise RegistryError(f'knob {self.name!r} sets no per-member training field')
    fields = dict(fields)
    if isinstance(self.sets, tuple):
      return {**fields, **{name: float(value) for name in self.sets}}
    updated = _resolve(self.sets)(fields, float(value))
    return fields if updated is None else dict(updated)

  def check_config(self, config, values) -> None:
    """Runs the knob's config check; ValueError (one line) for a config it cannot run."""
    if self.sets is None:
      raise RegistryError(f'knob {self.name!r} is known from a workdir record only; load the '
                          'config file that registers it')
    if self.check is not None:
      _resolve(self.check)(config, tuple(values))

  def loss_fn(self) -> Callable[..., Any] | None:
    """The dense training loss hook, or None (plain cross-entropy)."""
    return None if self.loss is None else _resolve(self.loss)

  def record(self) -> dict[str, Any]:
    """The plain data of the entry (knob.json): enough to read and advise on a sweep."""
    return {'name': self.name, 'larger_is_hotter': self.larger_is_hotter,
            'increase': self.increase, 'decrease': self.decrease, 'label': self.label,
            'baselines': [list(b) for b in self.baselines]}


def _resolve(target) -> Callable[..., Any]:
  return target if callable(target) else Entry('', target, {}).resolve()


def _caller_file() -> str:
  frame = sys._getframe(2)  # pylint: disable=protected-access  # register_knob's caller.
  return frame.f_code.co_filename


def register_knob(name: str, *, larger_is_hotter: bool, increase: str, decrease: str,
                  label: str, sets: Any, check: Any = None, loss: Any = None,
                  baselines: tuple[tuple[str, float], ...] = ()) -> Knob:
  """Registers temperature knob `name` (fields: `Knob`); returns the entry.

  `sets`: CHECKPOINTS, PROGRAMS, a field name or tuple of them, or `apply(fields, value)`;
  `check`, `loss`, `apply`: callables or 'module:attribute' strings (see the module docstring).
  """
  if not isinstance(name, str) or not name or name != name.strip() or any(
      c in name for c in ',=/ '):
    raise RegistryError(f'a knob name must be a non-empty string without commas, "=", "/" or '
                        f'spaces, got {name!r}')
  if isinstance(sets, str) and sets not in (CHECKPOINTS, PROGRAMS) and ':' not in sets:
    sets = (sets,)
  if isinstance(sets, (list, tuple)):
    sets = tuple(sets)
    if not sets or not all(isinstance(f, str) and f.isidentifier() for f in sets):
      raise RegistryError(f'knob {name!r}: sets needs Hparams field names, got {sets!r}')
  elif not (callable(sets) or isinstance(sets, str)):
    raise RegistryError(f'knob {name!r}: sets must be {CHECKPOINTS!r}, {PROGRAMS!r}, field '
                        f'names or an apply(fields, value) callable, got {sets!r}')
  for hook, value in (('check', check), ('loss', loss)):
    if not (value is None or callable(value) or (isinstance(value, str) and ':' in value)):
      raise RegistryError(f'knob {name!r}: {hook} must be a callable, got {value!r}')
  for field, text in (('increase', increase), ('decrease', decrease), ('label', label)):
    if not isinstance(text, str) or not text.strip() or '\n' in text:
      raise RegistryError(f'knob {name!r}: {field} must be one line of words, got {text!r}')
  return _add_knob(Knob(name, bool(larger_is_hotter), increase, decrease, label, sets, check,
                        loss, tuple((str(m), float(v)) for m, v in baselines),
                        origin=_caller_file()))


def _add_knob(entry: Knob) -> Knob:
  old = _KNOBS.get(entry.name)
  if old is not None and old.sets is not None and old.origin != entry.origin:
    raise RegistryError(f'knob {entry.name!r} is already registered (by {old.origin}); '
                        'choose another name')
  _KNOBS[entry.name] = entry
  return entry


def knob(name: str) -> Knob:
  """The entry of knob `name`; RegistryError naming the choices if there is none."""
  check(KNOB, name)
  return _KNOBS[name]


def add_recorded_knob(record: dict[str, Any]) -> None:
  """Makes a knob known from its record (`Knob.record`, a workdir's knob.json) unless it is
  registered: enough to order, plot and advise on a finished sweep, not to train one."""
  try:
    entry = Knob(str(record['name']), bool(record['larger_is_hotter']), str(record['increase']),
                 str(record['decrease']), str(record['label']),
                 baselines=tuple((str(m), float(v)) for m, v in record.get('baselines', ())))
  except (KeyError, TypeError, ValueError) as error:
    raise RegistryError(f'unreadable knob record {record!r} ({error!r})') from None
  _KNOBS.setdefault(entry.name, entry)


# ----------------------------------------------------------------------------- built-ins

TFDS_DATASETS = ('cifar10', 'cifar100', 'svhn_cropped', 'mnist', 'fashion_mnist')

register_model('mlp', 'prunephase.models:mlp_factory')
register_model('cnn1d', 'prunephase.models:cnn1d_factory', inputs='1d')
for _depth in (20, 56):
  register_model(f'preresnet{_depth}', 'prunephase.models:preresnet_factory', inputs='image')
for _depth in (11, 16):
  register_model(f'vgg{_depth}', 'prunephase.models:vgg_factory', inputs='image')
register_dataset('mnist1d', 'prunephase.data:mnist1d_loader', inputs='1d')
for _name in TFDS_DATASETS:
  register_dataset(_name, 'prunephase.tfds_data:tfds_loader', inputs='image')
register_pruning_method('uniform', 'prunephase.pruning:magnitude_scores')
register_pruning_method('global', 'prunephase.pruning:magnitude_scores', scope='global')
register_pruning_method('lamp', 'prunephase.pruning:lamp_pool_scores', scope='global')
register_pruning_method('random', 'prunephase.pruning:random_scores', needs_key=True)

register_knob('epochs', larger_is_hotter=False,
              increase='train fewer epochs (an earlier checkpoint)', decrease='train more epochs',
              label='Training epochs', sets=CHECKPOINTS, check='prunephase.knobs:check_epochs')
register_knob('batch_size', larger_is_hotter=False, increase='use a smaller batch',
              decrease='use a larger batch', label='Batch size', sets=PROGRAMS,
              check='prunephase.knobs:check_batch_size')
register_knob('lr', larger_is_hotter=True, increase='raise the learning rate',
              decrease='lower the learning rate', label='Learning rate', sets='lr',
              check='prunephase.knobs:check_positive')
register_knob('weight_decay', larger_is_hotter=True, increase='raise the weight decay',
              decrease='lower the weight decay', label='Weight decay', sets='weight_decay')
register_knob('sam_rho', larger_is_hotter=True, increase='raise SAM rho',
              decrease='lower SAM rho', label='SAM rho', sets='sam_rho',
              check='prunephase.knobs:check_sam_rho',
              baselines=(('SAM default rho=0.05', 0.05), ('plain SGD (rho=0)', 0.0)))

# Metrics are entries of `prunephase.metrics` (standard library only), re-exported here:
# `registry.register_metric(name, on=..., columns=[metrics.Column(...)], compute=...)`.
# pylint: disable=g-import-not-at-top,wrong-import-position,unused-import
from prunephase.metrics import Column as MetricColumn
from prunephase.metrics import metric
from prunephase.metrics import MetricError
from prunephase.metrics import register_metric
