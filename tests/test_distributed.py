"""Multi-host runs: `runtime.start_distributed`'s two ways of starting (mocked), and two local
processes running one sweep together through jax.distributed (CPU, gloo)."""

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

from prunephase import progress  # pylint: disable=g-bad-import-order
from prunephase import runtime  # pylint: disable=g-bad-import-order

# One process of a two-process run of the tiny sweep; {local} CPU devices each. The mesh the
# sweep builds must span both processes: ('members', 'data') = (all devices, 1).
SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    from prunephase import runtime
    runtime.start_distributed()
    import jax
    from conftest import tiny_config
    from prunephase import sweep as sweep_lib
    assert jax.process_count() == 2, jax.process_count()
    assert jax.local_device_count() == {local}, jax.local_devices()
    assert jax.device_count() == 2 * {local}, jax.devices()
    stages = sys.argv[2].split(',')
    sweep, _ = sweep_lib.run_sweep(tiny_config(), sys.argv[1], stages)
    if jax.device_count() > 1:
      shape = dict(sweep.mesh.shape)
      assert shape == {{'members': jax.device_count(), 'data': 1}}, shape
      print('MESH', shape, flush=True)
    print('DONE', jax.process_index(), flush=True)
''')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def run_two_processes(workdir, stages='train,prune,retrain,measure,report', local_devices=1):
  """Starts processes 0 and 1 of one run, each with `local_devices` CPU devices; returns their
  (returncode, output)."""
  port = _free_port()
  code = SCRIPT.format(tests=str(REPO / 'tests'), local=local_devices)
  procs = []
  for rank in range(2):
    env = {**os.environ, 'PRUNEPHASE_COORDINATOR': f'localhost:{port}',
           'PRUNEPHASE_NUM_PROCESSES': '2', 'PRUNEPHASE_PROCESS_ID': str(rank)}
    env.pop('XLA_FLAGS', None)
    if local_devices > 1:
      env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={local_devices}'
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


@pytest.mark.slow  # About a minute: two processes compile every program of the sweep.
def test_two_processes_of_two_devices_each_equal_one_process(finished_run, tmp_path):
  """A 4-device mesh over two processes of two CPU devices each (members sharded across the
  processes, not only within one) gives the single-process results."""
  reference, _, _ = finished_run
  outputs = run_two_processes(tmp_path, local_devices=2)
  for returncode, output in outputs:
    assert returncode == 0, output[-3000:]
    assert "MESH {'members': 4, 'data': 1}" in output, output[-3000:]
  _assert_same_results(tmp_path, reference)


# ------------------------------------------------------- start_distributed, its environment

COORDINATOR_VARIABLES = ('PRUNEPHASE_COORDINATOR', 'PRUNEPHASE_NUM_PROCESSES',
                         'PRUNEPHASE_PROCESS_ID')


@pytest.fixture
def initialize_calls(monkeypatch):
  """The (args, kwargs) of each `jax.distributed.initialize` call, which is mocked, as are the
  config update (no gloo switch in this test process) and the process index (3)."""
  import jax  # pylint: disable=import-outside-toplevel
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize',
                      lambda *args, **kwargs: calls.append((args, kwargs)))
  monkeypatch.setattr(jax.config, 'update', lambda name, value: calls.append((name, value)))
  monkeypatch.setattr(jax, 'process_index', lambda: 3)
  monkeypatch.setattr(progress.Progress, 'silent', progress.Progress.silent)
  for name in (*COORDINATOR_VARIABLES, 'PRUNEPHASE_DISTRIBUTED'):
    monkeypatch.delenv(name, raising=False)
  return calls


@pytest.mark.parametrize('coordinator', [None, ''])
def test_start_distributed_without_a_coordinator_auto_detects(initialize_calls, monkeypatch,
                                                               coordinator):
  """TPU pods and Slurm: `jax.distributed.initialize()` with no arguments finds the processes
  itself; an empty PRUNEPHASE_COORDINATOR counts as none."""
  if coordinator is not None:
    monkeypatch.setenv('PRUNEPHASE_COORDINATOR', coordinator)
  runtime.start_distributed()
  assert initialize_calls == [('jax_cpu_collectives_implementation', 'gloo'), ((), {})]
  assert progress.Progress.silent  # Process 3 is not process 0: no progress lines.


def test_start_distributed_from_the_environment(initialize_calls, monkeypatch):
  monkeypatch.setenv('PRUNEPHASE_COORDINATOR', 'host0:1234')
  monkeypatch.setenv('PRUNEPHASE_NUM_PROCESSES', '4')
  monkeypatch.setenv('PRUNEPHASE_PROCESS_ID', '3')
  runtime.start_distributed()
  assert initialize_calls[-1] == ((), {'coordinator_address': 'host0:1234', 'num_processes': 4,
                                       'process_id': 3})
  assert len(initialize_calls) == 2


@pytest.mark.parametrize('config, env, starts', [
    ({'cpu_devices': 1, 'distributed': True}, None, True),
    ({'cpu_devices': 1, 'distributed': False}, '1', True),
    ({'cpu_devices': 1, 'distributed': False}, None, False),
])
def test_prepare_starts_distributed_when_asked(initialize_calls, monkeypatch, config, env,
                                               starts):
  """`config.distributed` or PRUNEPHASE_DISTRIBUTED=1 start jax.distributed; nothing else
  does (cpu_devices=1 leaves XLA_FLAGS alone)."""
  if env is not None:
    monkeypatch.setenv('PRUNEPHASE_DISTRIBUTED', env)
  runtime.prepare(config)
  assert (((), {}) in initialize_calls) == starts
