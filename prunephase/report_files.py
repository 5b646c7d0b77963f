"""Report outputs shared by the sweep's report stage and `prunephase-regimes`.

cells.csv (means per cell, labels), regimes.json (rule, parameters, labels, counts),
findings.json (the paper's findings checked on this table), phase_diagram.png and
lmc_curves.png.
"""

import dataclasses
import os
import pathlib
from typing import Any, Sequence

import numpy as np

from prunephase import files
from prunephase import findings as findings_lib
from prunephase import metrics
from prunephase import plots
from prunephase import regimes as regimes_lib

def cell_rows(knob: str, temperatures, densities, labelled: dict) -> list[dict[str, Any]]:
  """One row per (temperature, density), hottest first, with means, stds and the label."""
  means, stds, labels = labelled['means'], labelled['stds'], labelled['labels']
  cells = []
  for (t, d), label in np.ndenumerate(labels):
    cells.append({
        'knob': knob, 'temperature': temperatures[t], 'density': densities[d],
        'num_pairs': int(labelled['num_pairs'][t, d]),
        'num_dense_seeds': int(labelled['num_units'][t, d]),
        **{f: means[f][t, d] for f in means},
        **{f'{f}_std': stds[f][t, d] for f in metrics.std_fields()},
        'regime': label, 'regime_confidence': labelled['confidence'][t, d]})
  return cells


def diverged_cells(rows: list[dict], temperatures: Sequence[float],
                   densities: Sequence[float]) -> np.ndarray:
  """(T, D) booleans: True where a row of the cell has a true 'diverged' (a bool, or a CSV
  field 'True'/'1'/'yes'; absent or empty is False)."""
  t_index = {float(t): i for i, t in enumerate(temperatures)}
  d_index = {float(d): j for j, d in enumerate(densities)}
  out = np.zeros((len(temperatures), len(densities)), bool)
  for row in rows:
    value = row.get('diverged')
    if isinstance(value, str):
      value = value.strip().lower() in ('1', 'true', 'yes')
    elif isinstance(value, float) and np.isnan(value):
      value = False
    if value:
      out[t_index[float(row['temperature'])], d_index[float(row['density'])]] = True
  return out


def write_report(out: str | os.PathLike, rows: list[dict], knob: str,
                 temperatures: Sequence[float], densities: Sequence[float], regimes_config,
                 with_curves: bool = False, cells_name: str = 'cells.csv',
                 panels: Sequence[str] = plots.DEFAULT_PANELS,
                 num_classes: int | None = None,
                 regimes_extra: dict[str, Any] | None = None,
                 search: dict[str, Any] | None = None) -> dict[str, Any]:
  """Labels `rows` and writes the report files into `out` (`panels` of the phase diagram:
  see `metrics.panels()`); returns the summary. `regimes_extra` adds its keys to
  regimes.json (the adaptive dense seeds' record, `adaptive_seeds.regimes_fields`). `search`
  (`adaptive_cells.report_search`): the adaptive search's (T, D) 'labels' and 'inferred' mask
  replace the table's labels; inferred cells are marked in cells.csv, regimes.json and the
  figure, and are no finding's evidence.

  The findings leave out cells with a diverged member and, given `num_classes`, cells whose
  test error is at chance (`findings.CHANCE_MARGIN`); the summary's 'left_out' names them.
  """
  out = pathlib.Path(out)
  rule = regimes_lib.RegimeRule.from_config(regimes_config)
  estimator = str(getattr(regimes_config, 'confidence', regimes_lib.DEFAULTS['confidence']))
  labelled = regimes_lib.label_table(rows, temperatures, densities, rule,
                                     int(regimes_config.bootstrap), int(regimes_config.seed),
                                     estimator)
  inferred = None
  if search is not None:  # The adaptive search's labels, measured or inferred.
    labelled['labels'], inferred = search['labels'], np.asarray(search['inferred'], bool)
    t_index = {float(t): i for i, t in enumerate(temperatures)}
    d_index = {float(d): j for j, d in enumerate(densities)}
    for row in rows:
      row['regime'] = labelled['labels'][t_index[float(row['temperature'])],
                                         d_index[float(row['density'])]]
  cells = cell_rows(knob, temperatures, densities, labelled)
  for cell, flag in zip(cells, inferred.ravel() if inferred is not None else ()):
    cell['inferred'] = bool(flag)
  measured = [c for c in metrics.optional_cell_fields() if np.isfinite(labelled['means'][c]).any()]
  files.write_csv(out / cells_name, cells, metrics.cell_columns() + measured
                        + (['inferred'] if inferred is not None else []))
  labels = labelled['labels']
  unlabelled = [{'temperature': c['temperature'], 'density': c['density']}
                for c in cells if not c['regime']]
  files.write_json(out / 'regimes.json', {
      'rule': rule.rule, 'description': rule.describe(), 'parameters': dataclasses.asdict(rule),
      'confidence_estimator': estimator,
      'confidence_draws': int(regimes_config.bootstrap),
      'min_confidence': float(regimes_config.min_confidence),
      'note': "prunephase's rule, not the paper's (the paper draws boundaries by hand)",
      'counts': regimes_lib.counts(labels), 'unlabelled_cells': unlabelled,
      'labels': [{'temperature': c['temperature'], 'density': c['density'],
                  # A Python float, so that a NaN confidence (unlabelled, or not computed) is
                  # written as JSON's null (n/a), not as the non-standard NaN.
                  'regime': c['regime'], 'confidence': float(c['regime_confidence']),
                  **({'inferred': c['inferred']} if 'inferred' in c else {})}
                 for c in cells],
      **(regimes_extra or {})})
  means = labelled['means']
  plots.phase_diagram(
      out / 'phase_diagram.png', knob=knob, temperatures=temperatures, densities=densities,
      means=means, labels=labels, confidence=labelled['confidence'],
      min_confidence=float(regimes_config.min_confidence), rule_text=rule.describe(),
      panels=tuple(panels), inferred=inferred)
  if with_curves:
    plots.lmc_curves(out / 'lmc_curves.png', curve_examples(rows, temperatures, densities), knob)
  evidence = labels if inferred is None else np.where(inferred, regimes_lib.NO_LABEL, labels)
  found = findings_lib.check(means, labelled['stds'], temperatures, densities, evidence, rule,
                             labelled['num_units'],
                             diverged_cells(rows, temperatures, densities), num_classes)
  files.write_json(out / 'findings.json', found)
  return {'counts': regimes_lib.counts(labels), 'unlabelled': unlabelled, 'findings': found,
          'left_out': found['left_out_cells'], 'num_cells': labels.size,
          'num_rows': len(rows), 'cells': cells, 'labels': labels,
          'confidence': labelled['confidence']}


def curve_examples(rows, temperatures, densities) -> list[dict]:
  """First seed pair's curve of the four corner cells (hot/cold x low/high density)."""
  wanted = {(temperatures[0], densities[0]), (temperatures[-1], densities[0]),
            (temperatures[0], densities[-1]), (temperatures[-1], densities[-1])}
  examples, seen = [], set()
  for row in rows:
    cell = (row['temperature'], row['density'])
    if cell in wanted and cell not in seen and 'curve' in row:
      seen.add(cell)
      examples.append({'temperature': cell[0], 'density': cell[1], 'lmc': row['lmc'],
                       **row['curve']})
  return examples


def label_text_grid(temperatures, densities, labels, confidence, knob: str,
                    min_confidence: float, inferred=None) -> str:
  """The labels as a compact terminal table: low-confidence labels in parentheses, labels an
  adaptive search inferred (`inferred`, a (T, D) mask or None) in square brackets."""
  header = f'{knob:>12} | ' + ' '.join(f'{100 * d:>7g}%' for d in densities)
  lines = [header, '-' * len(header)]
  for t, temperature in enumerate(temperatures):
    cells = []
    for d in range(len(densities)):
      label = labels[t, d] or 'n/a'
      conf = confidence[t, d]
      if inferred is not None and inferred[t, d]:
        label = f'[{label}]'
      elif np.isfinite(conf) and conf < min_confidence:
        label = f'({label})'
      cells.append(f'{label:>8}')
    lines.append(f'{temperature:>12g} | ' + ' '.join(cells))
  return '\n'.join(lines)


def markdown_grids(cells: list[dict], fields=(('test_error', 'Test error', '{:.3f}'),
                                              ('normalized', 'Normalized test error', '{:.3f}'),
                                              ('lmc', 'LMC', '{:+.3f}'),
                                              ('cka_softmax', 'CKA (softmax)', '{:.4f}'),
                                              ('regime', 'Regime', '{}'))) -> str:
  """Markdown tables (temperature rows hottest first x density columns) of cells.csv rows."""
  temperatures = list(dict.fromkeys(float(c['temperature']) for c in cells))
  densities = sorted({float(c['density']) for c in cells})
  knob = cells[0].get('knob', 'temperature')
  value = {(float(c['temperature']), float(c['density'])): c for c in cells}
  minimum = {d: min(float(value[t, d]['test_error']) for t in temperatures) for d in densities}
  blocks = []
  for field, title, fmt in fields:
    lines = [f'**{title}**', '', f'| {knob} | ' + ' | '.join(f'{100 * d:g}%' for d in densities)
             + ' |', '|---' * (len(densities) + 1) + '|']
    for t in temperatures:
      row = []
      for d in densities:
        cell = value[t, d]
        raw = (float(cell['test_error']) - minimum[d] if field == 'normalized' else cell[field])
        try:
          row.append(fmt.format(float(raw)) if fmt != '{}' else str(raw))
        except (TypeError, ValueError):
          row.append(str(raw))
      lines.append(f'| {t:g} | ' + ' | '.join(row) + ' |')
    blocks.append('\n'.join(lines))
  return '\n\n'.join(blocks)


if __name__ == '__main__':
  # python -m prunephase.report_files DIR/cells.csv: the grids as Markdown (docs/default_search.md).
  import csv  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  with open(sys.argv[1]) as f:
    print(markdown_grids(list(csv.DictReader(f))))
