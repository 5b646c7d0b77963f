"""Hessian metrics of ONE model's train loss: top eigenvalue and trace, lifted to populations.

The local-sharpness metrics of Yang et al.'s taxonomy (docs/definitions.md, Hessian), computed as
PyHessian does:

* Loss: mean softmax cross-entropy over a fixed set of train examples (e.g. the first
  `num_batches` batches of the un-augmented train set, in order, see `train_batches`), with
  BatchNorm in EVAL mode using the model's own running statistics. In eval mode every example's
  loss depends on that example only, so the batches merely chunk the computation: with equal
  batches the batch-size-weighted mean over batches is the mean over all examples.
* Hessian with respect to ALL parameters (kernels, biases, BatchNorm scale and shift), never the
  BatchNorm statistics. Coordinates are those of `jax.flatten_util.ravel_pytree(params)`: a flat
  vector of D entries in pytree order (sorted dict keys, each leaf in C order).
* Hessian-vector products are forward-over-reverse (`jax.jvp` of `jax.grad`), one batch at a
  time under `lax.scan`, so memory does not grow with the number of batches.
* Pruned models (`mask` given): the metrics are those of the sparse model, i.e. of
  H_m = diag(m) H diag(m) with m the 0/1 mask of kept coordinates (leaves whose mask is None are
  all kept). Every vector is multiplied by m, so the power iteration and the probes live in the
  kept subspace: the trace is the sum of H_ii over kept coordinates and the top eigenvalue that
  of the kept-by-kept block of H (the pruned directions only add eigenvalues 0).

`top_eigenvalue` is power iteration: it converges to the eigenvalue of largest MAGNITUDE (as in
PyHessian), which is the largest eigenvalue unless the most negative one is larger in size.
`trace` is Hutchinson's estimator with Rademacher probes. Both are written for one model and are
vmappable over members; `make_population_hessian` is the jitted vmapped form.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.flatten_util
import jax.numpy as jnp

from prunephase import data as data_lib
from prunephase import train_steps as train_lib


def train_batches(dataset: data_lib.Dataset, num_batches: int,
                  batch_size: int = 64) -> tuple[jax.Array, jax.Array]:
  """The first `num_batches` batches of the un-augmented train set, in order.

  Returns:
    x: (num_batches, batch_size, *input_shape) float32 model inputs (normalised).
    y: (num_batches, batch_size) int32 labels.

  Raises:
    ValueError: if the train set has fewer than num_batches * batch_size examples.
  """
  count = num_batches * batch_size
  if num_batches < 1 or batch_size < 1 or count > dataset.num_train:
    raise ValueError(f'{num_batches} batches of {batch_size} need {count} train examples, '
                     f'have {dataset.num_train}')
  x = data_lib.prepare_inputs(dataset, dataset.x_train[:count])
  return (x.reshape(num_batches, batch_size, *x.shape[1:]),
          dataset.y_train[:count].reshape(num_batches, batch_size))


def flat_mask(params, mask) -> jax.Array:
  """The (D,) float32 0/1 vector of kept coordinates in `ravel_pytree(params)` order.

  Args:
    params: one model's params.
    mask: pytree like params with bool (or 0/1) leaves and None for never-pruned leaves, or
      None (dense: all ones).
  """
  if mask is None:
    return jnp.ones_like(jax.flatten_util.ravel_pytree(params)[0])
  ones = jax.tree_util.tree_map(
      lambda m, p: jnp.ones_like(p) if m is None else jnp.asarray(m).astype(p.dtype),
      mask, params, is_leaf=lambda m: m is None)
  return jax.flatten_util.ravel_pytree(ones)[0]


def _batch_loss(model, params, batch_stats, x, y):
  """Eval-mode mean cross-entropy of one batch x (n, ...), y (n,)."""
  logits = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=False)
  return train_lib.cross_entropy(logits.astype(jnp.float32), y)


def loss(model: nn.Module, params, batch_stats, x: jax.Array, y: jax.Array) -> jax.Array:
  """Eval-mode mean cross-entropy of one model over batches x (B, n, ...), y (B, n)."""
  return jnp.mean(jax.lax.map(lambda b: _batch_loss(model, params, batch_stats, *b), (x, y)))


def make_hvp(model: nn.Module, params, batch_stats, x: jax.Array, y: jax.Array,
             mask=None) -> tuple[Callable[[jax.Array], jax.Array], int]:
  """The Hessian-vector product of `loss` at `params`, on flat vectors.

  Args:
    model, params, batch_stats: one model (no member axis).
    x: (num_batches, batch_size, *input_shape) float32 inputs; y: (num_batches, batch_size).
    mask: see `flat_mask`; the product is then diag(m) H diag(m) v.

  Returns:
    (hvp, D): `hvp` maps a (D,) float32 vector to H v (D,); D is the number of parameters.
  """
  flat_params, unravel = jax.flatten_util.ravel_pytree(params)
  m = flat_mask(params, mask)
  num_batches = x.shape[0]

  def hvp(v: jax.Array) -> jax.Array:
    tangent = unravel(v * m)

    def body(total, batch):
      xb, yb = batch
      grad_fn = jax.grad(lambda p: _batch_loss(model, p, batch_stats, xb, yb))
      _, hv = jax.jvp(grad_fn, (params,), (tangent,))
      return total + jax.flatten_util.ravel_pytree(hv)[0], None

    total, _ = jax.lax.scan(body, jnp.zeros_like(flat_params), (x, y))
    return total / num_batches * m

  return hvp, flat_params.size


def _normalise(v: jax.Array) -> jax.Array:
  norm = jnp.linalg.norm(v)
  return jnp.where(norm > 0, v / jnp.where(norm > 0, norm, 1.0), v)


def _power_and_probes(hvp: Callable[[jax.Array], jax.Array], start: jax.Array, num_iters: int,
                      probes: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`num_iters` power-iteration steps from `start`, then one product per probe, in ONE loop.

  A single loop body holds the only Hessian-vector product, so the metrics together compile
  (and under vmap batch) one HVP program rather than one per metric.

  Returns:
    (eigenvalue, vector, quadratics): the last Rayleigh quotient (0 if num_iters = 0), its
    unit-norm iterate (D,), and z_i . H z_i for each probe, (P,).
  """
  num_probes = probes.shape[0]
  padded = jnp.concatenate([probes, jnp.zeros((1, start.size), start.dtype)])

  def body(i, carry):
    v, eigenvalue, vector, quadratics = carry
    is_power = i < num_iters
    probe_index = jnp.clip(i - num_iters, 0, num_probes)
    u = jnp.where(is_power, v, padded[probe_index])
    w = hvp(u)
    value = jnp.vdot(u, w)  # hvp already multiplies by the mask: u . (m H m u).
    quadratics = jnp.where(is_power, quadratics, quadratics.at[probe_index].set(value))
    return (jnp.where(is_power, _normalise(w), v), jnp.where(is_power, value, eigenvalue),
            jnp.where(is_power, u, vector), quadratics)

  carry = (start, jnp.zeros((), jnp.float32), start, jnp.zeros((num_probes + 1,), jnp.float32))
  _, eigenvalue, vector, quadratics = jax.lax.fori_loop(0, num_iters + num_probes, body, carry)
  return eigenvalue, vector, quadratics[:num_probes]


def _mean_and_stderr(values: jax.Array) -> tuple[jax.Array, jax.Array]:
  count = values.shape[0]
  stderr = jnp.std(values, ddof=1) / jnp.sqrt(count) if count > 1 else jnp.float32(jnp.nan)
  return jnp.mean(values), stderr


def _start_vector(key: jax.Array, params, mask) -> jax.Array:
  """The power iteration's start: standard normal from `key`, masked, unit norm."""
  m = flat_mask(params, mask)
  return _normalise(jax.random.normal(key, m.shape, jnp.float32) * m)


def _rademacher(key: jax.Array, num_probes: int, size: int) -> jax.Array:
  if num_probes < 1:
    raise ValueError(f'num_probes must be >= 1, got {num_probes}')
  return jax.random.rademacher(key, (num_probes, size), jnp.float32)


def top_eigenvalue(model: nn.Module, params, batch_stats, x: jax.Array, y: jax.Array,
                   key: jax.Array, num_iters: int = 20,
                   mask=None) -> tuple[jax.Array, jax.Array]:
  """Largest-magnitude Hessian eigenvalue of one model by power iteration.

  Start: a standard normal vector from `key` (times the mask), normalised. Each of the
  `num_iters` iterations computes w = H v, the Rayleigh quotient v.w (v has unit norm) and
  v <- w / |w|. No early stopping (a fixed count keeps members in one vmapped program); the
  error of the quotient shrinks like (lambda_2 / lambda_1) ** (2 * num_iters).

  Args:
    model, params, batch_stats, x, y, mask: see `make_hvp`.
    key: PRNG key of the start vector.
    num_iters: Hessian-vector products (>= 1).

  Returns:
    (eigenvalue, vector): the Rayleigh quotient of the last iterate, a float32 scalar, and that
    unit-norm iterate, (D,) in `ravel_pytree(params)` order.
  """
  if num_iters < 1:
    raise ValueError(f'num_iters must be >= 1, got {num_iters}')
  hvp, size = make_hvp(model, params, batch_stats, x, y, mask)
  eigenvalue, vector, _ = _power_and_probes(hvp, _start_vector(key, params, mask), num_iters,
                                            jnp.zeros((0, size), jnp.float32))
  return eigenvalue, vector


def trace(model: nn.Module, params, batch_stats, x: jax.Array, y: jax.Array,
          key: jax.Array | None = None, num_probes: int = 20, mask=None,
          probes: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """Hutchinson estimate of the Hessian trace of one model and its standard error.

  tr(H) ~ mean_i z_i.H z_i over probes z_i with E[z z^T] = I: Rademacher (+-1) vectors drawn
  from `key`, or the given `probes`. Probes are multiplied by the mask, so with a mask the
  estimate is of tr(diag(m) H diag(m)) = sum of H_ii over kept coordinates. Any orthogonal basis
  scaled to squared norm D (rows of a +-1 Hadamard matrix, sqrt(D) times the identity's
  columns) gives the trace exactly.

  Args:
    model, params, batch_stats, x, y, mask: see `make_hvp`.
    key: PRNG key of the Rademacher probes (unused if `probes` is given).
    num_probes: number of Rademacher probes (unused if `probes` is given).
    probes: optional (P, D) float32 probe vectors in `ravel_pytree(params)` order.

  Returns:
    (estimate, stderr): float32 scalars; stderr = sample std (ddof 1) / sqrt(P), NaN if P = 1.
  """
  hvp, size = make_hvp(model, params, batch_stats, x, y, mask)
  if probes is None:
    if key is None:
      raise ValueError('trace needs a key (Rademacher probes) or explicit probes')
    probes = _rademacher(key, num_probes, size)
  elif probes.ndim != 2 or probes.shape[1] != size or not probes.shape[0]:
    raise ValueError(f'probes must have shape (P >= 1, {size}), got {probes.shape}')
  _, _, quadratics = _power_and_probes(hvp, jnp.zeros((size,), jnp.float32), 0,
                                       jnp.asarray(probes, jnp.float32))
  return _mean_and_stderr(quadratics)


def hessian_metrics(model: nn.Module, params, batch_stats, x: jax.Array, y: jax.Array,
                    key: jax.Array, mask=None, num_iters: int = 20,
                    num_probes: int = 20) -> dict[str, jax.Array]:
  """Top eigenvalue and trace of one model in one loop of num_iters + num_probes products.

  The same numbers as `top_eigenvalue` with the first and `trace` with the second key of
  `jax.random.split(key)`.

  Returns:
    {'top_eigenvalue', 'trace', 'trace_stderr'}: float32 scalars.
  """
  if num_iters < 1:
    raise ValueError(f'num_iters must be >= 1, got {num_iters}')
  eig_key, trace_key = jax.random.split(key)
  hvp, size = make_hvp(model, params, batch_stats, x, y, mask)
  eigenvalue, _, quadratics = _power_and_probes(
      hvp, _start_vector(eig_key, params, mask), num_iters,
      _rademacher(trace_key, num_probes, size))
  estimate, stderr = _mean_and_stderr(quadratics)
  return {'top_eigenvalue': eigenvalue, 'trace': estimate, 'trace_stderr': stderr}


def make_population_hessian(model: nn.Module, num_iters: int = 20, num_probes: int = 20,
                            masked: bool = False) -> Callable[..., dict[str, jax.Array]]:
  """A jitted function computing `hessian_metrics` for M members at once.

  The returned function takes (params, batch_stats, masks, x, y, keys): params, batch_stats,
  keys ((M, 2) uint32) and, if `masked`, masks with a leading member axis M (pass None when
  not masked); x, y shared by all members. It returns a dict of (M,) arrays.
  """
  def one(params, batch_stats, mask, x, y, key):
    return hessian_metrics(model, params, batch_stats, x, y, key, mask, num_iters, num_probes)

  fn = jax.vmap(one, in_axes=(0, 0, 0 if masked else None, None, None, 0))
  return jax.jit(fn)

