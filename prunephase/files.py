"""Atomic files: JSON and CSV written whole or not at all, and one-line storage errors.

Every artifact is written atomically (temporary file + rename; orbax does the same for
checkpoints), so a killed run never leaves a file that looks finished. A write that fails on a
full or unwritable filesystem becomes one line naming the file and what to do
(`write_failure_message`), raised as `WorkdirError`; the workdir lock (`prunephase.workdir`),
the metrics log and the checkpoints report their storage failures the same way.
"""

import contextlib
import csv
import errno
import io
import json
import os
import pathlib
import tempfile
from typing import Any

import numpy as np


class WorkdirError(RuntimeError):
  """The workdir cannot be used for this run; the message is one line.

  Defined here, beside the writes that raise it, because every module that writes into the
  workdir (the workdir lock and config record too) imports this one.
  """


# What a failed write says about its cause, as OSError's errno or as the text of an error that
# wraps one (orbax and TensorStore raise ValueError/RuntimeError whose message holds the OS
# error's text, e.g. 'RESOURCE_EXHAUSTED: Failed writing ...: No space left on device').
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DENIED_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)
_FULL_TEXTS = ('No space left on device', 'Disk quota exceeded')
_DENIED_TEXTS = ('Permission denied', 'Read-only file system', 'Operation not permitted')
_EXHAUSTED_TEXT = 'RESOURCE_EXHAUSTED'  # TensorStore's status for a full filesystem.


def storage_failure(error: BaseException) -> tuple[str, str] | None:
  """(reason, advice) when `error` (or an error it wraps) is a full or unwritable filesystem.

  An OSError of any errno counts (it was raised by a write); another exception counts only when
  its text names a storage failure, because orbax reports TensorStore's write errors as
  ValueError or RuntimeError. Returns None for anything else (a bug must keep its traceback).
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError):
      reason = error.strerror or str(error) or type(error).__name__
      if error.errno in _FULL_ERRNOS:
        return reason, 'free space (or move the workdir)'
      if error.errno in _DENIED_ERRNOS:
        return reason, 'make it writable (or move the workdir)'
      return reason, 'fix that (or move the workdir)'
    text = str(error)
    for known in _FULL_TEXTS:
      if known in text:
        return known, 'free space (or move the workdir)'
    for known in _DENIED_TEXTS:
      if known in text:
        return known, 'make it writable (or move the workdir)'
    if _EXHAUSTED_TEXT in text:
      return 'out of storage (RESOURCE_EXHAUSTED)', 'free space (or move the workdir)'
    error = error.__cause__ or error.__context__
  return None


def write_failure_message(path: str | os.PathLike, error: BaseException) -> str | None:
  """The one-line message for a write to `path` that failed with `error`, or None when the
  error is not a storage failure (see `storage_failure`).

  Every artifact is written atomically (here and by orbax), so whatever finished before the
  failure is complete and a rerun of the same command skips it.
  """
  failure = storage_failure(error)
  if failure is None:
    return None
  reason, advice = failure
  return (f'cannot write {path}: {reason}; {advice} and rerun the same command: finished work '
          'is kept')


def to_jsonable(value: Any) -> Any:
  """Config values and NumPy scalars/arrays as plain JSON types."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, float) and not np.isfinite(value):
    return None
  return value


def write_atomic(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` through a temporary file in the same directory and a rename.

  Raises:
    WorkdirError: the file cannot be written (a full disk, no permission); one line naming
      `path` (see `write_failure_message`), with nothing left of the attempt.
  """
  path = pathlib.Path(path)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  except OSError as error:
    raise WorkdirError(write_failure_message(path, error)) from error
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException as error:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    if isinstance(error, OSError):
      raise WorkdirError(write_failure_message(path, error)) from error
    raise


def write_json(path: str | os.PathLike, value: Any) -> None:
  """`value` (see `to_jsonable`) as indented JSON, written atomically."""
  write_atomic(path, json.dumps(to_jsonable(value), indent=1) + '\n')


def read_json(path: str | os.PathLike) -> Any:
  return json.loads(pathlib.Path(path).read_text())


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]], columns: list[str]) -> None:
  """Rows as CSV (pandas reads it with plain `read_csv`); NaN/None become empty fields."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction='ignore',
                          lineterminator='\n')
  writer.writeheader()
  for row in rows:
    clean = {}
    for key in columns:
      value = row.get(key)
      if isinstance(value, (float, np.floating)):
        value = '' if not np.isfinite(value) else f'{float(value):.6g}'
      clean[key] = '' if value is None else value
    writer.writerow(clean)
  write_atomic(path, buffer.getvalue())
