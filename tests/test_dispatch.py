"""Steps per jitted call: 'auto' resolution, validation, and chunked epochs equal whole ones."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default as default_config  # pylint: disable=g-bad-import-order
from prunephase import config as config_lib
from prunephase import data
from prunephase import dispatch
from prunephase import models
from prunephase import population
from prunephase import pruning
from prunephase import train_steps
from prunephase.config import identity


class TinyConvNet(nn.Module):
  """conv3x3 -> BN -> ReLU -> mean pool -> head: a 2D-conv model that compiles in a second."""

  bn_momentum: float = 0.1  # What BatchNorm recalibration clones (models.with_bn_momentum).

  @nn.compact
  def __call__(self, x, train):  # pylint: disable=redefined-outer-name
    x = nn.Conv(4, (3, 3), padding=1, use_bias=False, name='conv')(x)
    x = nn.relu(models.BatchNorm(momentum=self.bn_momentum, name='bn')(x, train))
    return nn.Dense(10, name=models.HEAD_NAME)(x.mean(axis=(1, 2)))


IMAGE_SHAPE = (8, 8, 3)


def image_dataset(num_train=40, num_test=16):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (num_train + num_test, *IMAGE_SHAPE), np.uint8)
  y = rng.integers(0, 10, num_train + num_test).astype(np.int32)
  return data.Dataset(x_train=jnp.asarray(x[:num_train]), y_train=jnp.asarray(y[:num_train]),
                      x_test=jnp.asarray(x[num_train:]), y_test=jnp.asarray(y[num_train:]),
                      mean=jnp.full((3,), 0.5), std=jnp.full((3,), 0.25), name='t')


@pytest.mark.parametrize('value, expected', [
    ('auto', 'auto'), ('epoch', 'epoch'), ('1', 1), ('16', 16), (4, 4)])
def test_parse_steps_per_call(value, expected):
  assert dispatch.parse_steps_per_call(value) == expected


@pytest.mark.parametrize('value', [0, -1, True, 2.5])
def test_bad_steps_per_call_values(value):
  with pytest.raises(ValueError, match=r"train.steps_per_call must be 'auto'"):
    dispatch.parse_steps_per_call(value)


@pytest.mark.parametrize('value', ['0', '-1', 'fast', '', '2.5'])
def test_bad_steps_per_call_is_a_one_line_config_error(value):
  config = default_config.get_config('quick')
  config.train.steps_per_call = value  # The command line gives strings.
  with pytest.raises(config_lib.ConfigError, match=r"train.steps_per_call must be 'auto'") as error:
    config_lib.validate(config)
  assert '\n' not in str(error.value)


def test_auto_is_one_step_per_call_for_convolutions_on_cpu_only():
  resolve = dispatch.resolve_steps_per_call
  conv2d, conv_shape = models.PreResNet(10, 20), (32, 32, 3)
  assert resolve('auto', conv2d, conv_shape, backend='cpu') == 1
  assert resolve('auto', TinyConvNet(), IMAGE_SHAPE, backend='cpu') == 1
  assert resolve('auto', conv2d, conv_shape, backend='gpu') is None
  assert resolve('auto', conv2d, conv_shape, backend='tpu') is None
  # The 1D CNN is im2col + matmul, the MLP has no convolution: whole-epoch scans everywhere.
  assert resolve('auto', models.CNN1D(10), (40, 1), backend='cpu') is None
  assert resolve('auto', models.MLP(10), conv_shape, backend='cpu') is None
  assert resolve('epoch', conv2d, conv_shape, backend='cpu') is None
  assert resolve('3', models.MLP(10), (40, 1), backend='gpu') == 3


def test_changing_steps_per_call_does_not_refuse_a_workdir():
  old = default_config.get_config().to_dict()
  new = default_config.get_config().to_dict()
  new['train']['steps_per_call'] = '1'
  assert identity.changed_dense_fields(old, new) == []
  del old['train']  # A workdir written before the field existed.
  assert identity.changed_dense_fields(old, new) == []


def test_chunked_epochs_equal_whole_epoch_scans():
  # 40 examples / batch 8 = 5 steps per epoch: chunks of 2 leave a shorter last call. Masked,
  # augmented, with an lr decay inside epoch 1 and two members with their own data orders.
  model, dataset = TinyConvNet(), image_dataset()
  spec = train_steps.TrainSpec(batch_size=8, steps_per_epoch=5, lr_boundaries=(7,),
                               augmentation='crop_flip')
  start = train_steps.init_population(model, IMAGE_SHAPE, [0, 1], [10, 11])
  params = train_steps.unstack_member(start, 0).params
  masks = pruning.make_masks(params, models.prunable_tree(params), (0.5, 0.3))
  start = start.replace(params=pruning.apply_mask(start.params, masks))
  hparams = train_steps.Hparams(lr=jnp.asarray([0.1, 0.05]), weight_decay=jnp.asarray([1e-4, 0.0]),
                                sam_rho=jnp.zeros(2))
  results = {}
  program = population.PopulationProgram(model, spec, masked=True)
  for steps_per_call in (None, 1, 2):
    program.steps_per_call = steps_per_call  # One program: chunks of 2 reuse the 1-step call.
    # Weights committed to the device (restored from a checkpoint) beside uncommitted step
    # counters and keys, as a retrain run starts.
    states, history = jax.tree.map(jnp.copy, start), []
    states = states.replace(params=jax.device_put(states.params, jax.devices()[0]))
    for epoch in range(2):
      states, metrics = program.epoch(states, hparams, masks, dataset, epoch)
      history.append(metrics)
    results[steps_per_call] = jax.device_get((states, history))
  whole_states, whole_history = results[None]
  for steps_per_call in (1, 2):
    states, history = results[steps_per_call]
    for got, want in zip(jax.tree.leaves((states, history)),
                         jax.tree.leaves((whole_states, whole_history))):
      np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    np.testing.assert_array_equal(states.step, [10, 10])
  np.testing.assert_allclose(whole_history[1]['lr'], [0.01, 0.005], rtol=1e-6)
  pruned = ~np.asarray(masks['conv']['kernel'])
  assert np.all(np.asarray(results[1][0].params['conv']['kernel'])[pruned] == 0.0)


def test_a_shorter_last_epoch_runs_in_the_same_program():
  # 5 steps per epoch; the run's last epoch has 3 (a step count the epoch does not divide). The
  # whole-epoch program skips steps 3 and 4 and averages the metrics over steps 0-2: like a
  # program compiled for 3-step epochs (the old way) and the chunked path, with one compile.
  model, dataset = TinyConvNet(), image_dataset()
  spec = train_steps.TrainSpec(batch_size=8, steps_per_epoch=5, lr_boundaries=(7,))
  start = train_steps.init_population(model, IMAGE_SHAPE, [0, 1], [10, 11])
  hparams = train_steps.Hparams(lr=jnp.asarray([0.1, 0.05]), weight_decay=jnp.asarray([1e-4, 0.0]),
                                sam_rho=jnp.zeros(2))
  program = population.PopulationProgram(model, spec, masked=False)
  after_one, _ = program.epoch(jax.tree.map(jnp.copy, start), hparams, None, dataset, 0)
  after_one = jax.device_get(after_one)
  results = {}
  short = population.PopulationProgram(model, dataclasses.replace(spec, steps_per_epoch=3),
                                       masked=False)
  for name, run in (('same program', lambda s: program.epoch(s, hparams, None, dataset, 1, 3)),
                    ('3-step program', lambda s: short.epoch(s, hparams, None, dataset, 1))):
    results[name] = jax.device_get(run(jax.tree.map(jnp.asarray, after_one)))
  program.steps_per_call = 2
  results['chunks of 2'] = jax.device_get(
      program.epoch(jax.tree.map(jnp.asarray, after_one), hparams, None, dataset, 1, 3))
  want = results['3-step program']
  for name in ('same program', 'chunks of 2'):
    for got, expected in zip(jax.tree.leaves(results[name]), jax.tree.leaves(want)):
      np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6, err_msg=name)
  states, metrics = results['same program']
  np.testing.assert_array_equal(states.step, [8, 8])
  np.testing.assert_allclose(metrics['lr'], [0.01, 0.005], rtol=1e-6)  # Step 7: decayed.
  assert program._epoch._cache_size() == 1  # pylint: disable=protected-access
  for bad in (0, 6):
    with pytest.raises(ValueError, match=f'num_steps={bad} must be in'):
      program.epoch(states, hparams, None, dataset, 2, bad)


@pytest.mark.parametrize('value, expected', [('auto', 'auto'), ('0', 0), ('2', 2), (5, 5)])
def test_parse_members_per_chunk(value, expected):
  assert dispatch.parse_members_per_chunk(value) == expected


@pytest.mark.parametrize('value', ['-1', 'all', '', '1.5'])
def test_bad_members_per_chunk_is_a_one_line_config_error(value):
  config = default_config.get_config('quick')
  config.train.members_per_chunk = value
  with pytest.raises(config_lib.ConfigError,
                     match=r"train.members_per_chunk must be 'auto' or a whole number") as error:
    config_lib.validate(config)
  assert '\n' not in str(error.value)


def test_members_per_chunk_auto_is_small_on_cpu_and_all_elsewhere():
  resolve = dispatch.resolve_members_per_chunk
  cnn1d, conv2d = (models.CNN1D(10), (40, 1)), (TinyConvNet(), IMAGE_SHAPE)
  assert resolve('auto', *cnn1d, backend='cpu') == dispatch.CPU_MEMBERS_PER_CHUNK
  assert resolve('auto', *conv2d, backend='cpu') == 1  # A plain, not a grouped, convolution.
  for backend in ('gpu', 'tpu'):
    assert resolve('auto', *cnn1d, backend=backend) is None
    assert resolve('auto', *conv2d, backend=backend) is None
  assert resolve('0', *cnn1d, backend='cpu') is None
  assert resolve(3, *conv2d, backend='gpu') == 3


@pytest.mark.parametrize('members, chunk', [(6, 1), (6, 2), (6, 4), (7, 2), (6, None)])
def test_sequential_chunks_equal_one_vmap(members, chunk):
  # Member m's output depends on m's own arguments only, and the shared one enters too.
  def fn(tree, shared):
    return {'sum': tree['a'].sum() * shared, 'row': tree['b'] + tree['a'][:2]}
  rng = np.random.default_rng(0)
  tree = {'a': jnp.asarray(rng.normal(size=(members, 3))),
          'b': jnp.asarray(rng.normal(size=(members, 2)))}
  in_axes = (0, None)
  vmapped = jax.vmap(fn, in_axes=in_axes)
  chunked = jax.jit(population.sequential_chunks(vmapped, in_axes, chunk))
  want, got = vmapped(tree, 2.0), chunked(tree, 2.0)
  for key in want:
    np.testing.assert_allclose(got[key], want[key], rtol=1e-6)


def test_member_chunks_train_like_one_vmapped_population():
  # Four masked members of the 1D CNN: chunks of 1 and 3 (-> 2, a divisor) members, in one
  # call per epoch or in calls of their own.
  model = models.CNN1D(10, widths=(4, 4), kernel_sizes=(3, 3), strides=(2, 2))
  rng = np.random.default_rng(1)
  x = rng.normal(size=(48, 12, 1)).astype(np.float32)
  y = rng.integers(0, 10, 48).astype(np.int32)
  dataset = data.Dataset(x_train=jnp.asarray(x[:32]), y_train=jnp.asarray(y[:32]),
                         x_test=jnp.asarray(x[32:]), y_test=jnp.asarray(y[32:]),
                         mean=jnp.zeros((1,)), std=jnp.ones((1,)), name='t')
  spec = train_steps.TrainSpec(batch_size=8, steps_per_epoch=4)
  start = train_steps.init_population(model, (12, 1), [0, 1, 2, 3], [4, 5, 6, 7])
  params = train_steps.unstack_member(start, 0).params
  masks = pruning.make_masks(params, models.prunable_tree(params), (0.5, 0.4, 0.3, 0.2))
  hparams = train_steps.Hparams(lr=jnp.full((4,), 0.1), weight_decay=jnp.full((4,), 1e-4),
                                sam_rho=jnp.zeros(4))
  results = {}
  # Whole epochs (chunks in one call) and calls of 2 steps (chunks in calls of their own; all
  # members in one chunk: test_chunked_epochs_equal_whole_epoch_scans).
  for steps_per_call, chunk in ((None, None), (None, 3), (2, 1), (2, 3)):
    program = population.PopulationProgram(model, spec, masked=True,
                                           steps_per_call=steps_per_call,
                                           members_per_chunk=chunk)
    # Weights committed to the device (restored from a checkpoint) beside uncommitted step
    # counters and keys, as a retrain run starts.
    states, history = jax.tree.map(jnp.copy, start), []
    states = states.replace(params=jax.device_put(states.params, jax.devices()[0]))
    for epoch in range(2):
      states, metrics = program.epoch(states, hparams, masks, dataset, epoch)
      history.append(metrics)
    results[steps_per_call, chunk] = jax.device_get((states, history,
                                                     program.test(states, dataset)))
    # One compile: the program commits the first states itself, so the (all committed) states
    # of the second epoch find the same program.
    compiled = program._epoch if steps_per_call is None else program._chunk(2)  # pylint: disable=protected-access
    assert compiled._cache_size() == 1  # pylint: disable=protected-access
  for key, result in results.items():
    for got, want in zip(jax.tree.leaves(result), jax.tree.leaves(results[None, None])):
      np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6, err_msg=str(key))
