"""Stage 4, measure: test error, the LMC curve (BatchNorm recalibrated at every point) and the
CKA of the outputs for every retrain-seed pair of every cell, pairs sharded over the mesh's
member axis (`population.shard_members`); with `measure.hessian` and
`measure.bezier_curve`, also the Hessian metrics and trained Bezier curves
(`measure_hessian_curve`); and every metric entry with a compute function (`prunephase.metrics`,
`measure_metrics`). The built-in entries (errors, lmc, cka, hessian, bezier_curve) are measured
here, their columns and switches declared in `prunephase.metrics`."""

import functools

import jax
import numpy as np

from prunephase import cka as cka_lib
from prunephase import lmc
from prunephase import metrics
from prunephase import population
from prunephase import progress as progress_lib
from prunephase import train_steps as train_lib
from prunephase.stages import context
from prunephase.stages import measure_hessian_curve
from prunephase.stages import measure_metrics


@functools.lru_cache(maxsize=4)
def _cka_outputs_fn(model, num_examples: int, members_per_chunk: int | None):
  def logits(params, stats, dataset):
    return train_lib.predict(model, params, stats, dataset, dataset.x_train[:num_examples])
  return jax.jit(population.vmap_members(logits, (0, 0, None), members_per_chunk))


def warn_diverged(sweep: context.Sweep, stage: str, temperature: float, members: np.ndarray,
                  dense: np.ndarray) -> None:
  """One warning line naming diverged retrained members and dense models (process 0 only)."""
  if not sweep.is_primary or not (members.any() or dense.any()):
    return
  chance = 1.0 - 1.0 / sweep.dataset.num_classes
  seeds = [s for s, bad in zip(sweep.dense_seeds, dense) if bad]
  print(f'[{stage}] warning: {sweep.key(temperature)}: {int(members.sum())} of {members.size} '
        f'retrained members and dense seeds {seeds or "none"} diverged (non-finite loss, or at '
        f'chance: test error within {train_lib.CHANCE_MARGIN:g} of {chance:.3f}); their cells stay '
        'unlabelled (results.csv column diverged)', flush=True)


def run(sweep: context.Sweep) -> None:
  """Test error, LMC curve, CKA and the other measured metrics for every retrain-seed pair of
  every cell."""
  config, store = sweep.config.measure, sweep.store
  progress = progress_lib.Progress('measure', len(sweep.temperatures))
  chunk = population.forward_members_per_chunk(sweep.members_per_chunk)
  measure_pairs = lmc.make_pair_measurer(sweep.model, config.lmc_points,
                                         config.bn_batch_size, config.point_batching,
                                         config.lmc_test, chunk,
                                         population.member_devices(sweep.mesh))
  estimator = config.cka_estimator
  pair_cka = jax.jit(jax.vmap(functools.partial(cka_lib.output_cka, estimator=estimator)))
  pairs = store.pair_indices()
  index_a = np.array([p['index_a'] for p in pairs])
  index_b = np.array([p['index_b'] for p in pairs])
  size = int(config.pairs_per_call) or len(pairs)  # Chunks of pairs bound the device memory.
  num_cka = min(config.cka_examples, sweep.dataset.num_train)
  dataset = population.replicate(sweep.mesh, sweep.dataset)  # Pairs are sharded over the mesh.
  for temperature in sweep.temperatures:
    context.sync(f'measure {temperature}')
    if store.has_measurement(temperature):
      progress.skip(1, f'{sweep.key(temperature)} done earlier')
      continue
    states, history = store.retrained(temperature)
    test_error = np.asarray(history['test_error'])[:, -config.test_error_epochs:].mean(axis=1)
    member_diverged = train_lib.diverged(history['loss'], np.asarray(history['test_error'])[:, -1],
                                         sweep.dataset.num_classes)
    dense_errors = store.masks(temperature, unflatten=False)['dense_test_error']
    dense_diverged = train_lib.diverged(np.zeros((len(sweep.dense_seeds), 0)), dense_errors,
                                        sweep.dataset.num_classes)
    warn_diverged(sweep, 'measure', temperature, member_diverged, dense_diverged)
    logits = _cka_outputs_fn(sweep.model, num_cka, chunk)(states.params, states.batch_stats,
                                                          sweep.dataset)
    chunks = []
    for start in range(0, len(pairs), size):
      a, b = index_a[start:start + size], index_b[start:start + size]
      take = lambda idx: (lambda x: x[idx])
      inputs, count = population.shard_members(sweep.mesh, (
          jax.tree.map(take(a), states.params), jax.tree.map(take(b), states.params),
          jax.tree.map(take(a), states.batch_stats), logits[a], logits[b]))
      params_a, params_b, stats_a, logits_a, logits_b = inputs
      measured = measure_pairs(params_a, params_b, stats_a, dataset)
      measured.update(pair_cka(logits_a, logits_b))
      chunks.append({k: population.to_host(v)[:count] for k, v in measured.items()})
    curve = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    cka = {k: curve.pop(k) for k in ('cka_softmax', 'cka_logits')}
    extras = measure_hessian_curve.pair_columns(
        pairs, sweep,
        measure_hessian_curve.hessian_step(sweep, temperature, states, dataset)
        if metrics.metric('hessian').enabled(config) else None,
        measure_hessian_curve.curve_step(sweep, temperature, states, index_a, index_b, dataset)
        if metrics.metric('bezier_curve').enabled(config) else None)
    computed = measure_metrics.pair_columns(sweep, states, pairs)
    rows = []
    for p, pair in enumerate(pairs):
      a, b = pair['index_a'], pair['index_b']
      rows.append({
          'temperature': temperature, 'dense_seed': pair['dense_seed'],
          'density': pair['density'], 'seed_a': pair['seed_a'], 'seed_b': pair['seed_b'],
          'test_error_a': float(test_error[a]), 'test_error_b': float(test_error[b]),
          'lmc': float(curve['lmc'][p]), 'lmc_index': int(curve['lmc_index'][p]),
          'cka_softmax': float(cka['cka_softmax'][p]),
          'cka_logits': float(cka['cka_logits'][p]),
          'diverged': bool(member_diverged[a] or member_diverged[b] or dense_diverged[
              sweep.dense_seeds.index(pair['dense_seed'])]),
          'curve': {k: curve[k][p] for k in curve if k not in ('lmc', 'lmc_index')},
          **extras[p], **computed[p]})
    if sweep.is_primary:
      store.write_measurement(temperature, {
          'temperature': temperature, 'knob': sweep.knob, 'cka_examples': num_cka,
          'cka_estimator': estimator, 'pairs': rows})
    progress.advance(1, f'{sweep.key(temperature)} {len(pairs)} pairs', force=True)
