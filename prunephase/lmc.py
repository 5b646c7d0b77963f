"""Loss-landscape measurements: BatchNorm recalibration, linear interpolation and LMC.

Definitions follow the paper's code (docs/definitions.md): the path between two retrained models
is the straight line w(t) = (1 - t) w_a + t w_b over ALL parameters (kernels, biases, BN scale
and shift); BatchNorm running statistics are not interpolated but recomputed at every point
from one in-order pass over the un-augmented train set; the curve is the eval-mode train error
at K points (default 11, t = 0 and 1 included), and the scalar LMC is the signed max-deviation
statistic `m - e[k]` with m the mean of the endpoint errors and k = argmax_t |m - e[t]|.
"""

from collections.abc import Callable
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from prunephase import data as data_lib
from prunephase import models
from prunephase import population
from prunephase import train_steps as train_lib
from prunephase.config import names

POINT_BATCHING = names.POINT_BATCHING


def recalibrate_batch_stats(model: nn.Module, params, batch_stats, dataset: data_lib.Dataset,
                            batch_size: int = 64):
  """Recomputes BatchNorm statistics of ONE model from scratch.

  One in-order pass over the un-augmented train set in batches of `batch_size` (the last one
  may be smaller), in training mode, so each layer sees inputs normalised with the current
  batch's statistics, as PyTorch does. The result is the batch-size-weighted average of the
  per-batch means and unbiased variances: PyTorch's running statistics after a reset with
  momentum b / (n_seen + b) for each batch (the paper's `update_bn`), i.e. the exact average.

  Args:
    model: the Flax module.
    params: its parameters.
    batch_stats: a statistics tree of the right structure (values are ignored).
    dataset: supplies `x_train`.
    batch_size: recalibration batch size (the paper: 64).

  Returns:
    The recalibrated batch_stats tree (the empty one of a model without BatchNorm, at once).
  """
  if not jax.tree.leaves(batch_stats):
    return batch_stats  # No BatchNorm: nothing to recalibrate, skip the pass over the data.
  one_batch_model = models.with_bn_momentum(model, 1.0)  # Stored stats = this batch's stats.

  def weighted_stats(batch):
    inputs = data_lib.prepare_inputs(dataset, batch)
    _, updated = one_batch_model.apply({'params': params, 'batch_stats': batch_stats}, inputs,
                                       train=True, mutable=['batch_stats'])
    # batched_apply concatenates along axis 0: give every leaf a leading axis of 1.
    return jax.tree.map(lambda s: (s * batch.shape[0])[None], updated['batch_stats'])

  per_batch = train_lib.batched_apply(weighted_stats, dataset.x_train, batch_size)
  return jax.tree.map(lambda s: s.sum(0) / dataset.num_train, per_batch)


def interpolate(params_a, params_b, t: jax.Array):
  """(1 - t) * a + t * b for every leaf; t is a scalar in [0, 1]."""
  return jax.tree.map(lambda a, b: (1.0 - t) * a + t * b, params_a, params_b)


def path_point(model: nn.Module, params_a, params_b, batch_stats, dataset: data_lib.Dataset,
               t: jax.Array, bn_batch_size: int = 64,
               with_test: bool = True) -> dict[str, jax.Array]:
  """Metrics at one point t of the straight path, BatchNorm recalibrated there.

  Returns scalars 'train_error', 'train_loss', 'train_mistakes' (eval mode, whole un-augmented
  train set) and, with `with_test`, 'test_error', 'test_loss' and 'test_mistakes'.
  """
  return recalibrated_metrics(model, interpolate(params_a, params_b, t), batch_stats, dataset,
                              bn_batch_size, with_test)


def recalibrated_metrics(model: nn.Module, params, batch_stats, dataset: data_lib.Dataset,
                         bn_batch_size: int = 64, with_test: bool = True) -> dict[str, jax.Array]:
  """Eval-mode metrics of ONE set of weights after recalibrating its BatchNorm statistics.

  The evaluation of every point of a path (straight here, Bezier in `curves.py`): 'train_*' and,
  with `with_test`, 'test_*' scalars of `train.evaluate` ('error', 'loss', 'mistakes').
  """
  stats = recalibrate_batch_stats(model, params, batch_stats, dataset, bn_batch_size)
  metrics = {f'train_{k}': v
             for k, v in train_lib.evaluate(model, params, stats, dataset, 'train').items()}
  if with_test:
    metrics.update({f'test_{k}': v
                    for k, v in train_lib.evaluate(model, params, stats, dataset, 'test').items()})
  return metrics


def lmc_curve(model: nn.Module, params_a, params_b, batch_stats, dataset: data_lib.Dataset,
              num_points: int = 11, bn_batch_size: int = 64, point_batching: str = 'vmap',
              with_test: bool = True) -> dict[str, jax.Array]:
  """Metrics at `num_points` evenly spaced points t in [0, 1] between two models.

  Args:
    model, params_a, params_b, batch_stats, dataset, bn_batch_size, with_test: see
      `path_point`.
    num_points: K, points on the path including both ends (the paper: 11).
    point_batching: 'vmap' evaluates the K points as one vectorised program (for
      accelerators); 'map' evaluates them one after another inside one program (`lax.map`;
      faster on CPU, where vmap of convolutions lowers to slow grouped convolutions); 'auto'
      picks 'map' on CPU and 'vmap' elsewhere.

  Returns:
    Dict of (K,) arrays: 't' and the metrics of `path_point`.
  """
  if num_points < 2:
    raise ValueError(f'an LMC curve needs at least 2 points, got {num_points}')
  point_batching = resolve_point_batching(point_batching)
  ts = jnp.linspace(0.0, 1.0, num_points)
  at = functools.partial(path_point, model, params_a, params_b, batch_stats, dataset,
                         bn_batch_size=bn_batch_size, with_test=with_test)
  curve = jax.vmap(at)(ts) if point_batching == 'vmap' else jax.lax.map(at, ts)
  return {'t': ts, **curve}


def resolve_point_batching(point_batching: str) -> str:
  """'auto' -> 'map' on CPU (measured faster there: benchmarks/population.py), else 'vmap'."""
  if point_batching not in POINT_BATCHING:
    raise ValueError(f'unknown point_batching {point_batching!r}; choose one of {POINT_BATCHING}')
  if point_batching == 'auto':
    return 'map' if jax.default_backend() == 'cpu' else 'vmap'
  return point_batching


def lmc_statistic(mistakes: jax.Array, num_examples: int) -> tuple[jax.Array, jax.Array]:
  """The paper's signed LMC statistic of a curve, computed exactly from integer counts.

  With errors e[t] = mistakes[t] / n: m = (e[0] + e[K-1]) / 2; k = argmax_t |m - e[t]| (the
  first index on ties); LMC = m - e[k]. Negative: a barrier (interior worse than the ends);
  about 0: linearly connected; positive: the interior is better than the ends. The argmax runs
  on the integers |c[0] + c[K-1] - 2 c[t]|, so ties are exact (float errors such as
  0.011000001 would break them and could flip the sign of a near-zero LMC); only the final
  division rounds.

  Args:
    mistakes: (..., K) integer misclassification counts along the path.
    num_examples: n, the examples each count is out of.

  Returns:
    (lmc, k): the statistic as a float32 fraction and the int32 index, each of shape (...).
  """
  mistakes = jnp.asarray(mistakes)
  if not jnp.issubdtype(mistakes.dtype, jnp.integer):
    raise TypeError(f'lmc_statistic needs integer mistake counts, got {mistakes.dtype}')
  mistakes = mistakes.astype(jnp.int32)
  twice_deviation = mistakes[..., :1] + mistakes[..., -1:] - 2 * mistakes  # 2 n (m - e[t]).
  k = jnp.argmax(jnp.abs(twice_deviation), axis=-1)
  picked = jnp.take_along_axis(twice_deviation, k[..., None], axis=-1)[..., 0]
  return picked.astype(jnp.float32) / (2 * num_examples), k


def make_pair_measurer(model: nn.Module, num_points: int, bn_batch_size: int,
                       point_batching: str, with_test: bool, pairs_per_chunk: int | None = None,
                       devices: int = 1) -> Callable[..., dict[str, jax.Array]]:
  """A jitted function measuring LMC curves for P pairs in one call.

  The returned function takes (params_a, params_b, batch_stats, dataset) with a leading pair
  axis P on the first three and returns (P, K) curves plus 'lmc' and 'lmc_index' of shape (P,),
  the statistic computed exactly from the train misclassification counts. Pairs are vmapped
  all at once, or `pairs_per_chunk` per device at a time with P sharded in blocks over
  `devices` (`population.sequential_chunks`).
  """
  def one_pair(params_a, params_b, batch_stats, dataset):
    curve = lmc_curve(model, params_a, params_b, batch_stats, dataset, num_points,
                      bn_batch_size, point_batching, with_test)
    curve['lmc'], curve['lmc_index'] = lmc_statistic(curve['train_mistakes'],
                                                     dataset.num_train)
    return curve

  in_axes = (0, 0, 0, None)
  return jax.jit(population.sequential_chunks(jax.vmap(one_pair, in_axes=in_axes), in_axes,
                                              pairs_per_chunk, devices))
