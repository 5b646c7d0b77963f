"""Stage 2, prune: masks for every (temperature, dense seed, density) -- one-shot (the paper's:
one ranking of each dense model) or iterative (IMP, `prune_iterative`) -- with the dense and
pruned (pre-retrain) test errors and the achieved densities."""

import jax
import numpy as np

from prunephase import progress as progress_lib
from prunephase import pruning
from prunephase import train_steps as train_lib
from prunephase.stages import context
from prunephase.stages import prune_iterative


def flat_members(masks):
  """Merges the leading (S, D) axes of mask leaves into one member axis S*D."""
  return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), masks)


def one_shot_masks(sweep: context.Sweep, dense: dict):
  """(masks (S, D, ...), ranked (S, D, ...)): one ranking of each dense model for all densities."""
  config, store = sweep.config, sweep.store
  per_seed = []
  for s in range(len(sweep.dense_seeds)):
    params = jax.tree.map(lambda a: a[s], dense['params'])
    per_seed.append(pruning.make_masks(
        params, store.prunable(params), sweep.densities, config.prune.method,
        key=jax.random.PRNGKey(config.prune.seed + 1000 * s)))
  num_d = len(sweep.densities)
  # NumPy, as the masks in `run`: eager jnp ops compiled one small program each (seconds).
  ranked = jax.tree.map(lambda a: np.repeat(np.asarray(a)[:, None], num_d, axis=1), dense)
  return train_lib.stack_members(per_seed), ranked


def run(sweep: context.Sweep) -> None:
  """Masks for every (temperature, dense seed, density), one-shot or iterative (IMP), with the
  dense and the pruned (pre-retrain) test errors and the achieved densities."""
  store = sweep.store
  iterative = sweep.config.prune.get('schedule', 'one_shot') == 'iterative'
  progress = progress_lib.Progress('prune', len(sweep.temperatures))
  test = lambda p, s, ds: train_lib.evaluate(sweep.model, p, s, ds, 'test')
  evaluate = jax.jit(jax.vmap(test, in_axes=(0, 0, None)))
  evaluate_pruned = jax.jit(jax.vmap(lambda p, m, s, ds: test(pruning.apply_mask(p, m), s, ds),
                                     in_axes=(0, 0, 0, None)))
  num_s, num_d = len(sweep.dense_seeds), len(sweep.densities)
  for temperature in sweep.temperatures:
    if store.has_masks(temperature):
      progress.skip(1, f'{sweep.key(temperature)} done earlier')
      continue
    dense = store.dense_models(temperature)
    if iterative:
      masks, ranked = prune_iterative.requested_masks(sweep, temperature)
    else:
      masks, ranked = one_shot_masks(sweep, dense)  # Leaves (S, D, ...).
    masks = jax.tree.map(np.asarray, masks)
    ranked = flat_members(ranked)
    pruned = evaluate_pruned(ranked['params'], flat_members(masks), ranked['batch_stats'],
                             sweep.dataset)
    dense_eval = evaluate(dense['params'], dense['batch_stats'], sweep.dataset)
    achieved = np.array([[pruning.density(jax.tree.map(lambda a, s=s, d=d: a[s, d], masks))
                          for d in range(num_d)] for s in range(num_s)])
    store.save_masks(temperature, masks, dense_eval['error'],
                     np.asarray(pruned['error']).reshape(num_s, num_d), achieved)
    progress.advance(1, f'{sweep.key(temperature)} masks {num_s}x{num_d}', force=True)
