"""Regime labels I / II-A / II-B from LMC and CKA: prunephase's own, stated rule.

The paper draws its regime boundaries by hand (paper_notes §6.1); this rule and its
parameters are this project's, configurable in `config.regimes` and written next to every
label. On a (temperature x density) grid of cell means over seed pairs:

  Regime I    mean LMC < lmc_threshold                       (poorly connected: a barrier)
  Regime II-B otherwise, and CKA >= (max CKA among the column's regime-II cells) - cka_tolerance
  Regime II-A otherwise                                       (connected, less similar outputs)

Cells whose LMC or CKA is NaN (a diverged member) get no label ('') and are reported.
The confidence of a label is the fraction of bootstrap resamples of each cell's seed pairs
(with replacement, all cells resampled together) that give the same label.
"""

from collections.abc import Sequence
import dataclasses

import numpy as np

REGIMES = ('I', 'II-A', 'II-B')
NO_LABEL = ''
# The rule's defaults (configs/default.py states the same values; a test keeps them equal).
DEFAULTS = {'lmc_threshold': -0.02, 'cka_tolerance': 0.002, 'bootstrap': 200,
            'min_confidence': 0.7, 'seed': 0}


@dataclasses.dataclass(frozen=True)
class RegimeRule:
  """Parameters of the labelling rule (see the module docstring)."""

  lmc_threshold: float = DEFAULTS['lmc_threshold']
  cka_tolerance: float = DEFAULTS['cka_tolerance']

  @classmethod
  def from_config(cls, regimes_config) -> 'RegimeRule':
    return cls(float(regimes_config.lmc_threshold), float(regimes_config.cka_tolerance))

  def describe(self) -> str:
    return (f'I: mean LMC < {self.lmc_threshold:g}; II-B: CKA within {self.cka_tolerance:g} '
            'of the column maximum among regime-II cells; II-A: the other regime-II cells')


def label_grid(lmc: np.ndarray, cka: np.ndarray, rule: RegimeRule) -> np.ndarray:
  """Labels a (T, D) grid of cell means; returns a (T, D) array of strings."""
  lmc, cka = np.asarray(lmc, float), np.asarray(cka, float)
  labels = np.full(lmc.shape, NO_LABEL, dtype=object)
  valid = np.isfinite(lmc) & np.isfinite(cka)
  regime_one = valid & (lmc < rule.lmc_threshold)
  regime_two = valid & ~regime_one
  labels[regime_one] = 'I'
  for d in range(lmc.shape[1]):
    column = regime_two[:, d]
    if not column.any():
      continue
    plateau = cka[column, d].max()
    similar = column & (cka[:, d] >= plateau - rule.cka_tolerance)
    labels[similar, d] = 'II-B'
    labels[column & ~similar, d] = 'II-A'
  return labels


def cell_grid(rows: Sequence[dict], temperatures: Sequence[float], densities: Sequence[float],
              field: str) -> list[list[np.ndarray]]:
  """The per-pair values of `field` in every cell: grid[t][d] is a 1-D array."""
  t_index = {float(t): i for i, t in enumerate(temperatures)}
  d_index = {float(d): j for j, d in enumerate(densities)}
  values = [[[] for _ in densities] for _ in temperatures]
  for row in rows:
    values[t_index[float(row['temperature'])]][d_index[float(row['density'])]].append(
        float(row[field]) if row[field] not in (None, '') else np.nan)
  return [[np.asarray(v, float) for v in line] for line in values]


def cell_means(grid_values: list[list[np.ndarray]]) -> np.ndarray:
  """(T, D) means; NaN where a cell is empty or holds a NaN (a diverged member)."""
  return np.array([[v.mean() if v.size else np.nan for v in line] for line in grid_values])


def cell_stds(grid_values: list[list[np.ndarray]]) -> np.ndarray:
  """(T, D) standard deviations over seed pairs; NaN with fewer than two pairs (no estimate)."""
  return np.array([[v.std() if v.size > 1 else np.nan for v in line] for line in grid_values])


def bootstrap_confidence(lmc_values, cka_values, labels: np.ndarray, rule: RegimeRule,
                         num_resamples: int, seed: int = 0) -> np.ndarray:
  """Fraction of resamples whose label equals `labels`, per cell; (T, D) floats in [0, 1].

  Each resample draws, in every cell, as many seed pairs as it holds, with replacement, and
  relabels the whole grid (the II-B plateau is a column property). A cell holding a NaN (a
  diverged member) stays NaN in every resample, as in the labelling: a resample that happened
  to skip the diverged member must not make it a regime-II cell that moves its column's
  plateau. Unlabelled cells, and cells with fewer than two seed pairs (nothing to resample),
  get NaN.
  """
  rng = np.random.default_rng(seed)
  shape = labels.shape
  agree = np.zeros(shape)
  for _ in range(num_resamples):
    lmc = np.full(shape, np.nan)
    cka = np.full(shape, np.nan)
    for t in range(shape[0]):
      for d in range(shape[1]):
        n = lmc_values[t][d].size
        if n and np.isfinite(lmc_values[t][d]).all() and np.isfinite(cka_values[t][d]).all():
          pick = rng.integers(0, n, n)
          lmc[t, d] = lmc_values[t][d][pick].mean()
          cka[t, d] = cka_values[t][d][pick].mean()
    agree += label_grid(lmc, cka, rule) == labels
  confidence = agree / max(num_resamples, 1)
  confidence[labels == NO_LABEL] = np.nan
  sizes = np.array([[v.size for v in line] for line in lmc_values]).reshape(shape)
  confidence[sizes < 2] = np.nan
  return confidence


def boundary_edges(labels: np.ndarray) -> dict[str, list[tuple[float, float, float, float]]]:
  """Cell edges where the regime changes, in imshow coordinates (cell centres at integers).

  Returns {'I/II': [...], 'IIA/IIB': [...]} of segments (x0, y0, x1, y1).
  """
  edges = {'I/II': [], 'IIA/IIB': []}

  def kind(a, b):
    if NO_LABEL in (a, b) or a == b:
      return None
    return 'I/II' if 'I' in (a, b) else 'IIA/IIB'

  rows, cols = labels.shape
  for t in range(rows):
    for d in range(cols):
      if d + 1 < cols and (k := kind(labels[t, d], labels[t, d + 1])):
        edges[k].append((d + 0.5, t - 0.5, d + 0.5, t + 0.5))
      if t + 1 < rows and (k := kind(labels[t, d], labels[t + 1, d])):
        edges[k].append((d - 0.5, t + 0.5, d + 0.5, t + 0.5))
  return edges


def counts(labels: np.ndarray) -> dict[str, int]:
  """Cells per regime, and unlabelled cells under 'none'."""
  out = {r: int((labels == r).sum()) for r in REGIMES}
  out['none'] = int((labels == NO_LABEL).sum())
  return out


TABLE_FIELDS = ('lmc', 'cka_softmax', 'cka_logits', 'test_error', 'train_error',
                'pruned_test_error', 'dense_test_error')


def label_table(rows: list[dict], temperatures: Sequence[float], densities: Sequence[float],
                rule: RegimeRule, bootstrap: int, seed: int = 0) -> dict:
  """Cell means, stds, labels and confidences of a table; sets 'regime' and
  'regime_confidence' on every row.

  Args:
    rows: dicts with 'temperature', 'density', 'lmc', 'cka_softmax' and optionally the other
      `TABLE_FIELDS` (absent fields give NaN cells).
    temperatures: hottest first.
    densities: column order.
    rule: the labelling rule.
    bootstrap: resamples for the confidence.
    seed: resampling seed.

  Returns:
    {'rule', 'means', 'stds' (dicts of (T, D) arrays), 'labels', 'confidence', 'num_pairs'}.
  """
  filled = [{**{f: np.nan for f in TABLE_FIELDS}, **row} for row in rows]
  grids = {f: cell_grid(filled, temperatures, densities, f) for f in TABLE_FIELDS}
  means = {f: cell_means(g) for f, g in grids.items()}
  stds = {f: cell_stds(g) for f, g in grids.items()}
  labels = label_grid(means['lmc'], means['cka_softmax'], rule)
  confidence = bootstrap_confidence(grids['lmc'], grids['cka_softmax'], labels, rule,
                                    bootstrap, seed)
  t_index = {float(t): i for i, t in enumerate(temperatures)}
  d_index = {float(d): j for j, d in enumerate(densities)}
  for row in rows:
    t, d = t_index[float(row['temperature'])], d_index[float(row['density'])]
    row['regime'], row['regime_confidence'] = labels[t, d], confidence[t, d]
  return {'rule': rule, 'means': means, 'stds': stds, 'labels': labels,
          'confidence': confidence,
          'num_pairs': np.array([[v.size for v in line] for line in grids['lmc']])}
