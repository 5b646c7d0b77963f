"""Analysis of a finished run: `load_run` without the dataset, members, per-member restore with
a cache, eval-mode apply, tables as DataFrames, one-line errors for inputs of another shape and
values off the grid, and docs/analysis.ipynb executed on the tiny run."""

import builtins
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import prunephase
from conftest import REPO  # pylint: disable=g-bad-import-order
from prunephase import analysis
from prunephase import artifacts
from prunephase import checkpoints
from prunephase import data as data_lib
from prunephase import workdir as workdir_lib


@pytest.fixture(scope='module')
def tiny_run(finished_run):
  """The tiny run opened once for this module's read-only tests."""
  return prunephase.load_run(str(finished_run[0]))


def test_load_run_restores_a_retrained_model_with_its_test_error(finished_run):
  path, sweep, _ = finished_run
  run = prunephase.load_run(str(path))
  rows = run.results
  row = rows[(rows.temperature == 2) & (rows.density == 0.2) & (rows.seed_a == 1)
             & (rows.seed_b == 2)].iloc[0]
  member = run.retrained(temperature=2, density=0.2, dense_seed=1, retrain_seed=1)
  history = member['history']['test_error']
  epochs = sweep.config.measure.test_error_epochs
  assert float(np.mean(history[-epochs:])) == pytest.approx(row.test_error_a, abs=1e-5)
  assert run.test_error(member) == pytest.approx(float(history[-1]), abs=1e-6)
  assert list(member['params']['conv0']['kernel'].devices())[0].platform == 'cpu'
  mask = run.mask(2, 1, 0.2)
  assert run.density(mask) == pytest.approx(0.2, abs=0.01)
  kernel = np.asarray(member['params']['conv1']['kernel'])
  assert np.all(kernel[~np.asarray(mask['conv1']['kernel'])] == 0.0)


def test_a_run_opens_without_its_dataset(finished_run, monkeypatch):
  path, sweep, _ = finished_run

  def no_data(_):
    raise AssertionError('the dataset was loaded')

  monkeypatch.setattr(data_lib, 'load_dataset', no_data)
  run = prunephase.load_run(str(path))
  members = run.members()
  assert len(members) == 2 * 2 * 1 * 3  # temperatures x densities x dense seeds x retrain seeds.
  assert members[0] == {'temperature': 1.0, 'dense_seed': 1, 'density': 0.2, 'retrain_seed': 1}
  member = run.retrained(1, 0.2, 1, 2)
  x = sweep.dataset.x_test[:7]
  logits = run.apply(member, x)
  assert logits.shape == (7, 10)
  expected = sweep.model.apply({'params': member['params'], 'batch_stats': member['batch_stats']},
                               x, train=False)
  np.testing.assert_allclose(logits, expected, atol=1e-5)
  assert len(run.rows()) == 12
  curves = run.curves(2, 0.6)
  assert len(curves) == 3 and curves[0]['alpha'][-1] == 1.0
  assert curves[0]['train_error'].shape == (sweep.config.measure.lmc_points,)


def test_members_of_one_temperature_are_restored_once(finished_run, monkeypatch):
  path, _, _ = finished_run
  run = prunephase.load_run(str(path))
  calls = []
  restore = checkpoints.restore
  monkeypatch.setattr(checkpoints, 'restore', lambda *a, **k: calls.append(a) or restore(*a, **k))
  first = run.retrained(2, 0.2, 1, 1)
  for seed in (2, 3):
    other = run.retrained(2, 0.6, 1, seed)
  assert len(calls) == 1
  assert not np.array_equal(first['params']['conv0']['kernel'], other['params']['conv0']['kernel'])
  with pytest.raises(KeyError, match="retrain seed 9 is not on this run's grid"):
    run.retrained(2, 0.6, 1, 9)


def test_analysis_notebook_runs_on_the_tiny_run(finished_run, tmp_path):
  nbclient = pytest.importorskip('nbclient')
  import nbformat  # pylint: disable=import-outside-toplevel
  path, _, _ = finished_run
  notebook = nbformat.read(REPO / 'docs' / 'analysis.ipynb', as_version=4)
  os.environ['PRUNEPHASE_RUN'] = str(path)
  try:
    nbclient.NotebookClient(notebook, timeout=300, kernel_name='python3',
                            resources={'metadata': {'path': str(REPO / 'docs')}}).execute()
  finally:
    del os.environ['PRUNEPHASE_RUN']
  outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.outputs]
  assert not [o for o in outputs if o.output_type == 'error']
  text = ''.join(o.get('text', '') for o in outputs)
  assert '12 seed pairs' in text and 'threshold rule counts' in text
  assert sum('image/png' in o.get('data', {}) for o in outputs) == 2  # Curves and diagram.


def test_tables_are_dataframes_with_numeric_columns_even_where_pandas_was_optional(
    tiny_run, monkeypatch):
  # As on an install where pandas was missing: prunephase.analysis cannot import it at call
  # time (it used to fall back to a list of dicts of strings then).
  real_import = builtins.__import__

  def import_without_pandas(name, globals_=None, *args, **kwargs):
    if name == 'pandas' and (globals_ or {}).get('__name__') == analysis.__name__:
      raise ImportError('No module named pandas')
    return real_import(name, globals_, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', import_without_pandas)
  results, cells = tiny_run.results, tiny_run.cells
  assert isinstance(results, pd.DataFrame) and isinstance(cells, pd.DataFrame)
  for table in (results, cells):
    assert table.density.dtype == np.float64
    for column in ('temperature', 'test_error', 'lmc', 'cka_softmax', 'dense_test_error'):
      assert pd.api.types.is_numeric_dtype(table[column]), column
  for column in ('dense_seed', 'seed_a', 'seed_b', 'test_error_a', 'actual_density'):
    assert pd.api.types.is_numeric_dtype(results[column]), column
  assert len(results[results.density == 0.2]) == 2 * 3  # Temperatures x seed pairs.
  assert len(cells[(cells.density == 0.6) & (cells.temperature == 2)]) == 1


def test_a_partial_run_says_which_stage_to_run(finished_run, tmp_path):
  path, _, _ = finished_run
  for name in (workdir_lib.CONFIG_FILE, artifacts.DATA_FILE):
    shutil.copy(path / name, tmp_path / name)
  run = prunephase.load_run(str(tmp_path))
  with pytest.raises(artifacts.ArtifactError, match='run the report stage first'):
    _ = run.results
  with pytest.raises(artifacts.ArtifactError, match='run the measure stage first'):
    run.curves(2, 0.2)  # On the grid, not yet measured.
  (tmp_path / 'results.csv').write_text('temperature,density,lmc,note\n2,0.2,0.1,a\n2,oops,0.1,b\n')
  with pytest.raises(artifacts.ArtifactError, match='column density holds text'):
    _ = run.results
  (tmp_path / 'results.csv').write_text('temperature,density,lmc,note\n2,0.2,,a\n2,0.6,0.1,b\n')
  assert run.results.note.tolist() == ['a', 'b'] and np.isnan(run.results.lmc[0])


def test_apply_takes_stored_inputs_without_their_channel_axis_and_single_examples(
    finished_run, tiny_run):
  _, sweep, _ = finished_run
  member = tiny_run.retrained(2, 0.2, 1, 1)
  x = np.asarray(sweep.dataset.x_test[:8])
  assert x.shape == (8, 40, 1)  # MNIST-1D as stored; the mnist1d package gives (8, 40).
  logits = tiny_run.apply(member, x)
  assert logits.shape == (8, 10)
  np.testing.assert_allclose(tiny_run.apply(member, x[..., 0]), logits, atol=1e-6)
  for example in (x[3], x[3, :, 0]):
    single = tiny_run.apply(member, example)
    assert single.shape == (10,)
    np.testing.assert_allclose(single, logits[3], atol=1e-5)


@pytest.mark.parametrize('shape', [(8, 41), (8, 40, 2), (2, 8, 40, 1), (41,), ()])
def test_apply_names_the_expected_shapes_on_one_line(tiny_run, shape):
  member = {'params': None, 'batch_stats': None}  # Never reached: the shape is checked first.
  with pytest.raises(ValueError) as info:
    tiny_run.apply(member, np.zeros(shape, np.float32))
  message = str(info.value)
  assert isinstance(info.value, analysis.AnalysisError) and '\n' not in message
  assert message.startswith(f'x has shape {shape}; expected (N, 40, 1) or (N, 40) (mnist1d')
  assert message.endswith('or one example (40, 1) or (40,)')


OFF_GRID = {
    'curves temperature': (lambda r: r.curves(100, 0.2),
                           "temperature 100 is not on this run's grid; temperatures (epochs): "
                           '1, 2'),
    'curves density': (lambda r: r.curves(2, 0.05),
                       "density 0.05 is not on this run's grid; densities: 0.2, 0.6"),
    'mask temperature': (lambda r: r.mask(3, 1, 0.2), 'temperature 3 is not'),
    'mask dense seed': (lambda r: r.mask(2, 9, 0.2),
                        "dense seed 9 is not on this run's grid; dense seeds: 1"),
    'mask density': (lambda r: r.mask(2, 1, 0.05), 'density 0.05 is not'),
    'dense temperature': (lambda r: r.dense(7, 1), 'temperature 7 is not'),
    'dense seed': (lambda r: r.dense(2, 7), 'dense seed 7 is not'),
    'retrained temperature': (lambda r: r.retrained(1.5, 0.2, 1, 1), 'temperature 1.5 is not'),
    'retrained density': (lambda r: r.retrained(2, 0.4, 1, 1), 'density 0.4 is not'),
    'retrained dense seed': (lambda r: r.retrained(2, 0.2, 2, 1), 'dense seed 2 is not'),
    'retrained seed': (lambda r: r.retrained(2, 0.2, 1, 4),
                       "retrain seed 4 is not on this run's grid; retrain seeds: 1, 2, 3"),
    'text density': (lambda r: r.mask(2, 1, '0.2'),
                     "density '0.2' is not a number; densities: 0.2, 0.6"),
}


@pytest.mark.parametrize('case', OFF_GRID)
def test_values_off_the_grid_name_the_grid_on_one_line(tiny_run, monkeypatch, case):
  call, expected = OFF_GRID[case]
  monkeypatch.setattr(checkpoints, 'restore', lambda *a, **k: pytest.fail('restored'))
  with pytest.raises(ValueError) as info:
    call(tiny_run)
  message = str(info.value)
  assert isinstance(info.value, analysis.AnalysisError) and '\n' not in message
  assert message.startswith(expected)
  assert ('grid; ' in message or 'not a number; ' in message) and message.count(':') == 1


def test_grid_floats_match_with_a_tolerance(tiny_run):
  assert len(tiny_run.curves(2.0000001, 0.6000001)) == 3
  near = tiny_run.mask(2, 1, 0.2000001)['conv1']['kernel']
  np.testing.assert_array_equal(near, tiny_run.mask(2, 1, 0.2)['conv1']['kernel'])
