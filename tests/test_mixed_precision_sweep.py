"""`model.mixed_precision` through the sweep: the model the sweep trains multiplies in bfloat16,
what it stores (parameters, BatchNorm statistics) is float32, and LMC and CKA stay near the
float32 run's.

`tests/test_models.py` checks the dtypes of a model built by hand; here the model is the one a
sweep of the config builds (`Sweep.model`, from `artifacts.Store.model`) and the checkpoints are
the ones its stages wrote, read back through `prunephase.load_run`. The default tier traces the
model of a sweep opened by `run_sweep` (no stage run: about a second, nothing compiled); the
every-stage run, its stored models and its comparison with the float32 tiny run
(`finished_run`) are in the slow tier (about 30 s of CPU, mostly compiling for bf16).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import prunephase
from conftest import matmul_dtypes  # pylint: disable=g-bad-import-order
from conftest import tiny_config  # pylint: disable=g-bad-import-order
from prunephase import models
from prunephase import sweep as sweep_lib
from prunephase import train_steps as train_lib

# Largest |bf16 - f32| over results.csv's rows (same temperature, density and seed pair) of the
# tiny grid. Measured (XLA:CPU, jax of this checkout): LMC max 0.041 (mean 0.023), CKA of
# softmax outputs max 0.016, of logits max 0.006 (test error max 0.025). bfloat16 rounding
# changes every step from the first one, so the two runs' members follow different
# trajectories: the differences are of the size of the seed-to-seed spread within a cell of
# the f32 run (LMC std up to 0.018, CKA-softmax std up to 0.011), on models near chance after
# 2 epochs (test error about 0.8, |LMC| <= 0.02). The tolerances leave 2.5-3x room over the
# measured maxima for other jax versions and backends: they bound how far bf16 may move the
# measurements, a loose sanity bound on this grid. NaNs or diverged members fail the checks
# before them; which dtypes are used is for the dtype assertions.
LMC_TOLERANCE = 0.1
CKA_TOLERANCE = 0.05


def mixed_config():
  """The tiny grid (`conftest.tiny_config`) with bf16 compute."""
  config = tiny_config()
  config.model.mixed_precision = True
  return config


def bf16_split(dtypes) -> tuple[int, int]:
  """(matmuls with two bfloat16 operands, matmuls with two float32 operands); anything else (a
  mixed pair) fails the test: the model casts both operands of a layer alike."""
  bf16 = sum(d == ('bfloat16', 'bfloat16') for d in dtypes)
  f32 = sum(d == ('float32', 'float32') for d in dtypes)
  assert bf16 + f32 == len(dtypes), dtypes
  return bf16, f32


def assert_computes_in_bfloat16(model, member, x, y, num_layers: int) -> None:
  """The sweep's own SGD step of `model` (`train.train_step`, as the train and retrain stages
  vmap it) and its eval-mode forward (measure, analysis) multiply in bfloat16 in every hidden
  layer; only the classifier head is float32, by design (logits and loss stay float32).

  Counts, not just presence: the eval forward has one matmul per hidden layer and one for the
  head; the step adds the backward pass, at least a kernel gradient per hidden layer and the
  head's kernel and input gradients (3 head matmuls in all). Nothing is computed: arrays or
  `jax.ShapeDtypeStruct`s are only traced.
  """
  spec = train_lib.TrainSpec(batch_size=x.shape[0], steps_per_epoch=1)
  hparams = train_lib.Hparams(lr=jnp.float32(0.1), weight_decay=jnp.float32(1e-4),
                              sam_rho=jnp.float32(0.05))
  state = train_lib.member_state(member['params'], member['batch_stats'], train_lib.data_key(1))
  step = lambda s, x, y: train_lib.train_step(model, spec, s, hparams, None, x, y)
  bf16, f32 = bf16_split(matmul_dtypes(step, state, x, y))
  assert bf16 >= 2 * num_layers and f32 == 3, (bf16, f32)
  variables = {'params': member['params'], 'batch_stats': member['batch_stats']}
  forward = matmul_dtypes(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert forward == [('bfloat16', 'bfloat16')] * num_layers + [('float32', 'float32')], forward
  logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert logits.dtype == jnp.float32


def assert_float32_with_float32_precision(tree, name: str) -> None:
  """Every leaf float32, and the tree holds values a bf16 store could not: state kept or
  updated in bf16 and cast back at saving time would be exactly bf16-representable. Zeros
  (pruned weights) are left out: every format holds them."""
  leaves = jax.tree.leaves(tree)
  assert leaves and all(leaf.dtype == jnp.float32 for leaf in leaves), jax.tree.map(
      lambda a: a.dtype, tree)
  values = np.concatenate([np.ravel(np.asarray(leaf)) for leaf in leaves])
  assert np.all(np.isfinite(values)), name
  values = values[values != 0]
  rounded = values.astype(jnp.bfloat16).astype(np.float32)
  assert values.size and np.mean(values != rounded) > 0.5, f'{name}: rounded to bfloat16?'


# ----------------------------------------------------------------------------- default tier


@pytest.fixture(scope='module')
def mixed_sweep(tmp_path_factory):
  """The Sweep of the mixed-precision tiny grid as `run_sweep` opens it (config validated,
  dataset loaded, model checked, workdir written), no stage run: what its stages would train.
  Training it costs compilation (about 7 s of CPU for the train stage alone), so what a
  training run stores is checked in the slow tier."""
  sweep, _ = sweep_lib.run_sweep(mixed_config(), tmp_path_factory.mktemp('mixed-open') / 'run',
                                 stages=())
  return sweep


def abstract_member(model, input_shape):
  """A member's {'params', 'batch_stats'} as shapes and dtypes (no computation)."""
  params, stats = jax.eval_shape(
      lambda: models.init_variables(model, jax.random.PRNGKey(0), input_shape))
  return {'params': params, 'batch_stats': stats}


def test_the_sweeps_model_computes_in_bfloat16(mixed_sweep):
  sweep = mixed_sweep
  shape, num_layers = tuple(sweep.dataset.input_shape), len(sweep.config.model.widths)
  x = jax.ShapeDtypeStruct((8, *shape), jnp.float32)
  y = jax.ShapeDtypeStruct((8,), jnp.int32)
  member = abstract_member(sweep.model, shape)
  assert_computes_in_bfloat16(sweep.model, member, x, y, num_layers)
  # Its variables are created float32: what the stages update and store.
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(member))
  # The model that analysis restores for this workdir is built the same way.
  run = prunephase.load_run(str(sweep.path))
  assert run.model.dtype == jnp.bfloat16
  # The assertion tells the two apart: the float32 model of the same config (what a sweep that
  # dropped the flag would train) fails it, with no bf16 matmul at all.
  float32_model = models.make_model(sweep.config.model, sweep.dataset.num_classes)
  with pytest.raises(AssertionError):
    assert_computes_in_bfloat16(float32_model, member, x, y, num_layers)
  bf16, _ = bf16_split(matmul_dtypes(lambda v, x: float32_model.apply(v, x, train=False),
                                     member, x))
  assert bf16 == 0


# ----------------------------------------------------------------------------- slow tier


@pytest.fixture(scope='module')
def mixed_run(tmp_path_factory):
  """(workdir, sweep, summary) of the tiny grid in mixed precision, every stage."""
  path = tmp_path_factory.mktemp('mixed') / 'run'
  sweep, summary = sweep_lib.run_sweep(mixed_config(), path)
  return path, sweep, summary


@pytest.mark.slow  # About 30 s of CPU: the tiny sweep again, every program compiled for bf16.
def test_mixed_precision_sweep_runs_every_stage_near_the_float32_run(mixed_run, finished_run):
  path, sweep, summary = mixed_run
  f32_path, _, f32_summary = finished_run
  assert set(sweep.timings) == set(sweep_lib.STAGES)
  assert summary['num_rows'] == f32_summary['num_rows'] == 12
  run = prunephase.load_run(str(path))
  # Every stored model: parameters and BatchNorm statistics float32 (the retrained ones after
  # masked bf16 training, the dense ones after dense bf16 training).
  for member in run.members():
    model = run.retrained(**member)
    assert_float32_with_float32_precision(model['params'], f'retrained {member} params')
    assert_float32_with_float32_precision(model['batch_stats'], f'retrained {member} stats')
  for temperature in run.temperatures:
    model = run.dense(temperature, dense_seed=1)
    assert_float32_with_float32_precision(model, f'dense {temperature}')
    # The statistics were updated by training (not left at their initial 0 and 1).
    stats = model['batch_stats']['bn1']
    assert np.any(np.asarray(stats['mean']) != 0) and np.any(np.asarray(stats['var']) != 1)
  x, y = sweep.dataset.x_train[:8], sweep.dataset.y_train[:8]
  assert_computes_in_bfloat16(sweep.model, run.dense(1, 1), x, y,
                              len(sweep.config.model.widths))

  mixed, full = run.results, prunephase.load_run(str(f32_path)).results
  keys = ['temperature', 'density', 'dense_seed', 'seed_a', 'seed_b']
  pd.testing.assert_frame_equal(mixed[keys], full[keys])
  assert not mixed.diverged.any()
  for column in ('lmc', 'cka_softmax', 'cka_logits', 'test_error', 'train_error'):
    assert np.all(np.isfinite(mixed[column])), column
  lmc = np.abs(mixed.lmc - full.lmc)
  cka = np.abs(mixed[['cka_softmax', 'cka_logits']] - full[['cka_softmax', 'cka_logits']])
  assert lmc.max() <= LMC_TOLERANCE, lmc.tolist()
  assert cka.max().max() <= CKA_TOLERANCE, cka.to_dict('list')
  # The sweep really trained in bf16: a float32 run would have reproduced the f32 run exactly
  # (the sweep is deterministic, `test_sweep.py`'s rerun test).
  assert lmc.max() > 0 and cka.max().max() > 0
