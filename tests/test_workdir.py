"""Workdir plumbing: atomic files, config comparison, metrics log, progress."""

import json

import pytest

from prunephase import workdir as workdir_lib


def test_write_atomic_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
  path = tmp_path / 'sub' / 'table.csv'
  workdir_lib.write_atomic(path, 'a\n1\n')
  workdir_lib.write_atomic(path, 'a\n2\n')
  assert path.read_text() == 'a\n2\n'
  assert [p.name for p in path.parent.iterdir()] == ['table.csv']


def test_write_csv_blanks_nan_and_formats_floats(tmp_path):
  path = tmp_path / 't.csv'
  workdir_lib.write_csv(path, [{'x': float('nan'), 'y': 0.123456789, 'z': 'II-A'}],
                        ['x', 'y', 'z'])
  assert path.read_text() == 'x,y,z\n,0.123457,II-A\n'


def test_metrics_log_appends_json_lines_and_tensorboard_events(tmp_path):
  log = workdir_lib.MetricsLog(tmp_path / 'metrics.jsonl', tensorboard=True)
  log.write([{'stage': 'train', 'dense_seed': 1, 'epoch': 1, 'loss': 2.0, 'error': 0.5}])
  log.write([{'stage': 'train', 'dense_seed': 1, 'epoch': 2, 'loss': 1.0, 'error': 0.25}])
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['loss'] for r in rows] == [2.0, 1.0]
  assert any((tmp_path / 'tensorboard').iterdir())


def test_second_workdir_holder_is_refused(tmp_path):
  first = workdir_lib.Workdir(tmp_path, {'a': 1})
  try:
    with pytest.raises(workdir_lib.WorkdirError, match='in use by pid'):
      workdir_lib.Workdir(tmp_path, {'a': 1})
  finally:
    first.release()
  workdir_lib.Workdir(tmp_path, {'a': 1}).release()  # Free again after release.


def test_progress_eta_ignores_skipped_work(capsys):
  progress = workdir_lib.Progress('retrain', 100, every=0)
  progress.skip(50, 'done earlier')
  assert 'eta ?' in capsys.readouterr().out  # No work done in this process yet.
  progress.advance(25, 'half of the rest')
  line = capsys.readouterr().out
  assert '75.0%' in line and 'eta ?' not in line


def test_format_seconds():
  assert workdir_lib.format_seconds(5) == '5s'
  assert workdir_lib.format_seconds(125) == '2m05s'
  assert workdir_lib.format_seconds(float('nan')) == '?'
