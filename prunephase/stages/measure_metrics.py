"""The measure stage's step for the metric entries with a compute function (`prunephase.metrics`,
e.g. examples/own_metric.py), over one temperature's retrained population.

Every retrained member's eval-mode logits on the test set are computed once (vmapped over
members as the CKA outputs are); each metric then runs jitted and vmapped over the seed pairs
(on='pairs') or the members (on='members'), in chunks of `measure.pairs_per_call` pairs (twice
as many members) sharded over the mesh's member axis. Deterministic: no randomness.
"""

from typing import Any

import jax
import numpy as np

from prunephase import metrics
from prunephase import population
from prunephase import train_steps as train_lib
from prunephase.stages import context
from prunephase.stages import measure_hessian_curve

_PROGRAMS: dict[Any, Any] = {}


def _test_logits_fn(model, members_per_chunk: int | None):
  key = ('logits', model, members_per_chunk)
  if key not in _PROGRAMS:
    def logits(params, stats, dataset):
      return train_lib.predict(model, params, stats, dataset, dataset.x_test)
    _PROGRAMS[key] = jax.jit(population.vmap_members(logits, (0, 0, None), members_per_chunk))
  return _PROGRAMS[key]


def _metric_fn(entry: metrics.Metric, settings: dict[str, Any]):
  """The entry's compute function, vmapped over pairs (or members) and jitted; labels shared."""
  key = (entry.name, entry.origin, repr(sorted(settings.items())))
  if key not in _PROGRAMS:
    compute = entry.compute_fn()
    if entry.on == 'pairs':
      fn = jax.vmap(lambda a, b, y: compute(a, b, y, settings), in_axes=(0, 0, None))
    else:
      fn = jax.vmap(lambda logits, y: compute(logits, y, settings), in_axes=(0, None))
    _PROGRAMS[key] = jax.jit(fn)
  return _PROGRAMS[key]


def _checked(entry: metrics.Metric, values: dict[str, np.ndarray], count: int
             ) -> dict[str, np.ndarray]:
  """The values of the entry's columns, each (count,); MetricError (one line) otherwise."""
  per = 'pair' if entry.on == 'pairs' else 'member'
  wanted = sorted(c.name for c in entry.columns if c.per == per)
  if not isinstance(values, dict) or sorted(values) != wanted:
    got = sorted(values) if isinstance(values, dict) else type(values).__name__
    raise metrics.MetricError(f'metric {entry.name!r} returned {got}; its {per} columns are '
                                 f'{wanted}')
  for name, value in values.items():
    if np.shape(value) != (count,):
      raise metrics.MetricError(f'metric {entry.name!r}: column {name!r} must be one scalar '
                                   f'per {per}, got shape {np.shape(value)[1:]}')
  return values


def pair_columns(sweep: context.Sweep, states, pairs: list[dict[str, Any]]
                 ) -> list[dict[str, Any]]:
  """The per-pair values the computed metrics add to a measurement's pair rows (same order as
  `pairs`): a pair column's value, or a member column's `<name>_a` and `<name>_b`."""
  config = sweep.config.measure
  out = [{} for _ in pairs]
  entries = metrics.computed(config)
  if not entries:
    return out
  chunk = population.forward_members_per_chunk(sweep.members_per_chunk)
  logits = _test_logits_fn(sweep.model, chunk)(states.params, states.batch_stats, sweep.dataset)
  labels = population.replicate(sweep.mesh, sweep.dataset.y_test)
  index_a = np.array([p['index_a'] for p in pairs])
  index_b = np.array([p['index_b'] for p in pairs])
  size = int(config.pairs_per_call) or len(pairs)
  chunked = measure_hessian_curve._chunked  # pylint: disable=protected-access
  for entry in entries:
    fn = _metric_fn(entry, entry.settings(config))
    if entry.on == 'pairs':
      values = _checked(entry, chunked(sweep, lambda a, b, f=fn: f(a, b, labels), len(pairs),
                                       size, logits[index_a], logits[index_b]), len(pairs))
      for p, row in enumerate(out):
        row.update({k: float(v[p]) for k, v in values.items()})
    else:
      count = int(logits.shape[0])
      values = _checked(entry, chunked(sweep, lambda x, f=fn: f(x, labels), count,
                                       2 * size, logits), count)
      for row, pair in zip(out, pairs):
        for k, v in values.items():
          row.update({f'{k}_a': float(v[pair['index_a']]), f'{k}_b': float(v[pair['index_b']])})
  return out
