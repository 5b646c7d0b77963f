"""The rows of results.csv read back from a store's measure and prune artifacts (no dataset,
no model): one row per (temperature, density, dense seed, seed pair)."""

from typing import Any

import numpy as np

from prunephase import metrics


def result_columns(rows: list[dict[str, Any]]) -> list[str]:
  """results.csv's columns: every metric entry's (`prunephase.metrics`), a switched metric's
  only where some row has them (it was measured)."""
  return metrics.result_columns() + [c for c in metrics.optional_result_columns()
                                     if any(c in row for row in rows)]


def adds_seeds(config) -> bool:
  """Whether a config adds dense seeds (`seeds.adaptive`; absent before that field existed)."""
  return bool((config.get('seeds') or {}).get('adaptive', False))


def searches(config) -> bool:
  """Whether a config searches the grid adaptively (`search.mode`; absent before that field
  existed)."""
  return str((config.get('search') or {}).get('mode', 'grid')) == 'adaptive'


def store_rows(store, with_curves: bool = False) -> list[dict[str, Any]]:
  """The rows of one store's own dense seeds and temperatures (as `stages.report.result_rows`)."""
  rows = []
  seed_index = {s: i for i, s in enumerate(store.dense_seeds)}
  density_index = {d: j for j, d in enumerate(store.densities)}
  for temperature in store.temperatures:
    measured = store.measurement(temperature)
    masks = store.masks(temperature, unflatten=False)
    for pair in measured['pairs']:
      s, d = seed_index[pair['dense_seed']], density_index[float(pair['density'])]
      curve = {k: np.asarray(v, float) for k, v in pair['curve'].items()}
      row = {k: v for k, v in pair.items() if k not in ('curve', 'bezier')}
      row.update(
          knob=store.knob,
          test_error=0.5 * (pair['test_error_a'] + pair['test_error_b']),
          train_error_a=float(curve['train_error'][0]),
          train_error_b=float(curve['train_error'][-1]),
          pruned_test_error=float(masks['pruned_test_error'][s, d]),
          dense_test_error=float(masks['dense_test_error'][s]),
          actual_density=float(masks['density'][s, d]),
          diverged=bool(pair.get('diverged', False)))  # Absent in workdirs of <= 0.1.0.
      row['train_error'] = 0.5 * (row['train_error_a'] + row['train_error_b'])
      for name in metrics.member_columns():  # Pair means of member metrics, as test_error.
        if f'{name}_a' in pair:
          row[name] = 0.5 * (pair[f'{name}_a'] + pair[f'{name}_b'])
      row = {k: (np.nan if v is None else v) for k, v in row.items()}
      if with_curves:
        row['curve'] = curve
      rows.append(row)
  return rows
