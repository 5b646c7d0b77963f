"""Metric entries (`prunephase/metrics.py`): the built-ins give today's tables, a user's metric
registered in one config file runs through the `prunephase` command into results.csv,
cells.csv, the phase diagram and `load_run`."""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import EXAMPLE_FLAGS  # pylint: disable=g-bad-import-order
from conftest import REPO
from conftest import run_command
from conftest import tiny_config
from prunephase import analysis
from prunephase import config as config_lib
from prunephase import metrics
from prunephase import sweep as sweep_lib
from prunephase.config import identity
from prunephase.config import names

EXAMPLE = REPO / 'examples' / 'own_metric.py'


@pytest.fixture(name='clean_metrics')
def fixture_clean_metrics():
  """Unregisters, after the test, every metric the test registered."""
  before = metrics.names()
  yield
  for name in set(metrics.names()) - set(before):
    metrics.unregister(name)


def test_builtin_entries_give_the_tables_columns():
  assert metrics.names() == ('errors', 'lmc', 'cka', 'hessian', 'bezier_curve')
  assert metrics.result_columns() == [
      'knob', 'temperature', 'density', 'dense_seed', 'seed_a', 'seed_b', 'test_error',
      'train_error', 'lmc', 'cka_softmax', 'cka_logits', 'regime', 'regime_confidence',
      'test_error_a', 'test_error_b', 'train_error_a', 'train_error_b', 'pruned_test_error',
      'dense_test_error', 'actual_density', 'diverged']
  assert metrics.optional_result_columns() == [
      'hessian_top_eigenvalue', 'hessian_trace', 'dense_hessian_top_eigenvalue', 'curve_mc',
      'hessian_top_eigenvalue_a', 'hessian_top_eigenvalue_b', 'hessian_trace_a',
      'hessian_trace_b', 'dense_hessian_trace']
  assert metrics.cell_columns() == [
      'knob', 'temperature', 'density', 'num_pairs', 'num_dense_seeds', 'test_error',
      'test_error_std', 'train_error', 'lmc', 'lmc_std', 'cka_softmax', 'cka_softmax_std',
      'cka_logits', 'pruned_test_error', 'dense_test_error', 'regime', 'regime_confidence']
  assert metrics.optional_cell_fields() == ['hessian_top_eigenvalue', 'hessian_trace',
                                            'dense_hessian_top_eigenvalue', 'curve_mc']
  assert set(names.panels()) == {
      'test_error', 'normalized_test_error', 'train_error', 'lmc', 'cka_softmax', 'cka_logits',
      'pruned_test_error', 'hessian_top_eigenvalue', 'hessian_trace',
      'dense_hessian_top_eigenvalue', 'curve_mc'}
  assert names.panel_needs()['curve_mc'] == 'bezier_curve'


def test_the_default_config_states_the_entries_defaults():
  measure = config_lib.load_config_file(REPO / 'configs' / 'default.py').get_config('').measure
  for field, default in metrics.defaults().items():
    assert measure[field] == default, field
  neutral, only_when, speed = metrics.identity_rules()
  assert neutral == {'measure.hessian': False, 'measure.bezier_curve': False}
  assert only_when['measure.curve_lr'] == ('measure.bezier_curve', True)
  assert identity.stage_of('measure.pairs_per_call') is None and 'measure.point_batching' in speed


@pytest.mark.parametrize('kwargs, message', [
    ({'on': 'triples'}, 'on must be one of pairs, members'),
    ({'compute': None}, 'give its compute function'),
    ({'needs': ('states',)}, r"needs \('test_logits',\)"),
    ({'switch': 'nope'}, "switch 'nope' is not one of its fields"),
    ({'columns': [metrics.Column('lmc')]}, "column 'lmc' is already a column of metric lmc"),
    ({'columns': [metrics.Column('x', per='cell')]}, 'bad column'),
])
def test_bad_registrations_are_one_line(clean_metrics, kwargs, message):
  del clean_metrics
  fields = {'on': 'pairs', 'compute': lambda a, b, y, s: {'x': 0.0},
            'columns': [metrics.Column('x')], **kwargs}
  with pytest.raises(metrics.MetricError, match=message) as error:
    metrics.register_metric('mine', **fields)
  assert '\n' not in str(error.value)


def _confidence(logits, labels, settings):
  """A member's mean largest softmax probability on its first `confidence_examples` test
  inputs: logits (n_test, classes) -> {'confidence': scalar}."""
  del labels
  probs = jnp.max(jax.nn.softmax(logits, -1), -1)
  return {'confidence': jnp.mean(probs[:settings['confidence_examples']])}


def _check_fails(config):
  if config.measure.confidence_examples < 1:
    raise ValueError('measure.confidence_examples must be >= 1')


def test_a_member_metric_with_a_switch_runs_in_process(tmp_path, clean_metrics):
  """A per-member metric: results.csv has its `_a`, `_b` and pair mean; off, no column."""
  del clean_metrics
  metrics.register_metric(
      'confidence', on='members', compute=_confidence, check=_check_fails,
      fields={'confidence': False, 'confidence_examples': 50}, switch='confidence',
      columns=[metrics.Column('confidence', per='member', title='Confidence')])
  config = tiny_config()
  metrics.add_fields(config.measure)
  config.dense.epochs = config.retrain.epochs = config.measure.test_error_epochs = 1
  config.temperature.grid, config.retrain.seeds, config.measure.lmc_points = (1,), (1, 2), 3
  config.report.panels = ('test_error', 'confidence')
  with pytest.raises(config_lib.ConfigError, match='has confidence but measure.confidence is'):
    config_lib.validate(config)
  config.measure.confidence = True
  config.measure.confidence_examples = 0
  with pytest.raises(config_lib.ConfigError, match='confidence_examples must be >= 1'):
    config_lib.validate(config)
  config.measure.confidence_examples = 50
  sweep_lib.run_sweep(config, tmp_path)
  with open(tmp_path / 'results.csv', encoding='utf-8') as file:
    rows = list(csv.DictReader(file))
  assert len(rows) == 2
  for row in rows:
    a, b = float(row['confidence_a']), float(row['confidence_b'])
    assert 0 < a <= 1 and 0 < b <= 1
    assert abs(float(row['confidence']) - 0.5 * (a + b)) < 1e-5
  with open(tmp_path / 'cells.csv', encoding='utf-8') as file:
    assert 'confidence' in next(csv.reader(file))


def test_the_example_runs_through_the_prunephase_command(tmp_path, clean_metrics):
  del clean_metrics
  workdir = tmp_path / 'own'
  result = run_command(
      'prunephase', f'--config={EXAMPLE}', f'--workdir={workdir}', *EXAMPLE_FLAGS,
      timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(workdir / 'results.csv', encoding='utf-8') as file:
    assert 'disagreement' in next(csv.reader(file))
  with open(workdir / 'cells.csv', encoding='utf-8') as file:
    assert 'disagreement' in next(csv.reader(file))
  with open(workdir / 'config.json', encoding='utf-8') as file:
    assert 'disagreement' in json.load(file)['report']['panels']
  assert (workdir / 'phase_diagram.png').exists()
  config_lib.load_config_file(EXAMPLE)  # Registers the metric here too: its panel.
  assert metrics.panels()['disagreement'].title.startswith('Prediction disagreement')

  run = analysis.load_run(str(workdir))
  values = run.results['disagreement']
  assert len(values) == 6 and ((values >= 0) & (values <= 1)).all()
  cells = run.cells
  first = cells[cells.density == 0.06]['disagreement'].iloc[0]
  assert abs(first - values[run.results.density == 0.06].mean()) < 1e-5
  row = run.results.iloc[-1]
  members = [run.retrained(row.temperature, row.density, int(row.dense_seed), int(row[seed]))
             for seed in ('seed_a', 'seed_b')]
  x_test = np.asarray(run.dataset.x_test)
  predicted = [np.argmax(np.asarray(run.apply(m, x_test)), -1) for m in members]
  assert abs(float(np.mean(predicted[0] != predicted[1])) - row.disagreement) <= 1e-5
