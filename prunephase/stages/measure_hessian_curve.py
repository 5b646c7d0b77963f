"""The measure stage's optional landscape steps, each over one temperature's population:

  hessian  top eigenvalue and trace of the train loss (`hessian.py`, PyHessian's definitions) of
           every retrained member (its own mask) and of every dense model, vmapped over members
  curve    a trained quadratic Bezier curve between the two members of every seed pair
           (`curves.py`, Garipov et al.'s construction), vmapped over pairs; its barrier `curve_mc`
           is the LMC statistic of the curve

Both follow `measure.pairs_per_call` (chunks of pairs; twice as many members for the Hessian) to
bound device memory, shard each chunk over the mesh's member axis, and are deterministic: keys
come from the member or pair index.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prunephase import curves
from prunephase import hessian
from prunephase import population
from prunephase.stages import context
from prunephase.stages import retrain as retrain_stage

HESSIAN_SEED, CURVE_SEED = 17, 23  # Fixed: probes and data orders are part of the definition.


@functools.lru_cache(maxsize=4)
def _population_hessian(model, num_iters: int, num_probes: int, masked: bool):
  return hessian.make_population_hessian(model, num_iters, num_probes, masked)


def _chunked(sweep: context.Sweep, fn, count: int, size: int, *trees) -> dict[str, np.ndarray]:
  """fn over leading-axis chunks of `size` of every argument, each chunk sharded over the
  mesh's member axis (`population.shard_members`); results gathered on the host."""
  pieces = []
  for start in range(0, count, size):
    part = slice(start, start + size)
    args, real = population.shard_members(
        sweep.mesh, [jax.tree.map(lambda x, p=part: x[p], a) for a in trees])
    pieces.append({k: population.to_host(v)[:real] for k, v in fn(*args).items()})
  return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def hessian_step(sweep: context.Sweep, temperature: float, states, dataset
                 ) -> dict[str, np.ndarray]:
  """(M,) 'top_eigenvalue', 'trace', 'trace_stderr' of the retrained members and (S,)
  'dense_top_eigenvalue', 'dense_trace' of the dense models, on the first
  `measure.hessian_batches` train batches of `measure.bn_batch_size` examples."""
  config = sweep.config.measure
  x, y = population.replicate(sweep.mesh, hessian.train_batches(
      sweep.dataset, int(config.hessian_batches), int(config.bn_batch_size)))
  iters, probes = int(config.hessian_iters), int(config.hessian_probes)
  masks = retrain_stage.member_masks(sweep, temperature)
  count = len(sweep.store.retrain_members())
  size = 2 * int(config.pairs_per_call) or count
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(HESSIAN_SEED), i))(
      jnp.arange(count))
  masked_fn = _population_hessian(sweep.model, iters, probes, True)
  members = _chunked(sweep, lambda p, s, m, k: masked_fn(p, s, m, x, y, k), count, size,
                     states.params, states.batch_stats, masks, keys)
  dense = sweep.store.dense_models(temperature)
  dense_fn = _population_hessian(sweep.model, iters, probes, False)
  num_s = len(sweep.dense_seeds)
  dense_metrics = _chunked(sweep, lambda p, s, k: dense_fn(p, s, None, x, y, k), num_s, num_s,
                           dense['params'], dense['batch_stats'], keys[:num_s])
  return {**members, 'dense_top_eigenvalue': dense_metrics['top_eigenvalue'],
          'dense_trace': dense_metrics['trace']}


def curve_spec(config) -> curves.CurveSpec:
  """The Bezier-curve settings of a sweep config (training as the retrain section, constant
  `measure.curve_lr`)."""
  measure, retrain = config.measure, config.retrain
  return curves.CurveSpec(
      epochs=int(measure.curve_epochs), lr=float(measure.curve_lr),
      batch_size=int(retrain.batch_size), momentum=float(retrain.momentum),
      weight_decay=float(retrain.weight_decay), num_points=int(measure.curve_points),
      bn_batch_size=int(measure.bn_batch_size), point_batching=measure.point_batching,
      with_test=bool(measure.lmc_test), augmentation=retrain.augmentation)


@functools.lru_cache(maxsize=4)
def _pair_connector(model, spec: curves.CurveSpec):
  return curves.make_pair_connector(model, spec, masked=True)


def curve_step(sweep: context.Sweep, temperature: float, states, index_a: np.ndarray,
               index_b: np.ndarray, dataset) -> dict[str, np.ndarray]:
  """(P,) 'mc', 'mc_index' and (P, K) curves ('t', 'train_error', ...) of every pair's trained
  Bezier curve, plus (P, epochs) 'bend_loss'. Both members of a pair share one mask."""
  spec = curve_spec(sweep.config)
  connect = _pair_connector(sweep.model, spec)
  masks = retrain_stage.member_masks(sweep, temperature)
  take = lambda idx: (lambda x: x[idx])
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(CURVE_SEED), i))(
      jnp.arange(len(index_a)))
  size = int(sweep.config.measure.pairs_per_call) or len(index_a)

  def one_chunk(params_a, params_b, stats_a, pair_masks, pair_keys):
    _, metrics = connect(params_a, params_b, stats_a, pair_masks, pair_keys, dataset)
    return metrics

  return _chunked(sweep, one_chunk, len(index_a), size, jax.tree.map(take(index_a), states.params),
                  jax.tree.map(take(index_b), states.params),
                  jax.tree.map(take(index_a), states.batch_stats),
                  jax.tree.map(take(index_a), masks), keys)


def pair_columns(pairs: list[dict[str, Any]], sweep: context.Sweep,
                 hessian_metrics: dict[str, np.ndarray] | None,
                 curve_metrics: dict[str, np.ndarray] | None) -> list[dict[str, Any]]:
  """The per-pair values these steps add to a measurement's pair rows (same order as pairs)."""
  out = []
  for p, pair in enumerate(pairs):
    row = {}
    if hessian_metrics is not None:
      a, b = pair['index_a'], pair['index_b']
      s = sweep.dense_seeds.index(pair['dense_seed'])
      row.update({
          'hessian_top_eigenvalue_a': float(hessian_metrics['top_eigenvalue'][a]),
          'hessian_top_eigenvalue_b': float(hessian_metrics['top_eigenvalue'][b]),
          'hessian_trace_a': float(hessian_metrics['trace'][a]),
          'hessian_trace_b': float(hessian_metrics['trace'][b]),
          'dense_hessian_top_eigenvalue': float(hessian_metrics['dense_top_eigenvalue'][s]),
          'dense_hessian_trace': float(hessian_metrics['dense_trace'][s])})
    if curve_metrics is not None:
      row.update({'curve_mc': float(curve_metrics['mc'][p]),
                  'curve_mc_index': int(curve_metrics['mc_index'][p]),
                  'bezier': {k: v[p] for k, v in curve_metrics.items()
                             if k not in ('mc', 'mc_index')}})
    out.append(row)
  return out
