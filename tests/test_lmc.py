"""Tests for prunephase.lmc: BN recalibration, interpolation, LMC curves and statistic."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_trees_close  # pylint: disable=g-bad-import-order
from prunephase import data
from prunephase import lmc
from prunephase import models
from prunephase import train_steps

INPUT_SHAPE = (40, 1)
MLP = models.MLP(10, (16, 12))
EPS = 1e-5


def random_dataset(num_train=20, num_test=12, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_train + num_test, *INPUT_SHAPE)).astype(np.float32)
  y = np.argmax(x[:, :10, 0] + rng.normal(size=(len(x), 10)), axis=1).astype(np.int32)
  return data.Dataset(
      x_train=jnp.asarray(x[:num_train]), y_train=jnp.asarray(y[:num_train]),
      x_test=jnp.asarray(x[num_train:]), y_test=jnp.asarray(y[num_train:]),
      mean=jnp.zeros(1), std=jnp.ones(1), name='t', num_classes=10)


def numpy_variables(model, seed):
  """(params, batch_stats) drawn with NumPy; BN scale and shift far from the identity."""
  param_shapes, stat_shapes = jax.eval_shape(
      functools.partial(models.init_variables, model, input_shape=INPUT_SHAPE),
      jax.random.PRNGKey(0))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      values = rng.normal(size=leaf.shape) * np.sqrt(2.0 / leaf.shape[0])
    elif name == 'scale':
      values = rng.uniform(0.5, 1.5, size=leaf.shape)
    else:
      values = 0.3 * rng.normal(size=leaf.shape)
    return jnp.asarray(values, jnp.float32)

  params = jax.tree_util.tree_map_with_path(draw, param_shapes)
  # Stored statistics that recalibration must ignore.
  stats = jax.tree.map(lambda s: jnp.full(s.shape, 7.0, jnp.float32), stat_shapes)
  return params, stats


def numpy_recalibration(params, x, batch_size):
  """Reference for MLP(widths=(16, 12)): torch's cumulative-average BN statistics.

  Each batch runs in training mode (layer inputs normalised with that batch's mean and biased
  variance); the result averages per-batch means and UNBIASED variances weighted by batch size.
  """
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  sums = {f'bn{i}': {'mean': 0.0, 'var': 0.0} for i in range(2)}
  for start in range(0, len(x), batch_size):
    h = x[start:start + batch_size]
    for i in range(2):
      z = h @ p[f'dense{i}']['kernel']
      mean, biased = z.mean(0), z.var(0)
      sums[f'bn{i}']['mean'] = sums[f'bn{i}']['mean'] + len(h) * mean
      sums[f'bn{i}']['var'] = sums[f'bn{i}']['var'] + len(h) * z.var(0, ddof=1)
      bn = p[f'bn{i}']
      h = np.maximum((z - mean) / np.sqrt(biased + EPS) * bn['scale'] + bn['bias'], 0.0)
  return jax.tree.map(lambda s: s / len(x), sums)


@functools.cache
def recalibrate_fn(batch_size):
  return jax.jit(functools.partial(lmc.recalibrate_batch_stats, MLP,
                                   batch_size=batch_size))


@functools.cache
def curve_fn(num_points, point_batching):
  return jax.jit(functools.partial(lmc.lmc_curve, MLP, num_points=num_points,
                                   bn_batch_size=8, point_batching=point_batching))


# ------------------------------------------------------------------------- BN recalibration


def test_recalibration_with_one_batch_gives_exact_statistics():
  dataset = random_dataset()
  params, stats = numpy_variables(MLP, 0)
  got = recalibrate_fn(dataset.num_train)(params, stats, dataset)
  # First BN layer: the input is x @ W of the first dense layer; exact mean, unbiased var.
  z = np.asarray(dataset.x_train, np.float64).reshape(20, -1) @ np.asarray(
      params['dense0']['kernel'], np.float64)
  np.testing.assert_allclose(got['bn0']['mean'], z.mean(0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got['bn0']['var'], z.var(0, ddof=1), rtol=1e-5, atol=1e-5)
  assert not np.allclose(got['bn0']['var'], z.var(0), rtol=1e-3)  # Not the biased variance.
  assert_trees_close(got, numpy_recalibration(params, dataset.x_train, 20), 1e-4, 1e-5)


def test_recalibration_averages_batches_weighted_by_size():
  batch_size = 8  # 20 = 8 + 8 + 4: a smaller remainder batch.
  dataset = random_dataset()
  params, stats = numpy_variables(MLP, 1)
  got = recalibrate_fn(batch_size)(params, stats, dataset)
  want = numpy_recalibration(params, dataset.x_train, batch_size)
  assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
  # Batching changes the result (deeper layers see batch-normalised inputs), so the reference
  # with one batch would not pass: the test sees the per-batch structure.
  one_batch = numpy_recalibration(params, dataset.x_train, 20)
  assert not np.allclose(got['bn1']['var'], one_batch['bn1']['var'], rtol=1e-3)
  # The first layer's mean is linear in the inputs: batching cannot change it.
  np.testing.assert_allclose(got['bn0']['mean'], one_batch['bn0']['mean'], rtol=1e-4, atol=1e-5)


def test_recalibration_ignores_stored_statistics():
  dataset = random_dataset()
  params, stats = numpy_variables(MLP, 2)
  other = jax.tree.map(lambda s: -3.0 * jnp.ones_like(s), stats)
  a = recalibrate_fn(8)(params, stats, dataset)
  b = recalibrate_fn(8)(params, other, dataset)
  assert_trees_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------------------------ interpolation


def test_interpolate_endpoints_are_exact():
  a, _ = numpy_variables(MLP, 3)
  b, _ = numpy_variables(MLP, 4)
  for t, want in ((0.0, a), (1.0, b)):
    got = lmc.interpolate(a, b, jnp.asarray(t, jnp.float32))
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_array_equal(x, y)
  quarter = lmc.interpolate(a, b, jnp.asarray(0.25, jnp.float32))
  want = jax.tree.map(lambda x, y: 0.75 * np.asarray(x) + 0.25 * np.asarray(y), a, b)
  assert_trees_close(quarter, want, rtol=1e-6, atol=1e-7)


@jax.jit
def endpoint_metrics(params, stats, dataset):
  """Recalibrate one endpoint, then evaluate it: what the curve must give at t = 0 and 1."""
  recalibrated = lmc.recalibrate_batch_stats(MLP, params, stats, dataset, batch_size=8)
  return {split: train_steps.evaluate(MLP, params, recalibrated, dataset, split)
          for split in ('train', 'test')}


def test_lmc_curve_endpoints_and_point_batching():
  dataset = random_dataset()
  a, stats = numpy_variables(MLP, 5)
  b, _ = numpy_variables(MLP, 6)
  curves = {mode: jax.tree.map(np.asarray, curve_fn(5, mode)(a, b, stats, dataset))
            for mode in lmc.POINT_BATCHING}
  vmapped = curves['vmap']
  np.testing.assert_allclose(vmapped['t'], [0.0, 0.25, 0.5, 0.75, 1.0], atol=1e-7)
  assert set(vmapped) == {'t', 'train_error', 'train_loss', 'train_mistakes', 'test_error',
                          'test_loss', 'test_mistakes'}
  assert vmapped['train_mistakes'].dtype == np.int32
  for key, value in vmapped.items():
    assert value.shape == (5,), key
    np.testing.assert_allclose(curves['map'][key], value, rtol=1e-5, atol=1e-6, err_msg=key)

  for index, params in ((0, a), (-1, b)):
    want = endpoint_metrics(params, stats, dataset)
    for split in ('train', 'test'):
      np.testing.assert_allclose(vmapped[f'{split}_error'][index], want[split]['error'],
                                 atol=1e-6)
      np.testing.assert_allclose(vmapped[f'{split}_loss'][index], want[split]['loss'],
                                 rtol=1e-5)
  # Errors are multiples of 1/20 on the train set (the counts over 20), and the curve is not
  # constant.
  np.testing.assert_allclose(vmapped['train_error'], vmapped['train_mistakes'] / 20, atol=1e-7)
  assert np.ptp(vmapped['train_loss']) > 1e-3


def test_pair_measurer_matches_single_curves():
  dataset = random_dataset()
  a, stats = numpy_variables(MLP, 5)
  b, _ = numpy_variables(MLP, 6)
  measure = lmc.make_pair_measurer(MLP, num_points=5, bn_batch_size=8,
                                   point_batching='vmap', with_test=True)
  # Pair 0 = (a, b), pair 1 = (b, a): the second curve is the first one reversed.
  stack = train_steps.stack_members
  got = jax.tree.map(np.asarray, measure(stack([a, b]), stack([b, a]), stack([stats, stats]),
                                         dataset))
  single = jax.tree.map(np.asarray, curve_fn(5, 'vmap')(a, b, stats, dataset))
  for key, value in single.items():
    assert got[key].shape == (2, 5)
    np.testing.assert_allclose(got[key][0], value, rtol=1e-5, atol=1e-6, err_msg=key)
  np.testing.assert_allclose(got['train_loss'][1], single['train_loss'][::-1], rtol=1e-4)
  statistic, k = lmc.lmc_statistic(jnp.asarray(got['train_mistakes']), dataset.num_train)
  np.testing.assert_allclose(got['train_mistakes'] / dataset.num_train, got['train_error'],
                             atol=1e-7)
  np.testing.assert_allclose(got['lmc'], statistic, atol=1e-7)
  np.testing.assert_array_equal(got['lmc_index'], k)
  assert got['lmc'].shape == got['lmc_index'].shape == (2,)


def test_lmc_curve_rejects_bad_arguments():
  dataset = random_dataset()
  a, stats = numpy_variables(MLP, 0)
  with pytest.raises(ValueError, match='point_batching'):
    lmc.lmc_curve(MLP, a, a, stats, dataset, point_batching='pmap')
  for num_points in (1, 0):
    with pytest.raises(ValueError, match='at least 2 points'):
      lmc.lmc_curve(MLP, a, a, stats, dataset, num_points=num_points)


# ---------------------------------------------------------------------------- LMC statistic


def numpy_lmc(errors):
  """The paper's notebook statistic, one curve at a time."""
  errors = np.asarray(errors, np.float64)
  flat = errors.reshape(-1, errors.shape[-1])
  statistic, index = [], []
  for e in flat:
    m = (e[0] + e[-1]) / 2
    k = int(np.argmax(np.abs(m - e)))
    statistic.append(m - e[k])
    index.append(k)
  return np.reshape(statistic, errors.shape[:-1]), np.reshape(index, errors.shape[:-1])


N = 64  # Hand-made errors are fractions of 64 examples.


def _stat(errors):
  counts = np.rint(np.asarray(errors, np.float64) * N).astype(np.int32)
  return lmc.lmc_statistic(jnp.asarray(counts), N)


def test_lmc_statistic_on_hand_made_curves():
  cases = {
      'barrier': ([8 / N, 16 / N, 32 / N, 20 / N, 8 / N], -24 / N, 2),
      'flat': ([0.20] * 11, 0.0, 0),
      'interior_better': ([20 / N, 16 / N, 8 / N, 12 / N, 20 / N], 12 / N, 2),
      # Monotone: |m - e| ties at both ends and the first end wins, so the statistic is
      # (e[-1] - e[0]) / 2, signed by the direction (values exact in binary, so ties are exact).
      'increasing': ([0.25, 0.375, 0.5, 0.625, 0.75], 0.25, 0),
      'decreasing': ([0.75, 0.625, 0.5, 0.375, 0.25], -0.25, 0),
      'dip_and_bump': ([12 / N, 4 / N, 12 / N, 24 / N, 12 / N], -12 / N, 3),
      'two_points': ([0.75, 0.25], -0.25, 0),
  }
  for name, (curve, want_lmc, want_k) in cases.items():
    statistic, k = _stat(curve)
    np.testing.assert_allclose(statistic, want_lmc, atol=1e-6, err_msg=name)
    assert int(k) == want_k, name
    ref_lmc, ref_k = numpy_lmc(curve)
    np.testing.assert_allclose(statistic, ref_lmc, atol=1e-6, err_msg=name)
    assert int(k) == int(ref_k), name
  barrier, _ = _stat(cases['barrier'][0])
  better, _ = _stat(cases['interior_better'][0])
  assert barrier < 0 < better


def test_lmc_statistic_exact_on_float_unrepresentable_ties():
  # The counts of a reported row (4,000 train examples): m = (3 + 1) / 2 = 2 and |m - c| ties at
  # 1 for k = 0, 1, 2, 3, 4, 5, 6, 9, 10. As float32 fractions (0.00075 ...), rounding broke the
  # tie and the statistic took k = 9 (+0.00025); exactly, the first index k = 0 gives -0.00025.
  counts = jnp.asarray([3, 3, 2, 2, 3, 3, 3, 2, 2, 1, 1], jnp.int32)
  statistic, k = lmc.lmc_statistic(counts, 4000)
  assert int(k) == 0
  np.testing.assert_allclose(float(statistic), -0.00025, rtol=1e-6)
  with pytest.raises(TypeError, match='integer'):
    lmc.lmc_statistic(counts / 4000, 4000)


@pytest.mark.parametrize('shape', [(11,), (7, 11), (2, 3, 5)])
def test_lmc_statistic_matches_numpy_on_random_curves(shape):
  rng = np.random.default_rng(sum(shape))
  # Errors on a 1/64 grid: ties of |m - e| occur and are exact in float64.
  errors = rng.integers(0, 65, size=shape) / 64
  lmc, k = _stat(errors)
  want_lmc, want_k = numpy_lmc(errors)
  assert lmc.shape == k.shape == shape[:-1]
  np.testing.assert_allclose(lmc, want_lmc, atol=1e-6)
  np.testing.assert_array_equal(k, want_k)
  # |lmc| is the largest deviation from the endpoint mean.
  m = (errors[..., :1] + errors[..., -1:]) / 2
  np.testing.assert_allclose(np.abs(lmc), np.abs(m - errors).max(-1), atol=1e-6)
