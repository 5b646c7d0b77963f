"""Progress lines: `[stage] what | percent | elapsed | eta`, with an ETA that a resume keeps
honest, and durations as `2m05s`."""

import time

import numpy as np


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
  """`seconds` as `5s` or `2m05s`; `?` when not finite (no rate yet for an ETA)."""
  if not np.isfinite(seconds):
    return '?'
  minutes, secs = divmod(int(round(seconds)), 60)
  return f'{minutes}m{secs:02d}s' if minutes else f'{secs}s'
