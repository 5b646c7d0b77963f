"""How sure a regime label is: the chance that an independent run gives the cell the same label.

A run's label of a cell rests on a few dense seeds per cell (the *units*: each dense seed's
seed pairs are averaged first, see `regimes.unit_grid`). Another run with other dense seeds
draws other units, so its cell means, its seed-noise estimates and therefore its labels move.
The confidence of a label is the probability that such a replicate run labels the cell the
same way. Two estimators (`config.regimes.confidence`):

'replicate' (the default) simulates replicate runs. Each cell's units are draws from a normal
distribution with an unknown mean and spread. Three units say little about a spread, and the
spread of a cell grows with its depth (LMC's spread is about half its distance from 0, CKA's
about a third of its distance from 1, over the default's grids), so each cell's spread is
estimated from its own units together with `PRIOR_DF` pseudo-units at a grid-wide noise model,
sigma = k x (|mean - reference| + floor), k fitted by pooling every cell of the grid (the
reference is 0 for LMC and 1 for CKA; the floor keeps cells at the reference from claiming no
noise). One draw: each cell's variance from its posterior (scaled inverse chi-square), its true
mean from its posterior (the observed mean plus spread/sqrt(n) noise), then a replicate's n
units from that mean and spread. The replicate is labelled by the same rule, with noise
estimates from its own units, and compared with this run's labels. A replicate's cell mean
thus differs from the observed one by about sqrt(2) x spread/sqrt(n): both runs are noisy,
which is what a label replication test sees.

'bootstrap' resamples each cell's own units with replacement and relabels with this run's
noise. With three units it understates the noise (the resampled mean varies by (n-1)/n of the
sampling variance, a replicate's own noise is not counted, and a cell's three units often
happen to agree), so its labels look surer than they replicate; it is kept to compare against
(docs/definitions.md, Confidence, has both estimators' reliability tables).

Cells without a label, holding a NaN, or with fewer than two units get NaN (nothing to say),
and so does every cell when `num_draws` is 0: the confidence is then not computed, which is not
the same as a confidence of 0.
"""

from collections.abc import Callable, Sequence

import numpy as np

from prunephase.config import names

ESTIMATORS = names.CONFIDENCE_ESTIMATORS
# Weight of the grid-wide noise model in a cell's spread, in units: 8 against a cell's own
# n - 1 = 2 (three dense seeds). Chosen on dense-seed sets 1-3, 4-6, 7-9 and 10-12 of the
# default among 0, 2, 8 and 1000 (docs/definitions.md, Confidence).
PRIOR_DF = 8.0
# Noise-model floors (error fraction for LMC, CKA units): the spread of a cell at the reference.
LMC_FLOOR = 0.002
CKA_FLOOR = 0.0005

# label_fn(lmc_means, cka_means, lmc_noise, cka_noise) -> (T, D) labels; all arrays (T, D).
LabelFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
UnitGrid = Sequence[Sequence[np.ndarray]]  # grid[t][d]: the 1-D unit values of a cell.


def _usable(lmc_values: UnitGrid, cka_values: UnitGrid) -> np.ndarray:
  """(T, D) booleans: cells with at least one unit and no NaN in either metric."""
  return np.array([[a.size > 0 and np.isfinite(a).all() and np.isfinite(b).all()
                    for a, b in zip(row_a, row_b)]
                   for row_a, row_b in zip(lmc_values, cka_values)], bool)


def cell_spread(values: UnitGrid, usable: np.ndarray, prior_df: float, reference: float,
                floor: float) -> tuple[np.ndarray, np.ndarray]:
  """Each cell's spread: its units' sum of squares plus `prior_df` pseudo-units at the noise model.

  Args:
    values: grid[t][d] 1-D unit values.
    usable: (T, D) booleans, the cells to estimate (and to fit the model on).
    prior_df: pseudo-units of the noise model sigma = k x (|mean - reference| + floor), with
      k^2 = pooled over usable cells of (sum of squared deviations / scale^2) / (units - cells).
    reference, floor: of the noise model, in the metric's units.

  Returns:
    (sum_sq, df): (T, D) arrays; a cell's variance has the posterior sum_sq / chi2(df). Both are
    0 where a cell is not usable or the grid has no replicated cell.
  """
  shape = usable.shape
  own_sq, own_df, scale = np.zeros(shape), np.zeros(shape), np.ones(shape)
  for t in range(shape[0]):
    for d in range(shape[1]):
      if usable[t, d]:
        cell = values[t][d]
        own_sq[t, d] = ((cell - cell.mean()) ** 2).sum()
        own_df[t, d] = cell.size - 1
        scale[t, d] = abs(cell.mean() - reference) + floor
  total_df = own_df.sum()
  k2 = (own_sq / scale ** 2).sum() / total_df if total_df else 0.0
  prior = np.where(usable, prior_df if total_df else 0.0, 0.0)
  return own_sq + prior * k2 * scale ** 2, own_df + prior


def _sizes(values: UnitGrid) -> np.ndarray:
  return np.array([[v.size for v in row] for row in values], int)


def _finalise(agree: np.ndarray, num_draws: int, labels: np.ndarray, sizes: np.ndarray,
              no_label: str) -> np.ndarray:
  confidence = agree / num_draws
  confidence[(labels == no_label) | (sizes < 2)] = np.nan
  return confidence


def replicate_confidence(lmc_values: UnitGrid, cka_values: UnitGrid, labels: np.ndarray,
                         label_fn: LabelFn, num_draws: int, seed: int = 0,
                         no_label: str = '', prior_df: float = PRIOR_DF) -> np.ndarray:
  """Fraction of simulated replicate runs that give each cell its label (module docstring).

  Args:
    lmc_values, cka_values: grid[t][d] 1-D unit values (dense seeds) of a (T, D) grid.
    labels: (T, D) this run's labels.
    label_fn: labels a grid from its means and per-cell noise (std over units, ddof 1).
    num_draws: simulated replicates; 0: not computed (all NaN).
    seed: simulation seed.
    no_label: the label of unlabelled cells.

  Returns:
    (T, D) floats in [0, 1]; NaN where there is nothing to estimate.
  """
  labels = np.asarray(labels, dtype=object)
  shape = labels.shape
  if num_draws <= 0:
    return np.full(shape, np.nan)
  usable = _usable(lmc_values, cka_values)
  sizes = _sizes(lmc_values)
  means = {name: np.array([[v.mean() if ok else np.nan for v, ok in zip(row, ok_row)]
                           for row, ok_row in zip(values, usable)])
           for name, values in (('lmc', lmc_values), ('cka', cka_values))}
  spread = {'lmc': cell_spread(lmc_values, usable, prior_df, 0.0, LMC_FLOOR),
            'cka': cell_spread(cka_values, usable, prior_df, 1.0, CKA_FLOOR)}
  rng = np.random.default_rng(seed)
  max_units = max(int(sizes.max()), 1)
  present = np.arange(max_units)[None, None, :] < sizes[..., None]
  agree = np.zeros(shape)
  for _ in range(num_draws):
    replicate = {}
    for name in ('lmc', 'cka'):
      sum_sq, df = spread[name]
      # Posterior draw of each cell's variance: sum_sq / chi2(df); 0 where nothing pools.
      chi2 = rng.chisquare(np.maximum(df, 1.0))
      sigma = np.sqrt(np.divide(sum_sq, chi2, out=np.zeros(shape), where=df > 0))  # (T, D)
      n = np.maximum(sizes, 1)
      true_mean = means[name] + sigma / np.sqrt(n) * rng.standard_normal(shape)
      units = true_mean[..., None] + sigma[..., None] * rng.standard_normal(shape + (max_units,))
      units = np.where(present, units, 0.0)
      mean = units.sum(-1) / n
      noise = np.sqrt((((units - mean[..., None]) * present) ** 2).sum(-1) /
                      np.maximum(sizes - 1, 1))
      replicate[name] = np.where(usable, mean, np.nan)
      replicate[name + '_noise'] = np.where(sizes > 1, noise, np.nan)
    agree += label_fn(replicate['lmc'], replicate['cka'], replicate['lmc_noise'],
                      replicate['cka_noise']) == labels
  return _finalise(agree, num_draws, labels, sizes, no_label)


def bootstrap_confidence(lmc_values: UnitGrid, cka_values: UnitGrid, labels: np.ndarray,
                         label_fn: LabelFn, num_draws: int, seed: int = 0,
                         lmc_noise: np.ndarray | None = None,
                         cka_noise: np.ndarray | None = None,
                         no_label: str = '') -> np.ndarray:
  """Fraction of bootstrap resamples whose label equals `labels`, per cell (module docstring).

  Each resample draws, in every cell, as many units as it holds, with replacement, and
  relabels the whole grid with this run's noise (`lmc_noise`, `cka_noise`: (T, D) or None).
  Same arguments and result as `replicate_confidence`.
  """
  labels = np.asarray(labels, dtype=object)
  shape = labels.shape
  if num_draws <= 0:
    return np.full(shape, np.nan)
  usable = _usable(lmc_values, cka_values)
  nan = np.full(shape, np.nan)
  lmc_noise = nan if lmc_noise is None else np.asarray(lmc_noise, float)
  cka_noise = nan if cka_noise is None else np.asarray(cka_noise, float)
  rng = np.random.default_rng(seed)
  agree = np.zeros(shape)
  for _ in range(num_draws):
    lmc, cka = np.full(shape, np.nan), np.full(shape, np.nan)
    for t in range(shape[0]):
      for d in range(shape[1]):
        if usable[t, d]:
          n = lmc_values[t][d].size
          pick = rng.integers(0, n, n)
          lmc[t, d] = lmc_values[t][d][pick].mean()
          cka[t, d] = cka_values[t][d][pick].mean()
    agree += label_fn(lmc, cka, lmc_noise, cka_noise) == labels
  return _finalise(agree, num_draws, labels, _sizes(lmc_values), no_label)


def estimate(estimator: str, lmc_values: UnitGrid, cka_values: UnitGrid, labels: np.ndarray,
             label_fn: LabelFn, num_draws: int, seed: int = 0,
             lmc_noise: np.ndarray | None = None, cka_noise: np.ndarray | None = None,
             no_label: str = '') -> np.ndarray:
  """The confidences of `labels` by the named estimator (one of ESTIMATORS)."""
  if estimator == 'replicate':
    return replicate_confidence(lmc_values, cka_values, labels, label_fn, num_draws, seed,
                                no_label)
  if estimator == 'bootstrap':
    return bootstrap_confidence(lmc_values, cka_values, labels, label_fn, num_draws, seed,
                                lmc_noise, cka_noise, no_label)
  raise ValueError(f'unknown regimes.confidence {estimator!r}; choose one of '
                   f'{", ".join(ESTIMATORS)}')
