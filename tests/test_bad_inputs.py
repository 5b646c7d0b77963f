"""Bad input a user can cause ends in one line naming the problem, with nothing half-written:
workdirs that cannot be created or written, truncated checkpoints, output directories that
cannot be created, a damaged workdir config. docs/bad_inputs.md lists every case the tests try."""

import os
import pathlib
import re
import shutil

import pytest

from conftest import one_error_line  # pylint: disable=g-bad-import-order
from conftest import REPO
from conftest import run_command
from conftest import tiny_config
from conftest import tiny_config_file
from prunephase import artifacts

QUICK = '--config=configs/default.py:quick'


# ----------------------------------------------------------------------------- workdir


def test_uncreatable_workdir(tmp_path):
  result = run_command('prunephase', QUICK, '--workdir=/proc/prunephase-x')
  assert one_error_line(result) == (
      'prunephase: error: cannot create or write the workdir /proc/prunephase-x: No such file '
      'or directory (/proc/prunephase-x); choose a writable --workdir')


def test_init_from_that_is_not_a_workdir(tmp_path):
  result = run_command('prunephase', QUICK, f'--config.dense.init_from={tmp_path}',
                       f'--workdir={tmp_path / "w"}')
  assert one_error_line(result) == (
      f'prunephase: error: dense.init_from={tmp_path} holds no config.json: not a prunephase '
      'workdir')
  assert not (tmp_path / 'w').exists()


def test_workdir_under_a_file(tmp_path):
  (tmp_path / 'file').write_text('x')
  result = run_command('prunephase', QUICK, f'--workdir={tmp_path / "file" / "w"}',
                       '--stages=report')
  assert 'Not a directory' in one_error_line(result)
  assert (tmp_path / 'file').read_text() == 'x'


def test_read_only_workdir(tmp_path):
  directory = tmp_path / 'read_only'
  directory.mkdir(mode=0o555)
  prefix = ()
  if os.geteuid() == 0:  # Root writes through permissions unless it drops that capability.
    if not shutil.which('setpriv'):
      pytest.skip('running as root without setpriv: cannot make a directory read-only')
    prefix = ('setpriv', '--bounding-set=-dac_override,-dac_read_search',
              '--inh-caps=-dac_override,-dac_read_search', '--')
  try:
    result = run_command('prunephase', QUICK, f'--workdir={directory}', prefix=prefix)
    assert one_error_line(result) == (
        f'prunephase: error: cannot create or write the workdir {directory}: Permission denied '
        f'({directory / ".lock"}); choose a writable --workdir')
    assert not any(directory.iterdir())
  finally:
    directory.chmod(0o755)


def test_damaged_workdir_config_for_the_case_commands(tmp_path):
  (tmp_path / 'config.json').write_text('{"regimes": ')
  (tmp_path / 'results.csv').write_text('knob,temperature,density,lmc,cka\nlr,1,0.5,0,0.9\n')
  result = run_command('prunephase-select', f'--workdir={tmp_path}')
  assert one_error_line(result).startswith(
      f'prunephase: error: unreadable {tmp_path / "config.json"}: Expecting value')


# ----------------------------------------------------------------------------- checkpoints


def test_truncated_checkpoint_is_one_line_naming_it(finished_run, tmp_path):
  path, _, _ = finished_run
  copy = tmp_path / 'copy'
  shutil.copytree(path, copy, ignore=shutil.ignore_patterns('.lock'))
  store = artifacts.Store(copy, tiny_config())
  store.measure_file(1).unlink()
  step = store.retrain_run_dir(1) / 'epochs' / '2'
  for file in step.rglob('*'):  # Truncate the array data, as a full disk or a killed copy would.
    if file.is_file() and file.parent.name == 'd':
      os.truncate(file, file.stat().st_size // 2)
  result = run_command('prunephase', f'--config={tiny_config_file(tmp_path)}',
                       f'--workdir={copy}', '--stages=measure')
  line = one_error_line(result)
  assert line.startswith(f'prunephase: error: unreadable checkpoint {step} (')
  assert line.endswith('delete that directory and re-run the stage that wrote it')
  assert not store.measure_file(1).exists()


def test_late_read_callbacks_after_a_failed_restore_print_nothing(capsys, monkeypatch):
  import sys  # pylint: disable=import-outside-toplevel
  from prunephase import checkpoints  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(sys, 'excepthook', sys.__excepthook__)
  checkpoints._quiet_late_callbacks()  # pylint: disable=protected-access
  checkpoints._quiet_late_callbacks()  # pylint: disable=protected-access  # Installed once.
  assert sys.excepthook.prunephase_quiet
  closed = RuntimeError('Event loop is closed')
  sys.excepthook(RuntimeError, closed, None)
  assert capsys.readouterr().err == ''
  other = ValueError('a real problem')
  sys.excepthook(ValueError, other, None)
  assert 'a real problem' in capsys.readouterr().err
  # Unawaited read futures collected later: asyncio's logger reports them; that is dropped too.
  import logging  # pylint: disable=import-outside-toplevel
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  asyncio_logger = logging.getLogger('asyncio')
  asyncio_logger.addHandler(handler)
  try:
    asyncio_logger.error('Task exception was never retrieved\nfuture: <Task finished ...>')
    asyncio_logger.error('Unclosed event loop')  # Anything else still reaches the handlers.
  finally:
    asyncio_logger.removeHandler(handler)
  assert [r.getMessage() for r in records] == ['Unclosed event loop']


# ----------------------------------------------------------------------------- --out


def _table(tmp_path) -> pathlib.Path:
  path = tmp_path / 'results.csv'
  rows = ['knob,temperature,density,lmc,cka,test_error,dense_test_error']
  rows += [f'epochs,{t},{d},{-0.3 if t == 40 and d == 0.1 else 0.0},{c},{e},0.05'
           for t, d, c, e in ((10, 0.1, 0.8, 0.2), (20, 0.1, 0.9, 0.15), (40, 0.1, 0.95, 0.3),
                              (10, 0.5, 0.7, 0.12), (20, 0.5, 0.91, 0.11),
                              (40, 0.5, 0.92, 0.1))]
  path.write_text('\n'.join(rows) + '\n')
  return path


@pytest.mark.parametrize('command, args', [
    ('prunephase-regimes', []),
    ('prunephase-advise', ['--evaluate']),
    ('prunephase-advise', ['--temperature=40', '--density=0.1']),
    ('prunephase-select', []),
])
@pytest.mark.parametrize('out, reason', [
    ('/proc/prunephase-x/out', 'No such file or directory'),
    ('FILE', 'File exists'),
])
def test_out_that_cannot_be_created(tmp_path, command, args, out, reason):
  if out == 'FILE':
    out = tmp_path / 'a_file'
    out.write_text('x')
  result = run_command(command, f'--results={_table(tmp_path)}', f'--out={out}', *args,
                       '--bootstrap=2')
  assert one_error_line(result) == (
      f'prunephase: error: cannot create the output directory {out}: {reason}')
  assert result.stdout == ''  # Nothing printed (or written) before the check.
  assert sorted(p.name for p in tmp_path.iterdir()) in (['results.csv'],
                                                        ['a_file', 'results.csv'])


# ----------------------------------------------------------------------------- flags


@pytest.mark.parametrize('command, args, message', [
    ('prunephase-advise', ['--temperature=10', '--density=0.33'],
     'no cell at temperature 10, density 0.33; the table has temperatures [10.0, 20.0, 40.0] '
     'and densities [0.1, 0.5]'),
    ('prunephase-advise', [],
     'give --density and --temperature (a cell of the table), or --evaluate'),
    ('prunephase-advise', ['--probe'],
     '--probe needs --config=FILE and --workdir=DIR (a new directory)'),
    ('prunephase-select', ['--density=0.33'], 'no density 0.33 in the table; it has [0.1, 0.5]'),
    ('prunephase-regimes', ['--rule=bogus'],
     'bad flag: flag --rule=bogus: value should be one of <transition|threshold>'),
])
def test_case_command_flags(tmp_path, command, args, message):
  result = run_command(command, f'--results={_table(tmp_path)}', *args)
  assert one_error_line(result) == f'prunephase: error: {message}'
  assert result.stdout == '' and [p.name for p in tmp_path.iterdir()] == ['results.csv']


def test_a_directory_that_is_not_a_workdir_for_the_case_commands(tmp_path):
  result = run_command('prunephase-regimes', f'--workdir={tmp_path}')
  assert one_error_line(result) == (
      f'prunephase: error: {tmp_path} is not a prunephase workdir (no config.json)')


def test_unknown_stage(tmp_path):
  result = run_command('prunephase', QUICK, f'--workdir={tmp_path / "w"}', '--stages=train,bake')
  assert one_error_line(result) == (
      "prunephase: error: unknown stage(s) ['bake']; choose from "
      'train,prune,retrain,measure,report')
  assert not (tmp_path / 'w').exists()


# ----------------------------------------------------------------------------- the catalogue


def test_the_catalogue_lists_at_least_25_kinds_and_names_real_tests():
  text = (REPO / 'docs' / 'bad_inputs.md').read_text()
  rows = [line for line in text.splitlines() if re.match(r'\| *\d+ *\|', line)]
  assert len(rows) >= 25
  for row in rows:
    for file, test in re.findall(r'`(tests/test_\w+\.py)::(test_\w+)', row):
      assert re.search(rf'^def {test}\(', (REPO / file).read_text(), re.M), (file, test)

