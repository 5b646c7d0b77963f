"""Population training: one model's step and epoch, lifted to M members with `jax.vmap`.

A population is a pytree whose every leaf has a leading member axis M. Members that share
shapes and step counts (seeds, lr, weight decay, SAM rho, masks) run in ONE compiled program.
An epoch is a `lax.scan` over its steps inside one jitted call (per-step dispatch would dominate
for small models), or, where a loop body is slow (convolutions on XLA:CPU), chunks of steps per
call (`PopulationProgram.steps_per_call`, `dispatch.resolve_steps_per_call`).
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
  """

  batch_size: int
  steps_per_epoch: int
  lr_boundaries: tuple[int, ...] = ()
  lr_decay: float = 0.1
  momentum: float = 0.9
  use_sam: bool = False
  augmentation: str = 'none'


@flax.struct.dataclass
class Hparams:
  """Per-member hyperparameters; float32 scalars (shape (M,) in a population)."""

  lr: jax.Array
  weight_decay: jax.Array
  sam_rho: jax.Array


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

  def one(init_seed, data_seed):
    params, stats = models.init_variables(model, jax.random.PRNGKey(init_seed), input_shape)
    return member_state(params, stats, data_key(data_seed), momentum)

  return jax.jit(jax.vmap(one))(jnp.asarray(init_seeds), jnp.asarray(data_seeds))


def stack_members(members: Sequence[Any]) -> Any:
  """Stacks pytrees of equal structure along a new leading member axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *members)


def unstack_member(population: Any, index: int) -> Any:
  """Member `index` of a population pytree."""
  return jax.tree.map(lambda leaf: leaf[index], population)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy; logits (batch, classes) float, labels (batch,) int."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _loss_and_stats(model, params, batch_stats, x, y):
  logits, updated = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                                train=True, mutable=['batch_stats'])
  logits = logits.astype(jnp.float32)
  return cross_entropy(logits, y), (updated['batch_stats'], logits)


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
    hparams: this member's lr, weight decay and SAM rho (scalars).
    mask: pytree like params with bool leaves (None where never pruned), or None (dense).
    x: (batch, *input_shape) float32 inputs.
    y: (batch,) int32 labels.

  Returns:
    The new state and {'loss', 'error', 'lr'} of this step (loss and error of the first pass).
  """
  grad_fn = jax.value_and_grad(functools.partial(_loss_and_stats, model), has_aux=True)
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
                unroll: bool = False) -> tuple[MemberState, dict[str, jax.Array]]:
  """Steps [first_step, first_step + num_steps) of ONE model's epoch: a `lax.scan` over them,
  or with `unroll` the steps one after another in straight-line code (no loop at all: XLA:CPU
  compiles the convolutions of a loop body, even of a scan of length 1 or a fully unrolled
  one, to its slow convolution code, see `dispatch.py`).

  Each member draws its own permutation of the train set per epoch; step i of the epoch takes
  batch i of it, whichever call runs the step, so an epoch split into several calls trains
  exactly like one call over the whole epoch. `batch_sharding` (e.g. NamedSharding(mesh,
  P('data'))) splits each batch over a data axis: data parallelism within a member; BatchNorm
  statistics are then all-reduced by XLA.

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
    return jax.lax.scan(body, state, first_step + jnp.arange(num_steps))
  per_step = []
  for i in range(num_steps):
    state, metrics = body(state, first_step + i)
    per_step.append(metrics)
  return state, jax.tree.map(lambda *steps: jnp.stack(steps), *per_step)


def epoch_metrics(per_step: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Epoch means of per-step 'loss' and 'error' (last axis = steps) and the last step's 'lr'."""
  return {'loss': per_step['loss'].mean(-1), 'error': per_step['error'].mean(-1),
          'lr': per_step['lr'][..., -1]}


def train_epoch(model: nn.Module, spec: TrainSpec, state: MemberState, hparams: Hparams,
                mask: Any, dataset: data_lib.Dataset, epoch: jax.Array,
                batch_sharding: jax.sharding.Sharding | None = None
                ) -> tuple[MemberState, dict[str, jax.Array]]:
  """One epoch of ONE model in one `lax.scan` (see `train_steps`).

  Returns the new state and the epoch means of the train-mode loss and error, and the lr of the
  epoch's last step.
  """
  state, per_step = train_steps(model, spec, state, hparams, mask, dataset, epoch,
                                jnp.zeros((), jnp.int32), spec.steps_per_epoch, batch_sharding)
  return state, epoch_metrics(per_step)


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


MEMBERS, DATA = 'members', 'data'


def host_copy(tree: Any) -> Any:
  """Process-local arrays as NumPy, so `jax.device_put` can build arrays spanning processes
  (every process holds the same values)."""
  if jax.process_count() == 1:
    return tree
  return jax.tree.map(np.asarray, tree)


def make_mesh(members: int = 0, data: int = 1, devices: Sequence[jax.Device] | None = None
              ) -> jax.sharding.Mesh:
  """A ('members', 'data') mesh over `devices` (default: all, across every host).

  members = 0 puts every device not used by the data axis on the member axis.
  """
  devices = list(devices or jax.devices())
  if data < 1 or len(devices) % data:
    raise ValueError(f'mesh.data={data} must divide the {len(devices)} devices')
  members = members or len(devices) // data
  if members * data != len(devices):
    raise ValueError(f'mesh members x data = {members} x {data} != {len(devices)} devices')
  auto = jax.sharding.AxisType.Auto  # jax >= 0.12 defaults to explicit axes.
  return jax.make_mesh((members, data), (MEMBERS, DATA), axis_types=(auto, auto),
                       devices=devices)


def pad_members(tree: Any, multiple: int) -> tuple[Any, int]:
  """Pads the member axis to a multiple of `multiple` with copies of the last member.

  Returns the padded tree and the original member count (drop the padding with
  `tree[:count]`). Padded members train like the copied one and are never reported.
  """
  leaves = [leaf for leaf in jax.tree.leaves(tree)]
  count = leaves[0].shape[0]
  extra = -count % multiple
  if not extra:
    return tree, count
  pad = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])
  return jax.tree.map(pad, tree), count


@dataclasses.dataclass
class PopulationProgram:
  """The compiled epoch and evaluation of one population shape.

  Attributes:
    model: Flax module.
    spec: static training settings.
    masked: whether members carry masks (retraining) or not (dense training).
    mesh: optional ('members', 'data') mesh: members are sharded over 'members', each batch
      over 'data', the dataset is replicated. The member count must be a multiple of the
      'members' axis size (see `pad_members`).
    steps_per_call: None runs an epoch as one call (a loop over its steps); N runs it as calls
      of N unrolled steps (no loop; the last call shorter where N does not divide the epoch),
      with the same result up to float rounding (see `dispatch.resolve_steps_per_call`).
  """

  model: nn.Module
  spec: TrainSpec
  masked: bool
  mesh: jax.sharding.Mesh | None = None
  steps_per_call: int | None = None

  def __post_init__(self):
    mask_axis = 0 if self.masked else None
    batch_sharding, spmd_axis, shardings = None, None, {}
    if self.mesh is not None:
      named = lambda *spec: jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(*spec))
      members, replicated = named(MEMBERS), named()
      if self.mesh.shape[DATA] > 1:
        batch_sharding = named(DATA)
      spmd_axis = MEMBERS
      shardings = {'in_shardings': (members, members, members if self.masked else None,
                                    replicated, replicated),
                   'out_shardings': (members, members)}
    epoch_fn = functools.partial(train_epoch, self.model, self.spec,
                                 batch_sharding=batch_sharding)
    self._epoch = jax.jit(jax.vmap(epoch_fn, in_axes=(0, 0, mask_axis, None, None),
                                   spmd_axis_name=spmd_axis), donate_argnums=(0,), **shardings)
    if shardings:
      shardings['in_shardings'] += (replicated,)  # first_step.

    @functools.cache
    def chunk(num_steps):
      steps_fn = functools.partial(train_steps, self.model, self.spec, num_steps=num_steps,
                                   batch_sharding=batch_sharding, unroll=True)
      return jax.jit(jax.vmap(steps_fn, in_axes=(0, 0, mask_axis, None, None, None),
                              spmd_axis_name=spmd_axis), donate_argnums=(0,), **shardings)
    self._chunk = chunk
    concat = lambda chunks: jax.tree.map(lambda *c: jnp.concatenate(c, axis=-1), *chunks)
    self._epoch_metrics = jax.jit(lambda chunks: epoch_metrics(concat(chunks)))

    def test_metrics(state, dataset):
      return evaluate(self.model, state.params, state.batch_stats, dataset, 'test')
    self._evaluate = jax.jit(jax.vmap(test_metrics, in_axes=(0, None), spmd_axis_name=spmd_axis))

  def place(self, tree: Any) -> Any:
    """Puts a population pytree (leading member axis) where the program expects it."""
    if self.mesh is None:
      return tree
    sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(MEMBERS))
    return jax.device_put(host_copy(tree), sharding)

  def epoch(self, states: MemberState, hparams: Hparams, masks: Any,
            dataset: data_lib.Dataset, epoch: int) -> tuple[MemberState, dict[str, jax.Array]]:
    """Trains every member for one epoch (0-based `epoch` picks the data order)."""
    epoch = jnp.asarray(epoch, jnp.int32)
    total, size = self.spec.steps_per_epoch, self.steps_per_call
    if size is None or size >= total:
      return self._epoch(states, hparams, masks, dataset, epoch)
    chunks = []
    for first in range(0, total, size):
      states, per_step = self._chunk(min(size, total - first))(
          states, hparams, masks, dataset, epoch, jnp.asarray(first, jnp.int32))
      chunks.append(per_step)
    return states, self._epoch_metrics(chunks)

  def test(self, states: MemberState, dataset: data_lib.Dataset) -> dict[str, jax.Array]:
    """Eval-mode test loss and error of every member, each shape (M,)."""
    return self._evaluate(states, dataset)


def to_host(x: jax.Array) -> np.ndarray:
  """A NumPy copy of `x`, gathered from every process if it spans several."""
  if x.is_fully_addressable:
    return np.asarray(x)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def run_epochs(program: PopulationProgram, states: MemberState, hparams: Hparams, masks: Any,
               dataset: data_lib.Dataset, start_epoch: int, end_epoch: int,
               on_epoch_end: Callable[[int, MemberState, dict[str, np.ndarray]], None] | None = None
               ) -> MemberState:
  """Trains epochs [start_epoch, end_epoch) and calls `on_epoch_end(epoch, states, metrics)`.

  `epoch` passed to the callback is 1-based (the number of epochs completed); `metrics` holds
  NumPy arrays of shape (M,): train 'loss', 'error', 'lr' and eval-mode 'test_loss',
  'test_error'.
  """
  for epoch in range(start_epoch, end_epoch):
    states, train_metrics = program.epoch(states, hparams, masks, dataset, epoch)
    test_metrics = program.test(states, dataset)
    metrics = {k: to_host(v) for k, v in train_metrics.items()}
    metrics.update({f'test_{k}': to_host(v) for k, v in test_metrics.items()})
    if on_epoch_end is not None:
      on_epoch_end(epoch + 1, states, metrics)
  return states
