"""Progress lines: an ETA that ignores work finished earlier, and durations as text."""

from prunephase import progress as progress_lib


def test_progress_eta_ignores_skipped_work(capsys):
  progress = progress_lib.Progress('retrain', 100, every=0)
  progress.skip(50, 'done earlier')
  assert 'eta ?' in capsys.readouterr().out  # No work done in this process yet.
  progress.advance(25, 'half of the rest')
  line = capsys.readouterr().out
  assert '75.0%' in line and 'eta ?' not in line


def test_format_seconds():
  assert progress_lib.format_seconds(5) == '5s'
  assert progress_lib.format_seconds(125) == '2m05s'
  assert progress_lib.format_seconds(float('nan')) == '?'
