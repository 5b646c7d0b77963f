"""Tests for replication (prunephase.replication, out_of_sample.replicate / evaluate_out_of_sample /
select_out_of_sample and the commands' --replicate) on synthetic tables with known answers."""

import json
import pathlib
import re
import shutil

from absl import flags
import numpy as np
import pytest

from conftest import error_lines  # pylint: disable=g-bad-import-order
from conftest import run_command
from prunephase import cases
from prunephase import out_of_sample
from prunephase import replication
from prunephase.cli import regimes as regimes_cli

TEMPERATURES = [10.0, 20.0, 40.0]  # epochs, hottest first.
DENSITIES = [0.1, 0.5]
LINE = re.compile(r'^(label|confident|advice|pick)_replication: (\d\.\d{2,3}|n/a) '
                  r'\((\d+)/(\d+)\)$', re.MULTILINE)


def _labels(rows):
  return np.array(rows, dtype=object)


def _fake_run(tmp_path, labels, confidence=None, test_error=None, std=None, units=3,
              cka=None):
  """A labelled run as cases.load_labelled returns it, from (T, D) arrays."""
  labels = _labels(labels)
  shape = labels.shape
  full = lambda value: np.full(shape, value, float)
  means = {'lmc': full(0.0), 'cka_softmax': full(0.9) if cka is None else np.array(cka, float),
           'test_error': full(0.1) if test_error is None else np.array(test_error, float),
           'dense_test_error': full(0.05)}
  stds = {'test_error': full(np.nan) if std is None else np.array(std, float)}
  return {'knob': 'epochs', 'temperatures': TEMPERATURES[:shape[0]],
          'densities': DENSITIES[:shape[1]], 'config': cases.regime_config(),
          'out': pathlib.Path(tmp_path), 'source': f'run{id(labels)}',
          'labelled': {'labels': labels, 'means': means, 'stds': stds,
                       'confidence': full(1.0) if confidence is None
                       else np.array(confidence, float),
                       'num_units': np.full(shape, units)}}


# ---------------------------------------------------------------------------- statistics


@pytest.mark.parametrize('k', [0, 1, 3])
def test_label_replication_is_the_fraction_of_cells_that_agree(k):
  first = _labels([['I', 'II-A', 'II-B', 'II-A']] * 3)
  second = first.copy()
  flat = second.reshape(-1)
  for index in (0, 5, 10)[:k]:  # Change k labels.
    flat[index] = 'II-B' if flat[index] != 'II-B' else 'I'
  valid = [grid != '' for grid in (first, second)]
  result = replication.pairwise_agreement([first, second], valid)
  assert (result['agree'], result['cells']) == (12 - k, 12)
  assert result['fraction'] == pytest.approx((12 - k) / 12)


def test_pairwise_agreement_pools_every_pair_and_skips_unlabelled_cells():
  a = _labels([['I', 'II-A']])
  b = _labels([['I', '']])
  c = _labels([['II-A', 'II-A']])
  result = replication.pairwise_agreement([a, b, c], [g != '' for g in (a, b, c)])
  # (a, b): 1 cell, agrees; (a, c): 2 cells, 1 agrees; (b, c): 1 cell, differs.
  assert [(p['agree'], p['cells']) for p in result['pairs']] == [(1, 1), (1, 2), (0, 1)]
  assert (result['agree'], result['cells']) == (2, 4)


def test_confident_replication_counts_only_cells_both_runs_call_confident(tmp_path):
  # min_confidence 0.7. Both confident: (0,0) agree, (1,1) differ; (0,1) only run 1,
  # (1,0) only run 2, and (2,*) neither (NaN is never confident).
  first = _fake_run(tmp_path, [['I', 'II-A'], ['II-A', 'II-B'], ['II-B', 'II-B']],
                    confidence=[[0.9, 0.95], [0.5, 1.0], [np.nan, 0.2]])
  second = _fake_run(tmp_path, [['I', 'II-B'], ['II-A', 'II-A'], ['II-B', 'II-B']],
                     confidence=[[0.7, 0.3], [0.8, 0.75], [0.9, 0.9]])
  first['config'].min_confidence = 0.7
  result = out_of_sample.replicate([first, second])
  assert (result['label_replication']['agree'], result['label_replication']['cells']) == (4, 6)
  assert (result['confident_replication']['agree'],
          result['confident_replication']['cells']) == (1, 2)
  assert (result['advice_replication']['agree'], result['advice_replication']['cells']) == (4, 6)
  assert json.loads((tmp_path / 'replication.json').read_text())['confident_replication'][
      'cells'] == 2


def test_reliability_bins_use_the_lower_confidence_of_a_pair():
  labels = [_labels([['I', 'I', 'II-A', 'II-A', 'II-B', 'II-B']]),
            _labels([['I', 'II-A', 'II-A', 'II-B', 'II-B', '']])]
  confidence = [np.array([[0.95, 0.6, 1.0, 0.8, 0.45, 1.0]]),
                np.array([[1.0, 0.99, 0.7, 0.9, np.nan, 0.9]])]
  # Lower confidences: 0.95 (same), 0.6 (differs), 0.7 (same), 0.8 (differs), NaN (same);
  # the last cell is unlabelled in run 2 and not counted.
  table = {row['bin']: (row['cells'], row['replicated'])
           for row in replication.reliability(labels, confidence)}
  assert table == {'[0.0, 0.5)': (0, 0), '[0.5, 0.7)': (1, 0), '[0.7, 0.9)': (2, 1),
                   '[0.9, 1.0]': (1, 1), 'n/a': (1, 1)}


def test_grid_difference_names_the_knob_temperatures_or_densities():
  grid = {'knob': 'epochs', 'temperatures': [10.0, 20.0], 'densities': [0.1, 0.5]}
  names = ('A', 'B')
  assert replication.grid_difference(grid, dict(grid), names) is None
  assert replication.grid_difference(grid, {**grid, 'knob': 'lr'}, names) == (
      'knobs differ: epochs in A, lr in B')
  assert replication.grid_difference(grid, {**grid, 'temperatures': [10.0, 40.0]}, names) == (
      'temperatures (epochs) differ: 20 only in A; 40 only in B')
  assert replication.grid_difference(grid, {**grid, 'densities': [0.1]}, names) == (
      'densities differ: 0.5 only in A')


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_more_cells():
  outcomes = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 1], float)
  small = replication.bootstrap_means({'advice': outcomes})['advice']
  large = replication.bootstrap_means({'advice': np.tile(outcomes, 10)})['advice']
  for result in (small, large):
    assert result['estimate'] == pytest.approx(0.7)
    assert result['low'] <= result['estimate'] <= result['high']
  assert large['high'] - large['low'] < 0.5 * (small['high'] - small['low'])
  # Unjudged (NaN) entries count neither way; nothing judged: no interval.
  with_nan = replication.bootstrap_means({'a': [1.0, np.nan, 0.0], 'b': [np.nan] * 3})
  assert with_nan['a']['estimate'] == 0.5 and with_nan['a']['judged'] == 2
  assert np.isnan(with_nan['b']['estimate']) and np.isnan(with_nan['b']['low'])


# ---------------------------------------------------------------------------- out of sample


def test_out_of_sample_cs1_is_the_first_runs_advice_on_the_other_runs_errors(tmp_path, capsys):
  # Run 1's labels; run 2's test errors (hottest first) and their standard deviations over 4
  # dense seeds (standard error 0.01 / 2, so a significant change exceeds
  # 2 x sqrt(2) x 0.005 = 0.014). Hand count (every move; significant):
  #   col 0 (0.30, 0.15, 0.20): t0 II-A decrease 0.15 < 0.30 T (sig); t1 II-B keep, neither
  #     neighbour lower T (vs the lower, 0.20: sig); t2 I increase 0.15 < 0.20 T (sig)
  #   col 1 (0.12, 0.100, 0.110): t0 I increase: hottest row, not judged; t1 II-A decrease
  #     0.110 > 0.100 F (0.01: not sig); t2 II-B keep, but hotter 0.100 < 0.110 F (not sig)
  labels = [['II-A', 'I'], ['II-B', 'II-A'], ['I', 'II-B']]
  errors = [[0.30, 0.12], [0.15, 0.100], [0.20, 0.110]]
  first = _fake_run(tmp_path, labels, test_error=np.full((3, 2), 0.2))
  second = _fake_run(tmp_path, [['II-B'] * 2] * 3, test_error=errors,
                     std=np.full((3, 2), 0.01), units=4)
  result = out_of_sample.evaluate_out_of_sample([first, second])
  every, significant = result['every_move'], result['significant_moves']
  assert (every['advice']['right'], every['advice']['cells']) == (3, 5)
  assert every['advice']['accuracy'] == pytest.approx(0.6)
  assert (significant['advice']['right'], significant['advice']['cells']) == (3, 3)
  assert significant['advice']['left_out'] == {'hottest_row': 1, 'not_significant': 2}
  # Baselines, every cell with that neighbour: increase (t1, t2): 0.30 > 0.15 F, 0.15 < 0.20 T,
  # 0.12 > 0.100 F, 0.100 < 0.110 T; decrease (t0, t1): 0.15 < 0.30 T, 0.20 > 0.15 F,
  # 0.100 < 0.12 T, 0.110 > 0.100 F.
  assert (every['always_increase']['right'], every['always_increase']['cells']) == (2, 4)
  assert (every['always_decrease']['right'], every['always_decrease']['cells']) == (2, 4)
  for row in (*every.values(), *significant.values()):
    if row['cells']:
      assert row['low'] <= row['accuracy'] <= row['high']
  printed = capsys.readouterr().out
  assert 'intervals: 95% percentile bootstrap over cells (1000 resamples, seed 0)' in printed
  saved = json.loads((tmp_path / 'advise_out_of_sample.json').read_text())
  assert saved['every_move']['advice']['right'] == 3 and saved['interval']['seed'] == 0


def test_out_of_sample_cs2_scores_the_first_runs_pick_on_the_other_run(tmp_path):
  # Run 1 labels every cell II-B with CKA highest at t1 (col 0) and t2 (col 1): the rule picks
  # t1 and t2; run 2's test errors make t0 (col 0, gap 0.05) and t2 (col 1, gap 0) the best.
  cka = [[0.8, 0.8], [0.9, 0.85], [0.85, 0.9]]
  first = _fake_run(tmp_path, [['II-B'] * 2] * 3, cka=cka,
                    test_error=[[0.2, 0.2], [0.1, 0.2], [0.2, 0.1]])
  second = _fake_run(tmp_path, [['II-B'] * 2] * 3, test_error=[[0.1, 0.3], [0.15, 0.2],
                                                               [0.3, 0.1]])
  result = out_of_sample.select_out_of_sample([first, second])
  rule = result['summary']['three-regime rule']
  assert rule['mean_gap'] == pytest.approx(0.025)
  assert rule['picks_the_oracle'] == 1 and rule['scored'] == 2
  assert rule['in_sample_mean_gap'] == pytest.approx(0.0)
  assert rule['low'] <= rule['mean_gap'] <= rule['high']
  coldest = result['summary']['last checkpoint / coldest']
  assert coldest['mean_gap'] == pytest.approx((0.2 + 0.0) / 2)


# ---------------------------------------------------------------------------- commands


def _table(path, cells):
  """A results table: 2 dense seeds x 1 pair per cell, LMC and CKA equal within a cell."""
  lines = ['knob,temperature,density,dense_seed,seed_a,seed_b,lmc,cka_softmax,test_error']
  for (t, d), (lmc, cka, error) in cells.items():
    for seed in (0, 1):
      lines.append(f'epochs,{t},{d},{seed},1,2,{lmc},{cka},{error}')
  path.write_text('\n'.join(lines) + '\n')
  return path


# Threshold rule, cka_tolerance 0.01: density 0.1: II-A, II-B, I; density 0.5: II-A, II-B, II-B.
CELLS = {(10, 0.1): (0.01, 0.80, 0.20), (20, 0.1): (0.0, 0.90, 0.15),
         (40, 0.1): (-0.3, 0.95, 0.30), (10, 0.5): (0.0, 0.70, 0.12),
         (20, 0.5): (0.005, 0.915, 0.11), (40, 0.5): (0.0, 0.92, 0.10)}


def test_regimes_replicate_prints_the_lines(tmp_path):
  first = _table(tmp_path / 'a.csv', CELLS)
  # One label differs: epochs 10, density 0.5 moves onto the CKA plateau (II-A -> II-B).
  second = _table(tmp_path / 'b.csv', {**CELLS, (10, 0.5): (0.0, 0.918, 0.12)})
  proc = run_command('prunephase-regimes', f'--results={first}', f'--replicate={second}',
                     f'--out={tmp_path / "out"}', '--rule=threshold', '--cka_tolerance=0.01',
                     '--bootstrap=5', timeout=120)
  assert proc.returncode == 0, proc.stderr
  found = {m[1]: (m[2], int(m[3]), int(m[4])) for m in LINE.finditer(proc.stdout)}
  assert found == {'label': ('0.833', 5, 6), 'confident': ('0.833', 5, 6),
                   'advice': ('0.833', 5, 6), 'pick': ('1.000', 2, 2)}
  assert 'the lower of its two runs\' confidences' in proc.stdout
  saved = json.loads((tmp_path / 'out' / 'replication.json').read_text())
  assert saved['label_replication']['fraction'] == pytest.approx(5 / 6)
  assert saved['disagreements'][0]['labels'] == ['II-A', 'II-B']


def test_a_grid_mismatch_is_one_line(tmp_path):
  first = _table(tmp_path / 'a.csv', CELLS)
  second = _table(tmp_path / 'b.csv', {(80 if t == 40 else t, d): v for (t, d), v in
                                       CELLS.items()})
  proc = run_command('prunephase-regimes', f'--results={first}', f'--replicate={second}',
                     f'--out={tmp_path / "out"}', '--bootstrap=2', timeout=120)
  assert proc.returncode == 2
  assert error_lines(proc) == [
      f'prunephase: error: --replicate: grid mismatch between {first} and {second}: '
      f'temperatures (epochs) differ: 40 only in {first}; 80 only in {second}']
  assert not (tmp_path / 'out').exists()


@pytest.fixture
def parsed_flags():
  def parse(*args):
    flags.FLAGS(['prunephase-test', *args])
  yield parse
  flags.FLAGS.unparse_flags()


def test_a_finished_run_replicates_itself(finished_run, tmp_path, capsys, parsed_flags):
  workdir, _, _ = finished_run
  copy = tmp_path / 'copy'
  copy.mkdir()
  for name in ('results.csv', 'config.json'):
    shutil.copy(workdir / name, copy / name)
  parsed_flags(f'--workdir={workdir}', f'--replicate={copy}', f'--out={tmp_path / "out"}')
  regimes_cli.main([])
  found = {m[1]: m[2] for m in LINE.finditer(capsys.readouterr().out)}
  assert set(found) == {'label', 'confident', 'advice', 'pick'}
  assert found['label'] == '1.000' and found['pick'] == '1.000'
