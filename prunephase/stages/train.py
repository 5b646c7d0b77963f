"""Stage 1, train: the dense family, one program per dense group (equal shapes), resumable.

The epoch family's temperatures are checkpoints of one run, the batch size's one program per
value; every other knob trains one member per (temperature, dense seed), its entry
(`knobs.Knob`) setting each member's training fields and, optionally, the loss.
`dense.init_from=OTHER_WORKDIR` imports the finished dense models of a workdir whose dense
fields are the same instead of training them again.
"""

import shutil

from prunephase import artifacts
from prunephase import checkpoints
from prunephase import grid
from prunephase import knobs
from prunephase import progress as progress_lib
from prunephase import train_steps as train_lib
from prunephase import training_loop
from prunephase.stages import context


def dense_hparams(config, group: grid.DenseGroup) -> train_lib.Hparams:
  """Per-member training fields of a dense group (shape (M,) each): the knob entry's fields
  set to each member's value, the dense section's lr, weight decay and SAM rho otherwise
  (`knobs.dense_member_fields`)."""
  columns = knobs.dense_member_fields(config, group.temperatures)
  return train_lib.Hparams.for_members(len(group.temperatures), **columns)


def save_epochs(config, group: grid.DenseGroup) -> tuple[int, ...]:
  """The group's artifact epochs: its temperatures' checkpoints, plus the rewind point when
  retraining rewinds weights (`retrain.rewind_epoch`; 0 = the initialisation)."""
  rewind = (int(config.retrain.rewind_epoch),) if config.retrain.mode == 'weight_rewinding' else ()
  return tuple(sorted(set(group.save_epochs) | set(rewind)))


def _finished(config, run: artifacts.RunDir, group: grid.DenseGroup, num_epochs: int,
              with_rewind: bool = True) -> bool:
  saved = checkpoints.steps(run.epochs)
  wanted = save_epochs(config, group) if with_rewind else group.save_epochs
  return all(e in saved for e in wanted) and num_epochs in saved


def import_dense(sweep: context.Sweep, source: str, plans) -> None:
  """Copies finished dense groups of the workdir `source` (same dense fields) into this one."""
  # The source's store under our config: `config.validate` checked its dense fields equal ours.
  source_store = artifacts.Store(source, sweep.config)
  for group, spec, total in plans:
    mine, theirs = sweep.store.dense_run(group), source_store.dense_run(group)
    num_epochs = grid.epochs_of(total, spec.steps_per_epoch)
    if (_finished(sweep.config, mine, group, num_epochs)
        or not _finished(sweep.config, theirs, group, num_epochs, with_rewind=False)):
      continue
    if sweep.is_primary:
      shutil.rmtree(mine.path, ignore_errors=True)  # A partial run of our own is replaced.
      shutil.copytree(theirs.epochs, mine.epochs)
      print(f'[train] {group.name}: imported from {theirs.path}', flush=True)
  context.sync('dense imported')


def run(sweep: context.Sweep) -> None:
  """Trains the dense family; resumes from the newest saved epoch of each group."""
  config, store = sweep.config, sweep.store
  num_train = sweep.dataset.num_train
  if sweep.is_primary:
    store.write_facts()
  plans = []
  for group in store.dense_groups():
    spec, total = training_loop.train_spec(
        config.dense, num_train, group.total_steps, group.batch_size,
        use_sam=config.dense.optimizer == 'sam',
        loss=knobs.knob(config.temperature.knob).loss_fn())
    plans.append((group, spec, total))
  if config.dense.get('init_from'):
    import_dense(sweep, config.dense.init_from, plans)
  progress = progress_lib.Progress(
      'train', sum(len(group.seeds) * total for group, _, total in plans))
  for group, spec, total in plans:
    dense_run = store.dense_run(group)
    if _finished(config, dense_run, group, grid.epochs_of(total, spec.steps_per_epoch)):
      progress.skip(len(group.seeds) * total, f'{group.name} done earlier')
      continue
    states = train_lib.init_population(sweep.model, sweep.dataset.input_shape, group.seeds,
                                       group.seeds, config.dense.momentum)
    info = [{'group': group.name, 'temperature': t, 'dense_seed': s}
            for t, s in zip(group.temperatures, group.seeds)]
    members = training_loop.Members(states, dense_hparams(config, group), None, info)
    training_loop.train_resumably(
        sweep.training, dense_run, members, stage='train', spec=spec, total_steps=total,
        save_epochs=save_epochs(config, group), resume_every=config.dense.resume_every,
        label=group.name, progress=progress)
