"""The built-in temperature knobs' config checks, and a dense member's training fields.

The knobs themselves are entries of `prunephase.registry` (`register_knob`); their checks live
here as 'module:attribute' targets. A check gets the config and the grid and raises ValueError
with a one-line message (validation turns it into a ConfigError). Nothing here imports outside
the standard library, so `prunephase --help` and config validation import no JAX.
"""

from collections.abc import Sequence
from prunephase import registry

# The per-member fields of `train.Hparams` and where a dense member's value comes from when
# the knob does not set it (the dense section). Any other field a knob sets is an extra
# (`Hparams.extra[name]`).
HPARAM_FIELDS = ('lr', 'weight_decay', 'sam_rho')


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
  knob = config.temperature.knob
  _require(all(v > 0 for v in values),
           f'temperature.grid ({knob}) must be > 0, got {tuple(values)}')


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
  entry = registry.knob(config.temperature.knob)
  base = {name: float(config.dense[name]) for name in HPARAM_FIELDS}
  members = [base if entry.checkpoints or entry.programs else entry.apply(base, t)
             for t in temperatures]
  names = list(dict.fromkeys(name for member in members for name in member))
  for member in members:
    missing = [n for n in names if n not in member]
    if missing:
      raise registry.RegistryError(f'knob {entry.name!r} set {", ".join(missing)} for some '
                                   'members only; set every field for every member')
  return {name: [float(member[name]) for member in members] for name in names}

