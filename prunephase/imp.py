"""Iterative magnitude pruning (IMP): level schedules, nested per-level masks, weight rewinding.

IMP prunes in L levels, retraining between them: level l keeps (1 - rate) ** l of the prunable
weights, each level pruning `rate` of the weights that are still there, so every level's mask is
a subset of the previous one. The paper itself prunes one-shot (docs/definitions.md); this module
provides the masks for an IMP comparison. Masks follow `pruning`'s contract: a pytree shaped like
the params with a bool array for each prunable leaf and None for leaves never pruned.

Schedules (`level_densities`): a requested density that is not an exact power of (1 - rate)
gets a level of its own, right after the last power above it, so the last level prunes to
exactly the requested density (pruning less than `rate` of the remaining weights); several
requested densities all become levels of one trajectory. A power within a relative 1e-9 of a
requested density counts as that density.

Counts (`next_level_mask`): with `density=d`, each pool of n weights (a layer for 'uniform', all
prunable weights for 'global' and 'lamp') keeps exactly n - round((1 - d) n), the count of the
one-shot `pruning.make_masks` at density d, so IMP and one-shot models at the same density have
the same number of weights in every layer. With `rate=r`, each pool prunes round(r k) of its k
remaining weights (torch's iterative `prune` convention); rounding then compounds over levels.
Ties are broken as in `pruning` (the earlier flat index, then the earlier leaf, is pruned first).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prunephase import pruning

# imp reuses pruning's private count (`_num_pruned`), density check and ranking (`_ranks`), so
# that one-shot and iterative masks count and break ties identically.
# pylint: disable=protected-access

IMP_METHODS = ('uniform', 'global', 'lamp')
_POWER_TOLERANCE = 1e-9


def _check_rate(rate: float) -> float:
  rate = float(rate)
  if not 0.0 < rate < 1.0:
    raise ValueError(f'pruning rate per level must be in (0, 1), got {rate!r}')
  return rate


def level_densities(densities: float | Sequence[float],
                    rate_per_level: float = 0.2) -> tuple[float, ...]:
  """Densities of the IMP levels 1..L that reach every requested density.

  Args:
    densities: one density or several, each in (0, 1].
    rate_per_level: fraction of the remaining weights pruned per level, in (0, 1).

  Returns:
    Strictly decreasing densities: every power (1 - rate) ** l above the lowest requested
    density, merged with the requested densities (1.0 = the dense model, level 0, is left out).
    E.g. level_densities(0.5) = (0.8, 0.64, 0.512, 0.5).
  """
  rate = _check_rate(rate_per_level)
  if isinstance(densities, (int, float, np.floating, np.integer)):
    densities = (densities,)
  targets = sorted({d for d in pruning._check_densities(densities) if d < 1.0}, reverse=True)
  if not targets:
    return ()
  near = lambda power: any(abs(power - d) <= _POWER_TOLERANCE * d for d in targets)
  levels = set(targets)
  level = 1
  while (power := (1.0 - rate) ** level) > targets[-1] * (1 + _POWER_TOLERANCE):
    if not near(power):
      levels.add(power)
    level += 1
  return tuple(sorted(levels, reverse=True))


def imp_levels(target_density: float, rate_per_level: float = 0.2) -> int:
  """Number of IMP levels to reach `target_density` (0 for 1.0): len(level_densities(...))."""
  return len(level_densities(target_density, rate_per_level))


def full_mask(params, prunable):
  """The level-0 mask: all True on prunable leaves, None elsewhere (`models.prunable_tree`)."""
  return jax.tree.map(lambda flag, p: jnp.ones(jnp.shape(p), bool) if flag else None,
                      prunable, params)


def _is_tracer(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _pool_pruned(size: int, kept, rate: float | None, density: float | None) -> int:
  """Entries a pool of `size` weights with `kept` remaining has pruned after the level."""
  if density is not None:
    pruned = pruning._num_pruned(density, size)
    if kept is not None and pruned < size - kept:
      raise ValueError(f'density {density} keeps more weights ({size - pruned}) than the '
                       f'current mask ({kept} of {size}): a level can only prune')
    return pruned
  return (size - kept) + round(rate * kept)


def next_level_mask(params, mask, rate: float | None = None, *, density: float | None = None,
                    method: str = 'uniform'):
  """The mask of the next IMP level: prunes further among the weights `mask` keeps.

  Exactly one of `rate` (prune round(rate * k) of the k remaining weights of each pool) and
  `density` (the pool keeps the one-shot count at that density) is given; see the module
  docstring. The scores are |w| ('uniform', 'global') or LAMP scores of the remaining weights
  (pruned weights count as 0); pruned weights rank below every remaining one, so the new mask
  is a subset of `mask`. With `density`, the counts depend on shapes only, so this also runs
  under `jit`/`vmap` (members share the pruned counts); `rate` needs a concrete mask.

  Args:
    params: one model's params (the weights to rank, e.g. after retraining at this level).
    mask: the current level's mask (`full_mask` for the dense model).
    rate: fraction of the remaining weights to prune, in (0, 1).
    density: the new level's density in (0, 1] (fraction of all prunable weights kept).
    method: 'uniform' (each layer separately, the paper's default), 'global' or 'lamp'.

  Returns:
    The new mask (bool leaves, None where `mask` is None).

  Raises:
    ValueError: bad method, rate or density, both or neither given, or a density above the
      current mask's.
  """
  if method not in IMP_METHODS:
    raise ValueError(f'unknown IMP method {method!r}; choose one of {", ".join(IMP_METHODS)}')
  if (rate is None) == (density is None):
    raise ValueError('give exactly one of rate and density')
  if rate is not None:
    rate = _check_rate(rate)
  else:
    density = pruning._check_densities((density,))[0]

  mask_leaves, treedef = jax.tree_util.tree_flatten(mask, is_leaf=lambda m: m is None)
  param_leaves = treedef.flatten_up_to(params)
  indices = [i for i, m in enumerate(mask_leaves) if m is not None]
  if not indices:
    raise ValueError('mask has no prunable leaves (all None)')
  keeps = [jnp.ravel(jnp.asarray(mask_leaves[i])).astype(bool) for i in indices]
  weights = [jnp.ravel(jnp.asarray(param_leaves[i])) for i in indices]
  concrete = not any(_is_tracer(k) for k in keeps)
  if rate is not None and not concrete:
    raise ValueError('next_level_mask(rate=...) needs a concrete mask; use density= under jit')
  kept = [int(np.count_nonzero(np.asarray(k))) if concrete else None for k in keeps]

  dtype = jnp.promote_types(jnp.result_type(*weights), jnp.float32)
  if method == 'lamp':
    # LAMP of the remaining weights: pruned ones (zeroed) add nothing to the tail sums.
    scores = [pruning.lamp_scores(jnp.where(k, w, 0)).astype(dtype)
              for w, k in zip(weights, keeps)]
  else:
    scores = [jnp.abs(w).astype(dtype) for w in weights]
  # Scores are >= 0: -1 ranks every pruned weight below every remaining one.
  scores = [jnp.where(k, s, -1) for s, k in zip(scores, keeps)]

  if method == 'uniform':
    pruned = [_pool_pruned(w.size, n, rate, density) for w, n in zip(weights, kept)]
    ranks = [pruning._ranks(s) for s in scores]
  else:
    total = sum(int(w.size) for w in weights)
    pool_kept = sum(kept) if concrete else None
    pruned = [_pool_pruned(total, pool_kept, rate, density)] * len(weights)
    pooled = pruning._ranks(jnp.concatenate(scores))
    ranks = jnp.split(pooled, np.cumsum([w.size for w in weights])[:-1].tolist())

  out = list(mask_leaves)
  for i, rank, count, keep in zip(indices, ranks, pruned, keeps):
    out[i] = ((rank >= count) & keep).reshape(jnp.shape(mask_leaves[i]))
  return jax.tree_util.tree_unflatten(treedef, out)


def rewind(params_at_rewind, mask):
  """Weight rewinding: the weights saved at the rewind point, with the pruned ones zeroed.

  `params * mask` on prunable leaves (`pruning.apply_mask`); leaves whose mask is None (biases,
  BatchNorm, the head) are returned as saved. Any leading member axis broadcasts.
  """
  return pruning.apply_mask(params_at_rewind, mask)

