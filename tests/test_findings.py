"""Tests for prunephase.findings.check on hand-made cell means and seed noise."""

import numpy as np

from prunephase import findings
from prunephase import regimes

TEMPERATURES = [10.0, 20.0, 40.0]  # hottest first; row 2 is the coldest.
DENSITIES = [0.1, 0.5]  # column 0 is the low density, column 1 the high one.
# The threshold rule keeps these hand-made 3-row grids easy to label; the connectivity test
# below also runs the transition rule.
RULE = regimes.RegimeRule('threshold', lmc_threshold=-0.05)


def _check(test_error=None, lmc=None, cka=None, std=0.01, temperatures=TEMPERATURES,
           densities=DENSITIES, rule=RULE, num_seeds=2):
  """findings.check with neutral defaults; columns are [low density, high density]."""
  shape = (len(temperatures), len(densities))
  means = {
      'test_error': np.array(test_error if test_error is not None
                             else [[0.2, 0.3], [0.1, 0.2], [0.3, 0.1]], float),
      'lmc': np.array(lmc if lmc is not None else [[0.0, 0.0], [0.0, 0.0], [-0.2, 0.01]], float),
      'cka_softmax': np.array(cka if cka is not None
                              else [[0.5, 0.8], [0.6, 0.85], [0.7, 0.9]], float)}
  stds = {k: np.full(shape, std) for k in means}
  labels = regimes.label_grid(means['lmc'], means['cka_softmax'], rule)
  return findings.check(means, stds, temperatures, densities, labels, rule,
                        np.full(shape, num_seeds))


def test_noise_is_the_standard_error_of_a_difference_of_means():
  assert np.isclose(findings._noise(0.01, 2, 0.03, 2), np.sqrt((0.01**2 + 0.03**2) / 2))
  assert np.isclose(findings._noise(0.03, 3, 0.03, 3), 0.03 * np.sqrt(2 / 3))
  assert np.isnan(findings._noise(0.02, 2, np.nan, 2))
  assert np.isnan(findings._noise(0.02, 1, 0.02, 3))  # One seed: no estimate.


def test_more_seeds_make_a_smaller_gap_count():
  # Gap 0.2 at low density; seed std 0.12: with 2 seeds per cell 2 x SE = 0.24 > 0.2 (fails),
  # with 6 seeds 2 x SE = 0.139 < 0.2 (holds).
  err = [[0.2, 0.3], [0.1, 0.2], [0.3, 0.1]]
  assert not _check(test_error=err, std=0.12)['transition']['low_density']['holds']
  out = _check(test_error=err, std=0.12, num_seeds=6)['transition']
  assert out['low_density']['holds'] and np.isclose(out['low_density']['seed_noise'],
                                                    0.12 * np.sqrt(2 / 6))


def test_transition_reproduced():
  # Low density: the middle temperature (0.1) beats the coldest (0.3) by 0.2 > 2 x 0.01.
  # High density: the coldest is the best.
  out = _check(test_error=[[0.2, 0.3], [0.1, 0.2], [0.3, 0.1]])['transition']
  assert out['status'] == 'reproduced'
  assert out['low_density']['best_temperature'] == 20.0
  assert np.isclose(out['low_density']['gap_to_coldest'], 0.2)
  assert np.isclose(out['low_density']['seed_noise'], 0.01)
  assert out['low_density']['holds'] and out['high_density']['holds']
  assert out['high_density']['best_temperature'] == 40.0
  assert out['high_density']['gap_to_coldest'] == 0.0
  assert 'the coldest T=40 is the best' in out['summary']


def test_transition_partly_when_only_one_half_holds():
  # Low density prefers the coldest too: (a) fails, (b) holds.
  out = _check(test_error=[[0.3, 0.3], [0.2, 0.2], [0.1, 0.1]])['transition']
  assert out['status'] == 'partly'
  assert not out['low_density']['holds'] and out['high_density']['holds']
  # Low density prefers hot, but so does the high density, by far more than the noise.
  out = _check(test_error=[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]])['transition']
  assert out['status'] == 'partly'
  assert out['low_density']['holds'] and not out['high_density']['holds']
  assert np.isclose(out['high_density']['gap_to_coldest'], 0.2)


def test_transition_not_reproduced():
  # Low density prefers cold, high density prefers hot.
  out = _check(test_error=[[0.3, 0.1], [0.2, 0.2], [0.1, 0.3]])['transition']
  assert out['status'] == 'not reproduced'
  assert not out['low_density']['holds'] and not out['high_density']['holds']


def test_transition_within_noise():
  # Low density: hot beats cold by 0.01 <= 2 x 0.01 -> (a) fails. High density: the hottest is
  # best but the coldest is only 0.005 above it, within 2 x 0.01 -> (b) holds.
  out = _check(test_error=[[0.10, 0.100], [0.2, 0.2], [0.11, 0.105]])['transition']
  assert out['status'] == 'partly'
  assert not out['low_density']['holds'] and out['high_density']['holds']
  assert out['high_density']['best_temperature'] == 10.0


def test_densities_found_by_value_not_position():
  # Densities listed high first: column 1 is now the low density.
  out = _check(test_error=[[0.3, 0.2], [0.2, 0.1], [0.1, 0.3]], densities=[0.5, 0.1])
  assert out['transition']['status'] == 'reproduced'
  assert out['transition']['low_density']['density'] == 0.1
  assert out['transition']['high_density']['density'] == 0.5


def test_connectivity():
  # (a) LMC at (low density, coldest) -0.2 < -0.05; (b) max |LMC| at high density 0.01 < 0.05.
  out = _check(lmc=[[0.0, 0.0], [0.0, -0.01], [-0.2, 0.01]])['connectivity']
  assert out['status'] == 'reproduced'
  assert out['holds'] == [True, True]
  assert out['cold_low_corner_lmc'] == -0.2
  assert out['max_abs_lmc_high_density'] == 0.01
  assert out['barrier_scale'] == 0.05 and out['cold_low_corner_regime'] == 'I'
  # The corner exactly at the threshold is not below it (strict, as for Regime I).
  out = _check(lmc=[[0.0, 0.0], [0.0, 0.0], [-0.05, 0.0]])['connectivity']
  assert out['status'] == 'partly' and out['holds'] == [False, True]
  # A barrier at high density: (b) fails.
  out = _check(lmc=[[0.0, -0.3], [0.0, 0.0], [-0.2, 0.0]])['connectivity']
  assert out['status'] == 'partly' and out['holds'] == [True, False]
  out = _check(lmc=[[0.0, -0.3], [0.0, 0.0], [0.0, 0.0]])['connectivity']
  assert out['status'] == 'not reproduced' and out['holds'] == [False, False]
  # The transition rule: a sharp drop in the cold low-density corner is Regime I, a mild
  # barrier above it is not, and a high-density column about 0 has none.
  transition = regimes.RegimeRule()
  out = _check(lmc=[[-0.03, 0.0], [-0.02, 0.0], [-0.4, 0.01]], rule=transition)['connectivity']
  assert out['status'] == 'reproduced' and out['barrier_scale'] == 0.05
  # |LMC| 0.06 at high density is beyond the barrier scale even without a labelled barrier.
  out = _check(lmc=[[-0.03, -0.06], [-0.02, -0.06], [-0.4, -0.06]], rule=transition)
  assert out['connectivity']['holds'] == [True, False]


def test_unlabelled_cells_are_named():
  found = _check(lmc=[[0.0, 0.0], [np.nan, 0.0], [-0.2, 0.01]])
  assert found['unlabelled_cells'] == [{'temperature': 20.0, 'density': 0.1}]


def test_similarity():
  # High density CKA hottest 0.8 -> coldest 0.9: rise 0.1 > 2 x 0.01.
  out = _check(cka=[[0.5, 0.8], [0.5, 0.85], [0.5, 0.9]])['similarity']
  assert out['status'] == 'reproduced'
  assert np.isclose(out['rise'], 0.1) and np.isclose(out['seed_noise'], 0.01)
  # A rise within the noise.
  out = _check(cka=[[0.5, 0.8], [0.5, 0.85], [0.5, 0.81]])['similarity']
  assert out['status'] == 'partly'
  # A fall.
  out = _check(cka=[[0.5, 0.9], [0.5, 0.85], [0.5, 0.8]])['similarity']
  assert out['status'] == 'not reproduced'
  assert np.isclose(out['rise'], -0.1)


def test_nan_stds_never_reproduce_noise_based_parts():
  # One seed pair per cell: no noise estimate. The same numbers as the 'reproduced' cases.
  found = _check(test_error=[[0.2, 0.3], [0.1, 0.2], [0.3, 0.1]],
                 lmc=[[0.0, 0.0], [0.0, 0.0], [-0.2, 0.01]],
                 cka=[[0.5, 0.8], [0.5, 0.85], [0.5, 0.9]], std=np.nan)
  transition = found['transition']
  # (a) needs a gap beyond the noise: NaN noise -> does not hold; (b) holds because the
  # coldest is the best outright.
  assert np.isnan(transition['low_density']['seed_noise'])
  assert not transition['low_density']['holds'] and transition['high_density']['holds']
  assert transition['status'] == 'partly'
  # A positive CKA rise with unknown noise is only 'partly'.
  assert found['similarity']['status'] == 'partly'
  assert np.isnan(found['similarity']['seed_noise'])
  # Connectivity does not use the noise.
  assert found['connectivity']['status'] == 'reproduced'
  # (b) with the hottest best and NaN noise does not hold either.
  found = _check(test_error=[[0.2, 0.1], [0.1, 0.2], [0.3, 0.105]], std=np.nan)
  assert not found['transition']['high_density']['holds']
  assert found['transition']['status'] == 'not reproduced'


def test_single_temperature_is_not_reproduced():
  found = _check(test_error=[[0.1, 0.2]], lmc=[[-0.2, 0.0]], cka=[[0.5, 0.9]],
                 temperatures=[10.0])
  for name in ('transition', 'connectivity', 'similarity'):
    assert found[name] == {'status': 'not reproduced',
                           'summary': 'needs at least two temperatures'}
  assert found['unlabelled_cells'] == []


def test_no_test_errors():
  # test_error is optional in a table: an all-NaN column must not crash the check.
  found = _check(test_error=np.full((3, 2), np.nan))
  assert found['transition']['status'] == 'not reproduced'
  assert 'no finite test error' in found['transition']['summary']
  assert found['connectivity']['status'] == 'reproduced'
  assert found['similarity']['status'] == 'reproduced'
  # Only the high-density column missing is enough to skip.
  err = np.array([[0.2, np.nan], [0.1, np.nan], [0.3, np.nan]])
  assert _check(test_error=err)['transition']['status'] == 'not reproduced'


def test_statuses():
  assert findings._status([True, True]) == 'reproduced'
  assert findings._status([True, False]) == 'partly'
  assert findings._status([False, False]) == 'not reproduced'
  assert set(findings.STATUSES) == {'reproduced', 'partly', 'not reproduced'}
