"""Stage 2, prune: masks for every (temperature, dense seed, density), one call per dense
checkpoint, with the dense and pruned (pre-retrain) test errors and the achieved densities."""

import jax
import jax.numpy as jnp
import numpy as np

from prunephase import pruning
from prunephase import train as train_lib
from prunephase import workdir as workdir_lib
from prunephase.stages import context


def flat_members(masks):
  """Merges the leading (S, D) axes of mask leaves into one member axis S*D."""
  return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), masks)


def run(sweep: context.Sweep) -> None:
  """One-shot masks for every (temperature, dense seed, density), with pre-retrain errors."""
  config, store = sweep.config, sweep.store
  progress = workdir_lib.Progress('prune', len(sweep.temperatures))
  evaluate = jax.jit(jax.vmap(
      lambda p, s, ds: train_lib.evaluate(sweep.model, p, s, ds, 'test'), in_axes=(0, 0, None)))
  num_s, num_d = len(sweep.dense_seeds), len(sweep.densities)
  for temperature in sweep.temperatures:
    if store.has_masks(temperature):
      progress.skip(1, f'{sweep.key(temperature)} done earlier')
      continue
    dense = store.dense_models(temperature)
    per_seed = []
    for s in range(num_s):
      params = jax.tree.map(lambda a: a[s], dense['params'])
      per_seed.append(pruning.make_masks(
          params, store.prunable(params), sweep.densities, config.prune.method,
          key=jax.random.PRNGKey(config.prune.seed + 1000 * s)))
    masks = train_lib.stack_members(per_seed)  # Leaves (S, D, ...).
    repeat = lambda a: jnp.repeat(a, num_d, axis=0)
    pruned_params = pruning.apply_mask(jax.tree.map(repeat, dense['params']),
                                       flat_members(masks))
    pruned = evaluate(pruned_params, jax.tree.map(repeat, dense['batch_stats']), sweep.dataset)
    dense_eval = evaluate(dense['params'], dense['batch_stats'], sweep.dataset)
    achieved = np.array([[pruning.density(pruning.mask_select(
        jax.tree.map(lambda a, s=s: a[s], masks), d))
        for d in range(num_d)] for s in range(num_s)])
    store.save_masks(temperature, masks, dense_eval['error'],
                     np.asarray(pruned['error']).reshape(num_s, num_d), achieved)
    progress.advance(1, f'{sweep.key(temperature)} masks {num_s}x{num_d}', force=True)
