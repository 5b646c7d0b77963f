"""The sweep: validate the config, open the workdir, run the stages in order.

  sweep, summary = prunephase.sweep.run_sweep(config, 'runs/default')

The stages are `prunephase.stages` (one module each); their artifacts live in an
`artifacts.Store`; `stages.context.Sweep` is what they share. With `seeds.adaptive`, rounds of
added dense seeds (`adaptive_seeds`) run after the measure stage, before the report. With
`search.mode = 'adaptive'`, train..measure run on the cells the search asks for, round by round
(`adaptive_cells`), instead of on the whole grid; with both, the seeds' rounds follow the search,
at its measured cells only (`adaptive_cell_seeds`).
"""

from collections.abc import Sequence
import errno
import pathlib
import time
from typing import Any

from prunephase import adaptive_cell_seeds
from prunephase import adaptive_cells
from prunephase import adaptive_seeds
from prunephase import artifacts
from prunephase import config as config_lib
from prunephase import files
from prunephase import metrics_log
from prunephase import workdir as workdir_lib
from prunephase.stages import measure
from prunephase.stages import prune
from prunephase.stages import report
from prunephase.stages import retrain
from prunephase.stages import train
from prunephase.stages.context import Sweep
from prunephase.stages.context import sync

STAGES = ('train', 'prune', 'retrain', 'measure', 'report')  # Pipeline order.
RUN = {'train': train.run, 'prune': prune.run, 'retrain': retrain.run, 'measure': measure.run,
       'report': report.run}
# OS errors of a stage that mean a full or unwritable filesystem, not a bug: one line naming
# the path (`files.write_failure_message`) instead of a traceback.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)
SweepError = artifacts.ArtifactError  # A stage cannot run: a missing or unreadable artifact.

__all__ = ['RUN', 'STAGES', 'Sweep', 'SweepError', 'run_stages', 'run_sweep']


def run_stages(sweep: Sweep, stages: Sequence[str]) -> dict[str, Any]:
  """Runs `stages` in pipeline order; returns the report summary (if reported)."""
  summary = {}
  searched = not adaptive_cells.enabled(sweep.config)
  for stage in STAGES:
    if stage not in stages:
      continue
    if stage in adaptive_cells.UNIT_STAGES and not searched:
      # Each round's cells through train..measure: stages naming any of them run the search.
      sync('adaptive search')
      start, searched = time.time(), True
      adaptive_cells.run(sweep, RUN)
      sweep.timings['search'] = time.time() - start
      if adaptive_cell_seeds.enabled(sweep.config):
        # Then rounds of added dense seeds, at the measured cells, before the report.
        sync('adaptive cell seeds')
        start = time.time()
        adaptive_cell_seeds.run(sweep, RUN)
        sweep.timings['seeds'] = time.time() - start
    if stage in adaptive_cells.UNIT_STAGES and adaptive_cells.enabled(sweep.config):
      continue
    sync(f'stage {stage}')
    start = time.time()
    result = RUN[stage](sweep)
    sweep.timings[stage] = time.time() - start
    if stage == 'report':
      summary = result
    if stage == 'measure' and adaptive_seeds.enabled(sweep.config):
      # Rounds of added dense seeds, each through train..measure, before the report reads them.
      sync('adaptive seeds')
      start = time.time()
      adaptive_seeds.run(sweep, RUN)
      sweep.timings['seeds'] = time.time() - start
  return summary


def run_sweep(config, workdir: str | pathlib.Path,
              stages: Sequence[str] = STAGES) -> tuple[Sweep, dict[str, Any]]:
  """Validates `config`, opens (locks) the workdir and runs `stages`.

  Bad input fails before anything is written: the config is validated, the dataset loaded,
  the model checked against it and optional dependencies imported before the workdir is
  touched. A workdir of the same dense models but another prune, retrain or measure config gets
  a new branch beside the old one (`config.identity`).

  Returns:
    The Sweep (with per-stage timings) and the report summary ({} without 'report').

  Raises:
    config.ConfigError, models.ModelError, data.DataError, registry.RegistryError: bad input,
      before anything is written.
    files.WorkdirError, checkpoints.CheckpointError: the workdir cannot be used, or a write
      failed (a full disk, no permission): one line naming the path; rerunning resumes.
    SweepError: a missing or unreadable artifact.
  """
  config_lib.validate(config)
  sweep = Sweep(config, pathlib.Path(workdir))
  if set(stages) - {'report'}:
    sweep.dataset  # pylint: disable=pointless-statement
    sweep.mesh  # pylint: disable=pointless-statement  # A mesh that does not fit the devices.
    sweep.check_model()  # A user's model: its outputs against the classes, shapes only.
    if config.get('tensorboard', False):
      metrics_log.require_tensorboard()  # Not after the first epoch's checkpoint.
  # Process 0 holds the workdir (lock, config check, config.json); the others wait for it.
  opened = workdir_lib.Workdir(workdir, config.to_dict()) if sweep.is_primary else None
  try:
    if opened is not None:
      artifacts.migrate_legacy_layout(sweep.path, opened.previous_config)
    sync('workdir open')
    if sweep.is_primary and set(stages) & {'prune', 'retrain', 'measure'}:
      sweep.store.write_specs()
    result = sweep, run_stages(sweep, stages)
    sync('sweep done')
    return result
  except OSError as error:
    # The write points of the workdir and the checkpoints name their path themselves; this
    # catches the rest (e.g. a figure) the same way. Other OS errors keep their traceback.
    if error.errno not in WRITE_ERRNOS:
      raise
    raise files.WorkdirError(
        files.write_failure_message(error.filename or sweep.path, error)) from error
  finally:
    if opened is not None:
      opened.release()
