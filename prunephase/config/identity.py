"""Which config fields decide which stage's artifacts: the identity of each pipeline branch.

A workdir holds one dense family and, beside each other, any number of branches below it:

  dense    decided by dataset, model, dense, temperature (and every section not named below),
           less the dense fields the chosen knob leaves unused (`unused_dense_fields`)
  prune    + prune                  -> directory prune-<method>-<hash>/
  retrain  + retrain                -> prune-.../retrain-<mode>-<hash>/
  measure  + measure                -> prune-.../retrain-.../measure-<hash>/

so a re-run with another `prune.method`, `retrain.*` or `measure.*` reuses everything upstream
and writes a new branch (OpenLTH names its runs by their hyperparameters in the same way). A change
of a dense field would change finished dense models and is refused with the fields named.
Fields that change only speed, memory or where inputs are read from decide nothing.
Nothing here imports outside the standard library.
"""

import hashlib
import json
from typing import Any

from prunephase import knobs
from prunephase import metrics

# Fields of deciding sections that change speed, memory or file locations, never a stored value
# (beyond float rounding: `point_batching` maps or vmaps the same computation).
# The measure fields' rules are the metric entries' (`metrics.identity_rules`), added below.
SPEED_ONLY = ('dataset.data_dir', 'dense.resume_every', 'dense.init_from',
              'retrain.resume_every')
# Sections that decide no artifact: labels, logging, devices and dispatch, report layout.
# `seeds` (adaptive dense seeds) and `search` (adaptive search of the grid) add artifacts under
# keys of their own and change none.
FREE_SECTIONS = ('regimes', 'report', 'tensorboard', 'mesh', 'distributed', 'cpu_devices',
                 'train', 'seeds', 'search')
BRANCH_STAGES = ('prune', 'retrain', 'measure')  # Each a section of its own, in pipeline order.
# Fields that decide nothing at this value (the behaviour before the field existed), so a
# workdir made before it was added keeps its branch names.
NEUTRAL = {'prune.schedule': 'one_shot'}
# Fields that decide something only when another field has a value.
ONLY_WHEN = {'prune.rate_per_level': ('prune.schedule', 'iterative'),
             'prune.seed': ('prune.method', 'random'),
             'retrain.rewind_epoch': ('retrain.mode', 'weight_rewinding'),
             'retrain.finetune_lr': ('retrain.mode', 'finetune')}
ABSENT = '<absent>'


def flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  """{'a.b': value} for a nested dict (lists and tuples compare as lists)."""
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(flatten(value, f'{prefix}{key}.'))
    return out
  return {prefix[:-1]: list(tree) if isinstance(tree, tuple) else tree}


def _as_dict(config) -> dict:
  return config.to_dict() if hasattr(config, 'to_dict') else dict(config)


def stage_of(field: str) -> str | None:
  """'dense', a branch stage, or None (decides nothing) for a dotted field name."""
  section = field.split('.')[0]
  if section in FREE_SECTIONS or field in SPEED_ONLY or field in metrics.identity_rules()[2]:
    return None
  return section if section in BRANCH_STAGES else 'dense'


def fields(config, stage: str) -> dict[str, Any]:
  """The flattened fields that decide `stage`'s own artifacts (not its upstream ones), without
  those that decide nothing at their value (`NEUTRAL`, `ONLY_WHEN`)."""
  flat = flatten(_as_dict(config))
  neutral, only_when, _ = metrics.identity_rules()
  neutral, only_when = {**NEUTRAL, **neutral}, {**ONLY_WHEN, **only_when}

  def decides(key, value):
    if key in neutral and value == neutral[key]:
      return False
    if key in only_when:
      other, wanted = only_when[key]
      return flat.get(other) == wanted
    return True

  return {k: v for k, v in sorted(flat.items()) if stage_of(k) == stage and decides(k, v)}


def branch_name(config, stage: str) -> str:
  """Directory name of a branch stage, e.g. 'prune-uniform-1f3a9c2e' or 'measure-0b7d41aa'.

  The hash covers every deciding field of the stage; the readable part is the one field that
  tells branches apart at a glance.
  """
  decided = fields(config, stage)
  digest = hashlib.sha1(json.dumps(decided, sort_keys=True, default=str).encode())
  label = {'prune': decided.get('prune.method'), 'retrain': decided.get('retrain.mode')}.get(stage)
  return '-'.join(str(part) for part in (stage, label, digest.hexdigest()[:8]) if part)


def branch_path(config) -> tuple[str, str, str]:
  """(prune, retrain, measure) directory names, each nested in the one before."""
  return tuple(branch_name(config, stage) for stage in BRANCH_STAGES)


def unused_dense_fields(flat: dict[str, Any]) -> set[str]:
  """The dense fields that decide nothing for a flattened config's knob and optimizer.

  A knob that sets per-member training fields (`knobs.Knob.sets`, e.g. ('lr',)) overrides
  the dense section's value of each; the batch-size knob (one program per value) trains every
  value for `dense.iterations` steps, so `dense.batch_size` and `dense.epochs` decide nothing,
  while every other knob's run length is `dense.epochs` and `dense.iterations` decides nothing;
  `dense.sam_rho` decides nothing unless the optimizer is SAM. A knob known only from a
  workdir's record (or an `apply` function) leaves every field deciding.
  """
  name = flat.get('temperature.knob')
  entry = knobs.knob(name) if name in knobs.names() else None
  unused = set()
  if entry is not None and entry.sets is not None:
    if entry.programs:
      unused |= {'dense.batch_size', 'dense.epochs'}
    else:
      unused.add('dense.iterations')
    if isinstance(entry.sets, tuple):
      unused |= {f'dense.{field}' for field in entry.sets}
  if flat.get('dense.optimizer') != 'sam':
    unused.add('dense.sam_rho')
  return unused


def changed_dense_fields(old, new) -> list[str]:
  """'field: old -> new' for every changed field that decides the dense models (in either
  config: a field unused by both configs' knob and optimizer may change freely)."""
  old_flat, new_flat = flatten(_as_dict(old)), flatten(_as_dict(new))
  unused = unused_dense_fields(old_flat) & unused_dense_fields(new_flat)
  changed = []
  for key in sorted(set(old_flat) | set(new_flat)):
    if key in unused:
      continue
    if stage_of(key) == 'dense' and old_flat.get(key, ABSENT) != new_flat.get(key, ABSENT):
      changed.append(f'{key}: {old_flat.get(key, ABSENT)} -> {new_flat.get(key, ABSENT)}')
  return changed
