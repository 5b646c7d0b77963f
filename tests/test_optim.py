"""Tests for prunephase.optim: PyTorch SGD, step schedules, decay boundaries, SAM's ascent step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prunephase import optim


def torch_sgd_reference(params, grads_per_step, lr, weight_decay, momentum):
  """torch.optim.SGD(momentum, weight_decay, dampening=0, nesterov=False) in NumPy float64."""
  params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  buffers = {}
  history = []
  for grads in grads_per_step:
    for name, w in params.items():
      d_p = np.asarray(grads[name], np.float64) + weight_decay * w
      buffers[name] = d_p.copy() if name not in buffers else momentum * buffers[name] + d_p
      params[name] = w - lr * buffers[name]
    history.append({k: v.copy() for k, v in params.items()})
  return history


@pytest.mark.parametrize('lr,weight_decay', [(0.1, 1e-4), (0.05, 5e-2), (0.3, 0.0)])
def test_sgd_reproduces_torch_sgd(lr, weight_decay):
  rng = np.random.default_rng(0)
  params = {'a': rng.normal(size=(3, 4)).astype(np.float32),
            'b': rng.normal(size=(5,)).astype(np.float32)}
  grads_per_step = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
                    for _ in range(5)]
  want = torch_sgd_reference(params, grads_per_step, lr, weight_decay, 0.9)

  tx = optim.sgd(jnp.asarray(lr, jnp.float32), jnp.asarray(weight_decay, jnp.float32), 0.9)
  state = optim.init_sgd_state(params)
  current = jax.tree.map(jnp.asarray, params)
  for step, grads in enumerate(grads_per_step):
    updates, state = tx.update(jax.tree.map(jnp.asarray, grads), state, current)
    current = optax.apply_updates(current, updates)
    for name in params:
      np.testing.assert_allclose(current[name], want[step][name], rtol=1e-5, atol=1e-6)


def test_sgd_state_does_not_depend_on_hyperparameters():
  params = {'w': jnp.ones((2, 3))}
  a = optim.init_sgd_state(params)
  b = optim.sgd(jnp.asarray(0.7), jnp.asarray(0.3)).init(params)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for leaf_a, leaf_b in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(leaf_a, leaf_b)
    np.testing.assert_array_equal(leaf_a, np.zeros((2, 3)))


def test_sgd_first_step_has_no_dampening():
  # Step 1: buf = g + wd * w (not (1 - dampening) * ...), so w1 = w0 - lr * (g + wd * w0).
  params = {'w': jnp.asarray([1.0, -2.0])}
  grads = {'w': jnp.asarray([0.5, 0.25])}
  tx = optim.sgd(jnp.asarray(0.1), jnp.asarray(0.01), 0.9)
  updates, _ = tx.update(grads, optim.init_sgd_state(params), params)
  np.testing.assert_allclose(updates['w'], [-0.1 * (0.5 + 0.01), -0.1 * (0.25 - 0.02)],
                             rtol=1e-6)


# ------------------------------------------------------------------------------ lr schedule


def test_step_lr_at_the_boundaries():
  steps_per_epoch = 10
  boundaries = (80 * steps_per_epoch, 120 * steps_per_epoch)
  cases = {0: 0.1, 1: 0.1, 799: 0.1, 800: 0.01, 801: 0.01, 1199: 0.01, 1200: 0.001,
           1201: 0.001, 1599: 0.001}
  schedule = jax.jit(lambda s: optim.step_lr(s, jnp.asarray(0.1, jnp.float32), boundaries, 0.1))
  for step, want in cases.items():
    got = optim.step_lr(jnp.asarray(step, jnp.int32), jnp.asarray(0.1, jnp.float32),
                        boundaries, 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f'step {step}')
    np.testing.assert_allclose(schedule(jnp.asarray(step, jnp.int32)), want, rtol=1e-6)


def test_step_lr_without_boundaries_and_with_other_decay():
  assert float(optim.step_lr(jnp.asarray(10 ** 6), jnp.asarray(0.2), (), 0.1)) == pytest.approx(
      0.2)
  lrs = [float(optim.step_lr(jnp.asarray(s), jnp.asarray(1.0), (2, 4), 0.5)) for s in range(6)]
  np.testing.assert_allclose(lrs, [1.0, 1.0, 0.5, 0.5, 0.25, 0.25])


def test_step_lr_vmaps_over_member_learning_rates():
  base = jnp.asarray([0.1, 0.05, 0.2], jnp.float32)
  got = jax.vmap(lambda lr: optim.step_lr(jnp.asarray(5), lr, (5,), 0.1))(base)
  np.testing.assert_allclose(got, [0.01, 0.005, 0.02], rtol=1e-6)


def test_decay_boundaries_from_epochs_and_fractions():
  assert optim.decay_boundaries(1600, 10, decay_epochs=(80, 120)) == (800, 1200)
  assert optim.decay_boundaries(1600, 10, decay_fractions=(0.5, 0.75)) == (800, 1200)
  # Sorted, and fractions round to the nearest step.
  assert optim.decay_boundaries(1000, 7, decay_fractions=(0.75, 0.3333)) == (333, 750)
  assert optim.decay_boundaries(62_400, 390, decay_epochs=(120, 80)) == (31_200, 46_800)
  assert optim.decay_boundaries(100, 10) == ()


def test_decay_boundaries_rejects_bad_input():
  with pytest.raises(ValueError, match='not both'):
    optim.decay_boundaries(1600, 10, decay_epochs=(80,), decay_fractions=(0.5,))
  for bad in (0.0, 1.0, 1.5, -0.1):
    with pytest.raises(ValueError, match='fractions'):
      optim.decay_boundaries(1600, 10, decay_fractions=(bad,))


# ---------------------------------------------------------------------------------------- SAM


def test_sam_perturbation_uses_the_global_norm():
  rng = np.random.default_rng(1)
  grads = {'conv': {'kernel': rng.normal(size=(3, 2, 4)).astype(np.float32)},
           'bn': {'scale': rng.normal(size=(4,)).astype(np.float32),
                  'bias': 10.0 * rng.normal(size=(4,)).astype(np.float32)}}
  rho = 0.37
  e = optim.sam_perturbation(jax.tree.map(jnp.asarray, grads), jnp.asarray(rho, jnp.float32))
  flat = np.concatenate([np.ravel(g).astype(np.float64) for g in jax.tree.leaves(grads)])
  norm = np.linalg.norm(flat)
  for got, g in zip(jax.tree.leaves(e), jax.tree.leaves(grads)):
    np.testing.assert_allclose(got, rho * g / (norm + 1e-12), rtol=1e-5, atol=1e-7)
  got_flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(e)])
  np.testing.assert_allclose(np.linalg.norm(got_flat), rho, rtol=1e-5)
  # A per-leaf normalisation would give every leaf norm rho; the global one does not.
  leaf_norms = [np.linalg.norm(np.ravel(x)) for x in jax.tree.leaves(e)]
  assert max(leaf_norms) < rho * (1 - 1e-3)


def test_sam_perturbation_zero_gradient_and_zero_rho():
  zeros = {'w': jnp.zeros((3,)), 'b': jnp.zeros((2,))}
  e = optim.sam_perturbation(zeros, jnp.asarray(0.5))
  for leaf in jax.tree.leaves(e):
    np.testing.assert_array_equal(leaf, 0.0)  # The 1e-12 keeps it finite.
  grads = {'w': jnp.asarray([3.0, 4.0])}
  np.testing.assert_array_equal(optim.sam_perturbation(grads, jnp.asarray(0.0))['w'], [0.0, 0.0])
  np.testing.assert_allclose(optim.sam_perturbation(grads, jnp.asarray(1.0))['w'], [0.6, 0.8],
                             rtol=1e-6)
