"""Adaptive search of the phase diagram: which cells of a (temperature x density) grid to measure.

A full sweep measures every cell of the grid; most of them sit deep inside a regime, where a
neighbour's label would have told the same. The search measures a coarse subgrid first (every
other temperature and density, and always the last of each, so the four corners and the edges
are measured), labels what it has measured, and then adds cells only where a label or a
boundary is uncertain, round by round:

* 'boundary': an unmeasured cell whose measured neighbours carry different labels: between
  the two sides of an I/II boundary (a column's LMC change point with a transition) or of a
  II-A/II-B one (the start of a column's CKA plateau);
* 'column_end': the coldest cell of a column whose coldest measured cell is in regime II: the
  column's CKA plateau, which sets where II-B starts, is its highest CKA, most often there;
* 'change_point': an unmeasured cell in the gap at a column's LMC change point when the drop
  there is at least half of `min_drop` (measuring the gap may make or break a transition);
* 'low_confidence': an unmeasured column neighbour of a measured cell whose label confidence
  is below `remeasure_below` (`REMEASURE_BELOW`: a label more likely than not to change in
  another run; settling labels that are merely unconfident is the job of more dense seeds).

It stops when no unmeasured cell could change a label (every unmeasured cell's measured
neighbours agree, and none of the other reasons holds), or when `max_cells` are measured.

Labelling a partly measured grid. The rule (regimes.label_grid) fits whole columns, so a
column labelled from its few measured cells alone would have its change point and CKA plateau
fitted to wherever it happened to be sampled. The measured cells are therefore labelled on the
full grid with each unmeasured cell holding LMC and CKA interpolated from measured cells (`fill`:
along its column, else its row, else the nearest ring), and only the measured cells keep these
labels. An unmeasured cell takes the label of its measured neighbours: the nearest measured
cells above and below it in its column when it has both (the rule's labels in a column run
II-A, then II-B or I, so agreeing brackets decide the cells between them); otherwise the
measured cells of its 3 x 3 block (or, when there are none, of the nearest ring: a far-off
cell of its own column says little). Disagreeing neighbours make the cell uncertain; its label
is then the majority, ties going to the nearest. Inferred labels are marked.

Each round measures one cell per contiguous group of candidates in a column (groups end at
measured cells): the group's middle (bisection), or, for a group at the grid's edge, its
outermost cell, which brackets the rest.

Pure numpy; a live sweep can call `next_cells` with the rows it has, and `final_labels` at the
end. `replay` runs the search on a finished table, revealing a cell's rows only when the
search asks for them.
"""

from collections.abc import Sequence
import dataclasses
from typing import Any

import numpy as np

from prunephase import regimes

# Why a cell is measured, in the order cells are taken when the budget is short.
REASONS = ('boundary', 'column_end', 'change_point', 'low_confidence')
# A column whose LMC drop at its change point is at least this fraction of min_drop may gain
# (or lose) its transition when the gap at the change point is measured.
CHANGE_POINT_MARGIN = 0.5
# A measured cell whose label confidence is below this gets its column neighbours measured
# (`search.remeasure_below` of a sweep). At 0.8 (the labels' own `min_confidence`) the search
# measured 57 of 81 cells of a 9 x 9 grid of the default against 46 at 0.5, for the same
# agreement with the full grid (docs/adaptive_search.md).
REMEASURE_BELOW = 0.5


@dataclasses.dataclass(frozen=True)
class SearchState:
  """What the search knows about a grid after some cells are measured.

  Attributes:
    labels: (T, D) objects: measured cells' labels, inferred ones elsewhere ('' = none).
    inferred: (T, D) bools: the label is inferred (the cell is not measured).
    certain: (T, D) bools: measured, or unmeasured with agreeing measured neighbours.
    measured: (T, D) bools: the cell has rows.
    confidence: (T, D) label confidences of measured cells (NaN: none).
    candidates: (t, d, reason) of every unmeasured cell worth measuring, by `REASONS` order.
  """

  labels: np.ndarray
  inferred: np.ndarray
  certain: np.ndarray
  measured: np.ndarray
  confidence: np.ndarray
  candidates: list[tuple[int, int, str]]


def coarse_cells(num_temperatures: int, num_densities: int) -> list[tuple[int, int]]:
  """The first round: (t, d) indices of every other row and column plus the last ones, the
  four corners first (what a budget smaller than the subgrid keeps)."""
  def every_other(n):
    return sorted(set(range(0, n, 2)) | {n - 1})
  cells = [(t, d) for t in every_other(num_temperatures) for d in every_other(num_densities)]
  corners = list(dict.fromkeys((t, d) for t in (0, num_temperatures - 1)
                               for d in (0, num_densities - 1)))
  return corners + [cell for cell in cells if cell not in corners]


def _index(temperatures: Sequence[float], densities: Sequence[float]):
  t_index = {float(t): i for i, t in enumerate(temperatures)}
  d_index = {float(d): j for j, d in enumerate(densities)}
  return t_index, d_index


def measured_mask(rows: Sequence[dict], temperatures: Sequence[float],
                  densities: Sequence[float]) -> np.ndarray:
  """(T, D) bools: cells with at least one row; ValueError for a row off the axes."""
  t_index, d_index = _index(temperatures, densities)
  measured = np.zeros((len(temperatures), len(densities)), bool)
  for row in rows:
    t, d = float(row['temperature']), float(row['density'])
    if t not in t_index or d not in d_index:
      raise ValueError(f'row at temperature {t:g}, density {d:g} is not on the grid')
    measured[t_index[t], d_index[d]] = True
  return measured


def _has_replicates(rows: Sequence[dict]) -> bool:
  """Whether some cell has two dense seeds (else the bootstrap has nothing to resample)."""
  seeds = {}
  for row in rows:
    seed = row.get('dense_seed')
    if seed is not None and np.isfinite(float(seed)):
      seeds.setdefault((float(row['temperature']), float(row['density'])), set()).add(seed)
  return any(len(s) > 1 for s in seeds.values())


def _neighbours(labelled: np.ndarray, t: int, d: int) -> list[tuple[int, int]]:
  """The measured, labelled cells an unmeasured cell (t, d) takes its label from, nearest
  first (see the module docstring)."""
  column = np.flatnonzero(labelled[:, d])
  above, below = column[column < t], column[column > t]
  if above.size and below.size:
    return sorted([(int(above[-1]), d), (int(below[0]), d)], key=lambda c: abs(c[0] - t))
  # Otherwise only local evidence: a far-off column neighbour says little about this cell.
  cells = []
  num_t, num_d = labelled.shape
  for radius in range(1, max(num_t, num_d)):
    ring = [(i, j) for i in range(max(0, t - radius), min(num_t, t + radius + 1))
            for j in range(max(0, d - radius), min(num_d, d + radius + 1))
            if max(abs(i - t), abs(j - d)) == radius and labelled[i, j] and (i, j) not in cells]
    cells += sorted(ring, key=lambda c: (abs(c[0] - t) + abs(c[1] - d), c))
    if cells:  # The 3 x 3 block always counts; farther rings only when nothing is nearer.
      break
  return cells


def fill(values: np.ndarray, known: np.ndarray) -> np.ndarray:
  """(T, D) values with the unknown cells estimated from the known ones.

  Linear interpolation along the column between the nearest known cells above and below;
  else along the row between the nearest known cells left and right; else the mean of the
  nearest ring of known cells (all of them NaN: NaN).
  """
  known = known & np.isfinite(values)
  out = np.where(known, values, np.nan)
  num_t, num_d = values.shape
  for t, d in zip(*np.nonzero(~known)):
    for line, i, get in ((known[:, d], t, lambda k, d=d: values[k, d]),
                         (known[t, :], d, lambda k, t=t: values[t, k])):
      index = np.flatnonzero(line)
      lower, upper = index[index < i], index[index > i]
      if lower.size and upper.size:
        a, b = lower[-1], upper[0]
        out[t, d] = get(a) + (get(b) - get(a)) * (i - a) / (b - a)
        break
    else:
      for radius in range(1, max(num_t, num_d)):
        block = (slice(max(0, t - radius), t + radius + 1),
                 slice(max(0, d - radius), d + radius + 1))
        if known[block].any():
          out[t, d] = values[block][known[block]].mean()
          break
  return out


def _infer(labels: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(labels, certain), both (T, D): measured labels kept, unmeasured ones inferred."""
  out, certain = labels.copy(), measured.copy()
  labelled = measured & (labels != regimes.NO_LABEL)
  for t, d in zip(*np.nonzero(~measured)):
    cells = _neighbours(labelled, int(t), int(d))
    found = [labels[c] for c in cells]
    if not found:
      out[t, d] = regimes.NO_LABEL
      continue
    certain[t, d] = len(set(found)) == 1
    # Majority; ties go to the label met first (`cells` is nearest first).
    out[t, d] = max(dict.fromkeys(found), key=found.count)
  return out, certain


def _candidates(state_labels: np.ndarray, certain: np.ndarray, measured: np.ndarray,
                lmc: np.ndarray, confidence: np.ndarray, rule: regimes.RegimeRule,
                remeasure_below: float) -> list[tuple[int, int, str]]:
  """Every unmeasured cell worth measuring, with its first reason (REASONS order)."""
  reasons = {}
  for t, d in zip(*np.nonzero(~certain)):
    reasons.setdefault((int(t), int(d)), 'boundary')
  labelled = measured & (state_labels != regimes.NO_LABEL) & np.isfinite(lmc)
  if rule.rule == 'transition':
    for d in range(measured.shape[1]):
      rows = np.flatnonzero(labelled[:, d])
      if rows.size < 2:
        continue
      k, drop = regimes.column_change_point(lmc[rows, d])
      if drop >= CHANGE_POINT_MARGIN * rule.min_drop:
        for t in range(rows[k - 1] + 1, rows[k]):
          reasons.setdefault((t, d), 'change_point')
  for d in range(measured.shape[1]):
    rows = np.flatnonzero(labelled[:, d])
    if rows.size and not measured[-1, d] and state_labels[rows[-1], d] != 'I':
      # The column's CKA plateau (the start of II-B) is set by its highest CKA, most often at
      # the cold end: measure the coldest cell of a column still in regime II there.
      reasons.setdefault((measured.shape[0] - 1, d), 'column_end')
  weak = measured & np.isfinite(confidence) & (confidence < remeasure_below)
  for t, d in zip(*np.nonzero(weak)):
    for n in (t - 1, t + 1):
      if 0 <= n < measured.shape[0] and not measured[n, d]:
        reasons.setdefault((int(n), int(d)), 'low_confidence')
  return sorted(((t, d, r) for (t, d), r in reasons.items()),
                key=lambda c: (REASONS.index(c[2]), c[0], c[1]))


def assess(temperatures: Sequence[float], densities: Sequence[float], rows: Sequence[dict],
           rule: regimes.RegimeRule = regimes.RegimeRule(),
           remeasure_below: float = REMEASURE_BELOW, bootstrap: int = 0,
           seed: int = 0, estimator: str | None = None) -> SearchState:
  """Labels the measured cells, infers the others and lists the cells worth measuring.

  Args:
    temperatures: the grid's temperatures, hottest first (T).
    densities: the grid's densities (D).
    rows: the measured cells' rows (regimes.label_table's fields); not modified.
    rule: the labelling rule.
    remeasure_below: measured cells below this confidence get their column neighbours
      measured.
    bootstrap: resamples for the confidences (0: none, the criterion is off).
    seed: resampling seed.
    estimator: the confidence estimator (regimes.label_table's; None: its default).

  Returns:
    The SearchState.
  """
  measured = measured_mask(rows, temperatures, densities)
  shape = measured.shape
  if rows:
    resamples = bootstrap if _has_replicates(rows) else 0  # Else all NaN anyway.
    with np.errstate(invalid='ignore', divide='ignore'):  # Unmeasured cells are empty.
      options = {} if estimator is None else {'estimator': estimator}
      labelled = regimes.label_table([dict(row) for row in rows], temperatures, densities,
                                     rule, resamples, seed, **options)
    confidence = labelled['confidence']
    lmc, cka = labelled['means']['lmc'], labelled['means']['cka_softmax']
    # The rule fits whole columns: a column sampled at a few cells would have its change
    # point and CKA plateau fitted to those alone, biased towards where it was sampled. Label
    # a grid whose unmeasured cells hold values interpolated from the measured ones instead.
    labels = regimes.label_grid(fill(lmc, measured), fill(cka, measured), rule,
                                labelled['stds']['lmc'], labelled['stds']['cka_softmax'],
                                labelled['num_units'])
    labels = np.where(np.isfinite(lmc) & np.isfinite(cka), labels, regimes.NO_LABEL)
  else:
    labels = np.full(shape, regimes.NO_LABEL, dtype=object)
    confidence = lmc = np.full(shape, np.nan)
  labels = np.where(measured, labels, regimes.NO_LABEL)
  inferred_labels, certain = _infer(labels, measured)
  candidates = _candidates(labels, certain, measured, lmc, confidence, rule, remeasure_below)
  return SearchState(inferred_labels, ~measured, certain, measured, confidence, candidates)


def _bisect(candidates: list[tuple[int, int, str]], measured: np.ndarray
            ) -> list[tuple[int, int, str]]:
  """One cell per contiguous group of candidates in a column: the group's middle one.

  Groups do not reach across a measured cell. Order: by reason, then larger groups first (more
  labels at stake), then position.
  """
  by_column = {}
  for t, d, reason in candidates:
    by_column.setdefault(d, {})[t] = reason
  picks = []
  for d, cells in by_column.items():
    group = []
    for t in sorted(cells) + [None]:
      if group and (t is None or t != group[-1] + 1 or measured[group[-1] + 1:t, d].any()):
        middle = group[(len(group) - 1) // 2]
        if group[-1] == measured.shape[0] - 1 or group[0] == 0:
          middle = group[-1] if group[-1] == measured.shape[0] - 1 else 0
        best = min(REASONS.index(cells[g]) for g in group)
        picks.append((best, -len(group), middle, d))
        group = []
      if t is not None:
        group.append(t)
  return [(t, d, REASONS[best]) for best, _, t, d in sorted(picks)]


def next_cells(temperatures: Sequence[float], densities: Sequence[float],
               rows: Sequence[dict], rule: regimes.RegimeRule = regimes.RegimeRule(),
               max_cells: int | None = None,
               remeasure_below: float = REMEASURE_BELOW, bootstrap: int = 0,
               seed: int = 0, estimator: str | None = None) -> list[tuple[float, float]]:
  """The cells to measure next, as (temperature, density); [] when the search is done.

  With no rows: the coarse subgrid. A cell counts as measured once it has a row (a failed cell
  should get a row with NaN LMC and CKA: it stays unlabelled and is not asked for again).
  Arguments as in `assess`; max_cells caps the measured cells in all (None: the grid).
  """
  measured = measured_mask(rows, temperatures, densities)
  budget = measured.size if max_cells is None else int(max_cells)
  budget = max(0, budget - int(measured.sum()))
  if not measured.any():
    cells = coarse_cells(len(temperatures), len(densities))
  else:
    state = assess(temperatures, densities, rows, rule, remeasure_below, bootstrap, seed,
                   estimator)
    cells = [(t, d) for t, d, _ in _bisect(state.candidates, measured)]
  return [(temperatures[t], densities[d]) for t, d in cells[:budget]]


def final_labels(temperatures: Sequence[float], densities: Sequence[float],
                 rows: Sequence[dict], rule: regimes.RegimeRule = regimes.RegimeRule()
                 ) -> tuple[np.ndarray, np.ndarray]:
  """(labels, inferred): (T, D) labels, measured or inferred, and the inferred mask."""
  state = assess(temperatures, densities, rows, rule)
  return state.labels, state.inferred


def replay(rows: Sequence[dict], temperatures: Sequence[float], densities: Sequence[float],
           rule: regimes.RegimeRule = regimes.RegimeRule(), max_cells: int | None = None,
           remeasure_below: float = REMEASURE_BELOW, bootstrap: int = 0,
           seed: int = 0, estimator: str | None = None) -> dict[str, Any]:
  """Runs the search on a finished table, revealing a cell's rows when the search asks.

  Args:
    rows: the full table's rows (not modified).
    temperatures, densities, rule, max_cells, remeasure_below, bootstrap, seed, estimator: as
      in `next_cells`.

  Returns:
    {'rounds': [{'round', 'new', 'measured', 'uncertain' (unmeasured cells still uncertain),
    'agreement'}], 'labels', 'inferred', 'measured' ((T, D) arrays), 'cells' (measured),
    'num_cells' (grid), 'full_labels' ((T, D)), 'matched' (labelled cells of the full table),
    'agree', 'agreement' (fraction; NaN when the full table labels nothing)}.
  """
  by_cell = {}
  for row in rows:
    by_cell.setdefault((float(row['temperature']), float(row['density'])), []).append(row)
  full_labels = regimes.label_table([dict(row) for row in rows], temperatures, densities, rule,
                                    0)['labels']
  revealed, rounds = [], []
  state = assess(temperatures, densities, revealed, rule)
  while True:
    cells = next_cells(temperatures, densities, revealed, rule, max_cells, remeasure_below,
                       bootstrap, seed, estimator)
    if not cells:
      break
    for t, d in cells:  # A cell the table lacks is revealed as a failed one.
      revealed += by_cell.get((float(t), float(d)), [
          {'temperature': t, 'density': d, 'lmc': np.nan, 'cka_softmax': np.nan}])
    state = assess(temperatures, densities, revealed, rule, remeasure_below, bootstrap, seed,
                   estimator)
    rounds.append({'round': len(rounds) + 1, 'new': len(cells),
                   'measured': int(state.measured.sum()),
                   'uncertain': int((~state.certain).sum()),
                   'agreement': _agreement(state.labels, full_labels)[1]})
  agree, fraction = _agreement(state.labels, full_labels)
  return {'rounds': rounds, 'labels': state.labels, 'inferred': state.inferred,
          'measured': state.measured, 'cells': int(state.measured.sum()),
          'num_cells': int(state.measured.size), 'full_labels': full_labels,
          'matched': int((full_labels != regimes.NO_LABEL).sum()), 'agree': agree,
          'agreement': fraction}


def _agreement(labels: np.ndarray, full_labels: np.ndarray) -> tuple[int, float]:
  """(cells, fraction) of the full table's labelled cells whose label `labels` matches."""
  scored = full_labels != regimes.NO_LABEL
  agree = int(((labels == full_labels) & scored).sum())
  return agree, float(agree / scored.sum()) if scored.any() else float('nan')
