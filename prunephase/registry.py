"""Models, datasets and pruning methods, looked up by name.

A config names its model (`model.name`), dataset (`dataset.name`) and pruning method
(`prune.method`); prunephase finds each here. Built-ins are registered as 'module:attribute'
strings and imported on first lookup, so this module (and config validation, and `prunephase
--help`) imports nothing outside the standard library. A user registers a callable, e.g. at the
top of a config file (`examples/own_model.py`): the config file is imported in the process that
runs the sweep, before the config is validated. The other entries a config file may register
have their own modules: temperature knobs `prunephase.knobs` (`examples/own_knob.py`), metrics
`prunephase.metrics` (`examples/own_metric.py`).

  registry.register_model('tiny_mlp', TinyMLP.from_config, inputs=('1d',))
  registry.register_dataset('my_arrays', lambda dataset_config: {...}, inputs='1d')
  registry.register_pruning_method('magnitude_squared', lambda ws, key: [w * w for w in ws])

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

Every error is a one-line `RegistryError` (a ValueError) naming the choices. Registering a
name twice is an error, except from the same place (the same module and qualified name: a
config file loaded again, a notebook cell run again), which replaces the entry.
"""

from collections.abc import Callable
import dataclasses
import importlib
from typing import Any

MODEL = 'model'
DATASET = 'dataset'
PRUNING_METHOD = 'pruning method'
INPUT_KINDS = ('1d', 'image')
SCOPES = ('layerwise', 'global')


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
  """Every registered name of `kind` (MODEL, DATASET or PRUNING_METHOD), built-ins first, then
  the user's in registration order (the knobs' names: `prunephase.knobs.names`)."""
  if kind not in _ENTRIES:
    raise RegistryError(f'unknown registry {kind!r}; choose one of {", ".join(_ENTRIES)}')
  return tuple(_ENTRIES[kind])


def check(kind: str, name: str) -> None:
  """RegistryError "unknown <kind> 'x'; choose one of ..." unless `name` is registered."""
  choices = names(kind)
  if name not in choices:
    raise RegistryError(f'unknown {kind} {name!r}; choose one of {", ".join(choices)}')


def unregister(kind: str, name: str) -> None:
  """Removes a user's entry (tests, notebooks); built-ins cannot be removed."""
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
