"""Stage 5, report: results.csv, cells.csv, regimes.json, findings.json and the figures, from
the measure and prune artifacts alone (no dataset, no model)."""

from typing import Any

from prunephase import files
from prunephase.stages import context
from prunephase.stages import rows as rows_lib


def result_rows(store, with_curves: bool = False) -> list[dict[str, Any]]:
  """One row per (temperature, density, dense seed, seed pair) of an `artifacts.Store`; with
  `seeds.adaptive`, the rows of the dense seeds added by finished rounds too (ordinary rows,
  after the configured seeds of their temperature; `adaptive_seeds.replay`); with
  `search.mode = 'adaptive'`, the rows of the measured cells (`adaptive_cells.replay`); with
  both, those and the rows of the seeds added to them (`adaptive_cell_seeds.replay`)."""
  if rows_lib.searches(store.config) and rows_lib.adds_seeds(store.config):
    from prunephase import adaptive_cell_seeds  # pylint: disable=import-outside-toplevel
    return adaptive_cell_seeds.replay(store, with_curves).table_rows()
  if rows_lib.searches(store.config):
    from prunephase import adaptive_cells  # pylint: disable=import-outside-toplevel
    return adaptive_cells.replay(store, with_curves).table_rows()
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
  from prunephase import report_files
  plan = search = None  # Every process reads the rows: restoring is collective.
  seeds_lib = adaptive_seeds
  if rows_lib.searches(sweep.config) and rows_lib.adds_seeds(sweep.config):
    # The search's measured cells with the dense seeds added to them: its final labels read all.
    from prunephase import adaptive_cell_seeds  # pylint: disable=import-outside-toplevel
    from prunephase import adaptive_cells  # pylint: disable=import-outside-toplevel
    seeds_lib = adaptive_cell_seeds
    plan = adaptive_cell_seeds.replay(sweep.store, with_curves=True)
    searched, rows = plan.search, plan.table_rows()
    search = adaptive_cells.report_search(sweep.store, plan.search_with_rows())
  elif rows_lib.searches(sweep.config):
    from prunephase import adaptive_cells  # pylint: disable=import-outside-toplevel
    searched = adaptive_cells.replay(sweep.store, with_curves=True)
    rows = searched.table_rows()
    search = adaptive_cells.report_search(sweep.store, searched)
  elif rows_lib.adds_seeds(sweep.config):
    plan = adaptive_seeds.replay(sweep.store, with_curves=True)
    rows = plan.table_rows()
  else:
    rows = rows_lib.store_rows(sweep.store, with_curves=True)
  if not sweep.is_primary:
    return {}
  panels = (sweep.config.get('report') or {}).get('panels') or plots.DEFAULT_PANELS
  extra = {**(search['fields'] if search is not None else {}),
           **(seeds_lib.regimes_fields(sweep.store, plan) if plan is not None else {})}
  summary = report_files.write_report(sweep.path, rows, sweep.knob, sweep.temperatures,
                                      sweep.densities, sweep.config.regimes, with_curves=True,
                                      panels=panels, num_classes=sweep.store.facts.num_classes,
                                      regimes_extra=extra, search=search)
  if search is not None:
    summary['search'] = adaptive_cells.summary_lines(sweep.store, searched)
  if plan is not None:
    summary['seeds'] = seeds_lib.summary_lines(sweep.store, plan)
  files.write_csv(sweep.path / 'results.csv', rows,  # With labels.
                  rows_lib.result_columns(rows))
  return summary
