"""Atomic files: a rewrite replaces the whole file and leaves no temporaries; CSV as pandas
reads it."""

from prunephase import files


def test_write_atomic_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
  path = tmp_path / 'sub' / 'table.csv'
  files.write_atomic(path, 'a\n1\n')
  files.write_atomic(path, 'a\n2\n')
  assert path.read_text() == 'a\n2\n'
  assert [p.name for p in path.parent.iterdir()] == ['table.csv']


def test_write_csv_blanks_nan_and_formats_floats(tmp_path):
  path = tmp_path / 't.csv'
  files.write_csv(path, [{'x': float('nan'), 'y': 0.123456789, 'z': 'II-A'}], ['x', 'y', 'z'])
  assert path.read_text() == 'x,y,z\n,0.123457,II-A\n'
