"""Tests for case study 2 (prunephase.selection): the temperature each method picks in one
density column. The command (`prunephase-select`) is tested in tests/test_cases.py."""

import numpy as np

from prunephase import selection


def _column(lmc, cka, test_error, dense_test_error):
  return {'lmc': np.array(lmc, float), 'cka_softmax': np.array(cka, float),
          'test_error': np.array(test_error, float),
          'dense_test_error': np.array(dense_test_error, float)}


def test_select_column_each_method():
  temperatures = [10.0, 20.0, 40.0, 80.0, 160.0]  # epochs, hottest first
  labels = np.array(['I', 'II-A', 'II-B', 'II-A', 'II-A'], dtype=object)
  column = _column(lmc=[-0.5, 0.0, -0.01, 0.03, 0.01],
                   cka=[0.99, 0.80, 0.90, 0.85, 0.70],
                   test_error=[0.30, 0.25, 0.15, 0.20, 0.22],
                   dense_test_error=[0.40, 0.10, 0.20, 0.30, 0.35])
  picks = selection.select_column('epochs', temperatures, column, labels)
  assert picks == {
      'three-regime rule': 2,  # highest CKA outside Regime I (0.99 is in I)
      'best dense test accuracy': 1,
      'last checkpoint / coldest': 4,
      'LMC only': 3,
      'CKA only': 0,
      'oracle': 2,
  }


def test_select_column_skips_unlabelled_cells():
  labels = np.array(['II-A', '', 'II-B'], dtype=object)
  column = _column(lmc=[0.0, np.nan, -0.01], cka=[0.8, 0.99, 0.9],
                   test_error=[0.2, np.nan, 0.1], dense_test_error=[0.1, 0.1, 0.1])
  picks = selection.select_column('epochs', [1.0, 2.0, 3.0], column, labels)
  assert picks['three-regime rule'] == 2
  assert picks['CKA only'] == 1  # the baseline does not look at labels
  assert picks['LMC only'] == 0
  assert picks['oracle'] == 2
  assert picks['best dense test accuracy'] == 0  # ties: the first (hottest)


def test_select_column_all_regime_one_falls_back_to_max_lmc():
  labels = np.array(['I', 'I', 'I'], dtype=object)
  column = _column(lmc=[-0.5, -0.1, -0.3], cka=[0.9, 0.5, 0.7], test_error=[0.3, 0.2, 0.1],
                   dense_test_error=[0.1, 0.2, 0.3])
  picks = selection.select_column('epochs', [1.0, 2.0, 3.0], column, labels)
  assert picks['three-regime rule'] == 1
  assert picks['CKA only'] == 0
  assert picks['oracle'] == 2


def test_select_column_no_finite_values_gives_none():
  labels = np.array(['', ''], dtype=object)
  nan = [np.nan, np.nan]
  picks = selection.select_column('epochs', [1.0, 2.0], _column(nan, nan, nan, nan), labels)
  assert picks['three-regime rule'] is None and picks['oracle'] is None
  assert picks['LMC only'] is None and picks['CKA only'] is None
  assert picks['last checkpoint / coldest'] == 1


def test_select_column_sam_rho_baselines():
  temperatures = [0.2, 0.1, 0.05, 0.0]  # SAM rho: larger is hotter, so descending
  labels = np.array(['II-A', 'II-B', 'II-A', 'I'], dtype=object)
  column = _column(lmc=[0.0, 0.0, 0.0, -0.5], cka=[0.8, 0.9, 0.85, 0.95],
                   test_error=[0.2, 0.15, 0.18, 0.3], dense_test_error=[0.1, 0.1, 0.1, 0.1])
  picks = selection.select_column('sam_rho', temperatures, column, labels)
  assert picks['SAM default rho=0.05'] == 2
  assert picks['plain SGD (rho=0)'] == 3
  assert picks['three-regime rule'] == 1 and picks['oracle'] == 1
  assert picks['last checkpoint / coldest'] == 3
  # A grid without those values has no such pick; other knobs have no such entries at all.
  picks = selection.select_column('sam_rho', [0.2, 0.1], _column(*[[0.0, 0.0]] * 4),
                                  np.array(['II-B', 'II-B'], dtype=object))
  assert picks['SAM default rho=0.05'] is None and picks['plain SGD (rho=0)'] is None
  picks = selection.select_column('lr', [0.2, 0.05, 0.0], _column(*[[0.0, 0.0, 0.0]] * 4),
                                  np.array(['II-B'] * 3, dtype=object))
  assert 'SAM default rho=0.05' not in picks and 'plain SGD (rho=0)' not in picks
