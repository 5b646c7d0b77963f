"""Orbax checkpoints: one `CheckpointManager` directory per artifact, steps = epochs.

Orbax writes each step to a temporary directory and renames it when complete, so a crash never
leaves a half-written step that looks finished. Restoring builds its target from the saved
metadata with the arrays placed on one local device (CPU by default for analysis), so a run made
on accelerators restores on a laptop.
"""

import logging
import os
import pathlib
import sys
import threading
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from prunephase import files


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable or cannot be written; the message is one line."""


UNRETRIEVED = ('Task exception was never retrieved', 'Future exception was never retrieved')


def _is_closed_loop_error(value: BaseException) -> bool:
  return isinstance(value, RuntimeError) and str(value) == 'Event loop is closed'


def _quiet_late_callbacks() -> None:
  """Stops tracebacks of reads (or writes) that finish after a failed restore (or save) from
  reaching stderr.

  Installed once, before the first restore or save (a late callback can fire the moment one
  array fails).

  When one array of a damaged checkpoint fails, orbax closes its event loop while TensorStore
  still reads the others; as each read finishes, TensorStore schedules its callback on the
  closed loop and prints the RuntimeError ('Event loop is closed') through `sys.excepthook`, so
  a one-line CheckpointError would come with a dozen lines of noise. Only that error is dropped.
  """
  previous = sys.excepthook
  if getattr(previous, 'prunephase_quiet', False):
    return

  def hook(kind, value, traceback):
    if not _is_closed_loop_error(value):
      previous(kind, value, traceback)

  hook.prunephase_quiet = True
  sys.excepthook = hook
  previous_thread_hook = threading.excepthook

  def thread_hook(args):  # The same error raised in a reader thread.
    if not _is_closed_loop_error(args.exc_value):
      previous_thread_hook(args)

  threading.excepthook = thread_hook
  previous_unraisable = sys.unraisablehook

  def unraisable_hook(unraisable):  # ... or reported as unraisable from a callback.
    if not _is_closed_loop_error(unraisable.exc_value):
      previous_unraisable(unraisable)

  sys.unraisablehook = unraisable_hook
  # The reads' futures that nobody awaits any more are reported by asyncio's logger when they
  # are collected ('Task exception was never retrieved'): the same failure, once per array.
  logging.getLogger('asyncio').addFilter(_drop_unretrieved)


def _drop_unretrieved(record: logging.LogRecord) -> bool:
  return not record.getMessage().startswith(UNRETRIEVED)


ORBAX_LOGGER = 'absl'  # Orbax logs through absl.logging, i.e. this Python logger.


class _HeldWriteFailures(logging.Filter):
  """Holds back orbax's log records of a failed write (a full disk, no permission) during a save.

  Orbax writes a step from several threads; when one fails, its thread logs the exception with
  a 40-line traceback (`_SignalingThread.run() raised an exception`) and hands it to the main
  thread, which raises it, so the one-line CheckpointError says the same. The records are held
  while the save runs: dropped when it ends in that CheckpointError (`dropping`, also for
  threads that fail after it), emitted again otherwise (`release`), so nothing is hidden
  unless the error reaches the user anyway.
  """

  def __init__(self):
    super().__init__()
    self.records = []
    self.dropping = False

  def filter(self, record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    if error is None or files.storage_failure(error) is None:
      return True
    if not self.dropping:
      self.records.append(record)
    return False

  def release(self, logger: logging.Logger) -> None:
    """Removes the filter and emits what it held."""
    logger.removeFilter(self)
    for record in self.records:
      logger.handle(record)
    self.records = []


def _manager(directory: str | os.PathLike, max_to_keep: int | None = None) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                         enable_async_checkpointing=False)
  return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def save(directory: str | os.PathLike, step: int, tree: Any, max_to_keep: int | None = None):
  """Saves `tree` (a pytree of arrays, dicts and lists) as `step` under `directory`.

  Every process of a multi-host run must call this (orbax synchronises them). Arrays that
  span processes are written shard by shard; process-local arrays (identical on every
  process) are passed as NumPy, which orbax writes once, from the primary process.

  Raises:
    CheckpointError: the step cannot be written (a full disk, no permission, a file where a
      directory should be); one line naming the step's directory. Orbax writes the step into
      a temporary directory and renames it when complete, so earlier steps stay valid and a
      rerun starts again from them.
  """
  if jax.process_count() > 1:
    tree = jax.tree.map(
        lambda x: np.asarray(x) if isinstance(x, jax.Array) and x.is_fully_addressable else x,
        tree)
  # A failed write closes orbax's event loop while TensorStore still writes other arrays: their
  # late callbacks would print 'Event loop is closed' tracebacks, as after a failed restore.
  _quiet_late_callbacks()
  hold = _HeldWriteFailures()
  orbax_log = logging.getLogger(ORBAX_LOGGER)
  orbax_log.addFilter(hold)
  try:
    with _manager(directory, max_to_keep) as manager:
      manager.save(step, args=ocp.args.StandardSave(tree), force=True)
      manager.wait_until_finished()
  except Exception as error:  # pylint: disable=broad-except  # Orbax wraps OS errors variously.
    message = files.write_failure_message(pathlib.Path(directory) / str(step), error)
    if message is not None:
      # The filter stays: the save's other threads may still fail and log the same error.
      hold.dropping = True
      raise CheckpointError(message) from error
    hold.release(orbax_log)
    raise
  hold.release(orbax_log)


def steps(directory: str | os.PathLike) -> list[int]:
  """Finished steps under `directory` (empty if it does not exist)."""
  if not pathlib.Path(directory).exists():
    return []
  with _manager(directory) as manager:
    return sorted(manager.all_steps())


def latest_step(directory: str | os.PathLike) -> int | None:
  """The newest finished step, or None."""
  found = steps(directory)
  return found[-1] if found else None


def restore(directory: str | os.PathLike, step: int | None = None,
            device: jax.Device | None = None) -> Any:
  """Restores a step (default: the latest) as nested dicts of arrays on `device`.

  Args:
    directory: the artifact's directory.
    step: which step; None = the latest.
    device: where the arrays go; default this process's first CPU device.

  Raises:
    CheckpointError: nothing saved there, or the files are unreadable.
  """
  device = device or jax.local_devices(backend='cpu')[0]
  if step is None:
    step = latest_step(directory)
  if step is None:
    raise CheckpointError(f'no finished checkpoint in {directory}')
  sharding = jax.sharding.SingleDeviceSharding(device)
  # Before the read, not after a failure: a late callback can fire the moment one array fails.
  _quiet_late_callbacks()
  try:
    with _manager(directory) as manager:
      metadata = manager.item_metadata(step)
      tree = getattr(metadata, 'tree', metadata)
      target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                            tree)
      return manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as error:  # Orbax raises many types for damaged or truncated files.
    detail = next((line.strip() for line in str(error).splitlines() if line.strip()), '')
    detail = detail.split(' See full TensorStore details')[0][:160]
    raise CheckpointError(f'unreadable checkpoint {pathlib.Path(directory) / str(step)} '
                          f'({type(error).__name__}: {detail}); it is damaged or truncated: '
                          'delete that directory and re-run the stage that wrote it'
                          ) from error
