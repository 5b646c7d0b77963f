"""Temperature knobs, looked up by name: the entry, registering one, and the built-ins.

A config names its temperature knob (`temperature.knob`): one dense-training hyperparameter
whose values are the temperatures. prunephase finds its entry (`Knob`) here. The five built-ins
(epochs, batch_size, lr, weight_decay, sam_rho) are registered at the bottom with their config
checks; a user registers a knob the same way, e.g. at the top of a config file
(`examples/own_knob.py`), which is imported in the process that runs the sweep:

  knobs.register_knob('label_smoothing', larger_is_hotter=True, increase='smooth the labels
                      more', ..., sets='label_smoothing', loss=smoothed_cross_entropy)

Contract: `register_knob(name, larger_is_hotter, increase, decrease, label, sets, check=None,
  loss=None)`, fields in `Knob`. `sets`: CHECKPOINTS (epochs), PROGRAMS (batch size),
  `train.Hparams` field names (any name but lr, weight_decay, sam_rho is a per-member value in
  `Hparams.extra[name]`) or `apply(fields, value) -> fields` on a member's dict of them.
  `loss(logits, labels, hparams) -> scalar` replaces the dense cross-entropy (logits (batch,
  classes) float32, labels (batch,) int32, this member's Hparams; under `jax.jit`).
  `check(config, values)` raises ValueError, one line, for a config the knob cannot run
  (validation turns it into a ConfigError). The workdir records the plain data (knob.json): a
  finished sweep is read without registering (`add_recorded_knob`).

Every error is a one-line `registry.RegistryError` (a ValueError) naming the choices.
Registering a name twice is an error, except from the same file (a config file loaded again),
which replaces the entry. Nothing here imports outside the standard library, so `prunephase
--help` and config validation import no JAX.
"""

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import sys
from typing import Any

from prunephase import registry

CHECKPOINTS = 'checkpoints'  # Knob.sets: the temperatures are checkpoints of one run.
PROGRAMS = 'programs'  # Knob.sets: one dense program per value (its shapes change).
_KIND = 'temperature.knob'  # What the errors call a knob: the config field that names it.

# The per-member fields of `train.Hparams` and where a dense member's value comes from when
# the knob does not set it (the dense section). Any other field a knob sets is an extra
# (`Hparams.extra[name]`).
HPARAM_FIELDS = ('lr', 'weight_decay', 'sam_rho')


# ----------------------------------------------------------------------------- entries


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
      raise registry.RegistryError(f'knob {self.name!r} sets no per-member training field')
    fields = dict(fields)
    if isinstance(self.sets, tuple):
      return {**fields, **{name: float(value) for name in self.sets}}
    updated = _resolve(self.sets)(fields, float(value))
    return fields if updated is None else dict(updated)

  def check_config(self, config, values) -> None:
    """Runs the knob's config check; ValueError (one line) for a config it cannot run."""
    if self.sets is None:
      raise registry.RegistryError(f'knob {self.name!r} is known from a workdir record only; '
                                   'load the config file that registers it')
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


_KNOBS: dict[str, Knob] = {}


def _resolve(target) -> Callable[..., Any]:
  return target if callable(target) else registry.Entry('', target, {}).resolve()


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
    raise registry.RegistryError(f'a knob name must be a non-empty string without commas, "=", '
                                 f'"/" or spaces, got {name!r}')
  if isinstance(sets, str) and sets not in (CHECKPOINTS, PROGRAMS) and ':' not in sets:
    sets = (sets,)
  if isinstance(sets, (list, tuple)):
    sets = tuple(sets)
    if not sets or not all(isinstance(f, str) and f.isidentifier() for f in sets):
      raise registry.RegistryError(f'knob {name!r}: sets needs Hparams field names, got '
                                   f'{sets!r}')
  elif not (callable(sets) or isinstance(sets, str)):
    raise registry.RegistryError(f'knob {name!r}: sets must be {CHECKPOINTS!r}, {PROGRAMS!r}, '
                                 f'field names or an apply(fields, value) callable, got {sets!r}')
  for hook, value in (('check', check), ('loss', loss)):
    if not (value is None or callable(value) or (isinstance(value, str) and ':' in value)):
      raise registry.RegistryError(f'knob {name!r}: {hook} must be a callable, got {value!r}')
  for field, text in (('increase', increase), ('decrease', decrease), ('label', label)):
    if not isinstance(text, str) or not text.strip() or '\n' in text:
      raise registry.RegistryError(f'knob {name!r}: {field} must be one line of words, got '
                                   f'{text!r}')
  return _add_knob(Knob(name, bool(larger_is_hotter), increase, decrease, label, sets, check,
                        loss, tuple((str(m), float(v)) for m, v in baselines),
                        origin=_caller_file()))


def _add_knob(entry: Knob) -> Knob:
  old = _KNOBS.get(entry.name)
  if old is not None and old.sets is not None and old.origin != entry.origin:
    raise registry.RegistryError(f'knob {entry.name!r} is already registered (by {old.origin}); '
                                 'choose another name')
  _KNOBS[entry.name] = entry
  return entry


def names() -> tuple[str, ...]:
  """Every registered knob name: the built-ins first, then the user's in registration order."""
  return tuple(_KNOBS)


def check_name(name: str) -> None:
  """RegistryError "unknown temperature.knob 'x'; choose one of ..." unless `name` is a knob."""
  choices = names()
  if name not in choices:
    raise registry.RegistryError(f'unknown {_KIND} {name!r}; choose one of {", ".join(choices)}')


def knob(name: str) -> Knob:
  """The entry of knob `name`; RegistryError naming the choices if there is none."""
  check_name(name)
  return _KNOBS[name]


def unregister(name: str) -> None:
  """Removes a user's knob (tests, notebooks); built-ins cannot be removed."""
  check_name(name)
  if _KNOBS[name].origin == __file__:
    raise registry.RegistryError(f'{_KIND} {name!r} is built in and cannot be unregistered')
  del _KNOBS[name]


def add_recorded_knob(record: dict[str, Any]) -> None:
  """Makes a knob known from its record (`Knob.record`, a workdir's knob.json) unless it is
  registered: enough to order, plot and advise on a finished sweep, not to train one."""
  try:
    entry = Knob(str(record['name']), bool(record['larger_is_hotter']), str(record['increase']),
                 str(record['decrease']), str(record['label']),
                 baselines=tuple((str(m), float(v)) for m, v in record.get('baselines', ())))
  except (KeyError, TypeError, ValueError) as error:
    raise registry.RegistryError(f'unreadable knob record {record!r} ({error!r})') from None
  _KNOBS.setdefault(entry.name, entry)


# ----------------------------------------------------------------------------- built-ins' checks


def _require(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def check_epochs(config, values: Sequence[float]) -> None:
  """Epochs are whole numbers in [1, dense.epochs]: checkpoints of one run."""
  _require(all(float(v).is_integer() and 1 <= v <= config.dense.epochs for v in values),
           f'temperature.grid (epochs) must be whole numbers in [1, dense.epochs='
           f'{config.dense.epochs}], got {tuple(values)}')


def check_batch_size(config, values: Sequence[float]) -> None:
  """Batch sizes are whole numbers >= 1 and share one step budget (`dense.iterations`)."""
  _require(all(float(v).is_integer() and v >= 1 for v in values),
           f'temperature.grid (batch sizes) must be whole numbers >= 1, got {tuple(values)}')
  _require(config.dense.iterations > 0,
           'temperature.knob=batch_size needs dense.iterations > 0 (a fixed step budget)')


def check_positive(config, values: Sequence[float]) -> None:
  """Every value > 0 (a learning rate of 0 trains nothing)."""
  name = config.temperature.knob
  _require(all(v > 0 for v in values),
           f'temperature.grid ({name}) must be > 0, got {tuple(values)}')


def check_sam_rho(config, values: Sequence[float]) -> None:
  """SAM's radius is a temperature only when the dense optimizer is SAM."""
  del values
  _require(config.dense.optimizer == 'sam', 'temperature.knob=sam_rho needs dense.optimizer=sam')


def dense_member_fields(config, temperatures: Sequence[float]) -> dict[str, list[float]]:
  """Per-member training fields of a dense group, one column per field.

  Args:
    config: the sweep's config (`dense` section: lr, weight_decay, sam_rho).
    temperatures: the knob's value of each member (M,).

  Returns:
    {field: M floats}: lr, weight_decay and sam_rho (the dense section's values unless the knob
    sets them) and every extra field the knob sets (`train.Hparams.extra`).
  """
  entry = knob(config.temperature.knob)
  base = {name: float(config.dense[name]) for name in HPARAM_FIELDS}
  members = [base if entry.checkpoints or entry.programs else entry.apply(base, t)
             for t in temperatures]
  fields = list(dict.fromkeys(name for member in members for name in member))
  for member in members:
    missing = [n for n in fields if n not in member]
    if missing:
      raise registry.RegistryError(f'knob {entry.name!r} set {", ".join(missing)} for some '
                                   'members only; set every field for every member')
  return {name: [float(member[name]) for member in members] for name in fields}


# ----------------------------------------------------------------------------- built-ins

register_knob('epochs', larger_is_hotter=False,
              increase='train fewer epochs (an earlier checkpoint)', decrease='train more epochs',
              label='Training epochs', sets=CHECKPOINTS, check=check_epochs)
register_knob('batch_size', larger_is_hotter=False, increase='use a smaller batch',
              decrease='use a larger batch', label='Batch size', sets=PROGRAMS,
              check=check_batch_size)
register_knob('lr', larger_is_hotter=True, increase='raise the learning rate',
              decrease='lower the learning rate', label='Learning rate', sets='lr',
              check=check_positive)
register_knob('weight_decay', larger_is_hotter=True, increase='raise the weight decay',
              decrease='lower the weight decay', label='Weight decay', sets='weight_decay')
register_knob('sam_rho', larger_is_hotter=True, increase='raise SAM rho',
              decrease='lower SAM rho', label='SAM rho', sets='sam_rho', check=check_sam_rho,
              baselines=(('SAM default rho=0.05', 0.05), ('plain SGD (rho=0)', 0.0)))
