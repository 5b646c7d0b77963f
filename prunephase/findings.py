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

No finding is read from garbage: cells where a member diverged, or whose mean test error is at
chance (`CHANCE_MARGIN`), are left out of all three ('left_out_cells' names each with its reason).
A column a finding reads keeps the coldest cell and at least one other, or the finding is
'not assessed' and its summary says which cells are missing; so is connectivity without its
cold low-density corner or any high-density cell.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np

STATUSES = ('reproduced', 'partly', 'not reproduced')
NOT_ASSESSED = 'not assessed'  # Too few cells left after leaving out diverged/chance ones.

CHANCE_MARGIN = 0.05
"""How close to guessing a cell's mean test error may come before the cell counts as "at
chance": a cell is at chance when its mean test error is at least
`1 - 1 / num_classes - CHANCE_MARGIN` (0.85 with 10 classes, 0.45 with 2, 0.94 with 100),
i.e. its models are right on at most 5 % of the examples more than guessing one class is. Such
models learnt nothing the findings could compare (a broken head, a diverged or stalled run), so
their cells are left out. Looser than `train.CHANCE_MARGIN` (0.02, which also needs the train
loss at ln C to call a single member diverged): a cell mean this close to chance is garbage
even where some members still learn a little."""


def chance_error(num_classes: int) -> float:
  """The mean test error from which a cell is at chance (see `CHANCE_MARGIN`)."""
  return 1.0 - 1.0 / num_classes - CHANCE_MARGIN


def _left_out(test_error: np.ndarray, diverged: np.ndarray | None,
              num_classes: int | None) -> dict[tuple[int, int], str]:
  """{(t, d): why} for the cells no finding may read, in row-major order (hottest first)."""
  err = np.asarray(test_error, float)
  bad = np.zeros(err.shape, bool) if diverged is None else np.asarray(diverged, bool)
  threshold = chance_error(num_classes) if num_classes else np.inf
  reasons = {}
  for (t, d), value in np.ndenumerate(err):
    if bad[t, d]:
      reasons[t, d] = 'a member diverged'
    elif np.isfinite(value) and value >= threshold:
      reasons[t, d] = f'test error at chance ({value:.2f} >= {threshold:.2f})'
  return reasons


def left_out_cells(test_error: np.ndarray, temperatures: Sequence[float],
                   densities: Sequence[float], diverged: np.ndarray | None = None,
                   num_classes: int | None = None) -> list[dict[str, Any]]:
  """The cells no finding may read, hottest first, each with why.

  Args:
    test_error: (T, D) cell mean test errors (NaN where unknown: never at chance).
    temperatures, densities: the grid's axes.
    diverged: (T, D) booleans, True where a member of the cell diverged (None: none did).
    num_classes: the dataset's classes (None: the at-chance test is skipped, e.g. a results
      table of unknown origin).

  Returns:
    [{'temperature', 'density', 'reason'}], reason 'a member diverged' or
    'test error at chance (0.90 >= 0.85)'.
  """
  return [{'temperature': temperatures[t], 'density': densities[d], 'reason': reason}
          for (t, d), reason in _left_out(test_error, diverged, num_classes).items()]


def _cell_text(temperature: float, density: float) -> str:
  return f'(T={temperature:g}, d={density:g})'


def describe_left_out(cells: Sequence[dict[str, Any]]) -> str:
  """'(T=16, d=0.04): a member diverged; (T=32, d=0.04): test error at chance (...)'."""
  return '; '.join(f'{_cell_text(c["temperature"], c["density"])}: {c["reason"]}'
                   for c in cells)


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


def _not_assessed(why: str) -> dict[str, str]:
  return {'status': NOT_ASSESSED, 'summary': why}


def _column_gap(keep: np.ndarray, column: int, temperatures, densities,
                left_out: dict) -> str | None:
  """Why a column cannot be read (its coldest cell or every other one is left out), or None."""
  cold = len(temperatures) - 1
  if keep[cold, column] and keep[:, column].sum() >= 2:
    return None
  missing = '; '.join(f'{_cell_text(temperatures[t], densities[column])}: {left_out[t, column]}'
                      for t in range(len(temperatures)) if not keep[t, column])
  return (f'too few cells left at density {densities[column]:g} (needs the coldest and one '
          f'more); left out {missing}')


def _left_out_note(keep: np.ndarray, column: int, temperatures) -> str:
  """'; left out here: T=16' for a column read without some of its cells ('' if complete)."""
  gone = [f'T={temperatures[t]:g}' for t in range(len(temperatures)) if not keep[t, column]]
  return f'; left out here: {", ".join(gone)}' if gone else ''


def check(means: dict[str, np.ndarray], stds: dict[str, np.ndarray],
          temperatures: Sequence[float], densities: Sequence[float],
          labels: np.ndarray, rule, num_seeds: np.ndarray | None = None,
          diverged: np.ndarray | None = None, num_classes: int | None = None
          ) -> dict[str, Any]:
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
    diverged: (T, D) booleans, True where a member of the cell diverged; such cells are left
      out (None: none did).
    num_classes: the dataset's classes; cells at chance (`CHANCE_MARGIN`) are left out (None:
      not tested).

  Returns:
    {'transition': {...}, 'connectivity': {...}, 'similarity': {...}}, each with 'status'
    (one of `STATUSES`, or `NOT_ASSESSED` when too few cells are left), a one-line 'summary'
    and the numbers behind it; 'unlabelled_cells' and 'left_out_cells' (with reasons).
  """
  order = np.argsort(densities)
  low, high = int(order[0]), int(order[-1])
  cold = len(temperatures) - 1
  barrier_scale = rule.min_drop if rule.rule == 'transition' else abs(rule.lmc_threshold)
  out = {}
  seeds = np.full(np.shape(labels), 2) if num_seeds is None else np.asarray(num_seeds)
  unlabelled = [{'temperature': temperatures[t], 'density': densities[d]}
                for (t, d), label in np.ndenumerate(labels) if not label]
  reasons = _left_out(means['test_error'], diverged, num_classes)
  left_out = [{'temperature': temperatures[t], 'density': densities[d], 'reason': reason}
              for (t, d), reason in reasons.items()]
  # Left-out cells read as missing (NaN means, no label), so no finding can use them.
  keep = np.ones(np.shape(labels), bool)
  for cell in reasons:
    keep[cell] = False
  means = {k: np.where(keep, np.asarray(v, float), np.nan) for k, v in means.items()}
  labels = np.array(labels, dtype=object)
  labels[~keep] = ''
  err, err_std = means['test_error'], stds['test_error']
  if len(temperatures) < 2:
    skip = {'status': 'not reproduced', 'summary': 'needs at least two temperatures'}
    return {'transition': skip, 'connectivity': skip, 'similarity': skip,
            'unlabelled_cells': unlabelled, 'left_out_cells': left_out}

  gap = _column_gap(keep, low, temperatures, densities, reasons) or _column_gap(
      keep, high, temperatures, densities, reasons)
  if gap:
    out['transition'] = _not_assessed(gap)
  elif not (np.isfinite(err[:, low]).any() and np.isfinite(err[:, high]).any()):
    # No test errors (the column is optional, or NaN): nothing to rank.
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
        'summary': (f'density {densities[low]:g}: {low_text} ({_noise_text(noise_low)}'
                    f'{_left_out_note(keep, low, temperatures)}); density {densities[high]:g}: '
                    f'{high_text} ({_noise_text(noise_high)}'
                    f'{_left_out_note(keep, high, temperatures)})'),
        'low_density': {'density': densities[low], 'best_temperature': temperatures[best_low],
                        'gap_to_coldest': gap_low, 'seed_noise': noise_low, 'holds': low_ok},
        'high_density': {'density': densities[high], 'best_temperature': temperatures[best_high],
                         'gap_to_coldest': gap_high, 'seed_noise': noise_high, 'holds': high_ok}}

  lmc, lmc_std = means['lmc'], stds['lmc']
  if not keep[cold, low]:
    out['connectivity'] = _not_assessed(
        f'its cold low-density corner is left out: '
        f'{_cell_text(temperatures[cold], densities[low])}: {reasons[cold, low]}')
  elif not keep[:, high].any():
    out['connectivity'] = _not_assessed(
        f'every cell of density {densities[high]:g} is left out')
  else:
    corner = float(lmc[cold, low])
    high_lmc = np.abs(lmc[:, high])
    worst_high = float(np.nanmax(high_lmc)) if np.isfinite(high_lmc).any() else float('nan')
    corner_ok = labels[cold, low] == 'I'
    high_ok = 'I' not in list(labels[:, high]) and worst_high < barrier_scale
    out['connectivity'] = {
        'status': _status([corner_ok, high_ok]),
        'summary': (f'(density {densities[low]:g}, coldest): regime '
                    f'{labels[cold, low] or "n/a"}, LMC {corner:+.4f} '
                    f'(+-{lmc_std[cold, low]:.4f}); density {densities[high]:g}: '
                    f'{int((labels[:, high] == "I").sum())} Regime-I cells, max |LMC| '
                    f'{worst_high:.4f} (barrier scale {barrier_scale:g}'
                    f'{_left_out_note(keep, high, temperatures)})'),
        'cold_low_corner_lmc': corner, 'cold_low_corner_std': float(lmc_std[cold, low]),
        'cold_low_corner_regime': str(labels[cold, low]),
        'max_abs_lmc_high_density': worst_high, 'barrier_scale': barrier_scale,
        'holds': [bool(corner_ok), bool(high_ok)]}

  cka, cka_std = means['cka_softmax'], stds['cka_softmax']
  gap = _column_gap(keep, high, temperatures, densities, reasons)
  if gap:
    out['similarity'] = _not_assessed(gap)
  else:
    hot = int(np.argmax(keep[:, high]))  # The hottest cell kept.
    rise = float(cka[cold, high] - cka[hot, high])
    noise = _noise(cka_std[cold, high], seeds[cold, high], cka_std[hot, high], seeds[hot, high])
    status = 'reproduced' if rise > 2 * noise else ('partly' if rise > 0 else 'not reproduced')
    hottest = 'hottest' if hot == 0 else f'hottest kept T={temperatures[hot]:g}'
    out['similarity'] = {
        'status': status,
        'summary': (f'density {densities[high]:g}: CKA {hottest} {cka[hot, high]:.4f} -> '
                    f'coldest {cka[cold, high]:.4f} (rise {rise:+.4f}, {_noise_text(noise)})'),
        'rise': rise, 'seed_noise': noise}
  out['unlabelled_cells'] = unlabelled
  out['left_out_cells'] = left_out
  return out
