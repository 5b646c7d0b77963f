"""Does an answer replicate? Statistics comparing independent runs of one grid.

Pure NumPy functions on the arrays the case studies already compute (prunephase.out_of_sample
puts them together, prints them and writes them; `prunephase-regimes --replicate`,
`prunephase-advise --evaluate --replicate`, `prunephase-select --replicate`).

A *run* is one results table of a temperature x density grid (e.g. a sweep with other dense
seeds). Given R runs of the same grid, every statistic here is pooled over all R(R-1)/2 pairs
of runs: a cell of a pair is one comparison, so `k/n` counts cells of pairs.

* **label replication**: the fraction of cells (both runs label them) with the same regime.
* **confident replication**: the same, over the cells that *both* runs label with a
  confidence of at least `min_confidence` (regimes.bootstrap_confidence).
* **advice / pick replication**: the same for CS1's advice per cell and CS2's pick per density
  (the three-regime rule's). CS1's rule maps labels one to one onto moves, so advice
  replication equals label replication today; it is counted on its own so that it stays right
  if the rule gains a condition (e.g. no advice below a confidence).
* **confident kept**: over every ordered pair of runs, the fraction of the first run's
  confident cells that the second run labels the same (whatever its confidence): the
  calibration target. **confident cells**: the fraction of labelled cells that are confident.
* **reliability**: label replication per confidence bin, the confidence of a pair's cell being
  the lower of its two runs' confidences (a label is only as trustworthy as its weaker run).

Out-of-sample scores (the case studies judged on another run's test errors) come with a
percentile bootstrap interval (`bootstrap_means`), resampling the units that were judged
(cells for CS1, densities for CS2) with replacement.
"""

from collections.abc import Mapping, Sequence
import itertools
from typing import Any

import numpy as np

from prunephase import regimes as regimes_lib

# Confidence bin edges of the reliability table; the last bin is closed: [0.9, 1.0].
RELIABILITY_EDGES = (0.0, 0.5, 0.7, 0.9, 1.0)
INTERVAL_LEVEL = 0.95  # Of every bootstrap interval.
INTERVAL_RESAMPLES = 1000
INTERVAL_SEED = 0


def pairs(num_runs: int) -> list[tuple[int, int]]:
  """Every pair (i, j), i < j, of `num_runs` runs: the comparisons the statistics pool."""
  return list(itertools.combinations(range(num_runs), 2))


def _close_sets(a: Sequence[float], b: Sequence[float]) -> tuple[list[float], list[float]]:
  """(values of a with no close match in b, values of b with none in a); rtol 1e-9."""
  only_a = [x for x in a if not np.isclose(x, b, rtol=1e-9, atol=0).any()]
  only_b = [y for y in b if not np.isclose(y, a, rtol=1e-9, atol=0).any()]
  return only_a, only_b


def grid_difference(first: Mapping[str, Any], other: Mapping[str, Any],
                    names: tuple[str, str] = ('the first', 'the other')) -> str | None:
  """How the grids of two runs differ, in one line; None when they are the same grid.

  Args:
    first, other: each with 'knob' (str), 'temperatures' and 'densities' (sequences of floats).
    names: how the message names the two runs.

  Returns:
    E.g. 'temperatures (epochs) differ: 40 only in A, 80 only in B', or None. The knob is
    checked first (a different knob is another experiment), then temperatures, then densities.
  """
  if first['knob'] != other['knob']:
    return f'knobs differ: {first["knob"]} in {names[0]}, {other["knob"]} in {names[1]}'
  for axis, what in (('temperatures', f'temperatures ({first["knob"]})'),
                     ('densities', 'densities')):
    only_a, only_b = _close_sets(list(first[axis]), list(other[axis]))
    if only_a or only_b:
      parts = [f'{", ".join(f"{v:g}" for v in values)} only in {name}'
               for values, name in ((only_a, names[0]), (only_b, names[1])) if values]
      return f'{what} differ: {"; ".join(parts)}'
  return None


def _fraction(agree: int, cells: int) -> dict[str, Any]:
  return {'agree': int(agree), 'cells': int(cells),
          'fraction': agree / cells if cells else float('nan')}


def pairwise_agreement(values: Sequence[np.ndarray],
                       valid: Sequence[np.ndarray]) -> dict[str, Any]:
  """How often runs give the same value, over every pair of runs.

  Args:
    values: R arrays of one shape, e.g. (T, D) labels or advice, or (D,) pick indices.
    valid: R boolean arrays of that shape: where a run has a value to compare (a label, a
      confident label, a pick). A pair compares the entries valid in both runs.

  Returns:
    {'agree': k, 'cells': n, 'fraction': k/n (NaN for n = 0), 'pairs': per pair of runs
    {'runs': [i, j], 'agree', 'cells', 'fraction'}}: n counts the entries of all pairs.
  """
  per_pair = []
  for i, j in pairs(len(values)):
    both = np.asarray(valid[i], bool) & np.asarray(valid[j], bool)
    same = np.asarray(values[i] == values[j], bool) & both
    per_pair.append({'runs': [i, j], **_fraction(same.sum(), both.sum())})
  total = _fraction(sum(p['agree'] for p in per_pair), sum(p['cells'] for p in per_pair))
  return {**total, 'pairs': per_pair}


def confident_kept(values: Sequence[np.ndarray], confident: Sequence[np.ndarray],
                   valid: Sequence[np.ndarray]) -> dict[str, Any]:
  """How often a confident label is kept by another run: the calibration target.

  Over every ordered pair of runs (i, j): the entries confident in run i and valid (labelled)
  in run j, counted as kept where run j gives the same value. Unlike `pairwise_agreement` on
  the confident cells, run j need not be confident: a label is judged by what another honest
  run says, however sure that run is.

  Returns:
    {'agree': k, 'cells': n, 'fraction': k/n}.
  """
  agree = cells = 0
  for i, j in itertools.permutations(range(len(values)), 2):
    judged = np.asarray(confident[i], bool) & np.asarray(valid[j], bool)
    cells += int(judged.sum())
    agree += int((np.asarray(values[i] == values[j], bool) & judged).sum())
  return _fraction(agree, cells)


def bin_name(low: float, high: float, last: bool) -> str:
  """'[0.5, 0.7)', or '[0.9, 1.0]' for the last (closed) bin."""
  return f'[{low:.1f}, {high:.1f}' + (']' if last else ')')


def reliability(labels: Sequence[np.ndarray], confidences: Sequence[np.ndarray],
                edges: Sequence[float] = RELIABILITY_EDGES) -> list[dict[str, Any]]:
  """Label replication per confidence bin (a reliability table).

  Args:
    labels: R (T, D) label arrays ('' = unlabelled).
    confidences: R (T, D) confidences in [0, 1]; NaN where a run has none (a cell with one
      dense seed).
    edges: bin edges; bins are [e_k, e_k+1), the last one closed.

  Returns:
    One dict per bin, {'bin', 'low', 'high', 'cells', 'replicated', 'fraction'}, then one with
    'bin' 'n/a' for the cells where either run has no confidence. A cell of a pair of runs
    counts when both runs label it; its confidence is the lower of the two runs'.
  """
  low_conf, same = [], []
  for i, j in pairs(len(labels)):
    both = (labels[i] != regimes_lib.NO_LABEL) & (labels[j] != regimes_lib.NO_LABEL)
    # np.minimum keeps a NaN: a cell is binned only when both runs have a confidence.
    low_conf.append(np.minimum(np.asarray(confidences[i], float)[both],
                               np.asarray(confidences[j], float)[both]))
    same.append(np.asarray(labels[i][both] == labels[j][both], bool))
  low_conf = np.concatenate(low_conf) if low_conf else np.zeros(0)
  same = np.concatenate(same) if same else np.zeros(0, bool)
  table = []
  for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
    last = k == len(edges) - 2
    inside = (low_conf >= low) & ((low_conf <= high) if last else (low_conf < high))
    table.append({'bin': bin_name(low, high, last), 'low': float(low), 'high': float(high),
                  **_counts(same[inside])})
  table.append({'bin': 'n/a', 'low': float('nan'), 'high': float('nan'),
                **_counts(same[np.isnan(low_conf)])})
  return table


def _counts(same: np.ndarray) -> dict[str, Any]:
  cells, replicated = int(same.size), int(same.sum())
  return {'cells': cells, 'replicated': replicated,
          'fraction': replicated / cells if cells else float('nan')}


def bootstrap_means(outcomes: Mapping[str, np.ndarray],
                    num_resamples: int = INTERVAL_RESAMPLES, seed: int = INTERVAL_SEED,
                    level: float = INTERVAL_LEVEL) -> dict[str, dict[str, Any]]:
  """Pooled means with percentile bootstrap intervals, resampling units (columns).

  Args:
    outcomes: name -> (R, C) or (C,) floats: R runs scored on C units (cells, densities); NaN
      where a unit was not judged. A unit's R entries are resampled together: they share the
      decision being scored (the first run's label or pick), so they are not independent.
    num_resamples: bootstrap resamples; each draws C units with replacement, the same draw for
      every name (so methods are compared on the same resamples).
    seed: of the draws.
    level: of the central interval.

  Returns:
    name -> {'estimate' (the mean of the judged entries), 'judged' (their count), 'low',
    'high' (percentiles of the resampled means; resamples without a judged entry are left
    out; NaN when nothing is judged)}.
  """
  arrays = {name: np.atleast_2d(np.asarray(value, float)) for name, value in outcomes.items()}
  units = next(iter(arrays.values())).shape[1] if arrays else 0
  rng = np.random.default_rng(seed)
  draws = rng.integers(0, units, (num_resamples, units)) if units else None
  tail = 100 * (1 - level) / 2
  result = {}
  for name, values in arrays.items():
    judged = np.isfinite(values)
    sums = np.where(judged, values, 0.0).sum(0)  # (C,) per unit, over runs.
    counts = judged.sum(0)
    total = int(counts.sum())
    estimate = float(sums.sum() / total) if total else float('nan')
    low = high = float('nan')
    if total:
      resampled_counts = counts[draws].sum(1)
      kept = resampled_counts > 0
      means = sums[draws].sum(1)[kept] / resampled_counts[kept]
      low, high = (float(v) for v in np.percentile(means, [tail, 100 - tail]))
    result[name] = {'estimate': estimate, 'judged': total, 'low': low, 'high': high}
  return result


def interval_text(low: float, high: float, digits: int = 3) -> str:
  """'[0.500, 0.833]'; 'n/a' when there is no interval."""
  if not (np.isfinite(low) and np.isfinite(high)):
    return 'n/a'
  return f'[{low:.{digits}f}, {high:.{digits}f}]'


def fraction_line(name: str, result: Mapping[str, Any]) -> str:
  """'label_replication: 0.833 (5/6)' ('n/a (0/0)' when nothing was compared): the line
  other tools parse."""
  value = result['fraction']
  text = f'{value:.3f}' if np.isfinite(value) else 'n/a'
  return f'{name}: {text} ({result["agree"]}/{result["cells"]})'
