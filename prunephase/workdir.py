"""The workdir: one run at a time, and the config its dense models were trained with.

A run opens its workdir through `Workdir`: an exclusive OS lock (it dies with the process, so a
killed run never leaves the workdir held), a check that the workdir's dense models were trained
with this config (`config.identity` decides which fields count), and the config record
(`config.json`, plus `knob.json` for a registered knob). Writing the artifacts themselves is
`prunephase.files`; the metrics log is `prunephase.metrics_log`.
"""

import fcntl
import json
import os
import pathlib

from prunephase import files
from prunephase import knobs
from prunephase.config import identity

CONFIG_FILE = 'config.json'
# The knob entry's plain data (`knobs.Knob.record`): which way is hotter, its words and label,
# so a finished sweep of a user's knob is read (prunephase-regimes, -advise) without its config.
KNOB_FILE = 'knob.json'
LOCK_FILE = '.lock'


def read_knob_record(directory: str | os.PathLike) -> None:
  """Makes the knob recorded in `directory`/knob.json known (`knobs.add_recorded_knob`)
  unless this process registered it; nothing where there is no readable record."""
  try:
    record = json.loads((pathlib.Path(directory) / KNOB_FILE).read_text())
    knobs.add_recorded_knob(record)
  except (OSError, ValueError):  # No record, or not ours: the knob must be registered.
    pass


class Workdir:
  """Opens a workdir for one run: lock, config check, config record.

  Raises files.WorkdirError when another process holds the workdir, when it holds dense models
  of another config (each field that decides them is named; other changes make new branches,
  see `config.identity`), when it is a non-empty directory that is not a prunephase workdir, or
  when it cannot be created, read or written (a missing parent on a read-only filesystem, no
  permission).
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
      raise files.WorkdirError(f'cannot create or write the workdir {self.path}: '
                               f'{error.strerror or error}{where}; choose a writable --workdir'
                               ) from None

  def _open(self, config_dict: dict, write: bool) -> None:
    if self.path.exists() and not self.path.is_dir():
      raise files.WorkdirError(f'workdir {self.path} exists and is not a directory')
    existing = self.path / CONFIG_FILE
    if self.path.exists() and not existing.exists() and any(
        p.name != LOCK_FILE for p in self.path.iterdir()):
      raise files.WorkdirError(
          f'workdir {self.path} is not empty and holds no {CONFIG_FILE}: not a prunephase '
          'workdir; choose another --workdir')
    self.path.mkdir(parents=True, exist_ok=True)
    self._acquire_lock()  # Before comparing configs: the holder may still write config.json.
    try:
      if existing.exists():
        try:
          old = json.loads(existing.read_text())
        except json.JSONDecodeError as error:
          raise files.WorkdirError(f'unreadable {existing}: {error}') from error
        changed = identity.changed_dense_fields(old, files.to_jsonable(config_dict))
        if changed:
          raise files.WorkdirError(
              f'workdir {self.path} holds dense models of another config ('
              f'{"; ".join(changed[:4])}{" ..." if len(changed) > 4 else ""}); use a new '
              '--workdir, delete the old one, or import finished dense models with '
              '--config.dense.init_from=OLD_WORKDIR')
        self.previous_config = old
      if write:
        files.write_json(existing, config_dict)
        knob = (config_dict.get('temperature') or {}).get('knob')
        if knob in knobs.names():
          files.write_json(self.path / KNOB_FILE, knobs.knob(knob).record())
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
      raise files.WorkdirError(f'workdir {self.path} is in use by {holder}; wait for it or '
                               'use another --workdir') from error
    self._lock_file.seek(0)
    self._lock_file.truncate()
    self._lock_file.write(f'pid {os.getpid()} on {os.uname().nodename}')
    self._lock_file.flush()

  def release(self):
    if self._lock_file is not None:
      fcntl.flock(self._lock_file, fcntl.LOCK_UN)
      self._lock_file.close()
      self._lock_file = None

