"""Tests for case study 1 (prunephase.advice): the rule and how its moves are judged on a
table's test errors. The command (`prunephase-advise`) is tested in tests/test_cases.py."""

import numpy as np

from prunephase import advice


def test_advice_for():
  assert advice.advice_for('I') == 'increase'
  assert advice.advice_for('II-A') == 'decrease'
  assert advice.advice_for('II-B') == 'keep'
  assert advice.advice_for('') == 'none'
  assert advice.advice_for('III') == 'none'


def test_evaluate_advice_counts():
  # Rows hottest first. Hand count per cell (advice: right?; always-increase; always-decrease):
  #   col 0  t0 I    no hotter -> not counted;         -;  0.20<0.30 T
  #          t1 II-A colder 0.25<0.20 F;               F;  F
  #          t2 II-B hotter 0.20<0.25 -> keep F;       T;  -
  #   col 1  t0 II-A colder 0.40<0.30 F;               -;  F
  #          t1 I    hotter 0.30<0.40 T;               T;  T
  #          t2 II-B no neighbour lower -> keep T;     F;  -
  #   col 2  t0 ''   NaN error -> skipped everywhere
  #          t1 II-B hotter NaN, colder 0.3 -> keep T; -;  F
  #          t2 II-B hotter 0.2<0.3 -> keep F;         T;  -
  #   col 3  t0 II-B colder 0.2 -> keep T;             -;  F
  #          t1 ''   no advice;                        T;  F
  #          t2 II-A no colder -> not counted;         T;  -
  labels = np.array([['I', 'II-A', '', 'II-B'],
                     ['II-A', 'I', 'II-B', ''],
                     ['II-B', 'II-B', 'II-B', 'II-A']], dtype=object)
  test_error = np.array([[0.30, 0.30, np.nan, 0.1],
                         [0.20, 0.40, 0.2, 0.2],
                         [0.25, 0.10, 0.3, 0.3]])
  result = advice.evaluate_advice(test_error, labels)
  expected = {'increase': (1, 1), 'decrease': (0, 2), 'keep': (3, 5),
              'always_increase': (5, 7), 'always_decrease': (2, 7), 'advice': (4, 8)}
  assert set(result) == set(expected)
  for name, (right, cells) in expected.items():
    assert (result[name]['right'], result[name]['cells']) == (right, cells), name
    assert np.isclose(result[name]['accuracy'], right / cells), name


def test_evaluate_advice_without_neighbours():
  result = advice.evaluate_advice(np.array([[0.1, 0.2]]), np.array([['I', 'II-B']], dtype=object))
  for value in result.values():
    assert value['right'] == 0 and value['cells'] == 0 and np.isnan(value['accuracy'])
