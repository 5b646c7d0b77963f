"""Reading result tables from anywhere (this project's CSVs, another framework, a paper).

A table has one row per seed pair (results.csv) or per cell (cells.csv) with at least the
columns `temperature, density, lmc` and `cka_softmax` (or `cka`); `test_error`, `knob`,
`dense_test_error`, `dense_seed`, `seed_a`, `seed_b` are optional. Empty fields are NaN
(a diverged member).
"""

import csv
import math
import os
from typing import Any

from prunephase import knobs
from prunephase.config import names

REQUIRED = ('temperature', 'density', 'lmc')
CKA_COLUMNS = ('cka_softmax', 'cka')
NUMERIC = ('temperature', 'density', 'lmc', 'cka_softmax', 'cka', 'cka_logits', 'test_error',
           'train_error', 'dense_test_error', 'pruned_test_error', 'dense_seed', 'seed_a',
           'seed_b')


class TableError(ValueError):
  """A table cannot be used; the message names the file, line and column."""


def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Rows as dicts with floats in the numeric columns; 'cka' is renamed 'cka_softmax'."""
  if not os.path.exists(path):
    raise TableError(f'{path}: no such file')
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    columns = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in columns]
    if not any(c in columns for c in CKA_COLUMNS):
      missing.append('cka_softmax (or cka)')
    if missing:
      raise TableError(f'{path}: missing column(s) {", ".join(missing)}; a table needs '
                       'temperature, density, lmc and cka_softmax (or cka)')
    rows = []
    for line, raw in enumerate(reader, start=2):
      row = dict(raw)
      for column in NUMERIC:
        if column not in row:
          continue
        value = (row[column] or '').strip()
        if value == '' or value.lower() == 'nan':
          row[column] = math.nan
          continue
        try:
          row[column] = float(value)
        except ValueError:
          raise TableError(f'{path} line {line}: column {column}: {value!r} is not a number'
                           ) from None
      if 'cka_softmax' not in row:
        row['cka_softmax'] = row.pop('cka')
      for column in ('temperature', 'density'):
        if math.isnan(row[column]):
          raise TableError(f'{path} line {line}: column {column} is empty')
      if not 0 < row['density'] <= 1:
        raise TableError(f'{path} line {line}: density {row["density"]:g} is outside (0, 1] '
                         '(densities are fractions of weights kept)')
      rows.append(row)
  if not rows:
    raise TableError(f'{path}: the table has no rows')
  return rows


def axes(rows: list[dict], knob: str | None = None) -> tuple[str, list[float], list[float]]:
  """(knob, temperatures hottest first, densities ascending) of a table.

  The knob comes from the argument or the table's `knob` column; it says which direction is
  hotter (its `knobs.Knob` entry).
  """
  column_knobs = {row.get('knob') for row in rows if row.get('knob')}
  if knob is None:
    if len(column_knobs) != 1:
      raise TableError('cannot tell which temperatures are hotter: the table needs one value in '
                       'a knob column or pass --knob (one of '
                       f'{", ".join(knobs.names())})')
    knob = column_knobs.pop()
  if knob not in knobs.names():
    raise TableError(f'unknown knob {knob!r}; choose one of '
                     f'{", ".join(knobs.names())}')
  temperatures = names.hot_to_cold(knob, sorted({row['temperature'] for row in rows}))
  densities = sorted({row['density'] for row in rows})
  return knob, temperatures, densities
