"""Stage 3, retrain: every temperature's masked population (dense seeds x densities x retrain
seeds), one compiled program for all temperatures, resumable."""

import functools

import jax
import jax.numpy as jnp

from prunephase import grid
from prunephase import progress as progress_lib
from prunephase import pruning
from prunephase import train_steps as train_lib
from prunephase import training_loop
from prunephase.stages import context
from prunephase.stages import prune as prune_stage
from prunephase.stages import prune_iterative


def setup(sweep: context.Sweep):
  """(spec, total steps, per-member hparams, member list) of the retrain population."""
  members = sweep.store.retrain_members()
  spec, total, hparams = training_loop.retrain_setup(sweep.config.retrain, sweep.dataset.num_train,
                                                     len(members))
  return spec, total, hparams, members


def start_weights(sweep: context.Sweep, temperature: float) -> dict:
  """{'params', 'batch_stats'} (S*D, ...), unmasked, where each (dense seed, density) starts:
  the dense model (lr_rewinding, finetune), the dense run at `retrain.rewind_epoch`
  (weight_rewinding), or for IMP its level's start (`prune_iterative.retrain_start`)."""
  num_d = len(sweep.densities)
  if sweep.config.prune.get('schedule', 'one_shot') == 'iterative':
    return prune_stage.flat_members(prune_iterative.retrain_start(sweep, temperature))
  epoch = (int(sweep.config.retrain.rewind_epoch)
           if sweep.config.retrain.mode == 'weight_rewinding' else None)
  dense = sweep.store.dense_models(temperature, epoch)
  return jax.tree.map(lambda a: jnp.repeat(a, num_d, axis=0), dense)  # (S, ...) -> (S*D, ...)


def member_masks(sweep: context.Sweep, temperature: float):
  """Masks of the retrain population's members (leading axis M = S * D * R, member order)."""
  masks = prune_stage.flat_members(sweep.store.masks(temperature)['masks'])  # (S*D, ...)
  return jax.tree.map(lambda a: jnp.repeat(a, len(sweep.retrain_seeds), axis=0), masks)


def start_population(sweep: context.Sweep, temperature: float):
  """Initial retrain population: the start weights (`start_weights`) with the mask applied,
  their BN statistics, fresh momentum, data order from the retrain seed; and the member
  masks."""
  store = sweep.store
  num_r = len(sweep.retrain_seeds)
  masks = member_masks(sweep, temperature)
  per_member = lambda a: jnp.repeat(a, num_r, axis=0)  # (S*D, ...) -> (S*D*R, ...)
  start = jax.tree.map(per_member, start_weights(sweep, temperature))
  params = pruning.apply_mask(start['params'], masks)
  stats = start['batch_stats']
  keys = jnp.stack([train_lib.data_key(m['retrain_seed'], 1) for m in store.retrain_members()])
  states = jax.vmap(functools.partial(train_lib.member_state,
                                      momentum=sweep.config.retrain.momentum))(params, stats, keys)
  return states, masks


def run(sweep: context.Sweep) -> None:
  """Retrains every temperature's masked population (one program for all of them)."""
  spec, total, hparams, members = setup(sweep)
  num_epochs = grid.epochs_of(total, spec.steps_per_epoch)
  progress = progress_lib.Progress('retrain', len(members) * total * len(sweep.temperatures))
  for temperature in sweep.temperatures:
    if sweep.store.has_retrained(temperature):
      progress.skip(len(members) * total, f'{sweep.key(temperature)} done earlier')
      continue
    states, masks = start_population(sweep, temperature)
    info = [{'temperature': temperature, **m} for m in members]
    training_loop.train_resumably(
        sweep.training, sweep.store.retrain_run(temperature),
        training_loop.Members(states, hparams, masks, info), stage='retrain', spec=spec,
        total_steps=total, save_epochs=(num_epochs,),
        resume_every=sweep.config.retrain.resume_every,
        label=f'{sweep.key(temperature)} ({len(members)} members)', progress=progress)
