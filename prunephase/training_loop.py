"""The resumable population trainer: a population trained to a step count over a workdir
directory, with epoch checkpoints, resume points, a metrics log and progress lines.

Used by the train stage (dense family), the retrain stage and IMP's levels (masked
populations). A killed run resumes from the newest checkpoint of its run directory
(`artifacts.RunDir`: saved epochs or a resume point) and gives the same numbers (data order and
augmentation are functions of the member's key and the epoch).

The trainer knows no sweep and reads no config: what it runs on (`Runtime`) is resolved once
per sweep (`stages.context.Sweep.training`), where to save comes from the artifact store.
"""

from collections.abc import Callable, Sequence
import dataclasses
import functools
from typing import Any

import jax
import numpy as np

from prunephase import artifacts
from prunephase import checkpoints
from prunephase import data as data_lib
from prunephase import grid
from prunephase import metrics_log
from prunephase import optim
from prunephase import population
from prunephase import progress as progress_lib
from prunephase import train_steps as train_lib

HISTORY_KEYS = metrics_log.METRIC_KEYS


@dataclasses.dataclass(frozen=True)
class Runtime:
  """What a sweep's populations train on and where they go, resolved once per sweep
  (`stages.context.Sweep.training`), so that the trainer reads no config.

  Attributes:
    model: the Flax module.
    dataset: the training and test data.
    mesh: the ('members', 'data') mesh, or None on a single device.
    automatic_layout: whether the mesh is the automatic one (no `mesh.members`, one data
      shard); each population then trims its member axis so that no member is a padded copy
      (`population.mesh_without_padding`).
    steps_per_call: training steps per jitted call, resolved for the backend and model (None =
      a whole epoch; `dispatch.resolve_steps_per_call`).
    members_per_chunk: members vmapped together per device (None = all at once).
    is_primary: whether this process writes the metrics log and prints (process 0 of a run).
    write_metrics: appends rows to the sweep's metrics log (which opens on the first write).
    store: the artifact store that saves and restores the populations.
  """

  model: Any
  dataset: data_lib.Dataset
  mesh: jax.sharding.Mesh | None
  automatic_layout: bool
  steps_per_call: int | None
  members_per_chunk: int | None
  is_primary: bool
  write_metrics: Callable[[list[dict]], None]
  store: artifacts.Store


@dataclasses.dataclass(frozen=True)
class Members:
  """A population to train, with a leading member axis M.

  Attributes:
    states: the members' `train_steps.MemberState`.
    hparams: their `train_steps.Hparams` (fields of shape (M,), or defaults broadcast to it).
    masks: their pruning masks; None when dense.
    info: one dict per member for the metrics log (M of them).
  """

  states: train_lib.MemberState
  hparams: train_lib.Hparams
  masks: Any
  info: list[dict]


def train_spec(section, num_train: int, total_steps: int | None = None,
               batch_size: int | None = None, use_sam: bool = False,
               decays: bool = True, loss=None) -> tuple[train_lib.TrainSpec, int]:
  """TrainSpec of a dense or retrain section (batch size overridable), and the total steps;
  `loss` is the knob's dense loss hook (`knobs.Knob.loss_fn`), None for cross-entropy."""
  batch_size = int(batch_size or section.batch_size)
  spe = grid.steps_per_epoch(num_train, batch_size)
  total = total_steps or section.epochs * spe
  boundaries = optim.decay_boundaries(total, spe, tuple(section.lr_decay_epochs),
                                      tuple(section.lr_decay_fractions)) if decays else ()
  return train_lib.TrainSpec(batch_size=batch_size, steps_per_epoch=spe,
                             lr_boundaries=boundaries, lr_decay=float(section.lr_decay),
                             momentum=float(section.momentum), use_sam=use_sam,
                             augmentation=section.augmentation, loss=loss), total


def retrain_setup(section, num_train: int, num_members: int
                  ) -> tuple[train_lib.TrainSpec, int, train_lib.Hparams]:
  """(spec, total steps, per-member hparams) of retraining with the retrain section: the
  dense schedule replayed from `lr` (lr_rewinding, weight_rewinding) or a constant
  `finetune_lr` (finetune); no SAM."""
  finetune = section.mode == 'finetune'
  spec, total = train_spec(section, num_train, decays=not finetune)
  hparams = train_lib.Hparams.for_members(
      num_members, lr=section.finetune_lr if finetune else section.lr,
      weight_decay=section.weight_decay, sam_rho=0.0)
  return spec, total, hparams


@functools.lru_cache(maxsize=16)
def _program(model, spec: train_lib.TrainSpec, masked: bool, mesh, steps_per_call: int | None,
             members_per_chunk: int | None) -> population.PopulationProgram:
  """One population program per shape, shared by every temperature (compiled once, not once
  per temperature: PreResNet-20 programs take tens of seconds to compile on a CPU)."""
  return population.PopulationProgram(model, spec, masked, mesh, steps_per_call,
                                      members_per_chunk)


def resume_line(label: str, start: int, until: int, num_epochs: int, source: str | None,
                refill: Sequence[int] = ()) -> str | None:
  """The progress line of a run that starts from a checkpoint, or None for a fresh start.

  What is kept is exact (the checkpoint's epochs); what is redone is not known here: a killed
  run may have trained (and logged) epochs after its newest checkpoint, and that work is done
  again from epoch `start + 1`, so the line says where the redoing starts, not how much.

  Args:
    label: the progress line's prefix (a dense group or a temperature).
    start: the epoch of the checkpoint training continues from (0 = the initial states).
    until: the last epoch this call trains.
    num_epochs: the run's epochs.
    source: 'epochs' or 'resume', the checkpoint's directory; None when there is none.
    refill: epochs asked for after the run had saved later ones (e.g. a rewind point), which
      are trained again from `start`; empty for a resume.
  """
  checkpoint = f'checkpoint {source}/{start}' if source else 'the initial states'
  if refill:
    trained = f'epoch {until}' if until == start + 1 else f'epochs {start + 1}-{until}'
    return (f'{label}: epoch{"s" if len(refill) > 1 else ""} {", ".join(map(str, refill))} '
            f'not saved (asked for after the run); training {trained} again from {checkpoint}, '
            'later epochs kept')
  if source is None:
    return None
  if not start:  # Only epoch 0 (the initial states, for weight rewinding) was saved.
    return (f'{label}: restarting at epoch 1 of {num_epochs} (only the initial states were '
            'saved; redoing everything a stopped run trained)')
  return (f'{label}: resuming after epoch {start} of {num_epochs} (kept {start} '
          f'epoch{"s" if start > 1 else ""} from {checkpoint}; redoing from epoch {start + 1} '
          'whatever a stopped run trained after it)')


def train_resumably(runtime: Runtime, run: artifacts.RunDir, members: Members, *, stage: str,
                    spec: train_lib.TrainSpec, total_steps: int, save_epochs: Sequence[int],
                    resume_every: int, label: str, progress: progress_lib.Progress
                    ) -> tuple[train_lib.MemberState, dict]:
  """Trains a population to `total_steps`, saving `save_epochs` and resume points.

  Args:
    runtime: what the sweep trains on (model, data, mesh, layout, metrics log, store).
    run: the run's directory, from the store (`Store.dense_run`, `retrain_run`, `imp_run`):
      its saved epochs and resume points.
    members: the population (leading member axis M) and its metrics-log fields.
    stage: 'train', 'prune' (IMP levels) or 'retrain' (metrics-log rows and progress lines).
    spec, total_steps: from `train_spec`.
    save_epochs: epochs whose checkpoints are artifacts (the last epoch always is; 0 = the
      initial states). Where a later epoch is saved but an earlier one is missing (e.g. a
      rewind point asked for after the run finished), training restarts from the newest
      checkpoint before it, or from `members.states`, and stops once it is saved: data order
      and augmentation depend only on each member's key and the epoch, so it is the same state.
    resume_every: extra resume checkpoint every N epochs (0 = off; one kept).
    label, progress: progress line prefix and counter (member-steps).

  Returns the final states and the per-epoch history {key: (M, epochs)}.
  """
  store = runtime.store
  states, hparams, masks, member_info = members.states, members.hparams, members.masks, members.info
  full_epochs, remainder = divmod(total_steps, spec.steps_per_epoch)
  num_epochs = full_epochs + (1 if remainder else 0)
  num_members = len(member_info)
  hparams = train_lib.broadcast_members(hparams, num_members)  # Defaults -> (M,).
  unpad = lambda tree: jax.tree.map(lambda a: a[:num_members], tree)
  history = {k: np.full((num_members, num_epochs), np.nan, np.float32) for k in HISTORY_KEYS}
  start = 0
  saved_epochs = checkpoints.steps(run.epochs)
  wanted = set(save_epochs) | {num_epochs}
  missing = sorted(wanted - set(saved_epochs))
  until = missing[-1] if missing else num_epochs  # Last epoch this call trains.
  done = [e for e in saved_epochs + checkpoints.steps(run.resume)
          if not missing or e < missing[0]]
  if 0 in missing:  # The initial states are an artifact (weight rewinding to the init).
    store.save_population(run.epochs, 0, states, None)
  source = None
  if done:
    start = max(done)
    source = 'epochs' if start in saved_epochs else 'resume'
    states, saved = store.restore_population(run.epochs if source == 'epochs' else run.resume,
                                             start)
    for k in HISTORY_KEYS:
      if k in saved:
        history[k][:, :start] = np.asarray(saved[k])[:, :start]
  # Epochs to train again although the run saved later ones (a rewind point asked for after
  # it finished); epoch 0 is saved above without training.
  refill = [e for e in missing if e and saved_epochs and e < saved_epochs[-1]]
  line = resume_line(label, start, until, num_epochs, source, refill)
  if line:
    progress.skip(len(member_info) * min(start * spec.steps_per_epoch, total_steps), line)

  def on_epoch_end(epoch, states, metrics):
    metrics = {k: v[:num_members] for k, v in metrics.items()}  # Drop padding members.
    rows = []
    for k in HISTORY_KEYS:
      history[k][:, epoch - 1] = metrics[k]
    for m, info in enumerate(member_info):
      rows.append({'stage': stage, **info, 'epoch': epoch,
                   **{k: float(metrics[k][m]) for k in HISTORY_KEYS}})
    if runtime.is_primary:
      runtime.write_metrics(rows)
    if epoch in missing:
      store.save_population(run.epochs, epoch, unpad(states), history)
    elif resume_every and epoch % resume_every == 0:
      store.save_population(run.resume, epoch, unpad(states), history, max_to_keep=1)
    steps = min(epoch * spec.steps_per_epoch, total_steps) - min(
        (epoch - 1) * spec.steps_per_epoch, total_steps)
    progress.advance(num_members * steps, f'{label} epoch {epoch}/{num_epochs} test error '
                     f'{np.nanmean(metrics["test_error"]):.3f}')

  dataset, mesh, masked = runtime.dataset, runtime.mesh, masks is not None
  if mesh is not None and runtime.automatic_layout:
    # An automatic layout: no member is a padded copy (see `mesh_without_padding`).
    mesh = population.mesh_without_padding(mesh, num_members, spec.batch_size)
  program = _program(runtime.model, spec, masked, mesh, runtime.steps_per_call,
                     runtime.members_per_chunk)
  if mesh is not None:
    multiple = mesh.shape[population.MEMBERS]
    (states, hparams, masks), _ = population.pad_members((states, hparams, masks), multiple)
    if -num_members % multiple and runtime.is_primary:
      print(f'[{stage}] {label}: {num_members} members padded to '
            f'{num_members + (-num_members % multiple)} for the {multiple}-way member axis',
            flush=True)
    states, hparams, masks = program.place((states, hparams, masks))
    dataset = jax.device_put(population.host_copy(dataset), jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec()))
  states = population.run_epochs(program, states, hparams, masks, dataset,
                                 min(start, full_epochs), min(until, full_epochs), on_epoch_end)
  if remainder and start < num_epochs and until == num_epochs:
    states = population.run_epochs(program, states, hparams, masks, dataset, full_epochs,
                                   num_epochs, on_epoch_end, num_steps=remainder)
  return unpad(states), history
