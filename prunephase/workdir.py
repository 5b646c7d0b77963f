"""The workdir: config record, exclusive lock, atomic files and the metrics log.

Every artifact is written atomically (temporary file + rename; orbax does the same for
checkpoints), so a killed run never leaves a file that looks finished. One run at a time holds
the workdir through an OS lock that dies with the process.
"""

import contextlib
import csv
import errno
import fcntl
import json
import os
import pathlib
import tempfile
import time
from typing import Any

import numpy as np

from prunephase import registry
from prunephase.config import identity

CONFIG_FILE = 'config.json'
# The knob entry's plain data (`registry.Knob.record`): which way is hotter, its words and label,
# so a finished sweep of a user's knob is read (prunephase-regimes, -advise) without its config.
KNOB_FILE = 'knob.json'
LOCK_FILE = '.lock'


class WorkdirError(RuntimeError):
  """The workdir cannot be used for this run; the message is one line."""


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


def read_knob_record(directory: str | os.PathLike) -> None:
  """Makes the knob recorded in `directory`/knob.json known (`registry.add_recorded_knob`)
  unless this process registered it; nothing where there is no readable record."""
  try:
    record = json.loads((pathlib.Path(directory) / KNOB_FILE).read_text())
    registry.add_recorded_knob(record)
  except (OSError, ValueError):  # No record, or not ours: the knob must be registered.
    pass


def write_json(path: str | os.PathLike, value: Any) -> None:
  write_atomic(path, json.dumps(to_jsonable(value), indent=1) + '\n')


def read_json(path: str | os.PathLike) -> Any:
  return json.loads(pathlib.Path(path).read_text())


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]], columns: list[str]) -> None:
  """Rows as CSV (pandas reads it with plain `read_csv`); NaN/None become empty fields."""
  import io  # pylint: disable=import-outside-toplevel
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


class Workdir:
  """Opens a workdir for one run: lock, config check, config record.

  Raises WorkdirError when another process holds the workdir, when it holds dense models of
  another config (each field that decides them is named; other changes make new branches, see
  `config.identity`), when
  it is a non-empty directory that is not a prunephase workdir, or when it cannot be created,
  read or written (a missing parent on a read-only filesystem, no permission).
  """

  def __init__(self, path: str | os.PathLike, config_dict: dict, write: bool = True):
    self.path = pathlib.Path(path)
    self.previous_config = None  # The config.json found there (dict), if any.
    self._lock_file = None
    try:
      self._open(config_dict, write)
    except OSError as error:  # Uncreatable, read-only or unreadable: one line, nothing written.
      self.release()
      where = f' ({error.filename})' if error.filename else ''
      raise WorkdirError(f'cannot create or write the workdir {self.path}: '
                         f'{error.strerror or error}{where}; choose a writable --workdir'
                         ) from None

  def _open(self, config_dict: dict, write: bool) -> None:
    if self.path.exists() and not self.path.is_dir():
      raise WorkdirError(f'workdir {self.path} exists and is not a directory')
    existing = self.path / CONFIG_FILE
    if self.path.exists() and not existing.exists() and any(
        p.name != LOCK_FILE for p in self.path.iterdir()):
      raise WorkdirError(f'workdir {self.path} is not empty and holds no {CONFIG_FILE}: '
                         'not a prunephase workdir; choose another --workdir')
    self.path.mkdir(parents=True, exist_ok=True)
    self._acquire_lock()  # Before comparing configs: the holder may still write config.json.
    try:
      if existing.exists():
        try:
          old = json.loads(existing.read_text())
        except json.JSONDecodeError as error:
          raise WorkdirError(f'unreadable {existing}: {error}') from error
        changed = identity.changed_dense_fields(old, to_jsonable(config_dict))
        if changed:
          raise WorkdirError(
              f'workdir {self.path} holds dense models of another config ('
              f'{"; ".join(changed[:4])}{" ..." if len(changed) > 4 else ""}); use a new '
              '--workdir, delete the old one, or import finished dense models with '
              '--config.dense.init_from=OLD_WORKDIR')
        self.previous_config = old
      if write:
        write_json(existing, config_dict)
        knob = (config_dict.get('temperature') or {}).get('knob')
        if knob in registry.names(registry.KNOB):
          write_json(self.path / KNOB_FILE, registry.knob(knob).record())
    except BaseException:
      self.release()
      raise

  def _acquire_lock(self):
    self._lock_file = open(self.path / LOCK_FILE, 'a+')  # pylint: disable=consider-using-with
    try:
      fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
      self._lock_file.seek(0)
      holder = self._lock_file.read().strip() or 'another process'
      self._lock_file.close()
      self._lock_file = None
      raise WorkdirError(f'workdir {self.path} is in use by {holder}; wait for it or use '
                         'another --workdir') from error
    self._lock_file.seek(0)
    self._lock_file.truncate()
    self._lock_file.write(f'pid {os.getpid()} on {os.uname().nodename}')
    self._lock_file.flush()

  def release(self):
    if self._lock_file is not None:
      fcntl.flock(self._lock_file, fcntl.LOCK_UN)
      self._lock_file.close()
      self._lock_file = None


METRIC_KEYS = ('loss', 'error', 'lr', 'test_loss', 'test_error')


def require_tensorboard():
  """The tensorboardX module; WorkdirError (one line) when it is not installed.

  The sweep calls this before it opens the workdir, so a missing optional dependency fails
  before anything is written, not after the first epoch.
  """
  try:
    import tensorboardX  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise WorkdirError('tensorboard=True needs tensorboardX: pip install tensorboardX'
                       ) from error
  return tensorboardX


class MetricsLog:
  """Appends one JSON object per line to `metrics.jsonl` as training goes.

  With `tensorboard=True` the same scalars also go to TensorBoard event files under
  `tensorboard/` (written with tensorboardX, which needs no TensorFlow). After a resumed run,
  epochs that were re-trained appear again; keep the last row per (stage, temperature, member,
  epoch).
  """

  def __init__(self, path: str | os.PathLike, tensorboard: bool = False):
    self.path = pathlib.Path(path)
    self._writer = None
    if tensorboard:
      self._writer = require_tensorboard().SummaryWriter(str(self.path.parent / 'tensorboard'))

  def write(self, rows: list[dict[str, Any]]) -> None:
    """Appends `rows`; WorkdirError (one line, see `write_failure_message`) if the log cannot be
    written, with the log cut back to its whole lines (a half-written line would break every
    reader of the log; the rerun logs those epochs again)."""
    stamp = time.time()
    text = ''.join(json.dumps(to_jsonable({**row, 'time': round(stamp, 3)})) + '\n'
                   for row in rows)
    size = None
    try:
      with open(self.path, 'a') as f:
        size = f.tell()
        f.write(text)
    except OSError as error:
      if size is not None:
        with contextlib.suppress(OSError):
          os.truncate(self.path, size)
      raise WorkdirError(write_failure_message(self.path, error)) from error
    if self._writer is not None:
      for row in rows:
        member = '/'.join(f'{k}={row[k]}' for k in sorted(row)
                          if k not in METRIC_KEYS and k not in ('stage', 'epoch'))
        for key in METRIC_KEYS:
          if key in row:
            self._writer.add_scalar(f'{row["stage"]}/{member}/{key}', row[key], row['epoch'])
      self._writer.flush()


class Progress:
  """Prints `[stage] what | percent | elapsed | eta` lines, at most one per `every` seconds.

  Work is counted in units (member-steps for training); work skipped because it was finished
  earlier (`skip`) does not count towards the rate, so the ETA stays honest after a resume.
  In a multi-host run only process 0 prints (`runtime.start_distributed` sets `silent`).
  """

  silent = False

  def __init__(self, stage: str, total: float, every: float = 5.0):
    self.stage, self.total, self.every = stage, max(float(total), 1.0), every
    self.start = time.time()
    self._last = 0.0
    self.done = 0.0
    self.skipped = 0.0

  def skip(self, units: float, what: str = '') -> None:
    """Marks `units` as finished earlier."""
    self.skipped += units
    self.done += units
    self._print(what, force=True)

  def advance(self, units: float, what: str = '', force: bool = False) -> None:
    """Marks `units` as done now."""
    self.done += units
    self._print(what, force)

  def _print(self, what: str, force: bool) -> None:
    if self.silent:
      return
    now = time.time()
    finished = self.done >= self.total
    if not force and not finished and now - self._last < self.every:
      return
    self._last = now
    elapsed = now - self.start
    worked = self.done - self.skipped
    eta = elapsed / worked * (self.total - self.done) if worked > 0 else float('nan')
    print(f'[{self.stage}] {what} | {100 * self.done / self.total:5.1f}% | elapsed '
          f'{format_seconds(elapsed)} | eta {format_seconds(eta)}', flush=True)


def format_seconds(seconds: float) -> str:
  if not np.isfinite(seconds):
    return '?'
  minutes, secs = divmod(int(round(seconds)), 60)
  return f'{minutes}m{secs:02d}s' if minutes else f'{secs}s'
