"""One-shot unstructured pruning masks: layerwise-uniform, global and LAMP magnitude, random.

All criteria rank the prunable weights once and read the masks for every requested density off
those ranks, so `make_masks(..., densities=(0.05, ..., 0.8))` costs one sort per layer (or one
global sort), not one per density. Because every density thresholds the same ranks, the masks
are nested: a weight kept at density d is kept at every density above d.

Counts follow PyTorch's `torch.nn.utils.prune` (the paper's code): a pool of n weights pruned to
density d loses `round((1 - d) * n)` of them, with Python's round-half-to-even. Ties in the
pruning score are broken deterministically: within a layer the earlier flat (C-order) index is
pruned first; across layers (global, LAMP) the earlier leaf in pytree order (sorted dict keys)
is pruned first. This keeps every count exact even for tensors full of equal values or zeros.

A mask is a pytree shaped like the params: a bool array for each prunable leaf and None for the
leaves that are never pruned (biases, BatchNorm, the head unless `prune_head`), see
`models.prunable_tree`. `make_masks` returns masks with a leading density axis; `mask_select`
picks one of them.
"""

from collections.abc import Mapping, Sequence
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prunephase import config as config_lib
from prunephase import registry
from prunephase import runtime


def _path_name(path) -> str:
  """'conv0/kernel' for the key path of a leaf (dict keys, sequence indices or attributes)."""
  parts = []
  for entry in path:
    for attr in ('key', 'idx', 'name'):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
    else:
      parts.append(str(entry))
  return '/'.join(parts)


def _num_pruned(density_value: float, size: int) -> int:
  """Entries to prune from `size` weights, as torch's `_compute_nparams_toprune` (Python round)."""
  return round((1.0 - density_value) * size)


def _check_densities(densities) -> tuple[float, ...]:
  """Validates densities (non-empty, each in (0, 1]) and returns them as Python floats."""
  if isinstance(densities, (int, float, np.floating, np.integer)):
    raise ValueError(f'densities must be a sequence of floats, got the scalar {densities!r}')
  values = tuple(float(d) for d in densities)
  if not values:
    raise ValueError('densities is empty; give at least one density in (0, 1]')
  for d in values:
    # `not 0 < d <= 1` is also true for NaN.
    if not 0.0 < d <= 1.0:
      raise ValueError(f'density {d!r} is outside (0, 1] (density = fraction of weights kept)')
  return values


def _ranks(scores: jax.Array) -> jax.Array:
  """Rank (0 = pruned first) of each entry of the 1-D `scores`, shape (n,), int32.

  A stable argsort gives ties the order of their index, which makes the earlier index rank lower
  (be pruned first); scattering the positions inverts the permutation without a second sort.
  """
  order = jnp.argsort(scores, stable=True)
  positions = jnp.arange(scores.size, dtype=jnp.int32)
  return jnp.zeros(scores.shape, jnp.int32).at[order].set(positions)


def _score_dtype(dtype) -> Any:
  # At least float32: squares of bfloat16/float16 weights underflow and tie far too often.
  return jnp.promote_types(dtype, jnp.float32)


def lamp_scores(weights) -> jax.Array:
  """LAMP scores (Lee et al., ICLR 2021) of one layer's weights.

  With the squared weights sorted ascending, w2_(1) <= ... <= w2_(n), the u-th one scores
  `w2_(u) / sum_{v >= u} w2_(v)`. The largest weight scores exactly 1. Equal weights are ordered
  by flat index (stable sort), so the earlier one gets the smaller score, matching the tie rule
  of the magnitude criteria. Where the tail sum is 0 (only zero weights left) the score is 0
  rather than NaN.

  Args:
    weights: array of any shape (one layer, no member or density axis).

  Returns:
    Scores, same shape as `weights`, float32 (or wider if `weights` is).
  """
  weights = jnp.asarray(weights)
  return _lamp_flat(jnp.ravel(weights)).reshape(weights.shape)


@jax.jit
def _lamp_flat(weights: jax.Array) -> jax.Array:
  """`lamp_scores` of a 1-D array of shape (n,)."""
  squares = jnp.square(weights.astype(_score_dtype(weights.dtype)))
  order = jnp.argsort(squares, stable=True)
  ordered = squares[order]
  # Tail sums sum_{v >= u}; the last one is the largest square itself, so its score is exactly 1.
  tails = jnp.cumsum(ordered[::-1])[::-1]
  ordered_scores = jnp.where(tails > 0, ordered / jnp.where(tails > 0, tails, 1), 0)
  return jnp.zeros_like(ordered_scores).at[order].set(ordered_scores)


def magnitude_scores(weights, key=None):
  """|w| of every leaf ('uniform' layerwise, 'global' pooled), at least float32.

  One dtype for all leaves, so pooled scores compare across layers; widening is exact, so the
  layerwise ranking is that of |w| in the weights' own dtype.
  """
  del key
  dtype = _score_dtype(jnp.result_type(*weights))
  return [jnp.abs(w).astype(dtype) for w in weights]


def lamp_pool_scores(weights, key=None):
  """LAMP scores (`lamp_scores`) of every leaf, for pooled ('global') selection."""
  del key
  return [_lamp_flat(w) for w in weights]


def random_scores(weights, key):
  """A uniform random permutation of each leaf as its scores: ranking them gives the
  permutation back, which keeps a uniformly random subset of each size."""
  keys = jax.random.split(key, len(weights))
  return [jax.random.permutation(k, w.size).astype(jnp.int32) for k, w in zip(keys, weights)]


@functools.partial(jax.jit, static_argnames=('scores_fn', 'scope'))
def _flat_masks(weights, pruned, key, scores_fn, scope):
  """Keep-masks of all densities from one ranking.

  Args:
    weights: list of the prunable leaves, each flattened to shape (n_i,).
    pruned: list of int32 arrays of shape (D,): entries to prune from leaf i at each density
      ('layerwise' scope), or from the pool of all N weights ('global'; same for every i).
    key: PRNG key for methods that need one, else None.
    scores_fn: the method's `fn(weights, key) -> scores` (see `prunephase.registry`).
    scope: 'layerwise' or 'global'.

  Returns:
    List of bool arrays of shape (D, n_i), True = kept.
  """
  scores = scores_fn(weights, key)
  if scope == 'layerwise':
    ranks = [_ranks(jnp.ravel(s)) for s in scores]
  else:
    dtype = jnp.result_type(*scores)
    # One sort over the concatenation; leaf order in it breaks ties across layers. Ranks in
    # the pool, compared with pooled counts, give the global selection leaf by leaf.
    pooled_ranks = _ranks(jnp.concatenate([jnp.ravel(s).astype(dtype) for s in scores]))
    ranks = jnp.split(pooled_ranks, np.cumsum([w.size for w in weights])[:-1].tolist())
  # (D, n): every density at once; rank >= pruned count <=> kept.
  return [rank[None, :] >= p[:, None] for rank, p in zip(ranks, pruned)]


def make_masks(params, prunable, densities: Sequence[float], method: str = 'uniform',
               key: jax.Array | None = None):
  """Masks for all `densities` at once, from one ranking of the prunable weights.

  Methods (counts use `round((1 - d) * n)` pruned, as torch's `prune`):
    uniform: in each prunable leaf of n entries prune the round((1-d)*n) smallest |w|
      (torch `prune.l1_unstructured` on every layer; the paper's default).
    global: prune the round((1-d)*N) smallest |w| among all N prunable weights pooled, with no
      per-layer normalisation (torch `prune.global_unstructured`).
    lamp: keep the N - round((1-d)*N) largest LAMP scores (`lamp_scores`) across all layers.
    random: per-leaf counts as `uniform`, positions uniformly at random from `key`.
  A user's method (`registry.register_pruning_method`) scores the weights; its scope says
  whether the counts are per leaf (as uniform) or pooled (as global).

  Args:
    params: nested dict pytree of float arrays for one model (no member axis).
    prunable: pytree of Python bools with the structure of `params` (`models.prunable_tree`).
    densities: non-empty sequence of floats in (0, 1], the fraction of prunable weights kept.
    method: a pruning method name in `prunephase.registry`.
    key: jax PRNG key; required for 'random' (and methods registered with needs_key),
      ignored otherwise.

  Returns:
    A pytree shaped like `params`: for each prunable leaf of shape S a bool array of shape
    (D, *S) with D = len(densities), True = kept; None for non-prunable leaves.

  Raises:
    ValueError: unknown method, bad densities, no prunable leaves, `prunable` not shaped like
      `params`, or no key for a method that needs one.
    config.ConfigError (a ValueError): the method raised, or did not give one score per weight.
  """
  spec = registry.pruning_method(method)
  densities = _check_densities(densities)
  if spec.needs_key and key is None:
    raise ValueError(f'method {method!r} needs a PRNG key (key=jax.random.key(seed))')

  leaves, treedef = jax.tree_util.tree_flatten(params)
  flags, flags_def = jax.tree_util.tree_flatten(prunable)
  if flags_def != treedef:
    raise ValueError(f'prunable does not have the structure of params: {flags_def} vs {treedef}')
  indices = [i for i, flag in enumerate(flags) if bool(flag)]
  if not indices:
    raise ValueError('no prunable leaves: every entry of prunable is False')

  weights = [jnp.ravel(jnp.asarray(leaves[i])) for i in indices]
  sizes = [int(w.size) for w in weights]
  if spec.scope == 'layerwise':
    pruned = [[_num_pruned(d, n) for d in densities] for n in sizes]
  else:
    pruned = [[_num_pruned(d, sum(sizes)) for d in densities]] * len(sizes)
  # Counts are Python ints here (static densities); they enter the jitted part as data, so
  # new densities of the same number reuse the compiled ranking.
  pruned = [jnp.asarray(p, jnp.int32) for p in pruned]
  _check_scores(spec, weights, key)
  flat_masks = _flat_masks(weights, pruned, key if spec.needs_key else None, spec.scores,
                           spec.scope)

  out = [None] * len(leaves)
  for i, keep in zip(indices, flat_masks):
    out[i] = keep.reshape((len(densities), *jnp.shape(leaves[i])))
  return jax.tree_util.tree_unflatten(treedef, out)


def _check_scores(spec: registry.PruningMethod, weights, key) -> None:
  """ConfigError naming the method unless it gives one score per weight (traced abstractly:
  shapes only, no computation), so a user's method fails in one line, before any work."""
  try:
    scores = jax.eval_shape(spec.scores, weights, key if spec.needs_key else None)
  except Exception as error:  # pylint: disable=broad-except  # A user's method: any bug.
    raise config_lib.ConfigError(
        f'pruning method {spec.name!r} failed: {runtime.one_line(error)}') from error
  sizes = [int(w.size) for w in weights]
  got = ([int(np.prod(getattr(s, 'shape', ()))) for s in scores]
         if isinstance(scores, (list, tuple)) else type(scores).__name__)
  if got != sizes:
    raise config_lib.ConfigError(
        f'pruning method {spec.name!r} returned {got} scores for layers of {sizes} weights; '
        'it must return one score array per layer, one score per weight')


def _is_none(x) -> bool:
  return x is None


def apply_mask(params, mask):
  """Zeros the pruned weights: `params * mask` leafwise.

  Args:
    params: params pytree; any leading axes (e.g. a member axis) broadcast against the mask's.
    mask: pytree with the structure of `params`, a bool (or 0/1) array per pruned leaf and None
      for leaves that are never pruned. Under `jax.vmap` both may carry a leading member axis.

  Returns:
    A pytree like `params`: masked leaves are `param * mask` with the mask cast to the param's
    dtype; leaves whose mask is None are returned as they are.
  """
  return jax.tree_util.tree_map(
      lambda m, p: p if m is None else p * jnp.asarray(m).astype(jnp.asarray(p).dtype),
      mask, params, is_leaf=_is_none)


def mask_select(masks, index):
  """The mask for one density: `masks` leaves have shape (D, *S) -> (*S); None stays None."""
  return jax.tree_util.tree_map(lambda m: m[index], masks)


def flatten_mask(mask) -> dict[str, Any]:
  """{'conv0/kernel': array, ...} for the non-None leaves of `mask` (orbax can't save None)."""
  return {_path_name(path): leaf
          for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]}


def unflatten_mask(flat: Mapping[str, Any], prunable):
  """Inverse of `flatten_mask`: a mask shaped like `prunable`, None where it is False.

  Raises:
    ValueError: if `flat` misses a prunable leaf or has names that are not prunable leaves.
  """
  wanted = {_path_name(path) for path, flag in jax.tree_util.tree_flatten_with_path(prunable)[0]
            if bool(flag)}
  missing = sorted(wanted - set(flat))
  extra = sorted(set(flat) - wanted)
  if missing or extra:
    raise ValueError(f'flat mask does not match prunable: missing {missing}, unexpected {extra}')
  return jax.tree_util.tree_map_with_path(
      lambda path, flag: flat[_path_name(path)] if bool(flag) else None, prunable)


def kept_counts(mask) -> dict[str, tuple[int, int]]:
  """{'conv0/kernel': (kept, total), ...} per pruned leaf of one mask (no density axis)."""
  return {name: (int(np.count_nonzero(np.asarray(leaf))), int(np.size(leaf)))
          for name, leaf in flatten_mask(mask).items()}


def density(mask) -> float:
  """Fraction of the prunable weights that one mask (no density axis) keeps.

  Raises:
    ValueError: if the mask has no prunable (non-None) leaves.
  """
  counts = kept_counts(mask).values()
  total = sum(t for _, t in counts)
  if not total:
    raise ValueError('mask has no prunable leaves (all None or empty)')
  return sum(k for k, _ in counts) / total
