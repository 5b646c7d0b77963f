"""The measure stage's landscape steps on the tiny sweep (`conftest.beyond_run`, with IMP and
weight rewinding): Hessian metrics of every member and dense model, trained Bezier curves of
every pair, their columns and panels."""

import csv

import jax
import numpy as np
import pytest

from conftest import tiny_config  # pylint: disable=g-bad-import-order
from prunephase import hessian
from prunephase.stages import measure_hessian_curve
from prunephase.stages import retrain as retrain_stage

# One xdist worker for every user of the session fixture `beyond_run` (the landscape run,
# half a minute): each worker would build its own (pyproject.toml: --dist loadgroup).
pytestmark = pytest.mark.xdist_group('beyond_run')


def test_landscape_columns_are_finite_and_curves_no_deeper_than_lines(beyond_run):
  _, rows = beyond_run
  assert len(rows) == 12
  for row in rows:
    for column in ('hessian_top_eigenvalue', 'hessian_trace', 'dense_hessian_top_eigenvalue',
                   'curve_mc'):
      assert np.isfinite(float(row[column])), column
    assert float(row['hessian_top_eigenvalue']) > 0
    # The bend starts at the midpoint (the straight line) and is trained on the curve's loss.
    assert float(row['curve_mc']) >= float(row['lmc']) - 0.02
    mean = 0.5 * (float(row['hessian_trace_a']) + float(row['hessian_trace_b']))
    assert float(row['hessian_trace']) == pytest.approx(mean, rel=1e-5)


def test_stage_hessian_equals_the_kernel_for_one_member(beyond_run):
  sweep, rows = beyond_run
  states, _ = sweep.store.retrained(2)
  members = sweep.store.retrain_members()
  m = members.index({'dense_seed': 1, 'density': 0.6, 'retrain_seed': 3})
  mask = jax.tree.map(lambda a: a[m], retrain_stage.member_masks(sweep, 2))
  x, y = hessian.train_batches(sweep.dataset, 2, sweep.config.measure.bn_batch_size)
  key = jax.random.fold_in(jax.random.PRNGKey(measure_hessian_curve.HESSIAN_SEED), m)
  one = hessian.hessian_metrics(sweep.model, jax.tree.map(lambda a: a[m], states.params),
                                jax.tree.map(lambda a: a[m], states.batch_stats), x, y, key,
                                mask, 8, 4)
  row = next(r for r in rows if float(r['temperature']) == 2 and float(r['density']) == 0.6
             and r['seed_b'] == '3' and r['seed_a'] == '2')
  assert float(row['hessian_top_eigenvalue_b']) == pytest.approx(float(one['top_eigenvalue']),
                                                                 rel=1e-4)
  assert float(row['hessian_trace_b']) == pytest.approx(float(one['trace']), rel=1e-4)


def test_curves_are_stored_and_panels_drawn(beyond_run):
  sweep, _ = beyond_run
  pair = sweep.store.measurement(1)['pairs'][0]
  assert len(pair['bezier']['train_error']) == 5 and pair['bezier']['t'][-1] == 1.0
  assert len(pair['bezier']['bend_loss']) == 1
  with open(sweep.path / 'cells.csv') as f:
    cells = list(csv.DictReader(f))
  assert 'curve_mc' in cells[0] and np.isfinite(float(cells[0]['hessian_trace']))
  import matplotlib.image  # pylint: disable=import-outside-toplevel
  image = matplotlib.image.imread(sweep.path / 'phase_diagram.png')
  assert image.shape[1] > 5 * 500  # Five panels side by side.


def test_a_panel_without_its_measurement_is_refused():
  from prunephase import config as config_lib  # pylint: disable=import-outside-toplevel
  config = tiny_config()
  config.report.panels = ('test_error', 'curve_mc')
  with pytest.raises(config_lib.ConfigError,
                     match='report.panels has curve_mc but measure.bezier_curve is False'):
    config_lib.validate(config)
