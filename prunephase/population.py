"""Compiled population programs: one model's epoch vmapped over M members, on a device mesh.

`PopulationProgram` compiles the epoch (or chunks of steps, `dispatch.resolve_steps_per_call`)
and the test evaluation of one population shape, optionally over chunks of members one after
another (`sequential_chunks` inside one call, `steps_program` in calls of their own);
`run_epochs` drives it. With a ('members', 'data') mesh, members are sharded over 'members'
and each batch over 'data'.
"""

from collections.abc import Callable, Sequence
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from prunephase import data as data_lib
from prunephase.train_steps import epoch_metrics
from prunephase.train_steps import evaluate
from prunephase.train_steps import Hparams
from prunephase.train_steps import MemberState
from prunephase.train_steps import STEP_METRICS
from prunephase.train_steps import train_epoch
from prunephase.train_steps import train_steps
from prunephase.train_steps import TrainSpec

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


@functools.lru_cache(maxsize=None)
def mesh_without_padding(mesh: jax.sharding.Mesh, num_members: int, batch_size: int
                         ) -> jax.sharding.Mesh:
  """A mesh for a population of `num_members` on which no member is a padded copy.

  `mesh` itself where its member axis divides `num_members`. Otherwise, on the CPU devices of
  one process (one host's cores split into devices), the largest member axis dividing
  `num_members` on that many of the devices, with no data axis: those devices share the same
  cores, so the others would only add a cross-device all-reduce per BatchNorm and gradient at
  every step (the default's dense groups of 3 members on 2 CPU devices: 1,500 steps of batch 16
  in 1.2 s on one device, 3.9 s split over two; of batch 256, 12.3 s against 15.8 s). Elsewhere
  (accelerators, several processes) every device stays in use: the largest member axis
  dividing `num_members` whose data axis divides the batch. `mesh` when no such layout exists.
  """
  devices = list(mesh.devices.flat)
  if num_members % mesh.shape[MEMBERS] == 0:
    return mesh
  if jax.process_count() == 1 and devices[0].platform == 'cpu':
    members = max(m for m in range(1, len(devices) + 1) if num_members % m == 0)
    return make_mesh(members, 1, devices[:members])
  for members in range(len(devices), 0, -1):
    data = len(devices) // members
    if len(devices) % members == 0 and num_members % members == 0 and batch_size % data == 0:
      return make_mesh(members, data, devices)
  return mesh


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


def shard_members(mesh: jax.sharding.Mesh | None, tree: Any) -> tuple[Any, int]:
  """A tree of arrays with a leading member (or pair) axis M, sharded over the mesh's member
  axis after padding M to a multiple of it (`pad_members`); returns (placed tree, M). Without
  a mesh, the tree as it is. Every process of a multi-host run passes the same arrays."""
  count = int(jax.tree.leaves(tree)[0].shape[0])
  if mesh is None:
    return tree, count
  tree, _ = pad_members(tree, mesh.shape[MEMBERS])
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(MEMBERS))
  return jax.device_put(host_copy(tree), sharding), count


def replicate(mesh: jax.sharding.Mesh | None, tree: Any) -> Any:
  """A tree copied to every device of the mesh (every host); unchanged without a mesh."""
  if mesh is None:
    return tree
  return jax.device_put(host_copy(tree), jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec()))


def sequential_chunks(vmapped: Callable[..., Any], in_axes: Sequence[int | None],
                      chunk_size: int | None, devices: int = 1) -> Callable[..., Any]:
  """`vmapped` (a function vmapped over a leading member axis M of the args whose `in_axes` is
  0; every output has that axis) run on chunks of at most `chunk_size` members per device, one
  chunk after another (`lax.map`), instead of all M at once.

  Members are independent, so the results are those of one vmapped call up to float rounding.
  On a CPU the smaller working set stays in cache (`dispatch.resolve_members_per_chunk`). The
  split keeps each device's members on it: with the member axis sharded in blocks over
  `devices`, member m = a * n + b goes to chunk b, and every chunk holds an equal share of each
  device's block. Chunks hold the largest divisor of the members per device that is at most
  `chunk_size`; None = one vmapped call over all members. (Programs that must hold no loop,
  see `dispatch.py`, take their chunks in separate calls instead: `steps_program`.)
  """
  if not chunk_size:
    return vmapped

  def run(*args):
    size = next(int(leaf.shape[0]) for arg, axis in zip(args, in_axes) if axis == 0
                for leaf in jax.tree.leaves(arg))
    num_chunks, _ = chunk_layout(size, chunk_size, devices)
    if num_chunks == 1:
      return vmapped(*args)
    split = lambda a: jnp.swapaxes(a.reshape(size // num_chunks, num_chunks, *a.shape[1:]), 0, 1)
    merge = lambda a: jnp.swapaxes(a, 0, 1).reshape(size, *a.shape[2:])
    chunked = [jax.tree.map(split, arg) if axis == 0 else None for arg, axis in zip(args, in_axes)]

    def one_chunk(chunk_args):
      return vmapped(*[c if axis == 0 else arg
                       for c, arg, axis in zip(chunk_args, args, in_axes)])
    return jax.tree.map(merge, jax.lax.map(one_chunk, chunked))
  return run


def chunk_layout(size: int, chunk_size: int | None, devices: int = 1) -> tuple[int, int]:
  """(chunks, members per chunk and device) for `size` members split in blocks over `devices`
  and taken in chunks of at most `chunk_size` per device (None = all at once): chunks hold the
  largest divisor of the members per device that is at most `chunk_size`."""
  local = size // devices if size % devices == 0 else size
  if not chunk_size:
    return 1, local
  per_chunk = max(c for c in range(1, min(chunk_size, local) + 1) if local % c == 0)
  return local // per_chunk, per_chunk


def member_devices(mesh: jax.sharding.Mesh | None) -> int:
  """Devices on the mesh's member axis (1 without a mesh)."""
  return mesh.shape[MEMBERS] if mesh is not None else 1


def vmap_members(fn: Callable[..., Any], in_axes: Sequence[int | None],
                 members_per_chunk: int | None, mesh: jax.sharding.Mesh | None = None
                 ) -> Callable[..., Any]:
  """`fn` of one member vmapped over the member axis (sharded over the mesh's 'members'), in
  chunks of `members_per_chunk` per device (`sequential_chunks`)."""
  vmapped = jax.vmap(fn, in_axes=in_axes, spmd_axis_name=MEMBERS if mesh is not None else None)
  return sequential_chunks(vmapped, in_axes, members_per_chunk, member_devices(mesh))


def steps_program(fn: Callable[..., tuple[Any, dict[str, jax.Array]]], masked: bool,
                  members_per_chunk: int | None, mesh: jax.sharding.Mesh | None,
                  shardings: dict[str, Any]) -> Callable[..., Any]:
  """`fn(state, hparams, mask, dataset, epoch, first_step) -> (state, per_step)` of one member
  (per-step metrics of shape (steps,)) as a jitted call on ONE chunk of members:
  `call(states, hparams, masks, dataset, epoch, first_step, chunk, buffer)` trains chunk
  `chunk` (a traced int) of every device's block of members, writes it back into `states` and
  its per-step metrics into `buffer[key]` (M, steps per epoch) at the columns of its steps;
  returns (states, buffer), both donated.

  Chunk i of a device holding members [a*k, (a+1)*k) is [a*k + i*c, a*k + (i+1)*c), c from
  `chunk_layout`, so each call is one plain vmap over c members per device: a program that
  must hold no loop (XLA:CPU convolutions, `dispatch.py`) takes its chunks one call after
  another instead of unrolling every member into one program, which compiled once per member
  (PreResNet-20, 4 members on one CPU device: about 24 s against 6 s for one).
  """
  mask_axis = 0 if masked else None
  vmapped = jax.vmap(fn, in_axes=(0, 0, mask_axis, None, None, None),
                     spmd_axis_name=MEMBERS if mesh is not None else None)
  devices = member_devices(mesh)

  def call(states, hparams, masks, dataset, epoch, first_step, chunk, buffer):
    size = int(jax.tree.leaves(states)[0].shape[0])
    num_chunks, per_chunk = chunk_layout(size, members_per_chunk, devices)
    blocks = lambda a: a.reshape(devices, num_chunks, per_chunk, *a.shape[1:])
    take = lambda a: jax.lax.dynamic_index_in_dim(blocks(a), chunk, 1, keepdims=False).reshape(
        devices * per_chunk, *a.shape[1:])
    put = lambda a, part: jax.lax.dynamic_update_index_in_dim(
        blocks(a), part.reshape(devices, per_chunk, *a.shape[1:]), chunk, 1).reshape(a.shape)
    part, per_step = vmapped(jax.tree.map(take, states), jax.tree.map(take, hparams),
                             jax.tree.map(take, masks) if masked else None, dataset, epoch,
                             first_step)
    states = jax.tree.map(put, states, part)
    buffer = {k: put(v, jax.lax.dynamic_update_slice_in_dim(take(v), per_step[k], first_step, 1))
              for k, v in buffer.items()}
    return states, buffer
  return jax.jit(call, donate_argnums=(0, 7), **shardings)


def forward_members_per_chunk(members_per_chunk: int | None) -> int | None:
  """Members per chunk for the forward-only programs (test evaluation, LMC, CKA outputs) of a
  population trained with `members_per_chunk`: one at a time wherever training goes in chunks
  (on a CPU, the default's test evaluation of 36 members took 0.09 s so, against 0.13 s in
  chunks of 2), all at once where training is (accelerators)."""
  return 1 if members_per_chunk else None


@functools.lru_cache(maxsize=16)
def _test_program(model: nn.Module, mesh: jax.sharding.Mesh | None,
                  members_per_chunk: int | None) -> Callable[..., dict[str, jax.Array]]:
  """Eval-mode test loss and error of every member: one jitted program per model and layout,
  shared by the programs of every batch size (it does not depend on the training spec)."""
  def test_metrics(state, dataset):
    return evaluate(model, state.params, state.batch_stats, dataset, 'test')
  return jax.jit(vmap_members(test_metrics, (0, None), members_per_chunk, mesh))


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
    members_per_chunk: None vmaps all of a device's members at once; N vmaps chunks of at most
      N of them, one chunk after another: in the same call for whole epochs
      (`sequential_chunks`), in separate calls for chunks of steps (`steps_program`).
  """

  model: nn.Module
  spec: TrainSpec
  masked: bool
  mesh: jax.sharding.Mesh | None = None
  steps_per_call: int | None = None
  members_per_chunk: int | None = None

  def __post_init__(self):
    mask_axis = 0 if self.masked else None
    batch_sharding, shardings, chunk_shardings = None, {}, {}
    if self.mesh is not None:
      named = lambda *spec: jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(*spec))
      members, replicated = named(MEMBERS), named()
      if self.mesh.shape[DATA] > 1:
        batch_sharding = named(DATA)
      # (states, hparams, masks, dataset, epoch, num_steps or first_step).
      shardings = {'in_shardings': (members, members, members if self.masked else None,
                                    replicated, replicated, replicated),
                   'out_shardings': (members, members)}
      # ... and (chunk, buffer) of the chunked form.
      chunk_shardings = {'in_shardings': (*shardings['in_shardings'], replicated, members),
                         'out_shardings': (members, members)}
    epoch_fn = functools.partial(train_epoch, self.model, self.spec,
                                 batch_sharding=batch_sharding)
    self._epoch = jax.jit(vmap_members(epoch_fn, (0, 0, mask_axis, None, None, None),
                                       self.members_per_chunk, self.mesh),
                          donate_argnums=(0,), **shardings)

    @functools.cache
    def chunk(num_steps):
      steps_fn = functools.partial(train_steps, self.model, self.spec, num_steps=num_steps,
                                   batch_sharding=batch_sharding, unroll=True)
      return steps_program(steps_fn, self.masked, self.members_per_chunk, self.mesh,
                           chunk_shardings)
    self._chunk = chunk
    self._epoch_metrics = jax.jit(epoch_metrics)

    self._evaluate = _test_program(self.model, self.mesh,
                                   forward_members_per_chunk(self.members_per_chunk))

  def place(self, tree: Any) -> Any:
    """Puts a population pytree (leading member axis) where the program expects it.

    Without a mesh it is committed to the first local device (no copy where it is there
    already). `jax.jit` keys its cache on which arguments are committed, and first states that
    mix committed leaves (restored weights) with uncommitted ones (fresh step counters) come
    back all committed, so each program compiled twice (24 s more for PreResNet-20's 4-member
    retrain program on a CPU); `epoch` and `test` therefore commit their population arguments
    themselves when there is no mesh.
    """
    if self.mesh is None:
      return jax.device_put(tree, jax.local_devices()[0])
    sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(MEMBERS))
    return jax.device_put(host_copy(tree), sharding)

  def epoch(self, states: MemberState, hparams: Hparams, masks: Any,
            dataset: data_lib.Dataset, epoch: int, num_steps: int | None = None
            ) -> tuple[MemberState, dict[str, jax.Array]]:
    """Trains every member for one epoch (0-based `epoch` picks the data order), or for its
    first `num_steps` steps (a run's shorter last epoch; same compiled program)."""
    if self.mesh is None:
      states, hparams, masks = self.place((states, hparams, masks))
    epoch = jnp.asarray(epoch, jnp.int32)
    total = self.spec.steps_per_epoch if num_steps is None else num_steps
    size = self.steps_per_call
    if not 0 < total <= self.spec.steps_per_epoch:
      raise ValueError(f'num_steps={num_steps} must be in [1, {self.spec.steps_per_epoch}]')
    if size is None or size >= self.spec.steps_per_epoch:
      return self._epoch(states, hparams, masks, dataset, epoch, jnp.asarray(total, jnp.int32))
    count = int(jax.tree.leaves(states)[0].shape[0])
    num_chunks, _ = chunk_layout(count, self.members_per_chunk, member_devices(self.mesh))
    buffer = self.place({k: np.zeros((count, self.spec.steps_per_epoch), np.float32)
                         for k in STEP_METRICS})
    for chunk in range(num_chunks):  # A chunk's steps in a row: its members stay in cache.
      for first in range(0, total, size):
        states, buffer = self._chunk(min(size, total - first))(
            states, hparams, masks, dataset, epoch, jnp.asarray(first, jnp.int32),
            jnp.asarray(chunk, jnp.int32), buffer)
    return states, self._epoch_metrics(buffer, jnp.asarray(total, jnp.int32))

  def test(self, states: MemberState, dataset: data_lib.Dataset) -> dict[str, jax.Array]:
    """Eval-mode test loss and error of every member, each shape (M,)."""
    if self.mesh is None:
      states = self.place(states)
    return self._evaluate(states, dataset)


def to_host(x: jax.Array) -> np.ndarray:
  """A NumPy copy of `x`, gathered from every process if it spans several."""
  if x.is_fully_addressable:
    return np.asarray(x)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def run_epochs(program: PopulationProgram, states: MemberState, hparams: Hparams, masks: Any,
               dataset: data_lib.Dataset, start_epoch: int, end_epoch: int,
               on_epoch_end: Callable[[int, MemberState, dict[str, np.ndarray]], None] | None = None,
               num_steps: int | None = None) -> MemberState:
  """Trains epochs [start_epoch, end_epoch) and calls `on_epoch_end(epoch, states, metrics)`;
  `num_steps` limits each epoch to its first steps (`PopulationProgram.epoch`).

  `epoch` passed to the callback is 1-based (the number of epochs completed); `metrics` holds
  NumPy arrays of shape (M,): train 'loss', 'error', 'lr' and eval-mode 'test_loss',
  'test_error'.
  """
  for epoch in range(start_epoch, end_epoch):
    states, train_metrics = program.epoch(states, hparams, masks, dataset, epoch, num_steps)
    test_metrics = program.test(states, dataset)
    metrics = {k: to_host(v) for k, v in train_metrics.items()}
    metrics.update({f'test_{k}': to_host(v) for k, v in test_metrics.items()})
    if on_epoch_end is not None:
      on_epoch_end(epoch + 1, states, metrics)
  return states
