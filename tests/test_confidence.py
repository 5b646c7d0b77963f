"""The bootstrap confidence estimator under the default (transition) rule, and how outputs show it.

A synthetic table of 2 temperatures (epochs 10, 20; hottest first) x 3 densities, 2 dense seeds
per cell (one seed pair each), whose bootstrap probabilities are worked out by hand below. The
rule is the default one (prunephase/regimes.py): transition, min_drop 0.05, noise factor 1,
cka_tolerance 0.001; low confidence is below 0.7 here (the threshold the exact probabilities
below straddle). The default estimator, 'replicate', is calibrated in tests/test_calibration.py.
"""

import csv
import json
import math
from unittest import mock

from matplotlib import figure
import numpy as np
import pytest

from prunephase import advice
from prunephase import cases
from prunephase import confidence as confidence_lib
from prunephase import plots
from prunephase import regimes
from prunephase import report_files

RULE = regimes.RegimeRule()
MIN_CONFIDENCE = 0.7
ESTIMATOR = 'bootstrap'
TEMPERATURES, DENSITIES = [10.0, 20.0], [0.1, 0.5, 0.9]
# (epochs, density): (LMC of dense seeds 0 and 1, their CKA). A resample of a cell of two units
# has mean u0 (probability 1/4), (u0 + u1) / 2 (1/2) or u1 (1/4).
#
# Density 0.1, near the I/II boundary: a drop of 0.06 (0 -> -0.06), just above min_drop, with
#   seed noise sqrt((0.0283^2 + 0.0566^2) / 2) = 0.0447 (below the drop: a transition). The
#   resampled drop is hot - cold with hot in {0.02, 0, -0.02} (1/4, 1/2, 1/4) and cold in
#   {-0.02, -0.06, -0.10} (1/4, 1/2, 1/4); it is a transition (>= 0.05 and > 0.0447) for 3 of
#   the 4 cold draws after hot 0.02 or 0, and only for cold -0.10 after hot -0.02:
#   P(I) = 3/4 * 3/4 + 1/4 * 1/4 = 10/16. The hot cell is II-A either way (the column ends in
#   Regime I, or its CKA 0.5 is far below the plateau 0.9): confidence 1.
# Density 0.5, deep inside: every resampled drop is >= 0.48: confidence 1 in both cells.
# Density 0.9, near the II-A/II-B boundary: no LMC drop; CKA noise rms(0.0424, 0) = 0.03 sets the
#   tolerance. Hot CKA mean 0.93 >= 0.95 - 0.03: II-B. Resampled, hot 0.90 (1/4) is below
#   0.92 (II-A), 0.93 (1/2) is II-B and 0.96 (1/4) is the plateau itself (II-B): P = 3/4. The
#   cold cell is on the plateau (or within 0.03 of 0.96) in every resample: confidence 1.
UNITS = {
    (10, 0.1): ((0.02, -0.02), (0.5, 0.5)),
    (20, 0.1): ((-0.02, -0.10), (0.9, 0.9)),
    (10, 0.5): ((0.01, -0.01), (0.5, 0.5)),
    (20, 0.5): ((-0.50, -0.52), (0.9, 0.9)),
    (10, 0.9): ((0.0, 0.0), (0.90, 0.96)),
    (20, 0.9): ((0.0, 0.0), (0.95, 0.95)),
}
LABELS = [['II-A', 'II-A', 'II-B'],
          ['I', 'I', 'II-B']]
EXACT = np.array([[1.0, 1.0, 3 / 4],
                  [10 / 16, 1.0, 1.0]])
LOW = np.array([[False, False, False],
                [True, False, False]])  # EXACT < 0.7, with a margin of 4 Monte Carlo sds.
# Enough resamples that 4 standard deviations of the Monte Carlo estimate (binomial: at most
# 4 * sqrt(0.25 / 1000) = 0.063) keep 10/16 below 0.7 and 3/4 above it.
RESAMPLES = 1000
COLUMNS = ['knob', 'temperature', 'density', 'dense_seed', 'seed_a', 'seed_b', 'lmc',
           'cka_softmax', 'test_error']


def _rows():
  return [{'knob': 'epochs', 'temperature': float(t), 'density': d, 'dense_seed': seed,
           'seed_a': 1, 'seed_b': 2, 'lmc': lmc[seed], 'cka_softmax': cka[seed],
           'test_error': 0.2 + 0.01 * seed}
          for (t, d), (lmc, cka) in UNITS.items() for seed in (0, 1)]


def _write_table(path):
  with open(path, 'w', newline='') as f:
    writer = csv.DictWriter(f, COLUMNS)
    writer.writeheader()
    writer.writerows(_rows())
  return path


def _monte_carlo_tolerance(p, n=RESAMPLES):
  """4 standard deviations of a fraction of n independent resamples with probability p."""
  return 4 * math.sqrt(p * (1 - p) / n)


def test_confidence_matches_the_exact_bootstrap_probability():
  out = regimes.label_table(_rows(), TEMPERATURES, DENSITIES, RULE, bootstrap=RESAMPLES,
                            estimator=ESTIMATOR)
  assert out['labels'].tolist() == LABELS
  confidence = out['confidence']
  for (t, d), exact in np.ndenumerate(EXACT):
    if exact == 1.0:  # No resample can change the label: exactly 1.
      assert confidence[t, d] == 1.0, (t, d)
    else:
      assert abs(confidence[t, d] - exact) <= _monte_carlo_tolerance(exact), (t, d)
  # The near-boundary cell is low-confidence, the cells deep inside their regime are not.
  assert confidence[1, 0] < MIN_CONFIDENCE and confidence[1, 1] > 0.95
  np.testing.assert_array_equal(confidence < MIN_CONFIDENCE, LOW)


def test_zero_resamples_is_not_computed_rather_than_zero():
  out = regimes.label_table(_rows(), TEMPERATURES, DENSITIES, RULE, bootstrap=0,
                            estimator=ESTIMATOR)
  assert out['labels'].tolist() == LABELS  # The labels do not depend on the bootstrap.
  assert np.isnan(out['confidence']).all()
  grid = report_files.label_text_grid(TEMPERATURES, DENSITIES, out['labels'], out['confidence'],
                                      'epochs', MIN_CONFIDENCE)
  assert '(' not in grid  # n/a is not uncertain: no label is marked.
  lmc = [[np.array(UNITS[int(t), d][0]) for d in DENSITIES] for t in TEMPERATURES]
  cka = [[np.array(UNITS[int(t), d][1]) for d in DENSITIES] for t in TEMPERATURES]
  assert np.isnan(confidence_lib.bootstrap_confidence(lmc, cka, out['labels'],
                                                         regimes.label_fn(RULE), 0)).all()


def _draw(confidence, min_confidence=MIN_CONFIDENCE):
  """The phase diagram's figure for the synthetic table with `confidence` (not saved)."""
  out = regimes.label_table(_rows(), TEMPERATURES, DENSITIES, RULE, bootstrap=0,
                            estimator=ESTIMATOR)
  drawn = []
  with mock.patch.object(figure.Figure, 'savefig', lambda fig, *a, **k: drawn.append(fig)):
    plots.phase_diagram('unused.png', knob='epochs', temperatures=TEMPERATURES,
                        densities=DENSITIES, means=out['means'], labels=out['labels'],
                        confidence=confidence, min_confidence=min_confidence,
                        rule_text=RULE.describe())
  return drawn[0]


def _hatched(fig):
  """{panel index: set of hatched (t, d) cells} over the figure's heat-map panels."""
  panels = [ax for ax in fig.axes if ax.images]  # Colour bars hold no image.
  assert len(panels) == len(plots.DEFAULT_PANELS)
  return {i: {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in ax.patches
              if p.get_hatch()}
          for i, ax in enumerate(panels)}


def test_figure_hatches_exactly_the_low_confidence_cells():
  # Below the threshold: hatched; at it, above it or NaN (not computed, or unlabelled): not.
  confidence = np.array([[0.2, MIN_CONFIDENCE, np.nan],
                         [np.nextafter(MIN_CONFIDENCE, 0), 1.0, 0.0]])
  hatched = _hatched(_draw(confidence))
  assert all(cells == {(0, 0), (1, 0), (1, 2)} for cells in hatched.values()), hatched
  assert all(not cells for cells in _hatched(_draw(np.full((2, 3), np.nan))).values())


def _regimes_command(tmp_path, bootstrap, capsys):
  """cases.regimes (what `prunephase-regimes --results=... --bootstrap=N` runs) on the table:
  (stdout, the figure it drew, regimes.csv rows, regimes.json, the loaded table)."""
  loaded = cases.load_labelled(results=str(_write_table(tmp_path / 'results.csv')),
                               out=str(tmp_path / 'out'), overrides={'bootstrap': bootstrap, 'confidence': ESTIMATOR,
                                          'min_confidence': MIN_CONFIDENCE})
  drawn = []
  with mock.patch.object(figure.Figure, 'savefig', lambda fig, *a, **k: drawn.append(fig)):
    cases.regimes(loaded)
  with open(tmp_path / 'out' / 'regimes.csv', newline='') as f:
    cells = list(csv.DictReader(f))
  saved = json.loads((tmp_path / 'out' / 'regimes.json').read_text())
  return capsys.readouterr().out, drawn[0], cells, saved, loaded


def _printed_grid(stdout):
  grid = {}
  for line in stdout.splitlines():
    left, _, right = line.partition(' | ')
    if right and left.strip().replace('.', '').isdigit():
      grid[float(left)] = right.split()
  return grid


def test_tables_and_figure_mark_low_confidence(tmp_path, capsys):
  stdout, fig, cells, saved, loaded = _regimes_command(tmp_path, RESAMPLES, capsys)
  # Parentheses around exactly the low-confidence label; the figure hatches the same cell.
  assert _printed_grid(stdout) == {10.0: ['II-A', 'II-A', 'II-B'], 20.0: ['(I)', 'I', 'II-B']}
  assert all(hatched == {(1, 0)} for hatched in _hatched(fig).values())
  assert 'confidence n/a' not in stdout
  # regimes.csv and regimes.json carry each cell's label and confidence (the CSV to 6
  # significant digits), the ones the labelling computed.
  confidence = loaded['labelled']['confidence']
  assert len(cells) == len(saved['labels']) == 6
  assert saved['confidence_draws'] == RESAMPLES
  for cell, entry in zip(cells, saved['labels']):
    t, d = TEMPERATURES.index(float(cell['temperature'])), DENSITIES.index(float(cell['density']))
    assert (float(entry['temperature']), entry['density']) == (TEMPERATURES[t], DENSITIES[d])
    assert cell['regime'] == entry['regime'] == LABELS[t][d]
    assert entry['confidence'] == confidence[t, d]
    assert float(cell['regime_confidence']) == pytest.approx(confidence[t, d], rel=1e-5)
  assert abs(confidence[1, 0] - 10 / 16) <= _monte_carlo_tolerance(10 / 16)


def test_outputs_say_n_a_when_the_bootstrap_is_off(tmp_path, capsys):
  stdout, fig, cells, saved, loaded = _regimes_command(tmp_path, 0, capsys)
  assert _printed_grid(stdout) == {10.0: ['II-A', 'II-A', 'II-B'], 20.0: ['I', 'I', 'II-B']}
  assert 'confidence n/a in 6 of 6 labelled cells (not computed: bootstrap 0)' in stdout
  assert all(not hatched for hatched in _hatched(fig).values())
  assert [cell['regime_confidence'] for cell in cells] == [''] * 6  # Empty CSV field: n/a.
  assert [entry['confidence'] for entry in saved['labels']] == [None] * 6  # JSON null: n/a.
  assert saved['confidence_draws'] == 0
  # The advice names the reason instead of a number.
  advice.advise(loaded, temperature=20, density=0.1)
  first = capsys.readouterr().out.splitlines()[0]
  assert first.startswith('epochs=20, density 0.1: regime I (confidence n/a: not computed, '
                          'bootstrap 0) -> increase the temperature')
