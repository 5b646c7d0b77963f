"""Two local processes run one sweep together through jax.distributed (CPU, gloo)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order

SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    from prunephase import runtime
    runtime.start_distributed()
    import jax
    from conftest import tiny_config
    from prunephase import sweep as sweep_lib
    assert jax.process_count() == 2 and jax.device_count() == 2
    stages = sys.argv[2].split(',')
    sweep_lib.run_sweep(tiny_config(), sys.argv[1], stages)
    print('DONE', jax.process_index(), flush=True)
''')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def run_two_processes(workdir, stages='train,prune,retrain,measure,report'):
  """Starts processes 0 and 1 of one run; returns their (returncode, output)."""
  port = _free_port()
  code = SCRIPT.format(tests=str(REPO / 'tests'))
  procs = []
  for rank in range(2):
    env = {**os.environ, 'PRUNEPHASE_COORDINATOR': f'localhost:{port}',
           'PRUNEPHASE_NUM_PROCESSES': '2', 'PRUNEPHASE_PROCESS_ID': str(rank)}
    env.pop('XLA_FLAGS', None)
    procs.append(subprocess.Popen([sys.executable, '-c', code, str(workdir), stages], env=env,
                                  cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True))
  return [(p.wait(timeout=600), p.stdout.read()) for p in procs]


def _assert_same_results(path, reference):
  single = pd.read_csv(reference / 'results.csv')
  multi = pd.read_csv(path / 'results.csv')
  assert (single.regime == multi.regime).all()
  numeric = single.select_dtypes('number').columns
  np.testing.assert_allclose(multi[numeric], single[numeric], rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # About 50 s: two processes compile every program of the sweep.
def test_two_processes_resume_after_a_restart_and_write_once(finished_run, tmp_path):
  """Both processes stop after pruning and start again (a restart of all hosts); the finished
  run equals the single-process one, and only process 0 wrote files."""
  reference, _, _ = finished_run
  for returncode, output in run_two_processes(tmp_path, 'train,prune'):
    assert returncode == 0, output[-3000:]
  assert not (tmp_path / 'results.csv').exists()
  outputs = run_two_processes(tmp_path)
  for returncode, output in outputs:
    assert returncode == 0, output[-3000:]
  _assert_same_results(tmp_path, reference)  # Each process measured its share of the pairs.
  assert '[measure]' in outputs[0][1] and '[retrain]' in outputs[0][1]
  assert '[measure]' not in outputs[1][1] and '[retrain]' not in outputs[1][1]  # Process 0 only.
  # One metrics row per member and epoch, as in the single run: nothing written twice.
  count = lambda p: sum(1 for _ in open(p / 'metrics.jsonl'))
  assert count(tmp_path) == count(reference)
  rows = [json.loads(line) for line in open(tmp_path / 'metrics.jsonl')]
  keys = [(r['stage'], r.get('group'), r.get('temperature'), r.get('dense_seed'),
           r.get('density'), r.get('retrain_seed'), r['epoch']) for r in rows]
  assert len(keys) == len(set(keys))
