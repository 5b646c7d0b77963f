"""The transition rule (prunephase.regimes, rule='transition') on grids whose answer is known.

Synthetic grids pin each clause of the rule; the paper's own Figure 2 (digitized in
docs/paper_figure2/) pins its agreement with the regimes the paper draws.
"""

import csv
import pathlib

import numpy as np
import pytest

from prunephase import regimes
from prunephase import tables

RULE = regimes.RegimeRule()  # The defaults: transition, min_drop 0.05, noise_factor 1.
FIGURE2 = pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'paper_figure2'


def _corner_grid():
  """8 temperatures (hottest first) x 4 densities: gentle negative LMC in the hot rows of the
  two lowest densities, a sharp drop to a deep barrier in their cold rows, ~0 elsewhere."""
  lmc = np.zeros((8, 4))
  lmc[:, 0] = [-0.10, -0.15, -0.12, -0.20, -0.60, -0.65, -0.62, -0.64]
  lmc[:, 1] = [-0.05, -0.04, -0.06, -0.05, -0.08, -0.50, -0.55, -0.52]
  lmc[:, 2] = [0.0, -0.01, 0.0, -0.01, 0.0, -0.02, -0.01, -0.02]
  cka = np.tile(np.linspace(0.90, 0.99, 8)[:, None], (1, 4))
  return lmc, cka


def test_gentle_hot_barrier_is_two_a_and_the_cold_corner_is_one():
  lmc, cka = _corner_grid()
  labels = regimes.label_grid(lmc, cka, RULE)
  assert labels[:, 0].tolist() == ['II-A'] * 4 + ['I'] * 4
  assert labels[:, 1].tolist() == ['II-A'] * 5 + ['I'] * 3
  # The mild hot-row barrier (-0.1 .. -0.2) would be Regime I under the threshold rule.
  threshold = regimes.label_grid(lmc, cka, regimes.RegimeRule('threshold'))
  assert (threshold[:4, 0] == 'I').all()
  # No transition at the two high densities: regime II, split by the CKA plateau.
  assert 'I' not in labels[:, 2:]


def test_lmc_about_zero_everywhere_has_no_regime_one():
  rng = np.random.default_rng(0)
  lmc = rng.uniform(-0.004, 0.002, (6, 5))
  labels = regimes.label_grid(lmc, np.full((6, 5), 0.95), RULE)
  assert regimes.counts(labels)['I'] == 0


def test_noise_sized_wiggles_are_not_a_transition():
  # A step of 0.12 is above min_drop but within the seed noise of 0.15: no transition ...
  lmc = np.array([[0.0], [-0.02], [0.0], [-0.12], [-0.13], [-0.12]])
  cka = np.full_like(lmc, 0.9)
  noisy = np.full_like(lmc, 0.15)
  assert 'I' not in regimes.label_grid(lmc, cka, RULE, lmc_noise=noisy)
  # ... while the same step with noise 0.02 is one, and a step below min_drop never is.
  quiet = np.full_like(lmc, 0.02)
  assert regimes.label_grid(lmc, cka, RULE, lmc_noise=quiet)[:, 0].tolist() == [
      'II-A'] * 3 + ['I'] * 3
  assert 'I' not in regimes.label_grid(lmc * 0.3, cka, RULE, lmc_noise=quiet * 0.1)


def test_more_seeds_settle_a_drop_within_one_seeds_spread():
  # The drop (0.117, change point after row 3) is tested against its standard error: with one
  # seed per cell sqrt(0.15^2/3 + 0.15^2/3) = 0.122, no transition; with three seeds per cell
  # the same means and spread give 0.071, a transition.
  lmc = np.array([[0.0], [-0.02], [0.0], [-0.12], [-0.13], [-0.12]])
  cka, spread = np.full_like(lmc, 0.9), np.full_like(lmc, 0.15)
  assert 'I' not in regimes.label_grid(lmc, cka, RULE, spread, num_units=np.ones(lmc.shape))
  three = regimes.label_grid(lmc, cka, RULE, spread, num_units=np.full(lmc.shape, 3))
  assert three[:, 0].tolist() == ['II-A'] * 3 + ['I'] * 3


def test_run_mean_error():
  assert regimes.run_mean_error(np.array([0.3, 0.4])) == pytest.approx(np.sqrt(0.125 / 2))
  # Unmeasured cells (NaN) are left out; none measured: no estimate.
  assert regimes.run_mean_error(np.array([0.2, np.nan])) == pytest.approx(0.2)
  assert np.isnan(regimes.run_mean_error(np.array([np.nan, np.nan])))


def test_cell_errors_fill_one_seed_cells_and_leave_out_unmeasured_ones():
  spread = np.array([0.3, 0.4, np.nan, np.nan])
  units = np.array([4, 4, 1, 0])  # A one-seed cell has no spread; 0 = filled, not measured.
  errors = regimes.cell_errors(spread, units)
  assert errors[:2] == pytest.approx([0.15, 0.2])
  assert errors[2] == pytest.approx(np.sqrt((0.09 + 0.16) / 2))  # The column's typical spread.
  assert np.isnan(errors[3])
  assert np.isnan(regimes.cell_errors(np.full(2, np.nan), np.zeros(2))).all()


def test_a_run_of_filled_cells_still_has_a_noise_check():
  # An adaptive search measured the three hot cells only (spread 0.2, one seed each); the cold
  # two hold values filled in from them. The drop (0.08) is within the noise: no transition,
  # as when every cell is measured.
  lmc = np.array([[0.0], [-0.01], [0.0], [-0.08], [-0.08]])
  cka = np.full_like(lmc, 0.9)
  spread = np.array([[0.2], [0.2], [0.2], [np.nan], [np.nan]])
  units = np.array([[1], [1], [1], [0], [0]])
  assert 'I' not in regimes.label_grid(lmc, cka, RULE, spread, num_units=units)
  assert regimes.drop_error(regimes.cell_errors(spread[:, 0], units[:, 0]), 3) == pytest.approx(
      np.hypot(0.2 / np.sqrt(3), 0.2))


def test_column_deep_everywhere_is_regime_one():
  lmc, cka = _corner_grid()
  lmc[:, 3] = -0.55  # No drop inside the column, but below the grid's barrier level.
  labels = regimes.label_grid(lmc, cka, RULE)
  assert (labels[:, 3] == 'I').all()
  # Above the barrier level (about -0.33) but below the barrier scale (-min_drop) everywhere:
  # poorly connected at every temperature, Regime I too.
  lmc[:, 3] = -0.2
  assert (regimes.label_grid(lmc, cka, RULE)[:, 3] == 'I').all()
  lmc[:, 3] = -0.03  # Above both: no Regime I.
  assert 'I' not in regimes.label_grid(lmc, cka, RULE)[:, 3]


def test_two_b_from_the_plateau_onset_to_the_coldest_cell():
  # CKA rises to a plateau at row 3 and then dips slightly: rows 3.. are "on" the plateau.
  lmc = np.zeros((6, 1))
  cka = np.array([[0.950], [0.960], [0.970], [0.9800], [0.9795], [0.9750]])
  labels = regimes.label_grid(lmc, cka, RULE)
  assert labels[:, 0].tolist() == ['II-A'] * 3 + ['II-B'] * 3
  # Seed noise larger than the tolerance widens the plateau.
  wide = regimes.label_grid(lmc, cka, RULE, cka_noise=np.full_like(cka, 0.011))
  assert wide[:, 0].tolist() == ['II-A'] * 2 + ['II-B'] * 4  # 0.97 >= 0.98 - 0.011.


def test_column_ending_in_regime_one_has_no_two_b():
  lmc, cka = _corner_grid()
  labels = regimes.label_grid(lmc, cka, RULE)
  assert set(labels[:, 0]) == {'II-A', 'I'} and set(labels[:, 1]) == {'II-A', 'I'}
  assert 'II-B' in labels[:, 2]


def test_nan_cells_are_skipped_by_the_change_point():
  lmc, cka = _corner_grid()
  lmc[2, 0] = np.nan
  labels = regimes.label_grid(lmc, cka, RULE)
  assert labels[2, 0] == regimes.NO_LABEL
  assert labels[:, 0].tolist() == ['II-A', 'II-A', '', 'II-A'] + ['I'] * 4


def test_change_point_is_least_squares():
  assert regimes.column_change_point(np.array([0.0, 0.0, -1.0, -1.0])) == (2, 1.0)
  k, drop = regimes.column_change_point(np.array([-0.1, -0.1, -0.1, -0.5]))
  assert k == 3 and np.isclose(drop, 0.4)


def test_diverged_rows_leave_their_cell_unlabelled():
  rows = [{'temperature': t, 'density': 0.5, 'dense_seed': s, 'lmc': 0.0, 'cka_softmax': 0.9,
           'diverged': t == 2.0 and s == 1} for t in (1.0, 2.0) for s in (1, 2)]
  out = regimes.label_table(rows, [1.0, 2.0], [0.5], RULE, bootstrap=0)
  assert out['labels'][:, 0].tolist() == ['II-B', '']


def _figure2():
  rows = tables.read_table(FIGURE2 / 'metrics.csv')
  _, temperatures, densities = tables.axes(rows, 'epochs')
  with open(FIGURE2 / 'labels.csv', newline='') as f:
    reference = list(csv.DictReader(f))
  return rows, temperatures, densities, reference


def test_agreement_with_the_papers_figure_2():
  rows, temperatures, densities, reference = _figure2()
  labels = regimes.label_table(rows, temperatures, densities, RULE, bootstrap=0)['labels']
  result = regimes.agreement(labels, temperatures, densities, reference)
  assert result['matched'] == 139  # 144 cells, 5 of them drawn ambiguously (on a curve).
  assert result['fraction'] >= 0.9, result['disagreements']
  # The earlier sign-threshold rule labels the mildly negative hot cells Regime I.
  old = regimes.label_table(rows, temperatures, densities, regimes.RegimeRule('threshold'),
                            bootstrap=0)['labels']
  assert regimes.agreement(old, temperatures, densities, reference)['fraction'] < 0.7


def test_agreement_counts_and_skips():
  labels = np.array([['I', 'II-A']], dtype=object)
  reference = [{'temperature': 1, 'density': 0.1, 'regime': 'I'},
               {'temperature': 1, 'density': 0.2, 'regime': 'II-B'},
               {'temperature': 1, 'density': 0.3, 'regime': 'I'},  # Not in the grid.
               {'temperature': 2, 'density': 0.1, 'regime': 'ambiguous'}]
  result = regimes.agreement(labels, [1.0], [0.1, 0.2], reference)
  assert (result['matched'], result['agree'], result['fraction']) == (2, 1, 0.5)
  assert result['disagreements'] == [
      {'temperature': 1.0, 'density': 0.2, 'ours': 'II-A', 'theirs': 'II-B'}]
