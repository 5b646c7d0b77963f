"""The metrics log: one JSON line per member and epoch in `metrics.jsonl`, optionally mirrored
to TensorBoard event files.

The log is appended to as training goes (not rewritten atomically like the other artifacts);
a failed append is cut back to whole lines, so every reader can parse the log after a kill or a
full disk.
"""

import contextlib
import json
import os
import pathlib
import time
from typing import Any

from prunephase import files

METRIC_KEYS = ('loss', 'error', 'lr', 'test_loss', 'test_error')


def require_tensorboard():
  """The tensorboardX module; WorkdirError (one line) when it is not installed.

  The sweep calls this before it opens the workdir, so a missing optional dependency fails
  before anything is written, not after the first epoch.
  """
  try:
    import tensorboardX  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise files.WorkdirError('tensorboard=True needs tensorboardX: pip install tensorboardX'
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
    """Appends `rows`; WorkdirError (one line, see `files.write_failure_message`) if the log
    cannot be written, with the log cut back to its whole lines (a half-written line would
    break every reader of the log; the rerun logs those epochs again)."""
    stamp = time.time()
    text = ''.join(json.dumps(files.to_jsonable({**row, 'time': round(stamp, 3)})) + '\n'
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
      raise files.WorkdirError(files.write_failure_message(self.path, error)) from error
    if self._writer is not None:
      for row in rows:
        member = '/'.join(f'{k}={row[k]}' for k in sorted(row)
                          if k not in METRIC_KEYS and k not in ('stage', 'epoch'))
        for key in METRIC_KEYS:
          if key in row:
            self._writer.add_scalar(f'{row["stage"]}/{member}/{key}', row[key], row['epoch'])
      self._writer.flush()
