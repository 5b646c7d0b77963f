"""Tests for prunephase.cka against plain numpy float64 references written from the formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prunephase import cka

# (n, p, q): p != q, a wide case with p > n, and the unbiased minimum n = 4.
SHAPES = [(20, 5, 7), (12, 30, 3), (64, 10, 10), (4, 3, 2)]


def _np_biased_cka(x, y):
  """Kornblith et al. (2019) with explicit n x n Gram matrices and H = I - 1 1^T / n."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  n = x.shape[0]
  h = np.eye(n) - np.ones((n, n)) / n
  k = h @ (x @ x.T) @ h
  l = h @ (y @ y.T) @ h
  return np.sum(k * l) / (np.linalg.norm(k) * np.linalg.norm(l))


def _np_unbiased_hsic(k, l):
  """Song et al. (2012) unbiased HSIC, from the formula, on Grams whose diagonal is zeroed here."""
  n = k.shape[0]
  k = k.copy()
  l = l.copy()
  np.fill_diagonal(k, 0.0)
  np.fill_diagonal(l, 0.0)
  one = np.ones(n)
  total = (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
           - 2.0 / (n - 2) * (one @ k @ l @ one))
  return total / (n * (n - 3))


def _np_unbiased_cka(x, y):
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  k = x @ x.T
  l = y @ y.T
  return _np_unbiased_hsic(k, l) / np.sqrt(_np_unbiased_hsic(k, k) * _np_unbiased_hsic(l, l))


_NP_REFERENCE = {'biased': _np_biased_cka, 'unbiased': _np_unbiased_cka}


def _related_pair(rng, n, p, q):
  """x (n, p) and y (n, q) = a noisy linear map of x, so CKA is well inside (0, 1)."""
  x = rng.normal(size=(n, p)) + rng.normal(size=(1, p))  # Non-zero column means on purpose.
  y = x @ rng.normal(size=(p, q)) + 0.5 * rng.normal(size=(n, q))
  return x.astype(np.float32), y.astype(np.float32)


def _random_orthogonal(rng, p):
  q, r = np.linalg.qr(rng.normal(size=(p, p)))
  return q * np.sign(np.diag(r))


@pytest.mark.parametrize('estimator', cka.ESTIMATORS)
@pytest.mark.parametrize('shape', SHAPES)
def test_matches_numpy_reference(estimator, shape):
  rng = np.random.default_rng(sum(shape))
  x, y = _related_pair(rng, *shape)
  got = cka.linear_cka(jnp.asarray(x), jnp.asarray(y), estimator)
  assert got.shape == ()
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), _NP_REFERENCE[estimator](x, y), rtol=1e-5, atol=1e-5)


def test_unbiased_reference_differs_from_biased():
  # Guards against the two references (and implementations) silently coinciding.
  rng = np.random.default_rng(1)
  x, y = _related_pair(rng, 20, 5, 7)
  assert abs(_np_biased_cka(x, y) - _np_unbiased_cka(x, y)) > 1e-3
  biased = float(cka.linear_cka(x, y, 'biased'))
  unbiased = float(cka.linear_cka(x, y, 'unbiased'))
  assert abs(biased - unbiased) > 1e-3


@pytest.mark.parametrize('estimator', cka.ESTIMATORS)
def test_self_similarity_is_one(estimator):
  x = np.random.default_rng(2).normal(size=(20, 5)).astype(np.float32)
  np.testing.assert_allclose(float(cka.linear_cka(x, x, estimator)), 1.0, atol=1e-6)


@pytest.mark.parametrize('estimator', cka.ESTIMATORS)
def test_invariances(estimator):
  rng = np.random.default_rng(3)
  x, y = _related_pair(rng, 20, 5, 7)  # A SHAPES entry: reuses compiled code.
  base = float(cka.linear_cka(x, y, estimator))
  rotated_x = (x @ _random_orthogonal(rng, 5)).astype(np.float32)
  scaled_y = np.float32(37.5) * y
  shifted_y = y + np.float32(100.0)
  for xx, yy in [(rotated_x, y), (x, scaled_y), (rotated_x, scaled_y), (x, shifted_y)]:
    np.testing.assert_allclose(float(cka.linear_cka(xx, yy, estimator)), base, atol=1e-5)


@pytest.mark.parametrize('estimator', cka.ESTIMATORS)
def test_symmetry(estimator):
  x, y = _related_pair(np.random.default_rng(4), 20, 5, 7)
  np.testing.assert_allclose(
      float(cka.linear_cka(x, y, estimator)), float(cka.linear_cka(y, x, estimator)), atol=1e-6)


def test_independent_features():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(500, 10)).astype(np.float32)
  y = rng.normal(size=(500, 10)).astype(np.float32)
  biased = float(cka.linear_cka(x, y, 'biased'))
  unbiased = float(cka.linear_cka(x, y, 'unbiased'))
  assert 0.0 < biased < 0.2
  # The unbiased estimator removes the small-n upward bias: ~0 for independent features.
  assert abs(unbiased) < 0.05
  assert unbiased < biased


def test_large_n_biased_matches_float64():
  # The feature-space form must handle n ~ 50k in float32; compare with the float64 feature-space
  # formula (the Gram form would need 50k x 50k matrices). Offsets exercise the centring.
  rng = np.random.default_rng(6)
  x, y = _related_pair(rng, 50_000, 10, 10)
  x = x * 5.0 + 20.0
  xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
  yc = y.astype(np.float64) - y.astype(np.float64).mean(0)
  want = (np.linalg.norm(yc.T @ xc) ** 2
          / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))
  got = float(jax.jit(cka.linear_cka)(x, y))
  np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize('estimator', cka.ESTIMATORS)
def test_nested_in_outer_jit(estimator):
  x, y = _related_pair(np.random.default_rng(7), 16, 4, 3)
  outer = jax.jit(lambda a, b: 2.0 * cka.linear_cka(a, b, estimator=estimator))
  np.testing.assert_allclose(
      float(outer(x, y)) / 2.0, _NP_REFERENCE[estimator](x, y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('estimator', cka.ESTIMATORS)
def test_float64_under_x64(estimator):
  x, y = _related_pair(np.random.default_rng(12), 16, 4, 3)
  with jax.enable_x64(True):
    got = cka.linear_cka(x.astype(np.float64), y.astype(np.float64), estimator)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(float(got), _NP_REFERENCE[estimator](x, y), rtol=1e-12)


@pytest.mark.parametrize('estimator', cka.ESTIMATORS)
def test_vmap_equals_loop(estimator):
  rng = np.random.default_rng(8)
  pairs = [_related_pair(rng, 24, 5, 3) for _ in range(4)]
  xs = np.stack([p[0] for p in pairs])
  ys = np.stack([p[1] for p in pairs])
  batched = jax.vmap(lambda a, b: cka.linear_cka(a, b, estimator))(xs, ys)
  assert batched.shape == (4,)
  looped = [float(cka.linear_cka(a, b, estimator)) for a, b in pairs]
  np.testing.assert_allclose(np.asarray(batched), looped, atol=1e-6)
  # Also against the reference, so the loop itself is known to be right.
  np.testing.assert_allclose(
      looped, [_NP_REFERENCE[estimator](a, b) for a, b in pairs], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('estimator', cka.ESTIMATORS)
def test_output_cka(estimator):
  rng = np.random.default_rng(9)
  logits_a = (3.0 * rng.normal(size=(64, 10))).astype(np.float32)
  logits_b = (logits_a + 2.0 * rng.normal(size=(64, 10))).astype(np.float32)
  out = cka.output_cka(logits_a, logits_b, estimator)
  assert set(out) == {'cka_logits', 'cka_softmax'}
  probs_a = np.exp(logits_a - logits_a.max(1, keepdims=True))
  probs_a /= probs_a.sum(1, keepdims=True)
  probs_b = np.exp(logits_b - logits_b.max(1, keepdims=True))
  probs_b /= probs_b.sum(1, keepdims=True)
  reference = _NP_REFERENCE[estimator]
  np.testing.assert_allclose(
      float(out['cka_logits']), reference(logits_a, logits_b), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      float(out['cka_softmax']), reference(probs_a, probs_b), rtol=1e-5, atol=1e-5)
  # Softmax is non-linear, so the two numbers differ in general.
  assert abs(float(out['cka_logits']) - float(out['cka_softmax'])) > 1e-3


def test_output_cka_under_jit():
  rng = np.random.default_rng(10)
  logits_a = rng.normal(size=(32, 10)).astype(np.float32)
  logits_b = rng.normal(size=(32, 10)).astype(np.float32)
  eager = cka.output_cka(logits_a, logits_b)
  jitted = jax.jit(cka.output_cka, static_argnames='estimator')(logits_a, logits_b)
  for key in eager:
    np.testing.assert_allclose(float(jitted[key]), float(eager[key]), atol=1e-6)


def test_constant_input_gives_nan():
  x = np.ones((10, 3), np.float32)
  y = np.random.default_rng(11).normal(size=(10, 2)).astype(np.float32)
  assert np.isnan(float(cka.linear_cka(x, y)))


@pytest.mark.parametrize('x_shape, y_shape, estimator, match', [
    ((10, 3), (10, 3), 'debiased', r"Unknown CKA estimator 'debiased'.*'biased', 'unbiased'"),
    ((10, 3), (9, 3), 'biased', r'same number of examples.*10 and 9'),
    ((1, 3), (1, 3), 'biased', r'biased CKA estimator needs n >= 2.*n=1'),
    ((3, 3), (3, 3), 'unbiased', r'unbiased CKA estimator needs n >= 4.*n=3'),
    ((10,), (10, 3), 'biased', r'2-D representations'),
])
def test_errors(x_shape, y_shape, estimator, match):
  x = np.zeros(x_shape, np.float32)
  y = np.zeros(y_shape, np.float32)
  with pytest.raises(ValueError, match=match):
    cka.linear_cka(x, y, estimator)
  # Checks are on static shapes, so they also fire while tracing.
  with pytest.raises(ValueError, match=match):
    jax.jit(cka.linear_cka, static_argnames='estimator')(x, y, estimator=estimator)


def test_error_messages_are_one_line():
  with pytest.raises(ValueError) as info:
    cka.output_cka(np.zeros((3, 10)), np.zeros((3, 10)), 'unbiased')
  assert '\n' not in str(info.value)
  assert 'n >= 4' in str(info.value)
