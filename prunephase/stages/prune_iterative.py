"""The prune stage with `prune.schedule='iterative'`: iterative magnitude pruning (IMP, as OpenLTH).

For each temperature, all dense seeds at once (a population of S members):

  level 1..L   densities `imp.level_densities(prune.densities, prune.rate_per_level)`: every
               power (1 - rate) ** l down to the lowest requested density, plus the requested ones
  mask_l       `imp.next_level_mask(w_{l-1}, mask_{l-1}, density=d_l)`: a subset of mask_{l-1}
  train_l      retrain with mask_l (first retrain seed's data order, the retrain section's
               schedule) from the level's start weights (`start_params`), giving w_l
  start        weight_rewinding: the dense run's weights at `retrain.rewind_epoch`;
               lr_rewinding / finetune: w_{l-1} (w_0 = the dense model)

Each level's mask and trained weights are artifacts (`Store.imp_mask_dir`, `Store.imp_run`), so a
killed run resumes at its level; the last level is not trained (nothing is pruned after it).
The requested densities' masks then form the ordinary masks artifact (S, D, ...), and the
retrain stage retrains every retrain seed from the same start weights as the trajectory.
"""

import jax
import jax.numpy as jnp

from prunephase import checkpoints
from prunephase import imp
from prunephase import progress as progress_lib
from prunephase import pruning
from prunephase import train_steps as train_lib
from prunephase import training_loop
from prunephase.stages import context


def levels(config) -> tuple[float, ...]:
  return imp.level_densities([float(d) for d in config.prune.densities],
                             float(config.prune.rate_per_level))


def level_of(config, density: float) -> int:
  """The 1-based level of a requested density."""
  return levels(config).index(float(density)) + 1


def load_level_mask(sweep: context.Sweep, temperature: float, level: int, template):
  """The saved masks (S, ...) of `level`, shaped as the parameters `template` (one member)."""
  flat = sweep.store.restore_tree(sweep.store.imp_mask_dir(temperature, level), 0)['masks']
  return pruning.unflatten_mask(flat, sweep.store.prunable(template))


def trained(sweep: context.Sweep, temperature: float, level: int) -> dict:
  """{'params', 'batch_stats'} (S, ...) after training at `level`; the dense models for 0."""
  if level == 0:
    return sweep.store.dense_models(temperature)
  directory = sweep.store.imp_run(temperature, level).epochs
  states, _ = sweep.store.restore_population(directory, sweep.store.retrain_epochs())
  return {'params': states.params, 'batch_stats': states.batch_stats}


def start_variables(sweep: context.Sweep, temperature: float, level: int) -> dict:
  """{'params', 'batch_stats'} (S, ...), unmasked, that training at `level` starts from."""
  if sweep.config.retrain.mode == 'weight_rewinding':
    return sweep.store.dense_models(temperature, int(sweep.config.retrain.rewind_epoch))
  return trained(sweep, temperature, level - 1)


def _train_level(sweep: context.Sweep, temperature: float, level: int, masks, progress) -> None:
  config = sweep.config.retrain
  spec, total, hparams = training_loop.retrain_setup(config, sweep.dataset.num_train,
                                                     len(sweep.dense_seeds))
  start = start_variables(sweep, temperature, level)
  params = pruning.apply_mask(start['params'], masks)
  key = train_lib.data_key(sweep.retrain_seeds[0], 1)
  states = jax.vmap(lambda p, s: train_lib.member_state(p, s, key, config.momentum))(
      params, start['batch_stats'])
  info = [{'temperature': temperature, 'imp_level': level, 'dense_seed': s}
          for s in sweep.dense_seeds]
  training_loop.train_resumably(
      sweep.training, sweep.store.imp_run(temperature, level),
      training_loop.Members(states, hparams, masks, info), stage='prune', spec=spec,
      total_steps=total, save_epochs=(), resume_every=config.resume_every,
      label=f'{sweep.key(temperature)} IMP level {level}', progress=progress)


def trajectory(sweep: context.Sweep, temperature: float) -> dict[float, object]:
  """Runs (or resumes) one temperature's IMP levels; returns {level density: (S, ...) masks}."""
  densities = levels(sweep.config)
  method = sweep.config.prune.method
  dense = sweep.store.dense_models(temperature)['params']
  template = jax.tree.map(lambda a: a[0], dense)
  _, total, _ = training_loop.retrain_setup(sweep.config.retrain, sweep.dataset.num_train, 1)
  progress = progress_lib.Progress(  # Member-steps of the levels that are trained.
      'prune', (len(densities) - 1) * len(sweep.dense_seeds) * total)
  masks = imp.full_mask(dense, sweep.store.prunable(template))
  out = {}
  for level, density in enumerate(densities, 1):
    mask_dir = sweep.store.imp_mask_dir(temperature, level)
    if checkpoints.steps(mask_dir):
      masks = load_level_mask(sweep, temperature, level, template)
    else:
      weights = trained(sweep, temperature, level - 1)['params']
      masks = train_lib.stack_members([
          imp.next_level_mask(jax.tree.map(lambda a, s=s: a[s], weights),
                              jax.tree.map(lambda m, s=s: m[s], masks),
                              density=density, method=method)
          for s in range(len(sweep.dense_seeds))])
      checkpoints.save(mask_dir, 0, {'masks': pruning.flatten_mask(masks)})
    out[density] = masks
    progress.advance(0, f'{sweep.key(temperature)} IMP level {level}/{len(densities)} '
                     f'density {density:.4g}', force=True)
    if level < len(densities):
      _train_level(sweep, temperature, level, masks, progress)
  return out


def _by_density(trees):
  """D trees of (S, ...) leaves -> one tree of (S, D, ...) leaves."""
  return jax.tree.map(lambda *a: jnp.stack(a, axis=1), *trees)


def requested_masks(sweep: context.Sweep, temperature: float):
  """(masks, ranked): the requested densities' masks (S, D, ...) and the trained
  {'params', 'batch_stats'} (S, D, ...) each was ranked from."""
  by_density = trajectory(sweep, temperature)
  ranked = [trained(sweep, temperature, level_of(sweep.config, d) - 1) for d in sweep.densities]
  return _by_density([by_density[d] for d in sweep.densities]), _by_density(ranked)


def retrain_start(sweep: context.Sweep, temperature: float) -> dict:
  """{'params', 'batch_stats'} (S, D, ...), unmasked: where the retrain population of each
  (dense seed, density) starts, the same as its level's trajectory training."""
  per_density = [start_variables(sweep, temperature, level_of(sweep.config, d))
                 for d in sweep.densities]
  return _by_density(per_density)
