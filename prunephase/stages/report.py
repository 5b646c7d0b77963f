"""Stage 5, report: results.csv, cells.csv, regimes.json, findings.json and the figures, from
the measure and prune artifacts alone (no dataset, no model)."""

from typing import Any

from prunephase import workdir as workdir_lib
from prunephase.stages import context
from prunephase.stages import rows as rows_lib


def result_rows(store, with_curves: bool = False) -> list[dict[str, Any]]:
  """One row per (temperature, density, dense seed, seed pair) of an `artifacts.Store`; with
  `seeds.adaptive`, the rows of the dense seeds added by finished rounds too (ordinary rows,
  after the configured seeds of their temperature; `adaptive_seeds.replay`)."""
  if rows_lib.adds_seeds(store.config):
    from prunephase import adaptive_seeds  # pylint: disable=import-outside-toplevel
    return adaptive_seeds.replay(store, with_curves).table_rows()
  return rows_lib.store_rows(store, with_curves)


def run(sweep: context.Sweep) -> dict[str, Any]:
  """Writes results.csv, cells.csv, regimes.json, findings.json and the figures; returns the
  report summary (empty on processes other than 0)."""
  # pylint: disable=import-outside-toplevel
  from prunephase import adaptive_seeds  # Needs regimes (numpy, the rule): report only.
  from prunephase import plots  # matplotlib: only the report needs it.
  from prunephase import report
  plan = None  # Every process reads the rows: restoring is collective.
  if rows_lib.adds_seeds(sweep.config):
    plan = adaptive_seeds.replay(sweep.store, with_curves=True)
    rows = plan.table_rows()
  else:
    rows = rows_lib.store_rows(sweep.store, with_curves=True)
  if not sweep.is_primary:
    return {}
  panels = (sweep.config.get('report') or {}).get('panels') or plots.DEFAULT_PANELS
  extra = adaptive_seeds.regimes_fields(sweep.store, plan) if plan is not None else None
  summary = report.write_report(sweep.path, rows, sweep.knob, sweep.temperatures,
                                sweep.densities, sweep.config.regimes, with_curves=True,
                                panels=panels, num_classes=sweep.store.facts.num_classes,
                                regimes_extra=extra)
  if plan is not None:
    summary['seeds'] = adaptive_seeds.summary_lines(sweep.store, plan)
  columns = rows_lib.RESULT_COLUMNS + [c for c in rows_lib.LANDSCAPE_COLUMNS
                                       if any(c in row for row in rows)]
  workdir_lib.write_csv(sweep.path / 'results.csv', rows, columns)  # With labels.
  return summary
