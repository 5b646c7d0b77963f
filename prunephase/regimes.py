"""Regime labels I / II-A / II-B from LMC and CKA: prunephase's own, stated rules.

The paper draws its regime boundaries by hand (docs/definitions.md, Regimes); these rules and their
parameters are this project's, configurable in `config.regimes` and written next to every
label. Both work on a (temperature x density) grid of cell means, rows hottest first.

'transition' (the default) follows the paper's drawing. Its solid I/II curve sits where LMC
*drops sharply* as training gets colder, not where LMC turns negative: hot, low-density cells
with a mild barrier are II-A in the paper's Figure 2. In each density column we fit one change
point along the temperature axis: the split into a hotter and a colder run of cells with the
smallest squared error around the two runs' means. The column has a transition when the
colder run is deeper by at least `min_drop` (in error fractions) and by more than
`noise_factor` times the drop's standard error (`drop_error`: a cell's is the spread of its
LMC over independent dense seeds over the square root of their number), so that more dense
seeds settle a column (one seed's spread, used before, does not shrink with them); the colder
run is then Regime I. A column without a transition is Regime I throughout when its LMC is
deep everywhere, and has no Regime I otherwise. Deep: every cell's LMC lies below the
shallower of the barrier scale `-min_drop` (as deep as a drop that counts as a transition) and
the grid's barrier level (the mean of the midpoints between the two runs of the columns that
do have a transition; ignored when none does), and below `-noise_factor` times the column's
standard error (the root mean square of its cells'; no estimate: no noise check). Its models
are then poorly connected at every temperature, whatever barriers the other columns reach. The
II-A/II-B boundary separates, within a column's regime-II cells, the hotter cells below the
column's CKA plateau from the colder cells on it: the plateau is the highest CKA among those
cells, the first cell (hot to cold) within `cka_tolerance` (or `noise_factor` times its CKA
seed noise, the spread over dense seeds, if larger) of it starts II-B, and every colder
regime-II cell is II-B too. Being on the plateau is a question of equivalence, within what one
retraining varies, so that band is the seed spread and does not narrow with more seeds. A
column whose coldest cell is Regime I has no II-B: cooling there ends in a barrier, not on a
similarity plateau (the paper's dashed curve meets the solid one).

'threshold' (the rule of earlier versions): Regime I where the mean LMC < `lmc_threshold`;
II-B where CKA >= (the column's highest CKA among regime-II cells) - `cka_tolerance`; else II-A.

Noise is estimated over independent units: the dense seeds. Seed pairs that share a dense
model (or a retrained member) are not independent, so each dense seed's pairs are first
averaged; a table without a `dense_seed` column treats each row as its own unit. Cells whose
LMC or CKA is NaN, or that hold a diverged member, get no label ('') and are reported. The
confidence of a label is the estimated chance that an independent run (other dense seeds)
gives the cell the same label (prunephase/confidence.py); with no draws (`bootstrap` 0) it is
NaN, not computed, and outputs show it as n/a rather than as uncertain.
"""

from collections.abc import Sequence
import dataclasses

import numpy as np

from prunephase import confidence as confidence_lib
from prunephase import metrics
from prunephase.config import names

REGIMES = ('I', 'II-A', 'II-B')
NO_LABEL = ''
RULES = names.REGIME_RULES
# The rules' defaults for tables without a config (the case-study commands); configs/default.py
# writes the same values out for users to read (tests/test_configs.py checks they agree).
DEFAULTS = {'rule': 'transition', 'min_drop': 0.05, 'noise_factor': 1.0,
            'lmc_threshold': -0.02, 'cka_tolerance': 0.001, 'bootstrap': 200,
            'min_confidence': 0.8, 'seed': 0, 'confidence': 'replicate'}


@dataclasses.dataclass(frozen=True)
class RegimeRule:
  """Parameters of the labelling rule (see the module docstring)."""

  rule: str = DEFAULTS['rule']
  min_drop: float = DEFAULTS['min_drop']
  noise_factor: float = DEFAULTS['noise_factor']
  lmc_threshold: float = DEFAULTS['lmc_threshold']
  cka_tolerance: float = DEFAULTS['cka_tolerance']

  def __post_init__(self):
    if self.rule not in RULES:
      raise ValueError(f'unknown regimes.rule {self.rule!r}; choose one of {", ".join(RULES)}')

  @classmethod
  def from_config(cls, regimes_config) -> 'RegimeRule':
    """From `config.regimes` (or any mapping-like); absent fields take the defaults."""
    get = (regimes_config.get if hasattr(regimes_config, 'get')
           else lambda name, default: getattr(regimes_config, name, default))
    return cls(str(get('rule', DEFAULTS['rule'])),
               *(float(get(name, DEFAULTS[name]))
                 for name in ('min_drop', 'noise_factor', 'lmc_threshold', 'cka_tolerance')))

  def describe(self) -> str:
    if self.rule == 'threshold':
      return (f'threshold rule: I: mean LMC < {self.lmc_threshold:g}; II-B: CKA within '
              f'{self.cka_tolerance:g} of the column maximum among regime-II cells; II-A: the '
              'other regime-II cells')
    return (f'transition rule: I: the colder run of a density column after its LMC change point, '
            f'if it drops by >= {self.min_drop:g} and > {self.noise_factor:g} x its standard '
            f'error; a column without one: all I if every LMC < max(-{self.min_drop:g}, barrier '
            f'level) and < -{self.noise_factor:g} x standard error; II-B: regime-II cells from '
            f'the first one within max({self.cka_tolerance:g}, {self.noise_factor:g} x seed '
            'spread) of the column\'s CKA plateau to the coldest, in columns that do not end in '
            'Regime I; II-A: the rest')


def _rms(values: np.ndarray) -> float:
  values = values[np.isfinite(values)]
  return float(np.sqrt(np.mean(values ** 2))) if values.size else float('nan')


def column_change_point(lmc: np.ndarray) -> tuple[int, float]:
  """The least-squares split of a column (hottest first) into a hotter and a colder run.

  Args:
    lmc: (n,) finite values, n >= 2.

  Returns:
    (k, drop): the colder run starts at index k (1 <= k < n); drop = mean(hotter run) -
    mean(colder run), positive when the colder run is deeper. The first k wins ties.
  """
  best_k, best_sse = 1, np.inf
  for k in range(1, lmc.size):
    hot, cold = lmc[:k], lmc[k:]
    sse = ((hot - hot.mean()) ** 2).sum() + ((cold - cold.mean()) ** 2).sum()
    if sse < best_sse - 1e-15:
      best_k, best_sse = k, sse
  return best_k, float(lmc[:best_k].mean() - lmc[best_k:].mean())


def cell_errors(spread: np.ndarray, units: np.ndarray) -> np.ndarray:
  """Standard errors of a column's cell means.

  Args:
    spread: (n,) each cell's standard deviation over its dense seeds; NaN = no estimate.
    units: (n,) each cell's dense seeds; 0 = not measured (an adaptive search's filled cell,
      which adds no evidence of its own).

  Returns:
    (n,) spread / sqrt(units); a measured cell without a spread (one seed) takes the column's
    root-mean-square spread; NaN for unmeasured cells, and everywhere when no cell has a spread.
  """
  measured = units > 0
  typical = _rms(spread[measured])  # NaN when no measured cell has a spread.
  spread = np.where(np.isfinite(spread), spread, typical)
  return np.where(measured, spread / np.sqrt(np.maximum(units, 1)), np.nan)


def run_mean_error(errors: np.ndarray) -> float:
  """Standard error of the mean of a run of cells, from the cells' standard errors.

  Args:
    errors: (k,) standard errors of the cells' means (`cell_errors`); NaN cells (not measured)
      are left out.

  Returns:
    sqrt(mean(error^2) / m) over the m cells with an error; NaN when there is none.
  """
  finite = errors[np.isfinite(errors)]
  if not finite.size:
    return float('nan')
  return float(np.sqrt(np.mean(finite ** 2) / finite.size))


def drop_error(errors: np.ndarray, k: int) -> float:
  """Standard error of a column's drop between its hotter run (errors[:k]) and colder run.

  A run without a measured cell (its values filled in from neighbours) is as uncertain as one
  measured cell: the column's root-mean-square error. NaN when the column has no error at all.
  """
  column = _rms(errors)
  runs = [run_mean_error(part) for part in (errors[:k], errors[k:])]
  return float(np.hypot(*[r if np.isfinite(r) else column for r in runs]))


def _regime_one_transition(lmc: np.ndarray, lmc_spread: np.ndarray, units: np.ndarray,
                           valid: np.ndarray, rule: RegimeRule) -> np.ndarray:
  """(T, D) booleans: Regime I under the transition rule (spread: std over dense seeds)."""
  regime_one = np.zeros(lmc.shape, bool)
  flat_columns, levels = [], []
  for d in range(lmc.shape[1]):
    rows = np.flatnonzero(valid[:, d])
    if rows.size < 2:
      flat_columns.append(d)
      continue
    k, drop = column_change_point(lmc[rows, d])
    noise = drop_error(cell_errors(lmc_spread[rows, d], units[rows, d]), k)
    if drop >= rule.min_drop and not drop <= rule.noise_factor * noise:  # NaN noise: no check.
      regime_one[rows[k:], d] = True
      levels.append(0.5 * (lmc[rows[:k], d].mean() + lmc[rows[k:], d].mean()))
    else:
      flat_columns.append(d)
  depth = flat_column_depth(levels, rule)
  for d in flat_columns:
    rows = np.flatnonzero(valid[:, d])
    # NaN (no estimate): no noise check.
    noise = _rms(cell_errors(lmc_spread[rows, d], units[rows, d]))
    bound = min(depth, -rule.noise_factor * noise) if np.isfinite(noise) else depth
    if rows.size and (lmc[rows, d] < bound).all():
      regime_one[rows, d] = True
  return regime_one


def flat_column_depth(levels: Sequence[float], rule: RegimeRule) -> float:
  """The LMC below which a column without a transition is Regime I (before its noise check).

  The shallower of the barrier scale (-min_drop: as deep as a drop that counts as a transition)
  and the grid's barrier level (the mean of `levels`, the transitions' midpoints; none: the
  scale alone).
  """
  return max(float(np.mean(levels)), -rule.min_drop) if len(levels) else -rule.min_drop


def _split_two(labels: np.ndarray, cka: np.ndarray, cka_noise: np.ndarray,
               regime_two: np.ndarray, regime_one: np.ndarray, rule: RegimeRule) -> None:
  """Writes II-A / II-B into `labels` for the regime-II cells (in place)."""
  for d in range(labels.shape[1]):
    rows = np.flatnonzero(regime_two[:, d])
    if not rows.size:
      continue
    plateau = cka[rows, d].max()
    if rule.rule == 'threshold':
      similar = cka[rows, d] >= plateau - rule.cka_tolerance
      labels[rows, d] = np.where(similar, 'II-B', 'II-A')
      continue
    labelled_rows = np.flatnonzero(regime_two[:, d] | regime_one[:, d])
    if regime_one[labelled_rows[-1], d]:  # The column ends in a barrier: no plateau.
      labels[rows, d] = 'II-A'
      continue
    noise = _rms(cka_noise[rows, d])
    tolerance = max(rule.cka_tolerance, rule.noise_factor * noise if np.isfinite(noise) else 0.0)
    onset = rows[np.argmax(cka[rows, d] >= plateau - tolerance)]
    labels[rows, d] = np.where(rows >= onset, 'II-B', 'II-A')


def label_grid(lmc: np.ndarray, cka: np.ndarray, rule: RegimeRule,
               lmc_noise: np.ndarray | None = None,
               cka_noise: np.ndarray | None = None,
               num_units: np.ndarray | None = None) -> np.ndarray:
  """Labels a (T, D) grid of cell means (rows hottest first).

  Args:
    lmc, cka: (T, D) cell means; NaN cells get no label.
    rule: the labelling rule.
    lmc_noise, cka_noise: (T, D) std over dense seeds; None (or NaN in a whole column): no
      estimate, no noise check there; a NaN cell among others takes the column's typical one.
    num_units: (T, D) dense seeds behind each cell's mean (LMC's standard error is lmc_noise /
      sqrt(num_units); 0: a cell filled in, not measured, which adds no evidence); None: one
      each.

  Returns:
    A (T, D) object array of 'I', 'II-A', 'II-B' or '' (unlabelled).
  """
  lmc, cka = np.asarray(lmc, float), np.asarray(cka, float)
  nan = np.full(lmc.shape, np.nan)
  lmc_noise = nan if lmc_noise is None else np.asarray(lmc_noise, float)
  cka_noise = nan if cka_noise is None else np.asarray(cka_noise, float)
  labels = np.full(lmc.shape, NO_LABEL, dtype=object)
  valid = np.isfinite(lmc) & np.isfinite(cka)
  if rule.rule == 'threshold':
    regime_one = valid & (lmc < rule.lmc_threshold)
  else:
    units = np.ones(lmc.shape) if num_units is None else np.asarray(num_units, float)
    regime_one = _regime_one_transition(lmc, lmc_noise, units, valid, rule)
  labels[regime_one] = 'I'
  _split_two(labels, cka, cka_noise, valid & ~regime_one, regime_one, rule)
  return labels


def unit_grid(rows: Sequence[dict], temperatures: Sequence[float], densities: Sequence[float],
              field: str) -> list[list[np.ndarray]]:
  """The per-unit values of `field` in every cell: grid[t][d] is a 1-D array.

  A unit is a dense seed (the mean of its seed pairs) when rows have `dense_seed`, else a row.
  """
  t_index = {float(t): i for i, t in enumerate(temperatures)}
  d_index = {float(d): j for j, d in enumerate(densities)}
  values = [[{} for _ in densities] for _ in temperatures]
  for n, row in enumerate(rows):
    seed = row.get('dense_seed')
    unit = ('seed', float(seed)) if seed is not None and np.isfinite(float(seed)) else ('row', n)
    value = float(row[field]) if row.get(field) not in (None, '') else np.nan
    cell = values[t_index[float(row['temperature'])]][d_index[float(row['density'])]]
    cell.setdefault(unit, []).append(value)
  return [[np.array([np.mean(v) for v in cell.values()], float) for cell in line]
          for line in values]


def cell_means(grid_values: list[list[np.ndarray]]) -> np.ndarray:
  """(T, D) means; NaN where a cell is empty or holds a NaN (a diverged member)."""
  return np.array([[v.mean() if v.size else np.nan for v in line] for line in grid_values])


def cell_stds(grid_values: list[list[np.ndarray]]) -> np.ndarray:
  """(T, D) sample standard deviations (ddof 1) over units; NaN with fewer than two."""
  return np.array([[v.std(ddof=1) if v.size > 1 else np.nan for v in line]
                   for line in grid_values])


def label_fn(rule: RegimeRule, num_units: np.ndarray | None = None) -> confidence_lib.LabelFn:
  """`label_grid` with `rule` and the cells' dense seeds bound: what the confidence estimators
  relabel replicates (of the same number of seeds) with."""
  return lambda lmc, cka, lmc_noise, cka_noise: label_grid(lmc, cka, rule, lmc_noise, cka_noise,
                                                           num_units)


def counts(labels: np.ndarray) -> dict[str, int]:
  """Cells per regime, and unlabelled cells under 'none'."""
  out = {r: int((labels == r).sum()) for r in REGIMES}
  out['none'] = int((labels == NO_LABEL).sum())
  return out


def agreement(labels: np.ndarray, temperatures: Sequence[float], densities: Sequence[float],
              reference: Sequence[dict]) -> dict:
  """How many cells carry the same label as a reference table (e.g. a hand-drawn diagram).

  Args:
    labels: (T, D) labels of this table.
    temperatures, densities: the grid's axes.
    reference: rows with 'temperature', 'density' and 'regime'; cells matched on temperature
      and density (to 1e-9). Reference labels other than I / II-A / II-B (e.g. 'ambiguous')
      are left out, as are cells missing from either side.

  Returns:
    {'matched', 'agree', 'fraction', 'disagreements': [{temperature, density, ours, theirs}]}.
  """
  agree, disagreements = 0, []
  for row in reference:
    theirs = str(row['regime']).strip()
    if theirs not in REGIMES:
      continue
    t = [i for i, v in enumerate(temperatures) if abs(v - float(row['temperature'])) < 1e-9]
    d = [j for j, v in enumerate(densities) if abs(v - float(row['density'])) < 1e-9]
    if not t or not d:
      continue
    ours = labels[t[0], d[0]]
    if ours == theirs:
      agree += 1
    else:
      disagreements.append({'temperature': temperatures[t[0]], 'density': densities[d[0]],
                            'ours': ours, 'theirs': theirs})
  matched = agree + len(disagreements)
  return {'matched': matched, 'agree': agree,
          'fraction': agree / matched if matched else float('nan'),
          'disagreements': disagreements}


def table_fields() -> list[str]:
  """The columns aggregated into cells: every metric entry's (`prunephase.metrics`); a metric
  not measured (`measure.hessian` off, ...) gives NaN cells."""
  return metrics.cell_fields()


def label_table(rows: list[dict], temperatures: Sequence[float], densities: Sequence[float],
                rule: RegimeRule, bootstrap: int, seed: int = 0,
                estimator: str = DEFAULTS['confidence']) -> dict:
  """Cell means, seed noise, labels and confidences of a table; sets 'regime' and
  'regime_confidence' on every row.

  Args:
    rows: dicts with 'temperature', 'density', 'lmc', 'cka_softmax' and optionally the other
      `table_fields()`, 'dense_seed' and 'diverged' (absent fields give NaN cells; a row with a
      true 'diverged' leaves its cell unlabelled).
    temperatures: hottest first.
    densities: column order.
    rule: the labelling rule.
    bootstrap: draws (simulated replicates, or resamples) for the confidence; 0: not computed
      (NaN confidences).
    seed: seed of the draws.
    estimator: one of confidence.ESTIMATORS ('replicate' or 'bootstrap').

  Returns:
    {'rule', 'means', 'stds' (dicts of (T, D) arrays; stds over dense seeds), 'labels',
    'confidence', 'num_pairs', 'num_units'}.
  """
  filled, fields = [], table_fields()
  for row in rows:
    row = {**{f: np.nan for f in fields}, **row}
    if _is_true(row.get('diverged')):
      row['lmc'] = row['cka_softmax'] = np.nan  # Never labelled from a diverged member.
    filled.append(row)
  grids = {f: unit_grid(filled, temperatures, densities, f) for f in fields}
  means = {f: cell_means(g) for f, g in grids.items()}
  stds = {f: cell_stds(g) for f, g in grids.items()}
  num_units = np.array([[v.size for v in line] for line in grids['lmc']])
  labels = label_grid(means['lmc'], means['cka_softmax'], rule, stds['lmc'],
                      stds['cka_softmax'], num_units)
  confidence = confidence_lib.estimate(estimator, grids['lmc'], grids['cka_softmax'], labels,
                                      label_fn(rule, num_units), bootstrap, seed, stds['lmc'],
                                      stds['cka_softmax'], NO_LABEL)
  t_index = {float(t): i for i, t in enumerate(temperatures)}
  d_index = {float(d): j for j, d in enumerate(densities)}
  num_pairs = np.zeros(labels.shape, int)
  for row in rows:
    t, d = t_index[float(row['temperature'])], d_index[float(row['density'])]
    row['regime'], row['regime_confidence'] = labels[t, d], confidence[t, d]
    num_pairs[t, d] += 1
  return {'rule': rule, 'means': means, 'stds': stds, 'labels': labels,
          'confidence': confidence, 'num_pairs': num_pairs,
          'num_units': num_units}


def _is_true(value) -> bool:
  if isinstance(value, str):
    return value.strip().lower() in ('1', 'true', 'yes')
  return bool(value) and not (isinstance(value, float) and np.isnan(value))
