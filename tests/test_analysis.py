"""Analysis of a finished run: `load_run` without the dataset, members, per-member restore with
a cache, eval-mode apply, and docs/analysis.ipynb executed on the tiny run."""

import os

import numpy as np
import pytest

import prunephase
from conftest import REPO  # pylint: disable=g-bad-import-order
from prunephase import checkpoints
from prunephase import data as data_lib


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
  with pytest.raises(KeyError, match='no retrained member'):
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
