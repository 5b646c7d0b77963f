"""Every console script runs quietly and says what it counts; the phase diagram is legible.

The commands run once per module (each imports JAX, a few seconds) on a copy of the session's
finished tiny sweep (2 epochs x 2 densities, one dense seed) and on a table with only the
required columns; the tests below read their output.
"""

import re
import shutil
from unittest import mock

from matplotlib import figure as figure_lib
import numpy as np
import pandas as pd
import pytest

from conftest import run_command
from conftest import tiny_config_file
from prunephase import plots

# One xdist worker for this module: its module fixture runs the commands once.
pytestmark = pytest.mark.xdist_group('test_quiet_commands')

REQUIRED = ['temperature', 'density', 'lmc', 'cka_softmax']  # tables.py: the rest is optional.
COLDEST, DENSITY = 2, 0.2  # A cell of tiny_config's grid (epochs 1, 2; densities 0.2, 0.6).


@pytest.fixture(scope='module')
def runs(finished_run, tmp_path_factory):
  """Command name -> its CompletedProcess; 'bare ...' ran on the table of REQUIRED columns."""
  workdir, _, _ = finished_run
  root = tmp_path_factory.mktemp('quiet')
  run = root / 'run'
  shutil.copytree(workdir, run)  # The session's sweep stays as other tests expect it.
  bare = root / 'bare.csv'
  pd.read_csv(run / 'results.csv')[REQUIRED].to_csv(bare, index=False)
  table = [f'--results={bare}', '--knob=epochs', f'--out={root / "bare"}']
  cell = [f'--temperature={COLDEST}', f'--density={DENSITY}']
  commands = {
      'prunephase': ('prunephase', f'--config={tiny_config_file(root)}', f'--workdir={run}',
                     '--stages=report'),
      'regimes': ('prunephase-regimes', f'--workdir={run}'),
      'evaluate': ('prunephase-advise', f'--workdir={run}', '--evaluate'),
      'advise': ('prunephase-advise', f'--workdir={run}', *cell),
      'select': ('prunephase-select', f'--workdir={run}'),
      'bare regimes': ('prunephase-regimes', *table),
      'bare evaluate': ('prunephase-advise', *table, '--evaluate'),
      'bare advise': ('prunephase-advise', *table, *cell),
      'bare select': ('prunephase-select', *table),
  }
  return {name: run_command(*command, timeout=300) for name, command in commands.items()}


def test_no_warning_or_traceback(runs):
  noisy = {name: proc.stderr[-2000:] for name, proc in runs.items()
           if proc.returncode != 0 or re.search('warning|traceback', proc.stderr, re.I)}
  assert not noisy, noisy


def test_no_bare_nan_in_the_output(runs):
  # A missing value prints as 'n/a' next to a reason, never as NumPy's 'nan'.
  printed = {name: [line for line in proc.stdout.splitlines() if re.search(r'\bnan\b', line)]
             for name, proc in runs.items()}
  assert not any(printed.values()), printed


def test_nan_confidence_is_explained(runs):
  first = runs['advise'].stdout.splitlines()[0]
  assert first.startswith(f'epochs={COLDEST}, density {DENSITY}: regime '), first
  assert '(confidence n/a: one dense seed, nothing to bootstrap) -> ' in first, first
  assert ('confidence n/a in 4 of 4 labelled cells (one dense seed each: the bootstrap has '
          'nothing to resample)') in runs['regimes'].stdout
  assert re.search(r'cells per regime: I=\d II-A=\d II-B=\d unlabelled=0 \(of 4 cells\)',
                   runs['regimes'].stdout), runs['regimes'].stdout


def test_evaluate_says_what_it_counts(runs):
  out = runs['evaluate'].stdout
  assert 'cells judged' in out and 'cells left out (why)' in out
  # 2 x 2 grid: each baseline has one row of cells with no neighbour to move to.
  assert re.search(r'advice accuracy [\d.]+ \(right on \d of 4 cells with a move to judge\)',
                   out), out
  for move, row, neighbour in (('increase', 'hottest', 'hotter'),
                               ('decrease', 'coldest', 'colder')):
    assert re.search(rf'baseline always {move}: accuracy [\d.]+ over 2 cells \(left out: 2 cells '
                     rf'in the {row} row, no {neighbour} temperature to move to\)', out), out
  assert ('advice accuracy n/a: the table has no test errors'
          in runs['bare evaluate'].stdout), runs['bare evaluate'].stdout


def test_select_says_what_it_counts(runs):
  assert re.search(r'oracle +0\.0000 +2 of 2 densities', runs['select'].stdout)
  bare = runs['bare select'].stdout
  assert ('best dense test accuracy: no pick at 2 of 2 densities (the table has no '
          'dense_test_error values)') in bare, bare
  assert 'test_error and gap_to_oracle n/a: the table has no test_error values' in bare
  assert 'test_error n/a: the table has no test_error values' in runs['bare advise'].stdout


# ---------------------------------------------------------------------------- the figure


def _figure(means, labels):
  """The phase diagram's Figure (drawn as for a file, nothing written)."""
  drawn = []
  with mock.patch.object(figure_lib.Figure, 'savefig', autospec=True,
                         side_effect=lambda fig, *args, **kwargs: drawn.append(fig)):
    temperatures, densities = [1.0, 2.0], [0.2, 0.6]
    plots.phase_diagram('unused.png', knob='epochs', temperatures=temperatures,
                        densities=densities, means=means, labels=labels,
                        confidence=np.full(labels.shape, np.nan), min_confidence=0.7,
                        rule_text='a rule')
  return drawn[0]


def test_phase_diagram_is_legible():
  # LMC within +-0.01 (seed noise): the colour scale must still span the barrier scale.
  means = {'test_error': np.array([[0.20, 0.12], [0.30, 0.10]]),
           'lmc': np.array([[0.004, -0.01], [-0.006, 0.002]]),
           'cka_softmax': np.array([[0.95, 0.96], [0.97, 0.99]])}
  labels = np.array([['II-A', 'II-A'], ['I', 'II-B']], dtype=object)
  fig = _figure(means, labels)
  panels = [ax for ax in fig.axes if ax.images]
  assert len(panels) == len(plots.DEFAULT_PANELS)
  for ax, name in zip(panels, plots.DEFAULT_PANELS):
    image = ax.images[0]
    assert image.colorbar is not None and image.colorbar.ax.get_ylabel().strip(), name
    for text in ax.texts:  # Numbers in every panel, regime labels on the first.
      assert text.get_fontsize() >= 8, (name, text.get_text())
      # Outlined, or on a patch of its own: reads on dark cells too.
      assert text.get_path_effects() or text.get_bbox_patch() is not None, text.get_text()
  assert panels[0].texts and {'I', 'II-A', 'II-B'} <= {t.get_text() for t in panels[0].texts}
  low, high = panels[plots.DEFAULT_PANELS.index('lmc')].images[0].get_clim()
  assert low == -high and high >= 0.05
  assert 'LMC' in panels[plots.DEFAULT_PANELS.index('lmc')].images[0].colorbar.ax.get_ylabel()
