"""Stage 5, report: results.csv, cells.csv, regimes.json, findings.json and the figures, from
the measure and prune artifacts alone (no dataset, no model)."""

from typing import Any

import numpy as np

from prunephase import workdir as workdir_lib
from prunephase.stages import context

RESULT_COLUMNS = [
    'knob', 'temperature', 'density', 'dense_seed', 'seed_a', 'seed_b', 'test_error',
    'train_error', 'lmc', 'cka_softmax', 'cka_logits', 'regime', 'regime_confidence',
    'test_error_a', 'test_error_b', 'train_error_a', 'train_error_b', 'pruned_test_error',
    'dense_test_error', 'actual_density', 'diverged']
# Written only where measured (`measure.hessian`, `measure.bezier_curve`).
LANDSCAPE_COLUMNS = ['hessian_top_eigenvalue', 'hessian_trace', 'dense_hessian_top_eigenvalue',
                     'curve_mc', 'hessian_top_eigenvalue_a', 'hessian_top_eigenvalue_b',
                     'hessian_trace_a', 'hessian_trace_b', 'dense_hessian_trace']


def result_rows(store, with_curves: bool = False) -> list[dict[str, Any]]:
  """One row per (temperature, density, dense seed, seed pair) of an `artifacts.Store`."""
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
      for name in ('hessian_top_eigenvalue', 'hessian_trace'):  # Pair means, as test_error.
        if f'{name}_a' in pair:
          row[name] = 0.5 * (pair[f'{name}_a'] + pair[f'{name}_b'])
      row = {k: (np.nan if v is None else v) for k, v in row.items()}
      if with_curves:
        row['curve'] = curve
      rows.append(row)
  return rows


def run(sweep: context.Sweep) -> dict[str, Any]:
  """Writes results.csv, cells.csv, regimes.json, findings.json and the figures; returns the
  report summary (empty on processes other than 0)."""
  # pylint: disable=import-outside-toplevel
  from prunephase import plots  # matplotlib: only the report needs it.
  from prunephase import report
  rows = result_rows(sweep.store, with_curves=True)  # Every process: restoring is collective.
  if not sweep.is_primary:
    return {}
  panels = (sweep.config.get('report') or {}).get('panels') or plots.DEFAULT_PANELS
  summary = report.write_report(sweep.path, rows, sweep.knob, sweep.temperatures,
                                sweep.densities, sweep.config.regimes, with_curves=True,
                                panels=panels, num_classes=sweep.store.facts.num_classes)
  columns = RESULT_COLUMNS + [c for c in LANDSCAPE_COLUMNS if any(c in row for row in rows)]
  workdir_lib.write_csv(sweep.path / 'results.csv', rows, columns)  # With labels.
  return summary
