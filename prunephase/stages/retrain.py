"""Stage 3, retrain: every temperature's masked population (dense seeds x densities x retrain
seeds), one compiled program for all temperatures, resumable."""

import functools

import jax
import jax.numpy as jnp

from prunephase import grid
from prunephase import pruning
from prunephase import train as train_lib
from prunephase import trainer
from prunephase import workdir as workdir_lib
from prunephase.stages import context
from prunephase.stages import prune as prune_stage


def setup(sweep: context.Sweep):
  """(spec, total steps, per-member hparams, member list) of the retrain population."""
  config = sweep.config.retrain
  finetune = config.mode == 'finetune'
  spec, total = trainer.train_spec(config, sweep.dataset.num_train, decays=not finetune)
  lr = config.finetune_lr if finetune else config.lr
  members = sweep.store.retrain_members()
  full = lambda value: jnp.full((len(members),), value, jnp.float32)
  hparams = train_lib.Hparams(lr=full(lr), weight_decay=full(config.weight_decay),
                              sam_rho=full(0.0))
  return spec, total, hparams, members


def start_population(sweep: context.Sweep, temperature: float):
  """Initial retrain population: pruned dense weights (mask applied), dense BN statistics,
  fresh momentum, data order from the retrain seed; and the member masks."""
  store = sweep.store
  num_d, num_r = len(sweep.densities), len(sweep.retrain_seeds)
  dense = store.dense_models(temperature)
  masks = prune_stage.flat_members(store.masks(temperature)['masks'])  # (S*D, ...)
  per_member = lambda a: jnp.repeat(a, num_d * num_r, axis=0)  # (S, ...) -> (S*D*R, ...)
  member_masks = jax.tree.map(lambda a: jnp.repeat(a, num_r, axis=0), masks)
  params = pruning.apply_mask(jax.tree.map(per_member, dense['params']), member_masks)
  stats = jax.tree.map(per_member, dense['batch_stats'])
  keys = jnp.stack([train_lib.data_key(m['retrain_seed'], 1) for m in store.retrain_members()])
  states = jax.vmap(functools.partial(train_lib.member_state,
                                      momentum=sweep.config.retrain.momentum))(params, stats, keys)
  return states, member_masks


def run(sweep: context.Sweep) -> None:
  """Retrains every temperature's masked population (one program for all of them)."""
  spec, total, hparams, members = setup(sweep)
  num_epochs = grid.epochs_of(total, spec.steps_per_epoch)
  progress = workdir_lib.Progress('retrain', len(members) * total * len(sweep.temperatures))
  for temperature in sweep.temperatures:
    if sweep.store.has_retrained(temperature):
      progress.skip(len(members) * total, f'{sweep.key(temperature)} done earlier')
      continue
    states, masks = start_population(sweep, temperature)
    info = [{'temperature': temperature, **m} for m in members]
    trainer.train_resumably(
        sweep, stage='retrain', directory=sweep.store.retrain_run_dir(temperature), spec=spec,
        total_steps=total, states=states, hparams=hparams, masks=masks,
        save_epochs=(num_epochs,), resume_every=sweep.config.retrain.resume_every,
        member_info=info, label=f'{sweep.key(temperature)} ({len(members)} members)',
        progress=progress)
