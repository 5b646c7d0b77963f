"""The resumable population trainer: a population trained to a step count over a workdir
directory, with epoch checkpoints, resume points, a metrics log and progress lines.

Used by the train stage (dense family) and the retrain stage (masked populations). A killed run
resumes from the newest checkpoint in `directory/epochs` or `directory/resume` and gives the same
numbers (data order and augmentation are functions of the member's key and the epoch).
"""

from collections.abc import Sequence
import dataclasses
import functools
import pathlib

import jax
import numpy as np

from prunephase import checkpoints
from prunephase import dispatch
from prunephase import grid
from prunephase import optim
from prunephase import population
from prunephase import train as train_lib
from prunephase import workdir as workdir_lib

HISTORY_KEYS = workdir_lib.METRIC_KEYS


def train_spec(section, num_train: int, total_steps: int | None = None,
               batch_size: int | None = None, use_sam: bool = False,
               decays: bool = True) -> tuple[train_lib.TrainSpec, int]:
  """TrainSpec of a dense or retrain section (batch size overridable), and the total steps."""
  batch_size = int(batch_size or section.batch_size)
  spe = grid.steps_per_epoch(num_train, batch_size)
  total = total_steps or section.epochs * spe
  boundaries = optim.decay_boundaries(total, spe, tuple(section.lr_decay_epochs),
                                      tuple(section.lr_decay_fractions)) if decays else ()
  return train_lib.TrainSpec(batch_size=batch_size, steps_per_epoch=spe,
                             lr_boundaries=boundaries, lr_decay=float(section.lr_decay),
                             momentum=float(section.momentum), use_sam=use_sam,
                             augmentation=section.augmentation), total


@functools.lru_cache(maxsize=16)
def _program(model, spec: train_lib.TrainSpec, masked: bool, mesh, steps_per_call: int | None
             ) -> population.PopulationProgram:
  """One population program per shape, shared by every temperature (compiled once, not once
  per temperature: PreResNet-20 programs take tens of seconds to compile on a CPU)."""
  return population.PopulationProgram(model, spec, masked, mesh, steps_per_call)


def train_resumably(sweep, *, stage: str, directory: pathlib.Path, spec, total_steps: int,
                    states, hparams, masks, save_epochs: Sequence[int], resume_every: int,
                    member_info: list[dict], label: str, progress: workdir_lib.Progress
                    ) -> tuple[train_lib.MemberState, dict]:
  """Trains a population to `total_steps`, saving `save_epochs` and resume points.

  Args:
    sweep: the `stages.context.Sweep` (dataset, model, mesh, store, metrics log).
    stage: 'train' or 'retrain' (metrics-log rows and progress lines).
    directory: where `epochs/<epoch>` and `resume/<epoch>` checkpoints go.
    spec, total_steps: from `train_spec`.
    states, hparams, masks: the population (leading member axis M); masks None when dense.
    save_epochs: 1-based epochs whose checkpoints are artifacts (the last epoch always is).
    resume_every: extra resume checkpoint every N epochs (0 = off; one kept).
    member_info: one dict per member for the metrics log.
    label, progress: progress line prefix and counter (member-steps).

  Returns the final states and the per-epoch history {key: (M, epochs)}.
  """
  store = sweep.store
  full_epochs, remainder = divmod(total_steps, spec.steps_per_epoch)
  num_epochs = full_epochs + (1 if remainder else 0)
  num_members = len(member_info)
  unpad = lambda tree: jax.tree.map(lambda a: a[:num_members], tree)
  history = {k: np.full((num_members, num_epochs), np.nan, np.float32) for k in HISTORY_KEYS}
  start = 0
  saved_epochs = checkpoints.steps(directory / 'epochs')
  done = saved_epochs + checkpoints.steps(directory / 'resume')
  if done:
    start = max(done)
    source = 'epochs' if start in saved_epochs else 'resume'
    states, saved = store.restore_population(directory / source, start)
    for k in HISTORY_KEYS:
      if k in saved:
        history[k][:, :start] = np.asarray(saved[k])[:, :start]
    progress.skip(len(member_info) * min(start * spec.steps_per_epoch, total_steps),
                  f'{label}: resuming after epoch {start}')

  def on_epoch_end(epoch, states, metrics):
    metrics = {k: v[:num_members] for k, v in metrics.items()}  # Drop padding members.
    rows = []
    for k in HISTORY_KEYS:
      history[k][:, epoch - 1] = metrics[k]
    for m, info in enumerate(member_info):
      rows.append({'stage': stage, **info, 'epoch': epoch,
                   **{k: float(metrics[k][m]) for k in HISTORY_KEYS}})
    if sweep.is_primary:
      sweep.metrics_log.write(rows)
    if epoch in save_epochs or epoch == num_epochs:
      store.save_population(directory / 'epochs', epoch, unpad(states), history)
    elif resume_every and epoch % resume_every == 0:
      store.save_population(directory / 'resume', epoch, unpad(states), history, max_to_keep=1)
    steps = min(epoch * spec.steps_per_epoch, total_steps) - min(
        (epoch - 1) * spec.steps_per_epoch, total_steps)
    progress.advance(num_members * steps, f'{label} epoch {epoch}/{num_epochs} test error '
                     f'{np.nanmean(metrics["test_error"]):.3f}')

  dataset, mesh, masked = sweep.dataset, sweep.mesh, masks is not None
  steps_per_call = dispatch.resolve_steps_per_call(
      (sweep.config.get('train') or {}).get('steps_per_call', 'auto'), sweep.model,
      dataset.input_shape)
  program = _program(sweep.model, spec, masked, mesh, steps_per_call)
  if mesh is not None:
    multiple = mesh.shape[population.MEMBERS]
    (states, hparams, masks), _ = population.pad_members((states, hparams, masks), multiple)
    if -num_members % multiple:
      print(f'[{stage}] {label}: {num_members} members padded to '
            f'{num_members + (-num_members % multiple)} for the {multiple}-way member axis',
            flush=True)
    states, hparams, masks = program.place((states, hparams, masks))
    dataset = jax.device_put(population.host_copy(dataset), jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec()))
  states = population.run_epochs(program, states, hparams, masks, dataset,
                                 min(start, full_epochs), full_epochs, on_epoch_end)
  if remainder and start < num_epochs:
    partial = dataclasses.replace(spec, steps_per_epoch=remainder)
    program = _program(sweep.model, partial, masked, mesh, steps_per_call)
    states = population.run_epochs(program, states, hparams, masks, dataset, full_epochs,
                                   num_epochs, on_epoch_end)
  return unpad(states), history
