"""No silent garbage: a model head of the wrong size, findings read from diverged or at-chance
cells, a missing optional dependency found after the workdir is written, and a full or
unwritable disk ending in a traceback. Each case is one line (or a named, left-out cell), with
nothing written before the check."""

import errno
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import types

import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import one_error_line  # pylint: disable=g-bad-import-order
from conftest import REPO
from conftest import run_command
from conftest import tiny_config
from prunephase import checkpoints
from prunephase import files
from prunephase import findings
from prunephase import metrics_log
from prunephase import pipeline
from prunephase import regimes
from prunephase import report_files
from prunephase import sweep as sweep_lib
from prunephase import workdir as workdir_lib

RERUN = 'rerun the same command: finished work is kept'


def _config_file(directory: pathlib.Path, body: str) -> pathlib.Path:
  """A config file: imports conftest's `tiny_config`, then `body` (which defines
  `get_config`)."""
  path = directory / 'config.py'
  path.write_text(f'import sys\nsys.path.insert(0, {str(REPO / "tests")!r})\n'
                  'from conftest import tiny_config\n' + body)
  return path


# ----------------------------------------------------------------------------- model head


SEVEN_CLASS_MODEL = '''
from prunephase import models
from prunephase import registry


def make_cnn1d_7(model_config, num_classes, dtype=None):
  del num_classes  # The mistake under test: a head of 7 classes whatever the dataset has.
  return models.CNN1D(7, tuple(model_config.widths), tuple(model_config.kernel_sizes),
                      tuple(model_config.strides), dtype=dtype)


registry.register_model('cnn1d_7', make_cnn1d_7)


def get_config(arg=''):
  del arg
  config = tiny_config()
  config.model.name = 'cnn1d_7'
  return config
'''


def test_a_head_of_the_wrong_size_is_one_line_before_the_workdir(tmp_path):
  workdir = tmp_path / 'w'
  result = run_command('prunephase', f'--config={_config_file(tmp_path, SEVEN_CLASS_MODEL)}',
                       f'--workdir={workdir}')
  assert one_error_line(result) == (
      'prunephase: error: model cnn1d_7 outputs 7 logits per example but mnist1d has 10 classes')
  assert not workdir.exists()


# ----------------------------------------------------------------------------- findings

TEMPERATURES = [10.0, 20.0, 40.0]  # Hottest first.
DENSITIES = [0.1, 0.5]
RULE = regimes.RegimeRule('threshold', lmc_threshold=-0.05)
# A grid on which every finding is 'reproduced' when all cells are kept (tests/test_findings.py).
TEST_ERROR = [[0.2, 0.3], [0.1, 0.2], [0.3, 0.1]]
LMC = [[0.0, 0.0], [0.0, 0.0], [-0.2, 0.01]]
CKA = [[0.5, 0.8], [0.6, 0.85], [0.7, 0.9]]


def _check(test_error=None, diverged=None, num_classes=10):
  means = {'test_error': np.array(TEST_ERROR if test_error is None else test_error, float),
           'lmc': np.array(LMC, float), 'cka_softmax': np.array(CKA, float)}
  stds = {k: np.full((3, 2), 0.01) for k in means}
  labels = regimes.label_grid(means['lmc'], means['cka_softmax'], RULE)
  return findings.check(means, stds, TEMPERATURES, DENSITIES, labels, RULE,
                        np.full((3, 2), 2), diverged, num_classes)


def test_chance_is_one_named_threshold():
  assert findings.chance_error(10) == pytest.approx(0.85)
  assert findings.chance_error(2) == pytest.approx(0.45)
  assert findings.chance_error(100) == pytest.approx(0.94)


def test_all_kept_grid_reproduces_and_leaves_nothing_out():
  found = _check()
  assert found['left_out_cells'] == []
  assert {n: found[n]['status'] for n in ('transition', 'connectivity', 'similarity')} == {
      'transition': 'reproduced', 'connectivity': 'reproduced', 'similarity': 'reproduced'}


def test_diverged_and_chance_cells_are_left_out_and_named():
  # (T=20, d=0.1) has a diverged member: its 0.1 made it the best cell of the low density.
  # (T=40, d=0.5) is at chance: 0.9 >= 0.85 on ten classes.
  diverged = np.zeros((3, 2), bool)
  diverged[1, 0] = True
  err = [[0.2, 0.3], [0.1, 0.2], [0.3, 0.9]]
  found = _check(err, diverged)
  assert found['left_out_cells'] == [
      {'temperature': 20.0, 'density': 0.1, 'reason': 'a member diverged'},
      {'temperature': 40.0, 'density': 0.5, 'reason': 'test error at chance (0.90 >= 0.85)'}]
  assert findings.describe_left_out(found['left_out_cells']) == (
      '(T=20, d=0.1): a member diverged; (T=40, d=0.5): test error at chance (0.90 >= 0.85)')
  # The coldest high-density cell is gone: no transition or similarity to assess.
  for name in ('transition', 'similarity'):
    assert found[name]['status'] == findings.NOT_ASSESSED
    assert found[name]['summary'] == (
        'too few cells left at density 0.5 (needs the coldest and one more); left out '
        '(T=40, d=0.5): test error at chance (0.90 >= 0.85)')
  # Connectivity reads the high-density column without that cell.
  assert found['connectivity']['status'] == 'reproduced'
  assert 'left out here: T=40' in found['connectivity']['summary']


def test_a_finding_is_read_from_the_kept_cells_only():
  # Without the diverged (T=20, d=0.1) the low density's best is the hottest, 0.2 < 0.3.
  diverged = np.zeros((3, 2), bool)
  diverged[1, 0] = True
  transition = _check(diverged=diverged)['transition']
  assert transition['status'] == 'reproduced'
  assert transition['low_density']['best_temperature'] == 10.0
  assert 'left out here: T=20' in transition['summary']
  # Without a number of classes, no cell is called at chance (a table of unknown origin).
  assert _check([[0.9] * 2] * 3, num_classes=None)['left_out_cells'] == []


def test_every_cell_at_chance_assesses_nothing():
  # The 7-logit head on 10 classes, had it run: every cell near 0.9.
  found = _check([[0.9, 0.91], [0.92, 0.9], [0.9, 0.93]])
  assert len(found['left_out_cells']) == 6
  assert {found[n]['status'] for n in ('transition', 'connectivity', 'similarity')} == {
      findings.NOT_ASSESSED}
  assert found['connectivity']['summary'] == (
      'its cold low-density corner is left out: (T=40, d=0.1): test error at chance '
      '(0.90 >= 0.85)')


def _rows(diverged_cell):
  """A results table of the grid above, two dense seeds per cell; `diverged_cell` has a
  diverged pair (as results.csv writes it: the string 'True')."""
  rows = []
  for t, temperature in enumerate(TEMPERATURES):
    for d, density in enumerate(DENSITIES):
      for seed, shift in ((1, -0.01), (2, 0.01)):
        rows.append({'knob': 'epochs', 'temperature': temperature, 'density': density,
                     'dense_seed': seed, 'test_error': TEST_ERROR[t][d] + shift,
                     'lmc': LMC[t][d] + shift, 'cka_softmax': CKA[t][d] + shift / 10,
                     'diverged': str((temperature, density) == diverged_cell and seed == 2)})
  return rows


def test_report_and_printed_summary_name_the_left_out_cells(tmp_path, capsys):
  config = types.SimpleNamespace(rule='threshold', min_drop=0.05, noise_factor=1.0,
                                 lmc_threshold=-0.05, cka_tolerance=0.001, bootstrap=2,
                                 seed=0, min_confidence=0.7)
  summary = report_files.write_report(tmp_path, _rows((40.0, 0.1)), 'epochs', TEMPERATURES,
                                      DENSITIES, config, num_classes=10)
  assert summary['left_out'] == [
      {'temperature': 40.0, 'density': 0.1, 'reason': 'a member diverged'}]
  written = files.read_json(tmp_path / 'findings.json')
  assert written['left_out_cells'] == summary['left_out']
  assert written['transition']['status'] == findings.NOT_ASSESSED
  assert written['connectivity']['status'] == findings.NOT_ASSESSED
  sweep = types.SimpleNamespace(
      config=types.SimpleNamespace(model=types.SimpleNamespace(name='cnn1d'),
                                   dataset=types.SimpleNamespace(name='mnist1d'),
                                   prune=types.SimpleNamespace(method='uniform'),
                                   seeds=types.SimpleNamespace(adaptive=True,
                                                               max_dense_seeds=6)),
      temperatures=TEMPERATURES, densities=DENSITIES, knob='epochs', dense_seeds=[1, 2],
      retrain_seeds=[1, 2], path=tmp_path,
      store=types.SimpleNamespace(measure_dir=tmp_path / 'branch'), timings={'report': 1.0})
  pipeline.print_summary(sweep, summary, 1.0)
  printed = capsys.readouterr().out.splitlines()
  assert ('grid: 3 temperatures (epochs) x 2 densities; 2 dense (up to 6 where labels are '
          'unconfident) x 2 retrain seeds; model cnn1d on mnist1d; pruning uniform') in printed
  assert 'left out of the findings: (T=40, d=0.1): a member diverged' in printed
  assert ('finding transition: not assessed -- too few cells left at density 0.1 (needs the '
          'coldest and one more); left out (T=40, d=0.1): a member diverged') in printed


# ----------------------------------------------------------------------------- tensorboard


def test_tensorboard_without_tensorboardx_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'tensorboardX', None)  # `import tensorboardX` fails.
  config = tiny_config()
  config.tensorboard = True
  workdir = tmp_path / 'w'
  with pytest.raises(files.WorkdirError) as error:
    sweep_lib.run_sweep(config, workdir)
  assert str(error.value) == 'tensorboard=True needs tensorboardX: pip install tensorboardX'
  assert not workdir.exists()


# ----------------------------------------------------------------------------- full disk


def test_a_failed_file_write_names_the_file_and_keeps_nothing(tmp_path, monkeypatch):
  def full(*args):
    del args
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(os, 'replace', full)
  path = tmp_path / 'cells.csv'
  with pytest.raises(files.WorkdirError) as error:
    files.write_atomic(path, 'a\n')
  assert str(error.value) == (
      f'cannot write {path}: No space left on device; free space (or move the workdir) and '
      f'{RERUN}')
  assert not any(tmp_path.iterdir())  # No temporary file left behind.


def test_a_failed_metrics_write_keeps_whole_lines(tmp_path, monkeypatch):
  log = metrics_log.MetricsLog(tmp_path / 'metrics.jsonl')
  log.write([{'stage': 'train', 'epoch': 1, 'loss': 2.0}])
  before = (tmp_path / 'metrics.jsonl').read_text()
  real_open = open

  class HalfWritten:
    """A file that takes half of what it is given, then reports a full disk."""

    def __init__(self, f):
      self.f = f

    def __enter__(self):
      return self

    def __exit__(self, *args):
      self.f.close()

    def tell(self):
      return self.f.tell()

    def write(self, text):
      self.f.write(text[:len(text) // 2])
      self.f.flush()
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr('builtins.open', lambda *a, **k: HalfWritten(real_open(*a, **k)))
  with pytest.raises(files.WorkdirError, match=f'No space left on device; .* {RERUN}$'):
    log.write([{'stage': 'train', 'epoch': 2, 'loss': 1.0}])
  monkeypatch.undo()
  assert (tmp_path / 'metrics.jsonl').read_text() == before


def test_orbax_write_errors_become_one_line(tmp_path, monkeypatch):
  detail = ('RESOURCE_EXHAUSTED: Failed writing: "/x/d/0a1b": Failed to write 7950 bytes to '
            "file 8: No space left on device [os_error_code='28']")

  def full(self, *args, **kwargs):
    del self, args, kwargs
    # As orbax's threads do: log the failure with its traceback, then hand it on.
    try:
      raise ValueError(detail)
    except ValueError as error:
      logging.getLogger(checkpoints.ORBAX_LOGGER).exception('commit raised: %s', error)
      raise

  monkeypatch.setattr(ocp.CheckpointManager, 'save', full)
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  logging.getLogger(checkpoints.ORBAX_LOGGER).addHandler(handler)
  try:
    with pytest.raises(checkpoints.CheckpointError) as error:
      checkpoints.save(tmp_path / 'epochs', 3, {'x': np.zeros(3)})
  finally:
    logging.getLogger(checkpoints.ORBAX_LOGGER).removeHandler(handler)
  assert str(error.value) == (
      f'cannot write {tmp_path / "epochs" / "3"}: No space left on device; free space (or move '
      f'the workdir) and {RERUN}')
  assert not records  # The traceback orbax logged is the one line's: not printed as well.

  def broken(self, *args, **kwargs):  # Not a storage failure: a bug keeps its traceback.
    del self, args, kwargs
    raise ValueError('tree structure mismatch')

  monkeypatch.setattr(ocp.CheckpointManager, 'save', broken)
  with pytest.raises(ValueError, match='tree structure mismatch'):
    checkpoints.save(tmp_path / 'other', 0, {'x': np.zeros(3)})


def test_an_unwritable_checkpoint_is_one_line(tmp_path):
  # The dense models' directory is a file: the first checkpoint (the initialisation, kept for
  # weight rewinding to epoch 0) cannot be written. Root can write anywhere else, so this is
  # how a test makes a path unwritable.
  config_file = _config_file(tmp_path, 'def get_config(arg=""):\n  return tiny_config()\n')
  workdir = tmp_path / 'w'
  config = tiny_config()
  workdir_lib.Workdir(workdir, config.to_dict()).release()  # A workdir of this config ...
  (workdir / 'dense').write_text('not a directory')  # ... whose dense/ is a file.
  result = run_command('prunephase', f'--config={config_file}', f'--workdir={workdir}',
                       '--config.retrain.mode=weight_rewinding', '--config.retrain.rewind_epoch=0')
  line = one_error_line(result)
  assert line.startswith(f'prunephase: error: cannot write {workdir / "dense"}/'), line
  assert line.endswith(f'(or move the workdir) and {RERUN}'), line


@pytest.fixture(name='full_disk')
def fixture_full_disk(tmp_path):
  """A 32 KiB tmpfs (root only): room for the workdir's JSON files, not for a checkpoint."""
  mount = tmp_path / 'small'
  mount.mkdir()
  if os.geteuid() != 0 or not shutil.which('mount'):
    pytest.skip('mounting a small filesystem needs root')
  made = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=32k', 'tmpfs', str(mount)],
                        capture_output=True, check=False)
  if made.returncode:
    pytest.skip(f'cannot mount a tmpfs here: {made.stderr.decode().strip()}')
  try:
    yield mount
  finally:
    subprocess.run(['umount', '-l', str(mount)], check=False)


def test_a_full_disk_is_one_line(full_disk):
  workdir = full_disk / 'run'
  result = run_command('prunephase', '--config=configs/default.py:quick', f'--workdir={workdir}',
                       '--config.retrain.mode=weight_rewinding', '--config.retrain.rewind_epoch=0')
  line = one_error_line(result)
  assert line.startswith(f'prunephase: error: cannot write {workdir}/'), line
  assert line.endswith(f': No space left on device; free space (or move the workdir) and '
                       f'{RERUN}'), line
