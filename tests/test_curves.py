"""Tests for prunephase.curves: the Bezier curve, bend training and the curve's statistic.

The endpoints are two tiny MLPs trained from different initialisations on a small synthetic
4-class problem, so the straight line between them has a clear barrier (asserted).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import half_mask  # pylint: disable=g-bad-import-order
from prunephase import curves
from prunephase import data
from prunephase import lmc
from prunephase import models
from prunephase import population
from prunephase import pruning
from prunephase import train_steps

MODEL = models.MLP(4, (16,))
DIM = 16
SPEC = curves.CurveSpec(epochs=10, lr=0.05, batch_size=16, num_points=5, bn_batch_size=32,
                        with_test=False)
LINE = curves.CurveSpec(epochs=0, lr=0.0, num_points=5, bn_batch_size=32, with_test=True)
# Short, with a large weight decay: it must not move pruned coordinates of the bend.
MASKED = curves.CurveSpec(epochs=2, lr=0.1, batch_size=16, weight_decay=0.1, num_points=3,
                          bn_batch_size=32, with_test=False)


@functools.cache
def dataset(num_train=256, num_test=64, seed=0):
  """Labels = argmax of a fixed random tanh layer plus noise: learnable, not trivially."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_train + num_test, DIM, 1)).astype(np.float32)
  y = np.argmax(np.tanh(x[:, :, 0] @ rng.normal(size=(DIM, 4)))
                + 0.3 * rng.normal(size=(len(x), 4)), axis=1).astype(np.int32)
  return data.Dataset(
      x_train=jnp.asarray(x[:num_train]), y_train=jnp.asarray(y[:num_train]),
      x_test=jnp.asarray(x[num_train:]), y_test=jnp.asarray(y[num_train:]),
      mean=jnp.zeros(1), std=jnp.ones(1), name='synthetic', num_classes=4)


@functools.cache
def endpoints():
  """(member_a, member_b): MemberStates trained 30 epochs from init seeds 1 and 2."""
  ds = dataset()
  spec = train_steps.TrainSpec(16, ds.num_train // 16)
  program = population.PopulationProgram(MODEL, spec, masked=False)
  # Eager init: compiling `train_steps.init_population` costs more than it saves here.
  states = train_steps.stack_members([
      train_steps.member_state(
          *models.init_variables(MODEL, jax.random.PRNGKey(seed), ds.input_shape),
          train_steps.data_key(seed)) for seed in (1, 2)])
  hparams = train_steps.Hparams(lr=jnp.full((2,), 0.1), weight_decay=jnp.full((2,), 1e-4),
                                sam_rho=jnp.zeros(2))
  for epoch in range(30):
    states, _ = program.epoch(states, hparams, None, ds, epoch)
  return train_steps.unstack_member(states, 0), train_steps.unstack_member(states, 1)


@functools.cache
def connect_fn(spec):
  return jax.jit(functools.partial(curves.connect_pair, MODEL, spec))


def as_numpy(tree):
  return jax.tree.map(np.asarray, tree)


def test_bezier_ends_are_exact_and_the_midpoint_bend_is_the_line():
  a, b = (member.params for member in endpoints())
  theta = jax.tree.map(lambda x: x + 0.5, a)
  ts = jnp.linspace(0.0, 1.0, 5)
  for t, want in ((ts[0], a), (ts[-1], b)):
    for got, leaf in zip(jax.tree.leaves(curves.bezier(a, theta, b, t)), jax.tree.leaves(want)):
      np.testing.assert_array_equal(got, leaf)
  middle = curves.midpoint(a, b)
  for t in ts:
    got = curves.bezier(a, middle, b, t)
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(lmc.interpolate(a, b, t))):
      np.testing.assert_array_equal(x, y)
    # The Bernstein form, in float64.
    t64 = float(t)
    want = jax.tree.map(lambda p, c, q: (1 - t64) ** 2 * np.float64(p) + 2 * t64 * (1 - t64)
                        * np.float64(c) + t64 ** 2 * np.float64(q), a, theta, b)
    for x, y in zip(jax.tree.leaves(curves.bezier(a, theta, b, t)), jax.tree.leaves(want)):
      np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_untrained_curve_is_the_lmc_curve():
  member_a, member_b = endpoints()
  ds = dataset()
  theta, got = connect_fn(LINE)(member_a.params, member_b.params, member_a.batch_stats, None,
                                ds, jax.random.PRNGKey(0))
  for x, y in zip(jax.tree.leaves(theta),
                  jax.tree.leaves(curves.midpoint(member_a.params, member_b.params))):
    np.testing.assert_array_equal(x, y)
  want = jax.jit(functools.partial(lmc.lmc_curve, MODEL, num_points=5, bn_batch_size=32,
                                   point_batching='auto'))(
                                       member_a.params, member_b.params, member_a.batch_stats, ds)
  for key, value in want.items():
    np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
  statistic, index = lmc.lmc_statistic(want['train_mistakes'], ds.num_train)
  np.testing.assert_allclose(got['mc'], statistic, atol=1e-7)
  assert int(got['mc_index']) == int(index)
  assert got['bend_loss'].shape == (0,)


def test_trained_curve_is_never_deeper_than_the_line():
  member_a, member_b = endpoints()
  ds = dataset()
  args = (member_a.params, member_b.params, member_a.batch_stats, None, ds,
          jax.random.PRNGKey(0))
  line = as_numpy(connect_fn(LINE)(*args)[1])
  theta, curve = connect_fn(SPEC)(*args)
  curve = as_numpy(curve)
  assert line['mc'] < -0.1, line['train_error']  # The straight line has a clear barrier.
  assert curve['mc'] >= line['mc']
  assert np.max(curve['train_error']) <= np.max(line['train_error'])
  # Same ends, better interior.
  np.testing.assert_array_equal(curve['train_error'][[0, -1]], line['train_error'][[0, -1]])
  assert np.mean(curve['train_error'][1:-1]) < np.mean(line['train_error'][1:-1])
  assert curve['bend_loss'].shape == (SPEC.epochs,)
  assert np.all(np.isfinite(curve['bend_loss']))
  moved = [np.max(np.abs(x - y)) for x, y in zip(
      jax.tree.leaves(theta), jax.tree.leaves(curves.midpoint(member_a.params, member_b.params)))]
  assert max(moved) > 1e-3


def test_identical_endpoints():
  member, _ = endpoints()
  ds = dataset()
  args = (member.params, member.params, member.batch_stats, None, ds, jax.random.PRNGKey(3))
  # Untrained: theta = (a + a) / 2 = a exactly; the curve is a at every point, so mc = 0.
  theta, line = connect_fn(LINE)(*args)
  for x, y in zip(jax.tree.leaves(theta), jax.tree.leaves(member.params)):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_array_equal(line['train_error'], line['train_error'][0])
  assert float(line['mc']) == 0.0
  # Trained: the bend leaves a (the batch gradients are not 0 there), so the interior moves,
  # but the ends are still exactly the model: equal errors at both ends.
  theta, curve = connect_fn(SPEC)(*args)
  assert max(np.max(np.abs(x - y)) for x, y in zip(jax.tree.leaves(theta),
                                                    jax.tree.leaves(member.params))) > 0
  assert curve['train_error'][0] == curve['train_error'][-1] == line['train_error'][0]
  assert curve['train_loss'][0] == curve['train_loss'][-1]


def test_pruned_coordinates_of_the_bend_stay_zero():
  member_a, member_b = endpoints()
  mask = half_mask(member_a.params)
  a = pruning.apply_mask(member_a.params, mask)
  b = pruning.apply_mask(member_b.params, mask)
  theta, metrics = connect_fn(MASKED)(a, b, member_a.batch_stats, mask, dataset(),
                                     jax.random.PRNGKey(0))
  kept = np.asarray(mask['dense0']['kernel'])
  kernel = np.asarray(theta['dense0']['kernel'])
  np.testing.assert_array_equal(kernel[~kept], 0.0)
  middle = np.asarray(curves.midpoint(a, b)['dense0']['kernel'])
  assert np.max(np.abs(kernel[kept] - middle[kept])) > 1e-3  # The kept ones trained.
  for t in (0.25, 0.5):
    point = curves.bezier(a, theta, b, jnp.float32(t))
    np.testing.assert_array_equal(np.asarray(point['dense0']['kernel'])[~kept], 0.0)
  assert metrics['train_error'].shape == (3,)


def test_pairs_vmapped_equal_one_by_one():
  member_a, member_b = endpoints()
  masks = [half_mask(member_a.params, seed) for seed in (0, 1)]
  pairs = [(pruning.apply_mask(member_a.params, m), pruning.apply_mask(member_b.params, m))
           for m in masks]
  pairs[1] = pairs[1][::-1]  # The second pair runs from b to a.
  keys = jax.random.split(jax.random.PRNGKey(5), 2)
  connector = curves.make_pair_connector(MODEL, MASKED, masked=True)
  thetas, got = connector(train_steps.stack_members([p[0] for p in pairs]),
                          train_steps.stack_members([p[1] for p in pairs]),
                          train_steps.stack_members([member_a.batch_stats] * 2),
                          train_steps.stack_members(masks), keys, dataset())
  single = connect_fn(MASKED)
  for i, ((a, b), mask) in enumerate(zip(pairs, masks)):
    theta, want = single(a, b, member_a.batch_stats, mask, dataset(), keys[i])
    for x, y in zip(jax.tree.leaves(thetas), jax.tree.leaves(theta)):
      np.testing.assert_allclose(x[i], y, rtol=1e-4, atol=1e-5)
    for key, value in want.items():
      assert got[key].shape == (2, *np.shape(value)), key
      np.testing.assert_allclose(got[key][i], value, rtol=1e-4, atol=1e-5, err_msg=key)


def test_bend_training_is_deterministic_in_its_key():
  member_a, member_b = endpoints()
  args = (member_a.params, member_b.params, member_a.batch_stats, None, dataset())
  first, _ = connect_fn(SPEC)(*args, jax.random.PRNGKey(0))
  again, _ = connect_fn(SPEC)(*args, jax.random.PRNGKey(0))
  other, _ = connect_fn(SPEC)(*args, jax.random.PRNGKey(1))
  for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y)
             for x, y in zip(jax.tree.leaves(first), jax.tree.leaves(other)))


def test_curve_rejects_bad_settings():
  member_a, member_b = endpoints()
  args = (member_a.params, member_b.params, member_a.batch_stats, None, dataset(),
          jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match='at least 2 points'):
    curves.connect_pair(MODEL, dataclasses.replace(LINE, num_points=1), *args)
  with pytest.raises(ValueError, match='exceeds'):
    curves.connect_pair(MODEL, dataclasses.replace(SPEC, batch_size=1000), *args)
