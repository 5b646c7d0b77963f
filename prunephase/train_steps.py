"""Population training: one model's step and epoch, lifted to M members with `jax.vmap`.

A population is a pytree whose every leaf has a leading member axis M. Members that share
shapes and step counts (seeds, lr, weight decay, SAM rho, masks) run in ONE compiled program.
An epoch is a `lax.scan` over its steps inside one jitted call (per-step dispatch would dominate
for small models), or, where a loop body is slow (convolutions on XLA:CPU), chunks of steps per
call (`train_steps`). The compiled population programs and the device mesh are in `population`.
"""

from collections.abc import Callable, Sequence
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from prunephase import data as data_lib
from prunephase import models
from prunephase import optim
from prunephase import pruning

# What `train_step` reports per step (and `train_steps` per step of a call).
STEP_METRICS = ('loss', 'error', 'lr')


@dataclasses.dataclass(frozen=True)
class TrainSpec:
  """Static description of one compiled training program (hashable).

  Attributes:
    batch_size: examples per step (the last incomplete batch of an epoch is dropped).
    steps_per_epoch: steps in one epoch (= n_train // batch_size unless capped).
    lr_boundaries: steps at which the learning rate is multiplied by `lr_decay`.
    lr_decay: multiplicative lr decay at each boundary.
    momentum: SGD momentum.
    use_sam: SAM (two gradients per step) instead of SGD.
    augmentation: 'none' or 'crop_flip' (see `data.augment`).
    loss: `loss(logits, labels, hparams) -> scalar` in place of the mean cross-entropy (a knob's
      hook, `knobs.Knob.loss`: logits (batch, classes) float32, labels (batch,) int32,
      hparams this member's `Hparams`), or None. Dense training only.
  """

  batch_size: int
  steps_per_epoch: int
  lr_boundaries: tuple[int, ...] = ()
  lr_decay: float = 0.1
  momentum: float = 0.9
  use_sam: bool = False
  augmentation: str = 'none'
  loss: Callable[..., jax.Array] | None = None


@flax.struct.dataclass
class Hparams:
  """Per-member hyperparameters: float32 scalars of one member, shape (M,) in a population.

  A field left out takes its default: SAM rho 0 and weight decay 0 (no SAM, no decay), lr 0.1;
  a population's defaults are broadcast to (M,) by `for_members` and the trainer. Dense
  members take the dense section's lr, weight decay and SAM rho where the knob does not set
  them (`knobs.dense_member_fields`), retrain members the retrain section's. `extra` holds the
  per-member values of fields a user's knob sets (`knobs.register_knob(sets=...)`), by
  name, for its loss hook (`TrainSpec.loss`); empty for the built-in knobs.
  """

  lr: jax.Array = 0.1
  weight_decay: jax.Array = 0.0
  sam_rho: jax.Array = 0.0
  extra: dict[str, jax.Array] = flax.struct.field(default_factory=dict)

  @classmethod
  def for_members(cls, num_members: int, **columns) -> 'Hparams':
    """A population's Hparams: each of `columns` a scalar or M values (a name that is not a
    field goes into `extra`); every field float32 of shape (M,)."""
    fields = {f.name for f in dataclasses.fields(cls)} - {'extra'}
    column = lambda value: jnp.broadcast_to(jnp.asarray(value, jnp.float32), (num_members,))
    named = {k: column(v) for k, v in columns.items() if k in fields}
    extra = {k: column(v) for k, v in columns.items() if k not in fields}
    return broadcast_members(cls(**named, extra=extra), num_members)


def broadcast_members(hparams: Hparams, num_members: int) -> Hparams:
  """`hparams` with every scalar leaf (a default) broadcast to float32 (M,)."""
  return jax.tree.map(
      lambda leaf: leaf if jnp.ndim(leaf) else jnp.full((num_members,), leaf, jnp.float32),
      hparams)


@flax.struct.dataclass
class MemberState:
  """Everything one member carries between steps.

  Attributes:
    params: model parameters.
    batch_stats: BatchNorm running statistics.
    opt_state: optax state (momentum buffer).
    step: int32 number of steps taken.
    data_key: uint32[2] key of this member's data order and augmentation (its seed).
  """

  params: Any
  batch_stats: Any
  opt_state: Any
  step: jax.Array
  data_key: jax.Array


def member_state(params, batch_stats, data_key: jax.Array, momentum: float = 0.9) -> MemberState:
  """A fresh optimizer state around given weights; `data_key` sets the data order."""
  return MemberState(params=params, batch_stats=batch_stats,
                     opt_state=optim.init_sgd_state(params, momentum),
                     step=jnp.zeros((), jnp.int32), data_key=data_key)


def data_key(seed: int | jax.Array, stage: int = 0) -> jax.Array:
  """The data-order key of `seed` in a stage (0 = dense, 1 = retrain: distinct streams)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), stage)


def init_population(model: nn.Module, input_shape: Sequence[int], init_seeds: Sequence[int],
                    data_seeds: Sequence[int], momentum: float = 0.9) -> MemberState:
  """M freshly initialised members: weights from `init_seeds`, data order from `data_seeds`."""
  if len(init_seeds) != len(data_seeds):
    raise ValueError('init_seeds and data_seeds need equal lengths')
  return _init_program(model, tuple(input_shape), momentum)(jnp.asarray(init_seeds),
                                                             jnp.asarray(data_seeds))


@functools.lru_cache(maxsize=16)
def _init_program(model: nn.Module, input_shape: tuple[int, ...], momentum: float):
  """The jitted initialiser of a population, compiled once per model (every dense group of a
  sweep reuses it: a fresh `jax.jit` per group compiled it again, about 3.5 s each here)."""
  def one(init_seed, data_seed):
    params, stats = models.init_variables(model, jax.random.PRNGKey(init_seed), input_shape)
    return member_state(params, stats, data_key(data_seed), momentum)
  return jax.jit(jax.vmap(one))


def stack_members(members: Sequence[Any]) -> Any:
  """Stacks pytrees of equal structure along a new leading member axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *members)


def unstack_member(population: Any, index: int) -> Any:
  """Member `index` of a population pytree."""
  return jax.tree.map(lambda leaf: leaf[index], population)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy; logits (batch, classes) float, labels (batch,) int."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _loss_and_stats(model, spec, hparams, params, batch_stats, x, y):
  logits, updated = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                                train=True, mutable=['batch_stats'])
  logits = logits.astype(jnp.float32)
  loss = cross_entropy(logits, y) if spec.loss is None else spec.loss(logits, y, hparams)
  return loss, (updated['batch_stats'], logits)


def train_step(model: nn.Module, spec: TrainSpec, state: MemberState, hparams: Hparams,
               mask: Any, x: jax.Array, y: jax.Array) -> tuple[MemberState, dict[str, jax.Array]]:
  """One SGD or SAM step of ONE model on one batch.

  Masked training keeps pruned weights exactly zero: the gradient is masked (so momentum and
  the coupled weight decay see zeros there) and the mask is re-applied after the update.
  SAM follows the paper: e = rho * g / ||g|| over all parameters, the second gradient at w + e
  on the same batch in training mode, BatchNorm statistics from the first pass only.

  Args:
    model: the Flax module.
    spec: static training settings.
    state: this member's state.
    hparams: this member's lr, weight decay, SAM rho and extras (scalars).
    mask: pytree like params with bool leaves (None where never pruned), or None (dense).
    x: (batch, *input_shape) float32 inputs.
    y: (batch,) int32 labels.

  Returns:
    The new state and {'loss', 'error', 'lr'} of this step (loss and error of the first pass;
    the loss is `spec.loss`'s where the knob supplies one).
  """
  grad_fn = jax.value_and_grad(functools.partial(_loss_and_stats, model, spec, hparams),
                               has_aux=True)
  (loss, (batch_stats, logits)), grads = grad_fn(state.params, state.batch_stats, x, y)
  if mask is not None:
    grads = pruning.apply_mask(grads, mask)
  if spec.use_sam:
    perturbation = optim.sam_perturbation(grads, hparams.sam_rho)
    perturbed = optax.apply_updates(state.params, perturbation)
    # Second pass: same batch, train mode; its BatchNorm statistics are discarded.
    _, grads = grad_fn(perturbed, state.batch_stats, x, y)
    if mask is not None:
      grads = pruning.apply_mask(grads, mask)
  lr = optim.step_lr(state.step, hparams.lr, spec.lr_boundaries, spec.lr_decay)
  tx = optim.sgd(lr, hparams.weight_decay, spec.momentum)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if mask is not None:
    params = pruning.apply_mask(params, mask)
  error = jnp.mean((jnp.argmax(logits, -1) != y).astype(jnp.float32))
  new_state = state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state,
                            step=state.step + 1)
  return new_state, {'loss': loss, 'error': error, 'lr': lr}


def train_steps(model: nn.Module, spec: TrainSpec, state: MemberState, hparams: Hparams,
                mask: Any, dataset: data_lib.Dataset, epoch: jax.Array, first_step: jax.Array,
                num_steps: int, batch_sharding: jax.sharding.Sharding | None = None,
                unroll: bool = False, active_steps: jax.Array | None = None
                ) -> tuple[MemberState, dict[str, jax.Array]]:
  """Steps [first_step, first_step + num_steps) of ONE model's epoch: a `lax.scan` over them,
  or with `unroll` the steps one after another in straight-line code (no loop at all: XLA:CPU
  compiles the convolutions of a loop body, even of a scan of length 1 or a fully unrolled
  one, to its slow convolution code, see `dispatch.py`).

  Each member draws its own permutation of the train set per epoch; step i of the epoch takes
  batch i of it, whichever call runs the step, so an epoch split into several calls trains
  exactly like one call over the whole epoch. `batch_sharding` (e.g. NamedSharding(mesh,
  P('data'))) splits each batch over a data axis: data parallelism within a member; BatchNorm
  statistics are then all-reduced by XLA.

  `active_steps` (a traced int, loop form only) runs only the steps before it and passes the
  state through the rest (their metrics are 0), so one compiled epoch also runs a shorter last
  epoch (`train_epoch`).

  Returns the new state and per-step 'loss', 'error', 'lr', each of shape (num_steps,).
  """
  order = data_lib.epoch_order(state.data_key, epoch, dataset.num_train)
  augment_key = jax.random.fold_in(jax.random.fold_in(state.data_key, epoch), 1 << 30)

  def body(state, step_in_epoch):
    indices = jax.lax.dynamic_slice(order, (step_in_epoch * spec.batch_size,), (spec.batch_size,))
    x = data_lib.prepare_inputs(dataset, dataset.x_train[indices])
    if batch_sharding is not None:
      x = jax.lax.with_sharding_constraint(x, batch_sharding)
    if spec.augmentation != 'none':
      x = data_lib.augment(jax.random.fold_in(augment_key, step_in_epoch), x, spec.augmentation,
                           data_lib.black_value(dataset))
    return train_step(model, spec, state, hparams, mask, x, dataset.y_train[indices])

  if not unroll:
    steps = first_step + jnp.arange(num_steps)
    if active_steps is None:
      return jax.lax.scan(body, state, steps)
    skip = lambda state, _: (state, {k: jnp.zeros((), jnp.float32) for k in STEP_METRICS})
    return jax.lax.scan(lambda state, step: jax.lax.cond(step < active_steps, body, skip, state,
                                                         step), state, steps)
  per_step = []
  for i in range(num_steps):
    state, metrics = body(state, first_step + i)
    per_step.append(metrics)
  return state, jax.tree.map(lambda *steps: jnp.stack(steps), *per_step)


def epoch_metrics(per_step: dict[str, jax.Array], num_steps: jax.Array | None = None
                  ) -> dict[str, jax.Array]:
  """Epoch means of per-step 'loss' and 'error' (last axis = steps) and the last step's 'lr';
  with `num_steps`, of the first `num_steps` steps only (the others were skipped)."""
  if num_steps is None:
    return {'loss': per_step['loss'].mean(-1), 'error': per_step['error'].mean(-1),
            'lr': per_step['lr'][..., -1]}
  ran = jnp.arange(per_step['loss'].shape[-1]) < num_steps
  mean = lambda v: jnp.sum(jnp.where(ran, v, 0.0), -1) / num_steps
  return {'loss': mean(per_step['loss']), 'error': mean(per_step['error']),
          'lr': jnp.take(per_step['lr'], num_steps - 1, axis=-1)}


def train_epoch(model: nn.Module, spec: TrainSpec, state: MemberState, hparams: Hparams,
                mask: Any, dataset: data_lib.Dataset, epoch: jax.Array,
                num_steps: jax.Array | None = None,
                batch_sharding: jax.sharding.Sharding | None = None
                ) -> tuple[MemberState, dict[str, jax.Array]]:
  """One epoch of ONE model in one `lax.scan` (see `train_steps`); with `num_steps` (traced,
  at most `spec.steps_per_epoch`) only its first `num_steps` steps: the shorter last epoch of a
  run whose step count the epoch does not divide, in the same compiled program.

  Returns the new state and the epoch means of the train-mode loss and error, and the lr of the
  epoch's last step.
  """
  state, per_step = train_steps(model, spec, state, hparams, mask, dataset, epoch,
                                jnp.zeros((), jnp.int32), spec.steps_per_epoch, batch_sharding,
                                active_steps=num_steps)
  return state, epoch_metrics(per_step, num_steps)


def batched_apply(fn: Callable[[jax.Array], Any], x: jax.Array, batch_size: int) -> Any:
  """Applies `fn` to `x` in order, in batches of `batch_size` plus one remainder batch.

  Full batches run under `lax.scan` (one compiled body), the remainder as one more call, so
  every example is seen exactly once. Outputs are concatenated along axis 0.
  """
  num_full, remainder = divmod(x.shape[0], batch_size)
  outputs = []
  if num_full:
    batches = x[:num_full * batch_size].reshape(num_full, batch_size, *x.shape[1:])
    stacked = jax.lax.map(fn, batches)
    outputs.append(jax.tree.map(lambda o: o.reshape(-1, *o.shape[2:]), stacked))
  if remainder:
    outputs.append(fn(x[num_full * batch_size:]))
  return jax.tree.map(lambda *o: jnp.concatenate(o), *outputs)


def predict(model: nn.Module, params, batch_stats, dataset: data_lib.Dataset, x: jax.Array,
            batch_size: int = 500) -> jax.Array:
  """Eval-mode logits (n, classes) float32 of ONE model on stored inputs `x` (n, ...)."""
  def logits_of(batch):
    inputs = data_lib.prepare_inputs(dataset, batch)
    return model.apply({'params': params, 'batch_stats': batch_stats}, inputs,
                       train=False).astype(jnp.float32)
  return batched_apply(logits_of, x, batch_size)


def loss_and_error(logits: jax.Array, labels: jax.Array) -> dict[str, jax.Array]:
  """Mean cross-entropy, error (fraction misclassified) and int32 'mistakes' (the count) of
  logits (n, classes). The count is exact where float errors are not (LMC ties)."""
  mistakes = jnp.sum(jnp.argmax(logits, -1) != labels, dtype=jnp.int32)
  return {'loss': cross_entropy(logits, labels),
          'error': mistakes.astype(jnp.float32) / labels.shape[0], 'mistakes': mistakes}


def evaluate(model: nn.Module, params, batch_stats, dataset: data_lib.Dataset,
             split: str = 'test', batch_size: int = 500) -> dict[str, jax.Array]:
  """Eval-mode loss and error of ONE model on the whole `split` ('train' or 'test')."""
  x, y = (dataset.x_test, dataset.y_test) if split == 'test' else (dataset.x_train,
                                                                    dataset.y_train)
  return loss_and_error(predict(model, params, batch_stats, dataset, x, batch_size), y)


CHANCE_MARGIN = 0.02  # A test error within this of chance (1 - 1/classes) is at chance.


def diverged(loss_history: np.ndarray, final_test_error: np.ndarray,
             num_classes: int) -> np.ndarray:
  """Which members diverged: a non-finite train loss in any epoch or a non-finite final test
  error, or a model that stays at chance: final train loss >= ln(num_classes) (no better than
  a uniform guess) and final test error within `CHANCE_MARGIN` of chance (1 - 1/num_classes).
  A weak model that still learns (loss below ln C) is not diverged. With no loss history
  ((M, 0), e.g. dense models seen through their test error alone) the test error decides.

  Args:
    loss_history: (M, epochs) train-mode losses of the epochs run.
    final_test_error: (M,) test error at the end.
    num_classes: C.

  Returns:
    (M,) booleans.
  """
  final_test_error = np.asarray(final_test_error, float)
  loss_history = np.asarray(loss_history, float).reshape(len(final_test_error), -1)
  at_chance = final_test_error >= 1.0 - 1.0 / num_classes - CHANCE_MARGIN
  if loss_history.shape[1]:
    at_chance &= loss_history[:, -1] >= np.log(num_classes)
  return ~np.isfinite(loss_history).all(axis=1) | ~np.isfinite(final_test_error) | at_chance
