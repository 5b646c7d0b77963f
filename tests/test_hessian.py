"""Tests for prunephase.hessian against the exact Hessian of tiny models (`jax.hessian`).

The reference Hessian is that of the flattened parameters (`ravel_pytree`) with the loss computed
on all examples in one eval-mode call, so it also checks that batching does not change the loss.
Power iteration finds the eigenvalue of largest magnitude; the tiny models below have a positive
one with a clear gap (asserted), so it is also the largest eigenvalue.
"""

import functools

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import half_mask  # pylint: disable=g-bad-import-order
from prunephase import data
from prunephase import hessian
from prunephase import models
from prunephase import train_steps

# D = 9*4 (dense0) + 4 + 4 (bn0) + 4*4 + 4 (head) = 64 parameters: a Hadamard size.
MLP = models.MLP(4, (4,))
MLP_SHAPE = (9, 1)
CNN = models.CNN1D(4, (3, 3), (3, 3), (2, 2))
CNN_SHAPE = (8, 1)
CASES = {'mlp': (MLP, MLP_SHAPE), 'cnn1d': (CNN, CNN_SHAPE)}
NUM_ITERS = 100


def setup(name, seed=0, num_batches=3, batch_size=8):
  """(model, params, batch_stats, x, y): random inputs, labels and BN statistics."""
  model, shape = CASES[name]
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_batches, batch_size, *shape)).astype(np.float32)
  y = rng.integers(0, 4, size=(num_batches, batch_size)).astype(np.int32)
  params, stats = models.init_variables(model, jax.random.PRNGKey(seed), shape)
  # Stored statistics far from the initial (0, 1): eval mode must use them.
  stats = jax.tree.map(lambda s: jnp.asarray(rng.uniform(0.5, 1.5, s.shape), jnp.float32), stats)
  return model, params, stats, jnp.asarray(x), jnp.asarray(y)


def exact_hessian(model, params, stats, x, y):
  """(D, D) float64 Hessian of the eval-mode mean cross-entropy over all examples at once."""
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  inputs, labels = x.reshape(-1, *x.shape[2:]), y.reshape(-1)

  def loss(v):
    logits = model.apply({'params': unravel(v), 'batch_stats': stats}, inputs, train=False)
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))

  return np.asarray(jax.jit(jax.hessian(loss))(flat), np.float64)


@functools.cache
def exact_hessian_of(name, seed=0):
  """`exact_hessian` of `setup(name, seed)` (cached: several tests use the same case)."""
  return exact_hessian(*setup(name, seed))


def largest_magnitude(matrix):
  """(eigenvalue of largest |.|, its eigenvector, |second| / |first|) of a symmetric matrix."""
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  order = np.argsort(-np.abs(values))
  return values[order[0]], vectors[:, order[0]], abs(values[order[1]] / values[order[0]])


@functools.cache
def eig_fn(model):
  return jax.jit(functools.partial(hessian.top_eigenvalue, model, num_iters=NUM_ITERS))


@functools.cache
def trace_fn(model, num_probes=200):
  return jax.jit(functools.partial(hessian.trace, model, num_probes=num_probes))


@pytest.mark.parametrize('name', sorted(CASES))
def test_top_eigenvalue_matches_exact(name):
  model, params, stats, x, y = setup(name)
  want, vector, gap = largest_magnitude(exact_hessian_of(name))
  assert want > 0 and gap < 0.8, (want, gap)  # The case has a clear, positive top eigenvalue.
  got, got_vector = eig_fn(model)(params, stats, x, y, jax.random.PRNGKey(1))
  np.testing.assert_allclose(got, want, rtol=1e-4)
  np.testing.assert_allclose(np.linalg.norm(got_vector), 1.0, rtol=1e-5)
  assert abs(np.dot(got_vector, vector)) > 1 - 1e-4


@pytest.mark.parametrize('name', sorted(CASES))
def test_trace_within_three_standard_errors(name):
  model, params, stats, x, y = setup(name)
  want = np.trace(exact_hessian_of(name))
  estimate, stderr = trace_fn(model)(params, stats, x, y, jax.random.PRNGKey(2))
  assert 0 < stderr < 0.2 * abs(want)
  assert abs(estimate - want) < 3 * stderr, (estimate, want, stderr)


def sylvester_hadamard(size):
  matrix = np.ones((1, 1))
  while matrix.shape[0] < size:
    matrix = np.kron(matrix, np.array([[1, 1], [1, -1]]))
  assert matrix.shape[0] == size
  return matrix


def test_trace_exact_with_orthogonal_probes():
  model, params, stats, x, y = setup('mlp')
  hess = exact_hessian_of('mlp')
  size = hess.shape[0]
  assert size == 64
  hadamard = sylvester_hadamard(size)
  np.testing.assert_array_equal(hadamard @ hadamard.T, size * np.eye(size))
  fn = jax.jit(functools.partial(hessian.trace, model))
  for probes in (hadamard, np.sqrt(size) * np.eye(size)):
    estimate, _ = fn(params, stats, x, y, probes=jnp.asarray(probes, jnp.float32))
    np.testing.assert_allclose(estimate, np.trace(hess), rtol=1e-5)


def test_masked_metrics_are_those_of_the_kept_block():
  model, params, stats, x, y = setup('cnn1d')
  mask = half_mask(params)
  kept = np.asarray(hessian.flat_mask(params, mask)).astype(bool)
  assert 0 < (~kept).sum() < 0.3 * kept.size  # Only conv0's kernel is masked (24 weights).
  hess = exact_hessian_of('cnn1d')
  block = hess[np.ix_(kept, kept)]
  want, _, gap = largest_magnitude(block)
  assert want > 0 and gap < 0.8
  got, vector = eig_fn(model)(params, stats, x, y, jax.random.PRNGKey(1), mask=mask)
  np.testing.assert_allclose(got, want, rtol=1e-4)
  np.testing.assert_array_equal(np.asarray(vector)[~kept], 0.0)
  # The trace over kept coordinates, exact with the scaled identity's columns as probes.
  exact, _ = jax.jit(functools.partial(hessian.trace, model))(
      params, stats, x, y, mask=mask,
      probes=jnp.sqrt(kept.size) * jnp.eye(kept.size, dtype=jnp.float32))
  np.testing.assert_allclose(exact, np.trace(block), rtol=1e-5)
  assert not np.isclose(np.trace(block), np.trace(hess), rtol=1e-3)


def test_hvp_is_masked_product():
  model, params, stats, x, y = setup('mlp')
  mask = half_mask(params, seed=1)
  m = np.asarray(hessian.flat_mask(params, mask))
  hvp, size = hessian.make_hvp(model, params, stats, x, y, mask)
  v = np.random.default_rng(0).normal(size=size).astype(np.float32)
  want = m * (exact_hessian_of('mlp') @ (m * v))
  np.testing.assert_allclose(jax.jit(hvp)(jnp.asarray(v)), want, rtol=1e-4, atol=1e-6)


def test_population_matches_members_one_by_one():
  model = MLP
  _, _, _, x, y = setup('mlp')
  members = [setup('mlp', seed=s)[1:3] for s in (0, 1, 2)]
  masks = [half_mask(p, seed=s) for s, (p, _) in enumerate(members)]
  keys = jax.random.split(jax.random.PRNGKey(7), 3)
  population = hessian.make_population_hessian(model, num_iters=10, num_probes=4, masked=True)
  got = population(train_steps.stack_members([p for p, _ in members]),
                   train_steps.stack_members([s for _, s in members]),
                   train_steps.stack_members(masks),
                   x, y, keys)
  assert all(value.shape == (3,) for value in got.values())
  # One by one, each metric on its own: `hessian_metrics` documents the same numbers from the
  # two halves of its key.
  eig = jax.jit(functools.partial(hessian.top_eigenvalue, model, num_iters=10))
  trace = jax.jit(functools.partial(hessian.trace, model, num_probes=4))
  for i, ((params, stats), mask) in enumerate(zip(members, masks)):
    eig_key, trace_key = jax.random.split(keys[i])
    eigenvalue, _ = eig(params, stats, x, y, eig_key, mask=mask)
    estimate, stderr = trace(params, stats, x, y, trace_key, mask=mask)
    np.testing.assert_allclose(
        [got['top_eigenvalue'][i], got['trace'][i], got['trace_stderr'][i]],
        [eigenvalue, estimate, stderr], rtol=1e-4)


def test_train_batches_are_the_first_examples_in_order():
  rng = np.random.default_rng(0)
  dataset = data.Dataset(
      x_train=jnp.asarray(rng.integers(0, 256, (10, 2, 2, 3)), jnp.uint8),
      y_train=jnp.arange(10, dtype=jnp.int32), x_test=jnp.zeros((1, 2, 2, 3), jnp.uint8),
      y_test=jnp.zeros(1, jnp.int32), mean=jnp.full(3, 0.5), std=jnp.full(3, 0.25))
  x, y = hessian.train_batches(dataset, 2, 4)
  assert x.shape == (2, 4, 2, 2, 3) and x.dtype == jnp.float32
  np.testing.assert_array_equal(y, [[0, 1, 2, 3], [4, 5, 6, 7]])
  np.testing.assert_allclose(x[1, 0], data.prepare_inputs(dataset, dataset.x_train[4]))
  with pytest.raises(ValueError, match='need 12 train examples'):
    hessian.train_batches(dataset, 3, 4)
