"""The replicate confidence estimator is calibrated on synthetic cells with known noise.

A synthetic phase diagram (5 temperatures, hottest first, x 4 densities) with known true cell
means; each run draws 3 dense seeds per cell from normal noise whose spread grows with the
cell's depth (as measured on the default's grids: LMC spread about half of |LMC|, CKA spread
about a third of 1 - CKA). The truth puts some cells near a boundary (a column whose drop is
just at min_drop, a II-A/II-B onset within noise) and others deep inside a regime. A label
counts as *kept* when an independent run of the same truth gives the same label: the
calibration target is that confident labels (>= regimes.min_confidence) are kept in >= 95 %
of cases, and the estimator should not be surer than the replication it predicts.
"""

import numpy as np

from prunephase import confidence
from prunephase import regimes

RULE = regimes.RegimeRule()
MIN_CONFIDENCE = regimes.DEFAULTS['min_confidence']
# True mean LMC (rows hottest first) of four density columns: a deep transition, a drop right at
# min_drop (0.05: a coin flip between runs), no transition, and a deep flat-ish column.
TRUE_LMC = np.array([[-0.01, -0.002, -0.001, -0.12],
                     [-0.02, -0.004, -0.001, -0.13],
                     [-0.03, -0.010, -0.000, -0.12],
                     [-0.20, -0.055, -0.000, -0.15],
                     [-0.25, -0.060, -0.000, -0.16]])
TRUE_CKA = np.array([[0.90, 0.960, 0.990, 0.85],
                     [0.91, 0.970, 0.995, 0.86],
                     [0.92, 0.980, 0.998, 0.86],
                     [0.93, 0.985, 0.999, 0.87],
                     [0.93, 0.990, 0.999, 0.87]])
UNITS = 3
HOME_RUNS = 6  # Runs whose confidences are judged.
JUDGING_RUNS = 12  # Independent runs that judge each home run's labels.
DRAWS = 100
COUNTS = np.full(TRUE_LMC.shape, UNITS)  # Dense seeds per cell, as the rule sees them.


def _run(rng):
  """One run: (lmc unit grid, cka unit grid) with UNITS dense seeds per cell."""
  shape = TRUE_LMC.shape + (UNITS,)
  lmc = TRUE_LMC[..., None] + (0.5 * np.abs(TRUE_LMC) + 0.003)[..., None] * rng.standard_normal(shape)
  cka = TRUE_CKA[..., None] + (0.35 * (1 - TRUE_CKA) + 0.0005)[..., None] * rng.standard_normal(shape)
  cka = np.minimum(cka, 1.0)
  to_grid = lambda values: [[values[t, d] for d in range(values.shape[1])]
                            for t in range(values.shape[0])]
  return to_grid(lmc), to_grid(cka)


def _labels(lmc, cka):
  return regimes.label_grid(regimes.cell_means(lmc), regimes.cell_means(cka), RULE,
                            regimes.cell_stds(lmc), regimes.cell_stds(cka), COUNTS)


def _study(estimator):
  """(confidences, kept fractions) of every home cell, each (HOME_RUNS * T * D,)."""
  rng = np.random.default_rng(2026)
  conf, kept = [], []
  for home in range(HOME_RUNS):
    lmc, cka = _run(rng)
    labels = _labels(lmc, cka)
    conf.append(confidence.estimate(estimator, lmc, cka, labels, regimes.label_fn(RULE, COUNTS),
                                    DRAWS,
                                    seed=home, lmc_noise=regimes.cell_stds(lmc),
                                    cka_noise=regimes.cell_stds(cka)).ravel())
    same = np.mean([_labels(*_run(rng)) == labels for _ in range(JUDGING_RUNS)], axis=0)
    kept.append(same.ravel())
  return np.concatenate(conf), np.concatenate(kept)


def test_confident_labels_are_kept_by_independent_runs():
  conf, kept = _study('replicate')
  confident = conf >= MIN_CONFIDENCE
  # Enough confident cells to judge, but not all: the truth has cells on a boundary.
  assert 0.4 <= confident.mean() < 1.0, confident.mean()
  assert kept[confident].mean() >= 0.95, kept[confident].mean()
  # Not surer than it should be: over all cells, the mean confidence does not exceed the
  # mean kept fraction by more than Monte Carlo noise.
  assert conf.mean() <= kept.mean() + 0.03, (conf.mean(), kept.mean())
  # It ranks: uncertain cells are kept less often than confident ones.
  assert kept[~confident].mean() < kept[confident].mean() - 0.1


def test_the_bootstrap_is_surer_than_its_labels_replicate():
  # The estimator the replicate one replaced: with three units it calls cells confident that
  # other runs label otherwise.
  boot_conf, boot_kept = _study('bootstrap')
  conf, kept = _study('replicate')
  assert boot_conf.mean() > boot_kept.mean() + 0.03, (boot_conf.mean(), boot_kept.mean())
  boot_confident = boot_conf >= MIN_CONFIDENCE
  assert boot_kept[boot_confident].mean() < kept[conf >= MIN_CONFIDENCE].mean()


def test_a_cell_at_a_boundary_is_uncertain_and_a_deep_one_is_not():
  rng = np.random.default_rng(7)
  lmc, cka = _run(rng)
  labels = _labels(lmc, cka)
  conf = confidence.replicate_confidence(lmc, cka, labels, regimes.label_fn(RULE, COUNTS), 200)
  # Deep inside: the hottest cell of the deep-transition column (II-A) and the cold end of the
  # column without a drop (II-B, LMC 0, CKA on its plateau).
  assert labels[0, 0] == 'II-A' and conf[0, 0] >= 0.9
  assert labels[4, 2] == 'II-B' and conf[4, 2] >= 0.95
  # The column whose drop sits at min_drop flips between runs: never confident.
  assert conf[4, 1] < MIN_CONFIDENCE


def test_replicate_confidence_is_nan_where_nothing_is_estimated():
  lmc = [[np.array([-0.1, -0.2, -0.15]), np.array([-0.1])],
         [np.array([0.0, 0.001, -0.001]), np.array([np.nan, 0.0, 0.0])]]
  cka = [[np.array([0.9, 0.91, 0.92]), np.array([0.9])],
         [np.array([0.99, 0.99, 0.98]), np.array([0.99, 0.99, 0.99])]]
  labels = np.array([['I', 'I'], ['II-B', '']], dtype=object)
  label = regimes.label_fn(RULE, np.array([[3, 1], [3, 3]]))
  conf = confidence.replicate_confidence(lmc, cka, labels, label, 20)
  assert np.isfinite(conf[0, 0]) and np.isfinite(conf[1, 0])
  assert np.isnan(conf[0, 1])  # One unit: nothing to estimate a spread from.
  assert np.isnan(conf[1, 1])  # Unlabelled (a NaN unit).
  assert np.isnan(confidence.replicate_confidence(lmc, cka, labels, label,
                                                  0)).all()  # Not computed.
  again = confidence.replicate_confidence(lmc, cka, labels, label, 20)
  np.testing.assert_array_equal(conf, again)  # Deterministic for a seed.


def test_noise_model_spread_grows_with_depth():
  # Two cells with the same units' sum of squares relative to their depth: k^2 pools them.
  values = [[np.array([-0.09, -0.11]), np.array([-0.009, -0.011])]]
  usable = np.ones((1, 2), bool)
  sum_sq, df = confidence.cell_spread(values, usable, prior_df=4.0, reference=0.0, floor=0.0)
  own = np.array([0.0002, 0.000002])
  k2 = (own / np.array([0.1, 0.01]) ** 2).sum() / 2
  np.testing.assert_allclose(sum_sq, [own + 4 * k2 * np.array([0.1, 0.01]) ** 2])
  np.testing.assert_allclose(df, [[5.0, 5.0]])
