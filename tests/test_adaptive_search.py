"""The adaptive search of the phase diagram (prunephase.adaptive_search) on grids whose map is
known, and its replay command on the paper's Figure 2 grid."""

import random
import re

import numpy as np

from conftest import run_command  # pylint: disable=g-bad-import-order
from prunephase import adaptive_search
from prunephase import regimes

RULE = regimes.RegimeRule()  # The defaults: transition, min_drop 0.05, cka_tolerance 0.001.
TEMPERATURES = [float(t) for t in range(1, 13)]  # Hottest first: 12 rows.
DENSITIES = [0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 0.8]  # 8 columns.
# Regime I from these rows on in the three lowest densities (a cold, low-density corner) ...
REGIME_ONE_FROM = {0: 6, 1: 7, 2: 8}
# ... and II-B from these rows on (the CKA plateau's start) in the other columns: a band.
TWO_B_FROM = {3: 8, 4: 7, 5: 6, 6: 5, 7: 4}


def _expected() -> np.ndarray:
  labels = np.full((len(TEMPERATURES), len(DENSITIES)), 'II-A', dtype=object)
  for d, start in REGIME_ONE_FROM.items():
    labels[start:, d] = 'I'
  for d, start in TWO_B_FROM.items():
    labels[start:, d] = 'II-B'
  return labels


def _synthetic_rows() -> list[dict]:
  """Two dense seeds per cell with a small, deterministic seed noise."""
  rows = []
  for t, temperature in enumerate(TEMPERATURES):
    for d, density in enumerate(DENSITIES):
      barrier = d in REGIME_ONE_FROM and t >= REGIME_ONE_FROM[d]
      lmc = -0.5 if barrier else -0.01
      # CKA rises by 0.01 a row up to the plateau and stays there.
      cka = 0.90 + 0.01 * min(t, TWO_B_FROM.get(d, t))
      for seed, sign in ((1, 1.0), (2, -1.0)):
        rows.append({'temperature': temperature, 'density': density, 'dense_seed': seed,
                     'lmc': lmc + sign * 0.002, 'cka_softmax': cka + sign * 0.0002,
                     'test_error': 0.1})
  return rows


def _rows_of(rows: list[dict], measured: np.ndarray) -> list[dict]:
  return [row for row in rows if measured[TEMPERATURES.index(row['temperature']),
                                          DENSITIES.index(row['density'])]]


def test_the_synthetic_grid_has_the_intended_map():
  labels = regimes.label_table(_synthetic_rows(), TEMPERATURES, DENSITIES, RULE, 0)['labels']
  assert (labels == _expected()).all()


def test_finds_the_boundaries_with_fewer_cells():
  result = adaptive_search.replay(_synthetic_rows(), TEMPERATURES, DENSITIES, RULE)
  assert result['agreement'] == 1.0
  assert (result['labels'] == _expected()).all()
  assert result['cells'] < 0.6 * result['num_cells'], result['cells']
  assert result['rounds'][0]['new'] == len(adaptive_search.coarse_cells(12, 8))


def test_first_round_is_the_coarse_subgrid_with_the_corners():
  cells = adaptive_search.coarse_cells(12, 8)
  assert cells[:4] == [(0, 0), (0, 7), (11, 0), (11, 7)]
  assert sorted(cells) == [(t, d) for t in (0, 2, 4, 6, 8, 10, 11) for d in (0, 2, 4, 6, 7)]
  first = adaptive_search.next_cells(TEMPERATURES, DENSITIES, [], RULE)
  assert first == [(TEMPERATURES[t], DENSITIES[d]) for t, d in cells]


def test_stops_when_no_unmeasured_cell_could_change_a_label():
  rows = _synthetic_rows()
  result = adaptive_search.replay(rows, TEMPERATURES, DENSITIES, RULE)
  measured_rows = _rows_of(rows, result['measured'])
  assert adaptive_search.next_cells(TEMPERATURES, DENSITIES, measured_rows, RULE) == []
  state = adaptive_search.assess(TEMPERATURES, DENSITIES, measured_rows, RULE)
  assert state.candidates == [] and state.certain.all()
  assert result['rounds'][-1]['uncertain'] == 0


def test_respects_max_cells():
  rows = _synthetic_rows()
  for budget in (3, 30, 35):
    result = adaptive_search.replay(rows, TEMPERATURES, DENSITIES, RULE, max_cells=budget)
    assert result['cells'] == budget  # The unlimited search takes more than 35.
  small = adaptive_search.replay(rows, TEMPERATURES, DENSITIES, RULE, max_cells=4)
  assert set(zip(*np.nonzero(small['measured']))) == {(0, 0), (0, 7), (11, 0), (11, 7)}


def test_marks_inferred_cells():
  rows = _synthetic_rows()
  result = adaptive_search.replay(rows, TEMPERATURES, DENSITIES, RULE)
  assert (result['inferred'] == ~result['measured']).all() and result['inferred'].any()
  labels, inferred = adaptive_search.final_labels(TEMPERATURES, DENSITIES,
                                                  _rows_of(rows, result['measured']), RULE)
  assert (inferred == result['inferred']).all() and (labels == result['labels']).all()
  assert regimes.NO_LABEL not in labels[inferred]


def test_is_deterministic_and_ignores_row_order():
  rows = _synthetic_rows()
  first = adaptive_search.replay(rows, TEMPERATURES, DENSITIES, RULE)
  shuffled = list(rows)
  random.Random(0).shuffle(shuffled)
  second = adaptive_search.replay(shuffled, TEMPERATURES, DENSITIES, RULE)
  assert first['rounds'] == second['rounds']
  assert (first['labels'] == second['labels']).all()
  assert (first['measured'] == second['measured']).all()


def test_neighbours_of_a_low_confidence_cell_are_candidates():
  # A lone II-A column measured at rows 0, 2 and 4: all agree, nothing to measure ...
  labels = np.array([['II-A'], [''], ['II-A'], [''], ['II-A']], dtype=object)
  measured = labels != ''
  lmc = np.where(measured, 0.0, np.nan)
  confidence = np.where(measured, 0.9, np.nan)
  candidates = adaptive_search._candidates(  # pylint: disable=protected-access
      labels, np.ones(labels.shape, bool), measured, lmc, confidence, RULE, 0.8)
  assert candidates == []
  # ... unless the middle label is uncertain: then its unmeasured neighbours are measured.
  confidence[2, 0] = 0.5
  candidates = adaptive_search._candidates(  # pylint: disable=protected-access
      labels, np.ones(labels.shape, bool), measured, lmc, confidence, RULE, 0.8)
  assert candidates == [(1, 0, 'low_confidence'), (3, 0, 'low_confidence')]


def test_fill_interpolates_along_columns_then_rows():
  values = np.array([[0.0, 1.0], [np.nan, np.nan], [2.0, 5.0]])
  filled = adaptive_search.fill(values, np.isfinite(values))
  assert np.allclose(filled, [[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]])
  row_only = np.array([[0.0, np.nan, 4.0]])
  assert np.allclose(adaptive_search.fill(row_only, np.isfinite(row_only)), [[0.0, 2.0, 4.0]])


def test_replay_command_on_the_papers_figure_2():
  result = run_command('prunephase-regimes', '--results=docs/paper_figure2/metrics.csv',
                       '--knob=epochs', '--simulate_adaptive', timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  cells = re.search(r'^adaptive_cells: (\d+)/(\d+)$', result.stdout, re.M)
  agreement = re.search(r'^adaptive_agreement: (\d\.\d{3})$', result.stdout, re.M)
  assert cells and agreement, result.stdout
  measured, total = int(cells[1]), int(cells[2])
  assert total == 144 and measured <= 0.5 * total, result.stdout
  assert float(agreement[1]) >= 0.95, result.stdout


def test_replay_command_rejects_a_bad_combination():
  result = run_command('prunephase-regimes', '--results=docs/paper_figure2/metrics.csv',
                       '--knob=epochs', '--simulate_adaptive',
                       '--replicate=docs/paper_figure2/metrics.csv', timeout=120)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      'prunephase: error: --simulate_adaptive replays one table: give it without --replicate '
      'and --compare']
  result = run_command('prunephase-regimes', '--results=docs/paper_figure2/metrics.csv',
                       '--knob=epochs', '--simulate_adaptive', '--remeasure_below=1.5',
                       timeout=120)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      'prunephase: error: --remeasure_below=1.5: a confidence, in [0, 1]']


def test_the_remeasure_threshold_decides_the_low_confidence_cells():
  """The column neighbours of measured cells below `remeasure_below` are measured: at 0 none
  are, at 1 (every cell is below certainty with seed noise this large) many more."""
  rows = [{**row, 'lmc': row['lmc'] + (0.02 if row['dense_seed'] == 1 else -0.02)}
          for row in _synthetic_rows()]
  replays = [adaptive_search.replay(rows, TEMPERATURES, DENSITIES, RULE, remeasure_below=level,
                                    bootstrap=50) for level in (0.0, 1.0)]
  assert replays[0]['cells'] < replays[1]['cells']
  assert replays[0]['agreement'] >= 0.95
