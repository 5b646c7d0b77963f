"""The fixed names a config may use, and the temperature order of a knob.

The one place these facts are stated: the kernel modules (`cka`, `data`, `landscape`, ...)
read their name tuples from here, so a config can be validated without importing them (and
JAX). Models, datasets and pruning methods are registered in `prunephase.registry`, knobs in
`prunephase.knobs` (users can add their own); `hot_to_cold` asks the knob's entry. Importing
this module imports nothing outside the standard library.
"""

from prunephase import knobs
from prunephase import metrics

OPTIMIZERS = ('sgd', 'sam')
RETRAIN_MODES = ('lr_rewinding', 'finetune', 'weight_rewinding')
PRUNE_SCHEDULES = ('one_shot', 'iterative')
IMP_METHODS = ('uniform', 'global', 'lamp')  # Iterative pruning ranks by magnitude (or LAMP).
AUGMENTATIONS = ('none', 'crop_flip')
POINT_BATCHING = ('auto', 'vmap', 'map')
CKA_ESTIMATORS = ('biased', 'unbiased')
REGIME_RULES = ('transition', 'threshold')
CONFIDENCE_ESTIMATORS = ('replicate', 'bootstrap')  # prunephase/confidence.py
STEPS_PER_CALL = ('auto', 'epoch')  # ... or a whole number of steps >= 1.
MEMBERS_PER_CHUNK = ('auto',)  # ... or a whole number of members >= 0 (0 = all at once).


def panels() -> tuple[str, ...]:
  """Phase-diagram panels (`report.panels`): the metric entries' panels (`metrics.panels`),
  cell means of results.csv columns plus the test error minus its column's minimum."""
  return tuple(metrics.panels())


def panel_needs() -> dict[str, str]:
  """{panel: the measure switch it needs} (a switched metric's panels: hessian, ...)."""
  return metrics.panel_needs()


def _word_or_count(value: str | int, words: tuple[str, ...], minimum: int) -> str | int | None:
  """A config value ('auto', 4 or '4') as one of `words` or an int >= `minimum`; None if not."""
  if isinstance(value, str) and value.strip().isdigit():
    value = int(value)
  if isinstance(value, str) and value in words:
    return value
  if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
    return value
  return None


def parse_steps_per_call(value: str | int) -> str | int:
  """'auto', 'epoch' or an int >= 1 from a config value such as 'auto', 'epoch', 4 or '4'."""
  parsed = _word_or_count(value, STEPS_PER_CALL, 1)
  if parsed is None:
    raise ValueError(f"train.steps_per_call must be 'auto', 'epoch' or a whole number >= 1, "
                     f'got {value!r}')
  return parsed


def parse_members_per_chunk(value: str | int) -> str | int:
  """'auto' or an int >= 0 from a config value such as 'auto', 0, 2 or '2'."""
  parsed = _word_or_count(value, MEMBERS_PER_CHUNK, 0)
  if parsed is None:
    raise ValueError("train.members_per_chunk must be 'auto' or a whole number >= 0 "
                     f'(0 = all members at once), got {value!r}')
  return parsed


def hot_to_cold(knob: str, values) -> list[float]:
  """Temperature values ordered from the hottest to the coldest (the knob's entry says which
  way is hotter; RegistryError for an unknown knob)."""
  return knobs.knob(knob).hot_to_cold(values)
