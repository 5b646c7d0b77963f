"""Runs of the `prunephase` command killed with SIGKILL inside each stage, with resume
checkpoints every epoch (dense and retrain), resume to the results of an uninterrupted run.

Each kill lands at a chosen point, whatever the machine's speed: the killed run is the
`prunephase` command (`prunephase.cli.main.run`) started through a small wrapper script
(`WRAPPER`) that stops the run just before one write (the gate: a checkpoint step or a file)
and waits there. The test polls the workdir until that point is reached, checks which
artifacts exist, and kills the process group. Polling alone would race: an epoch of the tiny
grid takes milliseconds, so a run could finish its stage between the poll and the kill.
Nothing else of the command changes, so everything written before the gate is what a real kill
at that moment leaves behind. The wrapper also enters `conftest.mock_tfds` for mock CIFAR-10.

Kill points (the same for both grids; T1 and T2 are the two temperatures):
  dense    the last dense epoch trained and logged, its checkpoint not yet saved: the newest
           checkpoint is `resume/<last - 1>`, so the resume redoes the last epoch.
  retrain  T1 retrained; T2's second epoch trained and logged, its checkpoint not yet saved:
           the resume keeps T1, restarts T2 from `resume/1` and redoes epoch 2.
  measure  T1 measured; T2's pairs measured, its file not yet written: the resume keeps T1
           and measures every pair of T2 again (the stage keeps whole temperatures only).
  report   cells.csv, regimes.json, the figures and findings.json written, results.csv not:
           the resume writes the whole report again (it keeps nothing of a stopped report).
The metrics log shows the redone epochs: a killed run logs an epoch before saving it, so an
epoch trained again after the resume appears twice.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order
from conftest import run_command  # pylint: disable=g-bad-import-order
from conftest import tiny_config_file  # pylint: disable=g-bad-import-order

GATE_ENV = 'PRUNEPHASE_TEST_GATE'  # fnmatch pattern of the absolute path the run stops before.
PAUSED_ENV = 'PRUNEPHASE_TEST_PAUSED'  # File the stopped run writes (the gated path) when there.
MOCK_ENV = 'PRUNEPHASE_TEST_MOCK_TFDS'  # Examples per split of mock tfds data ('' = real data).

# The killed (and, for mock data, every) run's entry point. It imports prunephase's modules
# before `main` runs; none of them creates JAX's backends, so `runtime.prepare` still sets the
# CPU device count first, as in the plain command.
WRAPPER = '''\
"""`prunephase` stopped before one write (see tests/test_resume_kill.py), with mock tfds data."""
import contextlib
import fnmatch
import os
import pathlib
import sys
import time

sys.path.insert(0, {tests!r})
from conftest import mock_tfds  # Puts the checkout first on sys.path too.
from prunephase import checkpoints
from prunephase import files
from prunephase.cli import main

GATE, PAUSED = os.environ.get({gate!r}), os.environ.get({paused!r})
MOCK = int(os.environ.get({mock!r}) or 0)


def stop_before(path):
  """Waits forever (until killed) before writing `path` if it matches the gate."""
  path = pathlib.Path(path).absolute()
  if GATE and fnmatch.fnmatch(str(path), GATE):
    print(f'[test] stopped before writing {{path}}', flush=True)
    pathlib.Path(PAUSED).write_text(str(path))
    while True:
      time.sleep(60)


def gated(write, path_of):
  def gated_write(*args, **kwargs):
    stop_before(path_of(*args, **kwargs))
    return write(*args, **kwargs)
  return gated_write


# Module attributes, looked up at every call: every checkpoint step (Store.save_population,
# save_masks) and every table and JSON file (write_json, write_csv) passes through these.
checkpoints.save = gated(checkpoints.save, lambda directory, step, *_, **__: (
    pathlib.Path(directory) / str(step)))
files.write_atomic = gated(files.write_atomic, lambda path, *_, **__: path)
sys.argv = ['prunephase', *sys.argv[1:]]
with mock_tfds(MOCK) if MOCK else contextlib.nullcontext():
  main.run()
'''


def wrapper_script(directory: pathlib.Path) -> pathlib.Path:
  path = directory / 'gated_prunephase.py'
  path.write_text(WRAPPER.format(tests=str(REPO / 'tests'), gate=GATE_ENV, paused=PAUSED_ENV,
                                 mock=MOCK_ENV))
  return path


class Runs:
  """Runs the `prunephase` command on one workdir and kills it at chosen points.

  Killed runs (and, with mock data, every run) go through `wrapper_script`; each one's output
  goes to its own log file beside the workdir.
  """

  def __init__(self, directory: pathlib.Path, workdir: pathlib.Path, args: list[str],
               mock_examples: int = 0):
    self.directory, self.workdir, self.args = directory, workdir, args
    self.script = wrapper_script(directory)
    self.mock_examples = mock_examples
    self.count = 0

  def _start(self, gate: str | None) -> tuple[subprocess.Popen, pathlib.Path, pathlib.Path]:
    self.count += 1
    log = self.directory / f'{self.workdir.name}-run{self.count}.log'
    paused = self.directory / f'{self.workdir.name}-run{self.count}.paused'
    env = {k: v for k, v in os.environ.items() if k not in (GATE_ENV, PAUSED_ENV, MOCK_ENV)}
    env[MOCK_ENV] = str(self.mock_examples or '')
    if gate:
      env.update({GATE_ENV: str(self.workdir / gate), PAUSED_ENV: str(paused)})
    with open(log, 'w') as out:
      # A session of its own: the kill reaches the run's whole process group and nothing else.
      process = subprocess.Popen(
          [sys.executable, str(self.script), f'--workdir={self.workdir}', *self.args],
          cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return process, log, paused

  def finish(self, timeout: float = 900) -> str:
    """Runs the command to its end; its output."""
    if not self.mock_examples:  # The plain command.
      result = run_command('prunephase', f'--workdir={self.workdir}', *self.args, timeout=timeout)
      output = result.stdout + result.stderr
      assert result.returncode == 0, output[-3000:]
      return output
    process, log, _ = self._start(None)
    try:
      returncode = process.wait(timeout)
    finally:
      _kill(process)
    output = log.read_text()
    assert returncode == 0, output[-3000:]
    return output

  def kill_before(self, gate: str, present: tuple[str, ...], absent: tuple[str, ...],
                  timeout: float = 900) -> str:
    """Runs the command until it is about to write `gate` (a pattern under the workdir), checks
    that the files `present` exist and `absent` do not (the stage is under way), and kills it
    with SIGKILL; its output."""
    process, log, paused = self._start(gate)
    deadline = time.monotonic() + timeout
    try:
      while not paused.exists():
        if process.poll() is not None:
          pytest.fail(f'the run ended (exit {process.returncode}) before reaching {gate}:\n'
                      + log.read_text()[-3000:])
        if time.monotonic() > deadline:
          pytest.fail(f'the run did not reach {gate} in {timeout:.0f} s:\n'
                      + log.read_text()[-3000:])
        time.sleep(0.05)
      for pattern in present:
        assert list(self.workdir.glob(pattern)), f'{pattern} missing at the kill before {gate}'
      for pattern in absent:
        assert not list(self.workdir.glob(pattern)), f'{pattern} written before {gate}'
    finally:
      _kill(process)
    assert process.returncode == -signal.SIGKILL
    return log.read_text()


def _kill(process: subprocess.Popen) -> None:
  """SIGKILL to the process group of `process` (if it still runs), then reaps it."""
  if process.poll() is None:
    os.killpg(process.pid, signal.SIGKILL)
  process.wait()


def progress_lines(output: str, *stages: str) -> list[str]:
  """The progress lines of `stages` without their percent/elapsed/eta tail."""
  return [line.split(' | ')[0] for line in output.splitlines()
          if line.startswith(tuple(f'[{stage}]' for stage in stages))]


def assert_resumed(output: str, *lines: str) -> None:
  """Each of `lines` starts a progress line of `output`."""
  found = progress_lines(output, 'train', 'prune', 'retrain', 'measure')
  for line in lines:
    assert any(f.startswith(line) for f in found), (line, found)


def logged_epochs(workdir: pathlib.Path, stage: str, temperature: float | None = None
                  ) -> list[int]:
  """Epochs of the metrics log's rows of `stage` (one per member and epoch, in order; an epoch
  trained again after a resume appears again)."""
  rows = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  return [r['epoch'] for r in rows if r['stage'] == stage
          and (temperature is None or r['temperature'] == temperature)]


def assert_same_tables(workdir: pathlib.Path, reference: pathlib.Path) -> None:
  for name in ('results.csv', 'cells.csv'):
    assert (workdir / name).read_text() == (reference / name).read_text(), name


def kill_in_every_stage(runs: Runs, reference: pathlib.Path, dense_epochs: int,
                        temperatures: tuple[str, str], members: int) -> list[str]:
  """Kills `runs` once in each stage (module docstring), resuming after each kill; checks the
  redone work in the metrics log, the resume lines and the final tables against `reference`.
  Returns the resumed runs' progress lines (printed, for the record)."""
  hot, cold = temperatures
  retrain = 'prune-*/retrain-*'
  record = []
  runs.kill_before(f'dense/all/epochs/{dense_epochs}',
                   present=(f'dense/all/resume/{dense_epochs - 1}',),
                   absent=(f'dense/all/epochs/{dense_epochs}', 'prune-*/masks'))
  # The killed run had trained the last epoch: the resume trains it again.
  assert logged_epochs(runs.workdir, 'train').count(dense_epochs) == 1
  output = runs.kill_before(f'{retrain}/{cold}/epochs/2',
                            present=(f'{retrain}/{hot}/epochs/2', f'{retrain}/{cold}/resume/1'),
                            absent=(f'{retrain}/{cold}/epochs/2',))
  assert logged_epochs(runs.workdir, 'train').count(dense_epochs) == 2
  assert_resumed(output, f'[train] all: resuming after epoch {dense_epochs - 1} of '
                 f'{dense_epochs} (kept {dense_epochs - 1} epochs from checkpoint '
                 f'resume/{dense_epochs - 1}; redoing from epoch {dense_epochs} whatever a '
                 'stopped run trained after it)')
  record += progress_lines(output, 'train')
  cold_value = float(cold.split('=')[1])
  assert logged_epochs(runs.workdir, 'retrain', cold_value).count(2) == members
  output = runs.kill_before(f'{retrain}/measure-*/{cold}.json',
                            present=(f'{retrain}/measure-*/{hot}.json',),
                            absent=(f'{retrain}/measure-*/{cold}.json', 'cells.csv'))
  assert logged_epochs(runs.workdir, 'retrain', cold_value).count(2) == 2 * members
  label = f'{cold} ({members} members)'
  assert_resumed(output, '[train] all done earlier', f'[retrain] {hot} done earlier',
                 f'[retrain] {label}: resuming after epoch 1 of 2 (kept 1 epoch from checkpoint '
                 'resume/1; redoing from epoch 2 whatever a stopped run trained after it)')
  record += progress_lines(output, 'retrain')
  output = runs.kill_before('results.csv', present=('cells.csv', 'findings.json'),
                            absent=('results.csv',))
  assert_resumed(output, f'[measure] {hot} done earlier', f'[measure] {cold} ')
  record += progress_lines(output, 'measure')
  output = runs.finish()
  assert_resumed(output, f'[measure] {hot} done earlier', f'[measure] {cold} done earlier')
  record += progress_lines(output, 'measure')
  assert 'regimes (prunephase rule' in output  # The report's summary: written again.
  assert_same_tables(runs.workdir, reference)
  print('\n'.join(record))
  return record


# ----------------------------------------------------------------------------- MNIST-1D

# The tiny grid with a resume checkpoint every epoch and, for the whole sweep, a 4-epoch dense
# run whose checkpoints at epochs 2 and 4 are the temperatures, so epochs 1 and 3 are resume
# points.
MNIST1D_RESUME = ('--config.dense.resume_every=1', '--config.retrain.resume_every=1')
MNIST1D_SWEEP = ('--config.dense.epochs=4', '--config.temperature.grid=(2,4)')


def mnist1d_args(directory: pathlib.Path, *overrides: str) -> list[str]:
  return [f'--config={tiny_config_file(directory)}', *MNIST1D_RESUME, *overrides]


def metric_rows(workdir: pathlib.Path, stage: str) -> list[dict]:
  """The metrics log's rows of `stage`, without their time stamps."""
  rows = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  return [{k: v for k, v in r.items() if k != 'time'} for r in rows if r['stage'] == stage]


def test_a_run_killed_inside_dense_training_resumes_to_the_same_numbers(tmp_path):
  # The train stage only, of a 2-epoch dense run (one temperature), so that the two runs cost
  # about 15 s of CPU with a cold compilation cache, 11 s warm (measured on 2 cores): each
  # interpreter spends 5 s importing JAX and mnist1d and tracing, and compiling adds 4 s to the
  # first. The killed run
  # is its own uninterrupted reference: it trained and logged epoch 2 before the kill, and the
  # resumed run trains epoch 2 again from resume/1, so both must log the same numbers, bit for
  # bit. The whole sweep against a separate uninterrupted run is the slow test below.
  from prunephase import checkpoints  # pylint: disable=import-outside-toplevel
  args = mnist1d_args(tmp_path, '--config.dense.epochs=2', '--config.temperature.grid=(2,)',
                      '--stages=train')
  runs = Runs(tmp_path, tmp_path / 'killed', args)
  runs.kill_before('dense/all/epochs/2', present=('dense/all/resume/1',),
                   absent=('dense/all/epochs/2',))
  uninterrupted = metric_rows(runs.workdir, 'train')
  assert [r['epoch'] for r in uninterrupted] == [1, 2]  # Epoch 2 trained, not saved.
  output = runs.finish()
  assert progress_lines(output, 'train')[0] == (
      '[train] all: resuming after epoch 1 of 2 (kept 1 epoch from checkpoint resume/1; '
      'redoing from epoch 2 whatever a stopped run trained after it)')
  assert 'epoch 1/2' not in output and 'epoch 2/2' in output  # Epoch 1 kept, 2 trained.
  assert metric_rows(runs.workdir, 'train') == uninterrupted + uninterrupted[-1:]
  history = checkpoints.restore(runs.workdir / 'dense' / 'all' / 'epochs', 2)['history']
  for key in ('loss', 'test_loss', 'test_error'):  # The saved model's, epochs 1 and 2.
    assert np.asarray(history[key])[0].tolist() == [r[key] for r in uninterrupted], key


@pytest.mark.slow  # About 1 min on 2 cores: an uninterrupted sweep, 4 killed runs, the last.
def test_a_mnist1d_run_killed_in_every_stage_resumes_to_identical_results(tmp_path):
  args = mnist1d_args(tmp_path, *MNIST1D_SWEEP)
  Runs(tmp_path, tmp_path / 'reference', args).finish()
  kill_in_every_stage(Runs(tmp_path, tmp_path / 'killed', args), tmp_path / 'reference',
                      dense_epochs=4, temperatures=('epochs=2', 'epochs=4'), members=6)


# ----------------------------------------------------------------------------- mock CIFAR-10

# `configs/cifar10_epochs.py:quick` on 64 train / 32 test mock images (as tests/test_tfds_data.py
# runs it), with a resume checkpoint every epoch and a 3-epoch dense run whose epochs 1 and 3
# are the temperatures, so epoch 2 is a resume point.
CIFAR10_ARGS = ['--config=configs/cifar10_epochs.py:quick', '--config.dataset.num_train=64',
                '--config.dataset.num_test=32', '--config.measure.cka_examples=32',
                '--config.regimes.bootstrap=5', '--config.dense.resume_every=1',
                '--config.retrain.resume_every=1', '--config.dense.epochs=3',
                '--config.temperature.grid=(1,3)']


@pytest.mark.slow  # 3-5 min on 2 cores: an uninterrupted PreResNet-20 sweep, 4 killed, the last.
def test_a_preresnet20_run_on_mock_cifar10_killed_in_every_stage_resumes_to_identical_results(
    tmp_path):
  Runs(tmp_path, tmp_path / 'reference', CIFAR10_ARGS, mock_examples=128).finish()
  kill_in_every_stage(Runs(tmp_path, tmp_path / 'killed', CIFAR10_ARGS, mock_examples=128),
                      tmp_path / 'reference', dense_epochs=3,
                      temperatures=('epochs=1', 'epochs=3'), members=4)
