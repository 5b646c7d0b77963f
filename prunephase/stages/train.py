"""Stage 1, train: the dense family, one program per dense group (equal shapes), resumable.

The epoch family's temperatures are checkpoints of one run, the batch size's one program per
value; every other knob trains one member per (temperature, dense seed), its entry
(`registry.Knob`) setting each member's training fields and, optionally, the loss.
`dense.init_from=OTHER_WORKDIR` imports the finished dense models of a workdir whose dense
fields are the same instead of training them again.
"""

import pathlib
import shutil

from prunephase import checkpoints
from prunephase import grid
from prunephase import knobs
from prunephase import registry
from prunephase import train_steps as train_lib
from prunephase import training_loop
from prunephase import workdir as workdir_lib
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


def _finished(config, directory: pathlib.Path, group: grid.DenseGroup, num_epochs: int,
              with_rewind: bool = True) -> bool:
  saved = checkpoints.steps(directory / 'epochs')
  wanted = save_epochs(config, group) if with_rewind else group.save_epochs
  return all(e in saved for e in wanted) and num_epochs in saved


def import_dense(sweep: context.Sweep, source: str, plans) -> None:
  """Copies finished dense groups of the workdir `source` (same dense fields) into this one."""
  source_path = pathlib.Path(source)  # `config.validate` checked its dense fields equal ours.
  for group, spec, total in plans:
    mine, theirs = sweep.store.dense_dir(group), source_path / 'dense' / group.name
    num_epochs = grid.epochs_of(total, spec.steps_per_epoch)
    if (_finished(sweep.config, mine, group, num_epochs)
        or not _finished(sweep.config, theirs, group, num_epochs, with_rewind=False)):
      continue
    if sweep.is_primary:
      shutil.rmtree(mine, ignore_errors=True)  # A partial run of our own is replaced.
      shutil.copytree(theirs / 'epochs', mine / 'epochs')
      print(f'[train] {group.name}: imported from {theirs}', flush=True)
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
        loss=registry.knob(config.temperature.knob).loss_fn())
    plans.append((group, spec, total))
  if config.dense.get('init_from'):
    import_dense(sweep, config.dense.init_from, plans)
  progress = workdir_lib.Progress(
      'train', sum(len(group.seeds) * total for group, _, total in plans))
  for group, spec, total in plans:
    directory = store.dense_dir(group)
    if _finished(config, directory, group, grid.epochs_of(total, spec.steps_per_epoch)):
      progress.skip(len(group.seeds) * total, f'{group.name} done earlier')
      continue
    states = train_lib.init_population(sweep.model, sweep.dataset.input_shape, group.seeds,
                                       group.seeds, config.dense.momentum)
    info = [{'group': group.name, 'temperature': t, 'dense_seed': s}
            for t, s in zip(group.temperatures, group.seeds)]
    training_loop.train_resumably(
        sweep, stage='train', directory=directory, spec=spec, total_steps=total,
        states=states, hparams=dense_hparams(config, group), masks=None,
        save_epochs=save_epochs(config, group), resume_every=config.dense.resume_every,
        member_info=info, label=group.name, progress=progress)
