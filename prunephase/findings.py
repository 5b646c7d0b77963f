"""Checks of the paper's three qualitative findings on the run at hand, from its numbers.

Each finding reads 'reproduced', 'partly' or 'not reproduced', computed here from the cell
means, the regime labels and the seed noise, never set by hand. Every comparison of two cells
is a comparison of two means over independent dense seeds, so its noise is the standard error
of their difference, sqrt(s_a^2 / n_a + s_b^2 / n_b), with s the sample standard deviation over
a cell's n dense seeds (see regimes.py); "twice the noise" below means twice that.
Rows are ordered hottest first, so row 0 is the hottest and row -1 the coldest temperature.

  transition   (a) at the lowest density the best temperature is hotter than the coldest and
               beats it by more than twice the seed noise; (b) at the highest density the
               coldest temperature is within twice the seed noise of the best (or is the best).
               When either of those columns has no finite test error (test_error is
               optional in a table), it reads 'not reproduced'.
  connectivity (a) the cell at (lowest density, coldest) is Regime I (a barrier) under the
               run's regime rule; (b) no cell of the highest density is Regime I and |LMC|
               there stays below the rule's barrier scale (`min_drop` for the transition
               rule, |lmc_threshold| for the threshold rule) at every temperature.
  similarity   at the highest density CKA rises from the hottest to the coldest temperature:
               by more than twice the seed noise -> reproduced; by less -> partly.

With fewer than two dense seeds per cell there is no noise estimate; the parts that compare
with the noise then do not hold, and the summary says so (never 'reproduced' without noise).
Cells left unlabelled because a member diverged are listed under 'unlabelled_cells'.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

STATUSES = ('reproduced', 'partly', 'not reproduced')


def _status(parts: Sequence[bool]) -> str:
  if all(parts):
    return 'reproduced'
  return 'partly' if any(parts) else 'not reproduced'


def _noise(std_a: float, n_a: int, std_b: float, n_b: int) -> float:
  """Standard error of the difference of two cell means; NaN without two seeds in each."""
  if not (np.isfinite(std_a) and np.isfinite(std_b) and n_a > 1 and n_b > 1):
    return float('nan')
  return float(np.sqrt(std_a ** 2 / n_a + std_b ** 2 / n_b))


def _noise_text(noise: float) -> str:
  """'2x noise 0.0123', or why there is none (the noise-based parts then cannot hold)."""
  if np.isfinite(noise):
    return f'2x SE {2 * noise:.4f}'
  return 'no noise estimate: fewer than 2 dense seeds per cell'


def check(means: dict[str, np.ndarray], stds: dict[str, np.ndarray],
          temperatures: Sequence[float], densities: Sequence[float],
          labels: np.ndarray, rule, num_seeds: np.ndarray | None = None) -> dict[str, Any]:
  """The three findings with their numbers.

  Args:
    means: (T, D) cell means, keys 'test_error', 'lmc', 'cka_softmax'.
    stds: (T, D) cell stds over dense seeds, same keys.
    temperatures: hottest first.
    densities: ascending or not; the lowest and highest are found by value.
    labels: (T, D) regime labels ('' = unlabelled).
    rule: the `regimes.RegimeRule` that produced them.
    num_seeds: (T, D) independent dense seeds behind each cell mean (default 2 everywhere,
      which makes the noise of two cells the root mean square of their stds).

  Returns:
    {'transition': {...}, 'connectivity': {...}, 'similarity': {...}}, each with 'status',
    a one-line 'summary' and the numbers behind it.
  """
  order = np.argsort(densities)
  low, high = int(order[0]), int(order[-1])
  cold = len(temperatures) - 1
  err, err_std = means['test_error'], stds['test_error']
  barrier_scale = rule.min_drop if rule.rule == 'transition' else abs(rule.lmc_threshold)
  out = {}
  seeds = np.full(np.shape(labels), 2) if num_seeds is None else np.asarray(num_seeds)
  unlabelled = [{'temperature': temperatures[t], 'density': densities[d]}
                for (t, d), label in np.ndenumerate(labels) if not label]
  if len(temperatures) < 2:
    skip = {'status': 'not reproduced', 'summary': 'needs at least two temperatures'}
    return {'transition': skip, 'connectivity': skip, 'similarity': skip,
            'unlabelled_cells': unlabelled}

  if not (np.isfinite(err[:, low]).any() and np.isfinite(err[:, high]).any()):
    # No test errors (the column is optional) or every member diverged: nothing to rank.
    out['transition'] = {
        'status': 'not reproduced',
        'summary': (f'no finite test error at density {densities[low]:g} or '
                    f'{densities[high]:g}')}
  else:
    best_low = int(np.nanargmin(err[:, low]))
    gap_low = float(err[cold, low] - err[best_low, low])
    noise_low = _noise(err_std[cold, low], seeds[cold, low], err_std[best_low, low],
                       seeds[best_low, low])
    best_high = int(np.nanargmin(err[:, high]))
    gap_high = float(err[cold, high] - err[best_high, high])
    noise_high = _noise(err_std[cold, high], seeds[cold, high], err_std[best_high, high],
                        seeds[best_high, high])
    low_ok = best_low != cold and gap_low > 2 * noise_low
    high_ok = best_high == cold or gap_high <= 2 * noise_high
    if best_low == cold:
      low_text = f'the coldest T={temperatures[cold]:g} is the best'
    else:
      low_text = (f'best T={temperatures[best_low]:g} beats the coldest T={temperatures[cold]:g} '
                  f'by {gap_low:.4f}')
    if best_high == cold:
      high_text = f'the coldest T={temperatures[cold]:g} is the best'
    else:
      high_text = (f'the coldest is {gap_high:.4f} above the best '
                   f'T={temperatures[best_high]:g}')
    out['transition'] = {
        'status': _status([low_ok, high_ok]),
        'summary': (f'density {densities[low]:g}: {low_text} ({_noise_text(noise_low)}); '
                    f'density {densities[high]:g}: {high_text} ({_noise_text(noise_high)})'),
        'low_density': {'density': densities[low], 'best_temperature': temperatures[best_low],
                        'gap_to_coldest': gap_low, 'seed_noise': noise_low, 'holds': low_ok},
        'high_density': {'density': densities[high], 'best_temperature': temperatures[best_high],
                         'gap_to_coldest': gap_high, 'seed_noise': noise_high, 'holds': high_ok}}

  lmc, lmc_std = means['lmc'], stds['lmc']
  corner = float(lmc[cold, low])
  high_lmc = np.abs(lmc[:, high])
  worst_high = float(np.nanmax(high_lmc)) if np.isfinite(high_lmc).any() else float('nan')
  corner_ok = labels[cold, low] == 'I'
  high_ok = 'I' not in list(labels[:, high]) and worst_high < barrier_scale
  out['connectivity'] = {
      'status': _status([corner_ok, high_ok]),
      'summary': (f'(density {densities[low]:g}, coldest): regime {labels[cold, low] or "n/a"}, '
                  f'LMC {corner:+.4f} (+-{lmc_std[cold, low]:.4f}); density '
                  f'{densities[high]:g}: {int((labels[:, high] == "I").sum())} Regime-I cells, '
                  f'max |LMC| {worst_high:.4f} (barrier scale {barrier_scale:g})'),
      'cold_low_corner_lmc': corner, 'cold_low_corner_std': float(lmc_std[cold, low]),
      'cold_low_corner_regime': str(labels[cold, low]),
      'max_abs_lmc_high_density': worst_high, 'barrier_scale': barrier_scale,
      'holds': [bool(corner_ok), bool(high_ok)]}

  cka, cka_std = means['cka_softmax'], stds['cka_softmax']
  rise = float(cka[cold, high] - cka[0, high])
  noise = _noise(cka_std[cold, high], seeds[cold, high], cka_std[0, high], seeds[0, high])
  status = 'reproduced' if rise > 2 * noise else ('partly' if rise > 0 else 'not reproduced')
  out['similarity'] = {
      'status': status,
      'summary': (f'density {densities[high]:g}: CKA hottest {cka[0, high]:.4f} -> coldest '
                  f'{cka[cold, high]:.4f} (rise {rise:+.4f}, {_noise_text(noise)})'),
      'rise': rise, 'seed_noise': noise}
  out['unlabelled_cells'] = unlabelled
  return out
