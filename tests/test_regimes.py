"""Tests for prunephase.regimes on synthetic grids and tables whose labels are known by hand."""

import types

import numpy as np
import pytest

from prunephase import confidence as confidence_lib
from prunephase import regimes

# Thresholds exactly representable in binary floating point, so boundary cases are exact.
RULE = regimes.RegimeRule(rule='threshold', lmc_threshold=-0.25, cka_tolerance=0.125)


def _labels(lmc, cka, rule=RULE):
  return regimes.label_grid(np.array(lmc, float), np.array(cka, float), rule).tolist()


def test_rule_defaults_from_config_and_describe():
  assert regimes.RegimeRule() == regimes.RegimeRule(
      'transition', min_drop=0.05, noise_factor=1.0, lmc_threshold=-0.02, cka_tolerance=0.001)
  config = types.SimpleNamespace(rule='threshold', lmc_threshold='-0.5', cka_tolerance=0.25)
  assert regimes.RegimeRule.from_config(config) == regimes.RegimeRule(
      'threshold', lmc_threshold=-0.5, cka_tolerance=0.25)
  # A config from an older workdir (no `rule` field) gets the defaults for what it lacks.
  old = types.SimpleNamespace(lmc_threshold=-0.1, cka_tolerance=0.002)
  assert regimes.RegimeRule.from_config(old).rule == 'transition'
  text = RULE.describe()
  assert 'mean LMC < -0.25' in text and 'within 0.125' in text
  assert 'drops by >= 0.05' in regimes.RegimeRule().describe()
  assert 'every LMC < max(-0.05, barrier level)' in regimes.RegimeRule().describe()
  with pytest.raises(ValueError, match='unknown regimes.rule'):
    regimes.RegimeRule('sign')


def test_three_regimes_and_plateau_ignores_regime_one():
  # Column 0: the coldest cell is regime I with the highest CKA (0.99); the plateau is the max
  # over regime-II cells only (0.9), so 0.9 is II-B and 0.7 (< 0.9 - 0.125) is II-A.
  # Column 1: the hottest cell is regime I; 0.85 is within 0.125 of 0.875 -> both II-B.
  lmc = [[0.0, -1.0],
         [0.0, 0.0],
         [-0.5, 0.0]]
  cka = [[0.7, 0.1],
         [0.9, 0.85],
         [0.99, 0.875]]
  assert _labels(lmc, cka) == [['II-A', 'I'],
                               ['II-B', 'II-B'],
                               ['I', 'II-B']]


def test_tolerance_boundary_is_inclusive():
  # Plateau 0.75, tolerance 0.125: 0.625 is exactly at the boundary (II-B), just below is II-A.
  lmc = np.zeros((4, 1))
  cka = [[0.75], [0.625], [np.nextafter(0.625, 0)], [0.5]]
  assert _labels(lmc, cka) == [['II-B'], ['II-B'], ['II-A'], ['II-A']]


def test_equal_cka_ties_are_both_two_b():
  rule = regimes.RegimeRule('threshold', lmc_threshold=-0.25, cka_tolerance=0.0)
  assert _labels(np.zeros((3, 1)), [[0.9], [0.9], [0.8]], rule) == [['II-B'], ['II-B'], ['II-A']]


def test_lmc_exactly_at_threshold_is_not_regime_one():
  lmc = [[-0.25], [np.nextafter(-0.25, -1)], [0.0]]
  cka = [[0.9], [0.9], [0.9]]
  assert _labels(lmc, cka) == [['II-B'], ['I'], ['II-B']]


def test_single_temperature():
  # Each column has one cell; a regime-II cell is its own plateau, hence II-B.
  assert _labels([[-1.0, 0.0, 0.1]], [[0.9, 0.2, 0.5]]) == [['I', 'II-B', 'II-B']]


def test_single_density():
  assert _labels([[0.0], [0.0], [-0.3]], [[0.5], [0.8], [0.95]]) == [['II-A'], ['II-B'], ['I']]


def test_column_entirely_regime_one():
  lmc = [[-1.0, 0.0], [-0.5, 0.0], [-0.3, 0.0]]
  cka = [[0.9, 0.5], [0.95, 0.9], [0.99, 0.6]]
  labels = regimes.label_grid(np.array(lmc), np.array(cka), RULE)
  assert labels.tolist() == [['I', 'II-A'], ['I', 'II-B'], ['I', 'II-A']]
  assert regimes.counts(labels) == {'I': 3, 'II-A': 2, 'II-B': 1, 'none': 0}


TRANSITION = regimes.RegimeRule()  # The defaults: transition, min_drop 0.05, noise_factor 1.


def test_flat_column_below_the_barrier_scale_is_regime_one():
  # Columns 0 and 1 drop deep (midpoints -0.26 and -0.33: barrier level about -0.29). Column 2
  # has no drop but LMC -0.08 ... -0.12 at every temperature: below the barrier scale (-0.05)
  # and its seed noise (0.02), so Regime I throughout, although above the barrier level (the
  # rule used to call it II-B throughout). Column 3 sits at -0.01, column 4 at about -0.08 but
  # within its seed noise (0.1): neither is Regime I.
  lmc = np.array([[-0.02, -0.04, -0.08, -0.01, -0.08],
                  [-0.03, -0.05, -0.12, -0.01, -0.09],
                  [-0.45, -0.04, -0.10, -0.01, -0.07],
                  [-0.50, -0.60, -0.11, -0.01, -0.08],
                  [-0.55, -0.62, -0.09, -0.01, -0.09]])
  cka = np.full(lmc.shape, 0.99)
  noise = np.tile([0.02, 0.02, 0.02, 0.005, 0.1], (5, 1))
  labels = regimes.label_grid(lmc, cka, TRANSITION, lmc_noise=noise)
  assert labels.T.tolist() == [['II-A'] * 2 + ['I'] * 3,
                               ['II-A'] * 3 + ['I'] * 2,
                               ['I'] * 5,
                               ['II-B'] * 5,
                               ['II-B'] * 5]
  # Without a noise estimate there is no noise check: column 4 is then deep enough.
  assert regimes.label_grid(lmc, cka, TRANSITION)[:, 4].tolist() == ['I'] * 5
  # Four dense seeds per cell halve column 4's standard error (0.05): deep enough too.
  four = regimes.label_grid(lmc, cka, TRANSITION, noise, num_units=np.full(lmc.shape, 4))
  assert four[:, 4].tolist() == ['I'] * 5


def test_flat_column_depth_is_the_shallower_of_scale_and_barrier_level():
  assert regimes.flat_column_depth([], TRANSITION) == -0.05  # No transition: the scale.
  assert regimes.flat_column_depth([-0.3, -0.2], TRANSITION) == -0.05
  assert regimes.flat_column_depth([-0.03], TRANSITION) == -0.03
  # Shallow transitions (0 -> -0.06, midpoint -0.03): a flat column at -0.04 is below that
  # barrier level, one at -0.02 is not.
  lmc = np.array([[0.0, -0.04, -0.02], [0.0, -0.04, -0.02],
                  [-0.06, -0.04, -0.02], [-0.06, -0.04, -0.02]])
  labels = regimes.label_grid(lmc, np.full(lmc.shape, 0.99), TRANSITION)
  assert labels.T.tolist() == [['II-A', 'II-A', 'I', 'I'], ['I'] * 4, ['II-B'] * 4]
  # "Below" is strict (a binary-exact scale: min_drop 0.0625).
  rule = regimes.RegimeRule(min_drop=0.0625)
  at_scale = np.full((3, 1), -0.0625)
  assert 'I' not in regimes.label_grid(at_scale, np.full((3, 1), 0.9), rule)
  below = np.full((3, 1), np.nextafter(-0.0625, -1))
  assert (regimes.label_grid(below, np.full((3, 1), 0.9), rule) == 'I').all()


def test_nan_cells_get_no_label_and_do_not_set_the_plateau():
  # The NaN-LMC cell has the highest CKA; it must not raise the plateau of its column.
  lmc = [[0.0, 0.0], [np.nan, 0.0], [0.0, -1.0]]
  cka = [[0.8, np.nan], [0.99, 0.7], [0.6, 0.9]]
  labels = regimes.label_grid(np.array(lmc), np.array(cka), RULE)
  assert labels.tolist() == [['II-B', ''], ['', 'II-B'], ['II-A', 'I']]
  assert regimes.counts(labels) == {'I': 1, 'II-A': 1, 'II-B': 2, 'none': 2}


def test_cell_means_and_stds():
  grid = [[np.array([0.1, 0.3]), np.array([])],
          [np.array([0.5]), np.array([0.2, np.nan])]]
  means = regimes.cell_means(grid)
  np.testing.assert_allclose(means, [[0.2, np.nan], [0.5, np.nan]])
  stds = regimes.cell_stds(grid)
  # Sample std (ddof 1) over units; NaN with fewer than two units (no estimate).
  np.testing.assert_allclose(stds, [[np.sqrt(0.02), np.nan], [np.nan, np.nan]])


def test_units_are_dense_seeds_not_pairs():
  # Dense seed 1 has three pairs that share members (0.0, 0.0, 0.3): one unit, mean 0.1.
  # Dense seed 2 has one pair (0.5). Noise is over the two dense seeds, not the four pairs.
  rows = [{'temperature': 1.0, 'density': 0.5, 'dense_seed': 1, 'lmc': v} for v in (0, 0, 0.3)]
  rows.append({'temperature': 1.0, 'density': 0.5, 'dense_seed': 2, 'lmc': 0.5})
  units = regimes.unit_grid(rows, [1.0], [0.5], 'lmc')
  np.testing.assert_allclose(units[0][0], [0.1, 0.5])
  np.testing.assert_allclose(regimes.cell_stds(units)[0, 0], np.std([0.1, 0.5], ddof=1))
  # Without a dense_seed column every row is its own unit.
  for row in rows:
    del row['dense_seed']
  assert regimes.unit_grid(rows, [1.0], [0.5], 'lmc')[0][0].size == 4


def _pairs(values):
  """A (T, D) nested list of per-pair arrays."""
  return [[np.asarray(cell, float) for cell in line] for line in values]


def test_bootstrap_identical_pairs_give_confidence_one():
  lmc = _pairs([[[0.0] * 3, [-1.0] * 3], [[0.0] * 3, [0.0] * 3], [[-0.5] * 3, [0.0] * 3]])
  cka = _pairs([[[0.5] * 3, [0.3] * 3], [[0.9] * 3, [0.8] * 3], [[0.99] * 3, [0.75] * 3]])
  labels = regimes.label_grid(regimes.cell_means(lmc), regimes.cell_means(cka), RULE)
  assert labels.tolist() == [['II-A', 'I'], ['II-B', 'II-B'], ['I', 'II-B']]
  confidence = confidence_lib.bootstrap_confidence(lmc, cka, labels, regimes.label_fn(RULE), num_draws=50)
  np.testing.assert_array_equal(confidence, np.ones((3, 2)))


def test_bootstrap_diverged_neighbour_does_not_lower_confidence():
  # Cell (1, 0) has a diverged member: it is unlabelled (NaN confidence). A resample that skips
  # the diverged pair must not turn it into a regime-II cell with CKA 0.99, which would demote
  # the identical-pair cell above it from II-B to II-A.
  lmc = _pairs([[[0.0, 0.0]], [[0.0, np.nan]]])
  cka = _pairs([[[0.7, 0.7]], [[0.99, np.nan]]])
  labels = regimes.label_grid(regimes.cell_means(lmc), regimes.cell_means(cka), RULE)
  assert labels.tolist() == [['II-B'], ['']]
  confidence = confidence_lib.bootstrap_confidence(lmc, cka, labels, regimes.label_fn(RULE), num_draws=100)
  assert confidence[0, 0] == 1.0
  assert np.isnan(confidence[1, 0])


def test_bootstrap_straddling_cell_has_partial_confidence():
  # Pairs at LMC -0.6 and 0.0: mean -0.3 -> regime I. A resample is regime I unless it draws
  # the 0.0 pair twice (probability 1/4), so the confidence is about 0.75.
  lmc = _pairs([[[-0.6, 0.0]], [[0.0, 0.0]]])
  cka = _pairs([[[0.5, 0.5]], [[0.9, 0.9]]])
  labels = regimes.label_grid(regimes.cell_means(lmc), regimes.cell_means(cka), RULE)
  assert labels.tolist() == [['I'], ['II-B']]
  confidence = confidence_lib.bootstrap_confidence(lmc, cka, labels, regimes.label_fn(RULE), num_draws=400, seed=3)
  assert 0.0 < confidence[0, 0] < 1.0
  assert abs(confidence[0, 0] - 0.75) < 0.1
  assert confidence[1, 0] == 1.0
  again = confidence_lib.bootstrap_confidence(lmc, cka, labels, regimes.label_fn(RULE), num_draws=400, seed=3)
  np.testing.assert_array_equal(confidence, again)


def _table():
  """Rows of 3 temperatures (hottest first: 10, 20, 40) x 2 densities, 2 pairs per cell."""
  cells = {  # (T, D): [(lmc, cka, test_error), ...]
      (10, 0.1): [(0.0, 0.70, 0.21), (0.0, 0.72, 0.19)],
      (20, 0.1): [(0.0, 0.90, 0.15), (0.0, 0.92, 0.13)],
      (40, 0.1): [(-0.4, 0.95, 0.30), (-0.6, 0.97, 0.34)],
      (10, 0.5): [(0.0, 0.60, 0.12), (0.0, 0.70, 0.14)],
      (20, 0.5): [(0.0, 0.90, 0.11), (0.0, 0.92, 0.11)],
      (40, 0.5): [(0.0, 0.95, 0.10), (float('nan'), 0.95, 0.10)],
  }
  rows = []
  for (t, d), pairs in cells.items():
    for seed, (lmc, cka, err) in enumerate(pairs):
      rows.append({'temperature': float(t), 'density': d, 'dense_seed': seed, 'lmc': lmc,
                   'cka_softmax': cka, 'test_error': err})
  return rows, cells


def test_label_table():
  rows, cells = _table()
  temperatures, densities = [10.0, 20.0, 40.0], [0.1, 0.5]
  out = regimes.label_table(rows, temperatures, densities, RULE, bootstrap=40,
                            estimator='bootstrap')
  # Column 0.1: the plateau among regime-II cells is 0.91 (the I cell's 0.96 does not count);
  # 0.71 < 0.91 - 0.125 -> II-A. Column 0.5: (40, 0.5) has a diverged member -> NaN mean -> '';
  # plateau 0.91; 0.65 -> II-A.
  assert out['labels'].tolist() == [['II-A', 'II-A'], ['II-B', 'II-B'], ['I', '']]
  for t, temperature in enumerate(temperatures):
    for d, density in enumerate(densities):
      pairs = np.array(cells[(int(temperature), density)])
      for k, field in enumerate(('lmc', 'cka_softmax', 'test_error')):
        expected = np.mean(pairs[:, k])
        np.testing.assert_equal(out['means'][field][t, d], expected)
        np.testing.assert_equal(out['stds'][field][t, d], np.std(pairs[:, k], ddof=1))
  assert np.isnan(out['means']['lmc'][2, 1])
  assert out['means']['cka_softmax'][2, 1] == 0.95
  # Absent fields are NaN cells.
  assert np.isnan(out['means']['train_error']).all()
  assert out['num_pairs'].tolist() == [[2, 2], [2, 2], [2, 2]]
  assert out['rule'] == RULE
  # No resample can change a label here (each cell's pairs sit on one side of every boundary),
  # so every labelled cell has confidence exactly 1; the unlabelled cell has NaN.
  conf = out['confidence']
  np.testing.assert_array_equal(conf, [[1.0, 1.0], [1.0, 1.0], [1.0, np.nan]])
  # Every row gets its cell's label and confidence.
  for row in rows:
    t, d = temperatures.index(row['temperature']), densities.index(row['density'])
    assert row['regime'] == out['labels'][t, d]
    np.testing.assert_equal(row['regime_confidence'], conf[t, d])
  assert sum(row['regime'] == '' for row in rows) == 2
  assert regimes.counts(out['labels']) == {'I': 1, 'II-A': 2, 'II-B': 2, 'none': 1}



def test_one_seed_pair_per_cell_has_no_confidence():
  values = [[np.array([-0.5])], [np.array([0.0])]]
  cka = [[np.array([0.9])], [np.array([0.95])]]
  labels = regimes.label_grid(np.array([[-0.5], [0.0]]), np.array([[0.9], [0.95]]), RULE)
  confidence = confidence_lib.bootstrap_confidence(values, cka, labels, regimes.label_fn(RULE), 10)
  assert np.isnan(confidence).all()
