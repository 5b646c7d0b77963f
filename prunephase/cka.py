"""Linear centred kernel alignment (CKA) between two sets of representations.

The paper (Zhou et al., ICML 2023) compares two retrained sparse models by the linear CKA of
their outputs on the first 6,464 CIFAR-10 training images: once on the logits and once on the
softmax probabilities, and it reports the softmax number. It uses the biased HSIC estimator of
Kornblith et al. (2019). The unbiased estimator (Song et al. 2012, as used by Nguyen et al. 2021)
is provided as an alternative because the biased one is pulled upwards at small n.

Both functions take plain arrays and branch only on static shapes and the `estimator` string.
They are jitted (with `estimator` static) and nest inside `jax.jit` and `jax.vmap` (e.g. over a
population axis).
"""

import functools

import jax
import jax.numpy as jnp

from prunephase.config import names

ESTIMATORS = names.CKA_ESTIMATORS

# XLA on GPU/TPU may otherwise run float32 matmuls in TF32/bfloat16 passes, which costs several
# digits in sums of squared inner products; CKA values near 1 would then be unreliable.
_HIGHEST = jax.lax.Precision.HIGHEST


def _check_inputs(x: jax.Array, y: jax.Array, estimator: str) -> None:
  """Raises ValueError on invalid static arguments; shapes only, so it is jit-safe."""
  if estimator not in ESTIMATORS:
    raise ValueError(f'Unknown CKA estimator {estimator!r}; expected one of {ESTIMATORS}.')
  if x.ndim != 2 or y.ndim != 2:
    raise ValueError(
        f'CKA expects 2-D representations (n, features); got shapes {x.shape} and {y.shape}.')
  if x.shape[0] != y.shape[0]:
    raise ValueError(
        f'CKA needs the same number of examples in x and y; got {x.shape[0]} and {y.shape[0]}.')
  min_n = 2 if estimator == 'biased' else 4
  if x.shape[0] < min_n:
    raise ValueError(
        f'The {estimator} CKA estimator needs n >= {min_n} examples; got n={x.shape[0]}.')


def _centre_and_normalise(x: jax.Array, dtype: jnp.dtype) -> jax.Array:
  """Centres the columns of x (n, p) and scales it to unit Frobenius norm.

  Both CKA estimators are invariant to translating the features and to isotropic scaling, so
  this does not change the result in exact arithmetic. It does help in finite precision:
  centring removes the large common mean that would otherwise cancel in the HSIC terms, and unit
  norm keeps fourth-order sums like ||y^T x||_F^2 far from float32 overflow whatever the scale.
  A constant x has zero norm after centring and yields NaN (CKA is undefined there).

  Args:
    x: (n, p) array.
    dtype: floating dtype to compute in.

  Returns:
    (n, p) array of `dtype`.
  """
  x = x.astype(dtype)
  x = x - jnp.mean(x, axis=0, keepdims=True)
  return x / jnp.sqrt(jnp.sum(jnp.square(x)))


def _biased_cka(x: jax.Array, y: jax.Array) -> jax.Array:
  """Biased linear CKA of centred x (n, p) and y (n, q), computed in feature space.

  With centred columns, <HKH, HLH>_F = ||y^T x||_F^2, ||HKH||_F = ||x^T x||_F and likewise for
  y, so nothing of size n x n is formed: the cost is O(n (p + q)^2) time and O((p + q)^2) memory,
  which is what makes n ~ 50k feasible.
  """
  xty = jnp.matmul(x.T, y, precision=_HIGHEST)  # (p, q)
  xtx = jnp.matmul(x.T, x, precision=_HIGHEST)  # (p, p)
  yty = jnp.matmul(y.T, y, precision=_HIGHEST)  # (q, q)
  hsic_xy = jnp.sum(jnp.square(xty))
  norm_x = jnp.sqrt(jnp.sum(jnp.square(xtx)))
  norm_y = jnp.sqrt(jnp.sum(jnp.square(yty)))
  return hsic_xy / (norm_x * norm_y)


def _unbiased_hsic(k: jax.Array, l: jax.Array) -> jax.Array:
  """Unbiased HSIC estimator (Song et al. 2012) of two (n, n) Gram matrices with zero diagonal.

  HSIC_u = [tr(K L) + (1^T K 1)(1^T L 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K L 1] / (n (n-3)).
  """
  n = k.shape[0]
  # K and L are symmetric, so tr(K L) is the elementwise inner product (no n^3 matmul).
  trace_kl = jnp.sum(k * l)
  k_rows = jnp.sum(k, axis=1)  # K 1, shape (n,)
  l_rows = jnp.sum(l, axis=1)  # L 1, shape (n,)
  sum_k = jnp.sum(k_rows)
  sum_l = jnp.sum(l_rows)
  # 1^T K L 1 = (K 1) . (L 1) for symmetric K.
  k_l_cross = jnp.dot(k_rows, l_rows, precision=_HIGHEST)
  total = trace_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 * k_l_cross / (n - 2)
  return total / (n * (n - 3))


def _zero_diag_gram(x: jax.Array) -> jax.Array:
  """Linear-kernel Gram matrix x x^T of x (n, p) with its diagonal set to zero; (n, n)."""
  gram = jnp.matmul(x, x.T, precision=_HIGHEST)
  return gram * (1.0 - jnp.eye(x.shape[0], dtype=gram.dtype))


def _unbiased_cka(x: jax.Array, y: jax.Array) -> jax.Array:
  """Unbiased linear CKA of x (n, p) and y (n, q); O(n^2) memory."""
  k = _zero_diag_gram(x)
  l = _zero_diag_gram(y)
  hsic_kl = _unbiased_hsic(k, l)
  hsic_kk = _unbiased_hsic(k, k)
  hsic_ll = _unbiased_hsic(l, l)
  return hsic_kl / jnp.sqrt(hsic_kk * hsic_ll)


# Jitted so that eager calls compile once per shape instead of dispatching op by op; it nests
# freely inside an outer jit or vmap.
@functools.partial(jax.jit, static_argnames='estimator')
def linear_cka(x: jax.Array, y: jax.Array, estimator: str = 'biased') -> jax.Array:
  """Linear CKA between representations x (n, p) and y (n, q) of the same n examples.

  'biased' is Kornblith et al. (2019) with the biased HSIC estimator, as the paper computes it:
  K = x x^T, L = y y^T, K~ = H K H with H = I - 1 1^T / n, and
  CKA = <K~, L~>_F / (||K~||_F ||L~||_F). It is evaluated in the algebraically identical feature
  space form ||y_c^T x_c||_F^2 / (||x_c^T x_c||_F ||y_c^T y_c||_F) on column-centred x_c, y_c,
  so it never forms an n x n matrix.

  'unbiased' uses the unbiased HSIC estimator of Song et al. (2012) on the linear Gram matrices
  with zeroed diagonals (as in Nguyen et al. 2021):
  CKA = HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L)). It forms (n, n) matrices, so keep n at a
  few thousand. Unlike the biased value it is not confined to [0, 1] (it can be slightly
  negative for unrelated features), and it is ~0 rather than clearly positive for independent
  features at small n.

  Both are invariant to orthogonal transforms and isotropic scaling of either side and to
  translations of the features. Inputs are computed in their common floating dtype, at least
  float32 (float32 stays float32; float64 is used when x64 is enabled and the inputs are
  float64). A constant x or y gives NaN.

  Already jitted with `estimator` static (pass it positionally or by keyword); it nests inside
  `jax.jit` and `jax.vmap`, and validation uses shapes only, so errors are raised while tracing.

  Args:
    x: (n, p) array.
    y: (n, q) array with the same n.
    estimator: one of `ESTIMATORS`.

  Returns:
    Scalar array, the CKA of x and y.

  Raises:
    ValueError: for an unknown estimator, non-2-D inputs, mismatched n, or n < 2 ('biased') /
      n < 4 ('unbiased').
  """
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  _check_inputs(x, y, estimator)
  dtype = jnp.result_type(x.dtype, y.dtype, jnp.float32)
  x = _centre_and_normalise(x, dtype)
  y = _centre_and_normalise(y, dtype)
  if estimator == 'biased':
    return _biased_cka(x, y)
  return _unbiased_cka(x, y)


@functools.partial(jax.jit, static_argnames='estimator')
def output_cka(logits_a: jax.Array, logits_b: jax.Array,
               estimator: str = 'biased') -> dict[str, jax.Array]:
  """CKA of two models' outputs on the same n inputs, on logits and on softmax probabilities.

  Mirrors the paper's `cka_simi.py`, which saves [CKA(logits), CKA(softmax)]; the number the
  paper reports is the softmax one.

  Args:
    logits_a: (n, classes) logits of model A.
    logits_b: (n, classes) logits of model B on the same inputs, in the same order.
    estimator: one of `ESTIMATORS`.

  Returns:
    Dict with scalar arrays 'cka_logits' and 'cka_softmax'.

  Raises:
    ValueError: as for `linear_cka`.
  """
  logits_a = jnp.asarray(logits_a)
  logits_b = jnp.asarray(logits_b)
  # Softmax in at least float32 so that bf16 logits do not lose the small probabilities.
  dtype = jnp.result_type(logits_a.dtype, logits_b.dtype, jnp.float32)
  probs_a = jax.nn.softmax(logits_a.astype(dtype), axis=-1)
  probs_b = jax.nn.softmax(logits_b.astype(dtype), axis=-1)
  return {
      'cka_logits': linear_cka(logits_a, logits_b, estimator),
      'cka_softmax': linear_cka(probs_a, probs_b, estimator),
  }
