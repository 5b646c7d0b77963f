"""Trained quadratic Bezier mode connectivity between the two members of a pair.

Yang et al.'s taxonomy (docs/definitions.md) measures global connectivity along a TRAINED curve
(Garipov et al. 2018): a quadratic Bezier curve with both ends fixed at the pair's weights and
its middle control point (the bend) theta trained so that the whole curve has low loss,

  w(t) = (1 - t)^2 w_a + 2 t (1 - t) theta + t^2 w_b,     t in [0, 1],

over ALL parameters (kernels, biases, BatchNorm scale and shift). It is evaluated in the
equivalent form w(t) = [(1 - t) w_a + t w_b] + 2 t (1 - t) (theta - (w_a + w_b) / 2): the bracket
is exactly `lmc.interpolate`, so with theta at its initial value (w_a + w_b) / 2 the curve
is bit for bit the straight line of LMC, and the ends are exactly w_a and w_b.

Training (`train_bend`), one pair: `epochs` epochs over the train set in a seeded shuffled order
(the last incomplete batch dropped, as in `train.train_epoch`; no augmentation unless
`CurveSpec.augmentation` asks for it); each step draws ONE t ~ U[0, 1]
from its own key, and takes an SGD step (momentum, coupled weight decay on theta: `optim.sgd`,
constant lr) on the cross-entropy of the model at w(t) on the batch, differentiating w.r.t.
theta only. BatchNorm is in training mode (each batch normalised with its own statistics, running
statistics discarded), as in Garipov et al.'s curve training. For a pruned pair (endpoints
sharing one mask) the gradient is masked and the mask re-applied after each update, so pruned
coordinates of theta stay exactly 0 and every point of the curve has the pair's sparsity.

Evaluation (`curve_metrics`) is that of LMC (`landscape`): at `num_points` evenly spaced t in
[0, 1] (ends included) BatchNorm statistics are recalibrated exactly as
`lmc.recalibrate_batch_stats` does, then the eval-mode train error (and optionally test
error) is measured; 'mc' is the same signed statistic as LMC (`lmc.lmc_statistic`) on the
train error: negative = a barrier along the trained curve, ~0 = connected by the curve.
"""

from collections.abc import Callable
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from prunephase import data as data_lib
from prunephase import lmc
from prunephase import optim
from prunephase import pruning
from prunephase import train_steps as train_lib


@dataclasses.dataclass(frozen=True)
class CurveSpec:
  """Static settings of curve training and evaluation (hashable).

  Attributes:
    epochs: epochs of bend training (0 = the untrained curve, i.e. the straight line).
    lr: constant SGD learning rate.
    batch_size: examples per step (the last incomplete batch of an epoch is dropped).
    momentum: SGD momentum.
    weight_decay: coupled weight decay on theta.
    num_points: points on the curve at evaluation, ends included.
    bn_batch_size: BatchNorm recalibration batch size at every point.
    point_batching: 'auto', 'vmap' or 'map' over the points (see `lmc.lmc_curve`).
    with_test: also record the test loss and error along the curve.
    augmentation: of the training batches, 'none' or 'crop_flip' (see `data.augment`).
  """

  epochs: int
  lr: float
  batch_size: int = 64
  momentum: float = 0.9
  weight_decay: float = 1e-4
  num_points: int = 11
  bn_batch_size: int = 64
  point_batching: str = 'auto'
  with_test: bool = True
  augmentation: str = 'none'


def midpoint(params_a, params_b):
  """(w_a + w_b) / 2 for every leaf: the bend's initial value."""
  return jax.tree.map(lambda a, b: (a + b) / 2, params_a, params_b)


def bezier(params_a, theta, params_b, t: jax.Array):
  """The point w(t) of the quadratic Bezier curve with ends a, b and bend theta; t scalar.

  Computed as interpolate(a, b, t) + 2 t (1 - t) (theta - midpoint(a, b)): exactly the ends at
  t = 0 and 1, and exactly the straight line when theta is the midpoint.
  """
  line = lmc.interpolate(params_a, params_b, t)
  offset = jax.tree.map(lambda c, m: c - m, theta, midpoint(params_a, params_b))
  return jax.tree.map(lambda w, d: w + (2.0 * t * (1.0 - t)) * d, line, offset)


def train_bend(model: nn.Module, spec: CurveSpec, params_a, params_b, batch_stats, mask,
               dataset: data_lib.Dataset, key: jax.Array):
  """Trains the bend theta of ONE pair's curve (see the module docstring).

  Args:
    model: the Flax module.
    spec: static settings (epochs, lr, batch_size, momentum, weight_decay are used).
    params_a, params_b: the pair's weights (pruned pairs: both already masked).
    batch_stats: a statistics tree of the model's structure (training-mode BatchNorm ignores
      its values; e.g. member a's).
    mask: the pair's mask (pytree like params, None for never-pruned leaves) or None.
    dataset: supplies the (un-augmented) train set.
    key: PRNG key of the data order and of the t draws.

  Returns:
    (theta, losses): the trained bend (pytree like params) and the (epochs,) train-mode mean
    loss of each epoch.
  """
  steps = dataset.num_train // spec.batch_size
  if spec.epochs and not steps:
    raise ValueError(f'curve batch size {spec.batch_size} exceeds the {dataset.num_train} '
                     'train examples')
  theta = midpoint(params_a, params_b)
  if mask is not None:
    theta = pruning.apply_mask(theta, mask)
  tx = optim.sgd(jnp.asarray(spec.lr, jnp.float32), jnp.asarray(spec.weight_decay, jnp.float32),
                 spec.momentum)
  order_key, t_key, augment_key = jax.random.split(key, 3)

  def curve_loss(theta, t, x, y):
    params = bezier(params_a, theta, params_b, t)
    logits, _ = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                            mutable=['batch_stats'])
    return train_lib.cross_entropy(logits.astype(jnp.float32), y)

  def step(carry, indices_and_step):
    theta, opt_state = carry
    indices, global_step = indices_and_step
    t = jax.random.uniform(jax.random.fold_in(t_key, global_step))
    x = data_lib.prepare_inputs(dataset, dataset.x_train[indices])
    x = data_lib.augment(jax.random.fold_in(augment_key, global_step), x, spec.augmentation)
    value, grads = jax.value_and_grad(curve_loss)(theta, t, x, dataset.y_train[indices])
    if mask is not None:
      grads = pruning.apply_mask(grads, mask)
    updates, opt_state = tx.update(grads, opt_state, theta)
    theta = optax.apply_updates(theta, updates)
    if mask is not None:
      theta = pruning.apply_mask(theta, mask)
    return (theta, opt_state), value

  def epoch(carry, epoch_index):
    order = data_lib.epoch_order(order_key, epoch_index, dataset.num_train)
    batches = order[:steps * spec.batch_size].reshape(steps, spec.batch_size)
    carry, values = jax.lax.scan(step, carry, (batches, epoch_index * steps + jnp.arange(steps)))
    return carry, values.mean()

  (theta, _), losses = jax.lax.scan(epoch, (theta, tx.init(theta)),
                                    jnp.arange(spec.epochs, dtype=jnp.int32))
  return theta, losses


def curve_point(model: nn.Module, params_a, theta, params_b, batch_stats,
                dataset: data_lib.Dataset, t: jax.Array, bn_batch_size: int = 64,
                with_test: bool = True) -> dict[str, jax.Array]:
  """Metrics at one point t of the curve, BatchNorm recalibrated there (as
  `lmc.path_point`): scalars 'train_error', 'train_loss' and maybe 'test_*'."""
  return lmc.recalibrated_metrics(model, bezier(params_a, theta, params_b, t),
                                  batch_stats, dataset, bn_batch_size, with_test)


def curve_metrics(model: nn.Module, spec: CurveSpec, params_a, theta, params_b, batch_stats,
                  dataset: data_lib.Dataset) -> dict[str, jax.Array]:
  """The curve of ONE pair evaluated at `spec.num_points` evenly spaced t in [0, 1].

  Returns:
    Dict of (K,) arrays 't' and the metrics of `curve_point`, plus scalars 'mc' and 'mc_index':
    `lmc.lmc_statistic` of the train misclassification counts (exact).
  """
  if spec.num_points < 2:
    raise ValueError(f'a curve needs at least 2 points, got {spec.num_points}')
  ts = jnp.linspace(0.0, 1.0, spec.num_points)
  at = functools.partial(curve_point, model, params_a, theta, params_b, batch_stats, dataset,
                         bn_batch_size=spec.bn_batch_size, with_test=spec.with_test)
  if lmc.resolve_point_batching(spec.point_batching) == 'vmap':
    curve = jax.vmap(at)(ts)
  else:
    curve = jax.lax.map(at, ts)
  curve = {'t': ts, **curve}
  curve['mc'], curve['mc_index'] = lmc.lmc_statistic(curve['train_mistakes'],
                                                     dataset.num_train)
  return curve


def connect_pair(model: nn.Module, spec: CurveSpec, params_a, params_b, batch_stats, mask,
                 dataset: data_lib.Dataset, key: jax.Array):
  """Trains ONE pair's bend, then evaluates its curve.

  Returns:
    (theta, metrics): the bend and the dict of `curve_metrics` plus 'bend_loss' (epochs,).
  """
  theta, losses = train_bend(model, spec, params_a, params_b, batch_stats, mask, dataset, key)
  metrics = curve_metrics(model, spec, params_a, theta, params_b, batch_stats, dataset)
  metrics['bend_loss'] = losses
  return theta, metrics


def make_pair_connector(model: nn.Module, spec: CurveSpec, masked: bool
                        ) -> Callable[..., tuple]:
  """A jitted `connect_pair` for P pairs at once.

  The returned function takes (params_a, params_b, batch_stats, masks, keys, dataset) with a
  leading pair axis P on all but `dataset` (masks: None when not `masked`; keys: (P, 2)
  uint32) and returns the P bends and a dict of (P, K) curves, (P,) 'mc' and 'mc_index', and
  (P, epochs) 'bend_loss'.
  """
  def one(params_a, params_b, batch_stats, mask, key, dataset):
    return connect_pair(model, spec, params_a, params_b, batch_stats, mask, dataset, key)

  return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0 if masked else None, 0, None)))
