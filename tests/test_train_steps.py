"""Tests for prunephase.train_steps: masked, population and SAM training, data order, evaluation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import assert_trees_close  # pylint: disable=g-bad-import-order
from prunephase import data
from prunephase import models
from prunephase import population
from prunephase import pruning
from prunephase import train_steps

INPUT_SHAPE = (40, 1)
# Small models: a CNN (BatchNorm over batch and length, Conv1D under vmap) and a cheaper MLP.
CNN = models.CNN1D(10, (8, 8), (3, 3), (2, 2))
MLP = models.MLP(10, (16, 16))
# Shared specs, so that tests share compiled programs (compiles dominate on a small CPU).
# 64 train examples / batch 16 = 4 steps per epoch; the lr decays at step 6 (inside epoch 1).
SGD_SPEC = train_steps.TrainSpec(batch_size=16, steps_per_epoch=4, lr_boundaries=(6,))
SAM_SPEC = train_steps.TrainSpec(batch_size=16, steps_per_epoch=4, lr_boundaries=(6,), use_sam=True)


@functools.cache
def population_program(model, spec, masked):
  return population.PopulationProgram(model, spec, masked=masked)


@functools.cache
def step_fn(model, spec):
  return jax.jit(functools.partial(train_steps.train_step, model, spec))


def random_dataset(num_train=64, num_test=37, seed=0):
  """A small MNIST-1D-shaped dataset whose labels depend on the inputs (learnable)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num_train + num_test, *INPUT_SHAPE)).astype(np.float32)
  y = np.argmax(x[:, :10, 0] + 0.5 * rng.normal(size=(len(x), 10)), axis=1).astype(np.int32)
  return data.Dataset(
      x_train=jnp.asarray(x[:num_train]), y_train=jnp.asarray(y[:num_train]),
      x_test=jnp.asarray(x[num_train:]), y_test=jnp.asarray(y[num_train:]),
      mean=jnp.zeros(1), std=jnp.ones(1), name='t', num_classes=10)


def hparams(lr, weight_decay, sam_rho=None):
  """Population Hparams from per-member lists (sam_rho defaults to zeros)."""
  column = lambda v: jnp.asarray(v, jnp.float32)
  return train_steps.Hparams(lr=column(lr), weight_decay=column(weight_decay),
                             sam_rho=column(sam_rho if sam_rho is not None else [0.0] * len(lr)))


@functools.cache
def variable_shapes(model):
  return jax.eval_shape(functools.partial(models.init_variables, model, input_shape=INPUT_SHAPE),
                        jax.random.PRNGKey(0))


def numpy_variables(model, seed):
  """(params, batch_stats) drawn with NumPy (He-scaled kernels, BN scale near 1).

  Compiling Flax's initialisers costs seconds on a small CPU; the training code under test does
  not care where the weights came from.
  """
  rng = np.random.default_rng(seed)
  param_shapes, stat_shapes = variable_shapes(model)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      values = rng.normal(size=leaf.shape) * np.sqrt(2.0 / np.prod(leaf.shape[:-1]))
    elif name == 'scale':
      values = 1.0 + 0.1 * rng.normal(size=leaf.shape)
    else:
      values = 0.1 * rng.normal(size=leaf.shape)
    return jnp.asarray(values, jnp.float32)

  params = jax.tree_util.tree_map_with_path(draw, param_shapes)
  stats = {layer: {'mean': jnp.zeros(s['mean'].shape), 'var': jnp.ones(s['var'].shape)}
           for layer, s in stat_shapes.items()}
  return params, stats


def init_member(model, init_seed, data_seed):
  params, stats = numpy_variables(model, init_seed)
  return train_steps.member_state(params, stats, train_steps.data_key(data_seed))


def init_members(model, init_seeds, data_seeds):
  return train_steps.stack_members(
      [init_member(model, i, d) for i, d in zip(init_seeds, data_seeds)])


def to_numpy(tree):
  return jax.tree.map(np.asarray, tree)


def max_abs_difference(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ----------------------------------------------------------------------------- masked training


@pytest.mark.parametrize('spec', [SGD_SPEC, SAM_SPEC], ids=['sgd', 'sam'])
def test_masked_training_keeps_pruned_weights_exactly_zero(spec):
  model = MLP
  dataset = random_dataset()
  states = init_members(model, (0, 1), (3, 4))
  densities = (0.3, 0.5)  # One density per member.
  masks = train_steps.stack_members([
      pruning.mask_select(pruning.make_masks(
          train_steps.unstack_member(states.params, m),
          models.prunable_tree(train_steps.unstack_member(states.params, m)), densities), m)
      for m in range(2)])
  states = states.replace(params=pruning.apply_mask(states.params, masks))
  start = to_numpy(states.params)
  rho = [0.3, 0.8] if spec.use_sam else [0.0, 0.0]
  program = population_program(model, spec, True)
  for epoch in range(6):
    states, metrics = program.epoch(states, hparams([0.1, 0.05], [5e-4, 1e-2], rho), masks,
                                    dataset, epoch)
  assert np.all(np.isfinite(np.asarray(metrics['loss'])))
  np.testing.assert_array_equal(states.step, [24, 24])

  flat_masks = pruning.flatten_mask(masks)
  flat_params = pruning.flatten_mask(to_numpy(states.params))
  flat_start = pruning.flatten_mask(start)
  trace = pruning.flatten_mask(to_numpy(states.opt_state[1].trace))  # The momentum buffer.
  assert set(flat_masks) == {'dense0/kernel', 'dense1/kernel'}
  for name, mask in flat_masks.items():
    mask = np.asarray(mask)
    for m, density in enumerate(densities):
      assert mask[m].sum() == mask[m].size - round((1 - density) * mask[m].size)
    assert np.all(flat_params[name][~mask] == 0.0), name
    assert np.all(trace[name][~mask] == 0.0), name
    assert np.all(flat_params[name][mask] != flat_start[name][mask]), name
  # Unmasked leaves (BN, head) train freely.
  assert not np.allclose(states.params['head']['kernel'], start['head']['kernel'])
  assert not np.allclose(states.params['bn0']['scale'], start['bn0']['scale'])


# ------------------------------------------------------------------------ population vmapping


def test_population_equals_members_trained_alone():
  # SAM on: beyond per-member lr and weight decay it checks the per-member rho and that the
  # gradient norm of SAM is taken per member, not over the population.
  model, spec = CNN, SAM_SPEC
  dataset = random_dataset()
  init_seeds, data_seeds = (0, 1, 2), (10, 11, 12)
  lrs, wds, rhos = (0.1, 0.05, 0.02), (1e-4, 5e-4, 0.0), (0.05, 0.2, 0.0)
  program = population_program(model, spec, False)
  states = init_members(model, init_seeds, data_seeds)
  population_metrics = []
  for epoch in range(2):
    states, metrics = program.epoch(states, hparams(lrs, wds, rhos), None, dataset, epoch)
    population_metrics.append(to_numpy(metrics))
  states = to_numpy(states)

  # Each member alone: one jitted train_step at a time, on the batches of its own epoch order
  # (so this also checks that train_epoch slices data.epoch_order of the member's data seed).
  step = step_fn(model, spec)
  for m in range(3):
    alone = init_member(model, init_seeds[m], data_seeds[m])
    member_hparams = train_steps.Hparams(
        *(jnp.asarray(v[m], jnp.float32) for v in (lrs, wds, rhos)))
    for epoch in range(2):
      order = np.asarray(
          data.epoch_order(train_steps.data_key(data_seeds[m]), jnp.asarray(epoch), 64))
      step_metrics = []
      for i in range(spec.steps_per_epoch):
        batch = order[i * 16:(i + 1) * 16]
        alone, metrics = step(alone, member_hparams, None, dataset.x_train[batch],
                              dataset.y_train[batch])
        step_metrics.append(to_numpy(metrics))
      for key in ('loss', 'error'):
        np.testing.assert_allclose(population_metrics[epoch][key][m],
                                   np.mean([sm[key] for sm in step_metrics]),
                                   rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(population_metrics[epoch]['lr'][m], step_metrics[-1]['lr'],
                                 rtol=1e-6)
    member = train_steps.unstack_member(states, m)
    assert_trees_close(member.params, alone.params)
    assert_trees_close(member.batch_stats, alone.batch_stats)
    assert_trees_close(member.opt_state, alone.opt_state)
    np.testing.assert_array_equal(member.step, 8)
    np.testing.assert_array_equal(member.data_key, alone.data_key)
  # The lr decayed at step 6, inside epoch 1.
  np.testing.assert_allclose(population_metrics[1]['lr'], np.asarray(lrs) * 0.1, rtol=1e-6)
  # Members really differ (the comparison above is not vacuous).
  assert max_abs_difference(train_steps.unstack_member(states.params, 0),
                            train_steps.unstack_member(states.params, 1)) > 1e-2


def test_stack_and_unstack_members_round_trip():
  trees = [{'a': jnp.full((2,), float(i)), 'b': {'c': jnp.asarray(i)}} for i in range(3)]
  stacked = train_steps.stack_members(trees)
  assert stacked['a'].shape == (3, 2) and stacked['b']['c'].shape == (3,)
  for i, tree in enumerate(trees):
    assert_trees_close(train_steps.unstack_member(stacked, i), tree, rtol=0, atol=0)


# ----------------------------------------------------------------------------------------- SAM


def hand_loss(model, params, batch_stats, x, y):
  """Train-mode softmax cross-entropy written out, and the updated BN statistics."""
  logits, updated = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                                mutable=['batch_stats'])
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.mean(log_probs[jnp.arange(len(y)), y]), updated['batch_stats']


def global_norm_np(tree):
  return np.sqrt(sum(np.sum(np.asarray(g, np.float64) ** 2) for g in jax.tree.leaves(tree)))


def test_sam_step_equals_hand_computation():
  model = CNN
  dataset = random_dataset(num_train=32)
  x, y = dataset.x_train[:16], dataset.y_train[:16]
  state = init_member(model, 3, 0)
  # Non-trivial running statistics, so "first pass" vs "second pass" stats are distinguishable.
  state = state.replace(batch_stats=jax.tree.map(lambda s: s + 0.5, state.batch_stats))
  lr, wd, rho = 0.1, 5e-3, 0.5
  new_state, metrics = step_fn(model, SAM_SPEC)(
      state, train_steps.Hparams(*map(jnp.float32, (lr, wd, rho))), None, x, y)

  grad_fn = jax.jit(jax.value_and_grad(functools.partial(hand_loss, model), has_aux=True))
  (first_loss, stats1), g1 = grad_fn(state.params, state.batch_stats, x, y)
  norm = global_norm_np(g1)
  perturbed = jax.tree.map(lambda w, g: np.asarray(w, np.float64) + rho * np.asarray(g) / (
      norm + 1e-12), state.params, g1)
  (_, stats2), g2 = grad_fn(jax.tree.map(lambda w: jnp.asarray(w, jnp.float32), perturbed),
                            state.batch_stats, x, y)
  # First step of torch SGD: buf = g2 + wd * w; w <- w - lr * buf.
  want = jax.tree.map(lambda w, g: np.asarray(w, np.float64) - lr * (
      np.asarray(g, np.float64) + wd * np.asarray(w, np.float64)), state.params, g2)
  assert_trees_close(new_state.params, want, rtol=1e-5, atol=1e-6)
  # The plain SGD step would land elsewhere: the test sees the second gradient.
  plain = jax.tree.map(lambda w, g: np.asarray(w) - lr * (np.asarray(g) + wd * np.asarray(w)),
                       state.params, g1)
  assert max_abs_difference(new_state.params, plain) > 1e-4
  # BatchNorm statistics come from the first pass only.
  assert_trees_close(new_state.batch_stats, stats1, rtol=1e-6, atol=1e-7)
  assert max_abs_difference(stats1, stats2) > 1e-4
  # Loss and error are those of the first pass; lr and step as given.
  np.testing.assert_allclose(metrics['loss'], first_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics['lr'], lr, rtol=1e-6)
  assert int(new_state.step) == 1
  # rho = 0: the perturbation vanishes and the step is the plain SGD step.
  zero_rho_state, _ = step_fn(model, SAM_SPEC)(
      state, train_steps.Hparams(*map(jnp.float32, (lr, wd, 0.0))), None, x, y)
  assert_trees_close(zero_rho_state.params, plain, rtol=1e-5, atol=1e-6)
  assert_trees_close(zero_rho_state.batch_stats, stats1, rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------- data order


def test_epoch_order_depends_on_the_data_seed_and_epoch():
  n = 50
  order = lambda seed, epoch, stage=0: np.asarray(
      data.epoch_order(train_steps.data_key(seed, stage), jnp.asarray(epoch), n))
  for seed in (1, 2):
    for epoch in (0, 3):
      assert sorted(order(seed, epoch)) == list(range(n))  # A permutation.
      np.testing.assert_array_equal(order(seed, epoch), order(seed, epoch))
  assert not np.array_equal(order(1, 0), order(2, 0))
  assert not np.array_equal(order(1, 0), order(1, 1))
  assert not np.array_equal(order(1, 0), order(1, 0, stage=1))
  # Under vmap (as in a population), each member gets its own seed's order.
  keys = jnp.stack([train_steps.data_key(s) for s in (1, 2, 1)])
  orders = np.asarray(jax.vmap(lambda k: data.epoch_order(k, jnp.asarray(0), n))(keys))
  np.testing.assert_array_equal(orders[0], order(1, 0))
  np.testing.assert_array_equal(orders[1], order(2, 0))
  np.testing.assert_array_equal(orders[2], orders[0])


def test_members_with_the_same_data_seed_train_identically():
  dataset = random_dataset()
  states = init_members(CNN, (0, 0, 0), (1, 1, 2))
  program = population_program(CNN, SAM_SPEC, False)
  states, _ = program.epoch(states, hparams([0.1] * 3, [1e-4] * 3, [0.1] * 3), None, dataset, 0)
  members = [train_steps.unstack_member(states.params, m) for m in range(3)]
  assert max_abs_difference(members[0], members[1]) == 0.0
  assert max_abs_difference(members[0], members[2]) > 1e-3


# --------------------------------------------------------------------------- batched evaluation


@pytest.mark.parametrize('n,batch_size', [(10, 4), (8, 4), (3, 4), (10, 1)])
def test_batched_apply_covers_every_example_once(n, batch_size):
  x = jnp.arange(n * 3, dtype=jnp.float32).reshape(n, 3)
  calls = []

  def fn(batch):
    calls.append(batch.shape[0])
    return {'rows': batch, 'double_sum': 2.0 * batch.sum(-1)}

  got = train_steps.batched_apply(fn, x, batch_size)
  np.testing.assert_array_equal(got['rows'], x)  # In order, each example exactly once.
  np.testing.assert_array_equal(got['double_sum'], 2.0 * np.asarray(x).sum(-1))
  full, remainder = divmod(n, batch_size)
  want_calls = ({batch_size} if full else set()) | ({remainder} if remainder else set())
  assert set(calls) == want_calls


def test_batched_apply_equals_applying_a_model_to_all_at_once():
  dataset = random_dataset(num_train=10)
  state = init_member(CNN, 1, 0)
  apply = lambda b: CNN.apply({'params': state.params, 'batch_stats': state.batch_stats}, b,
                              train=False)
  got, want = jax.jit(lambda x: (train_steps.batched_apply(apply, x, 4), apply(x)))(dataset.x_train)
  assert got.shape == (10, 10)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_evaluate_matches_numpy_error_and_loss():
  dataset = random_dataset(num_train=37, num_test=37, seed=1)  # 37 = 4 * 8 + 5.
  state = init_member(CNN, 2, 0)
  rng = np.random.default_rng(0)
  stats = jax.tree.map(lambda s: jnp.asarray(rng.uniform(0.5, 2.0, s.shape), jnp.float32),
                       state.batch_stats)
  apply = jax.jit(lambda x: CNN.apply({'params': state.params, 'batch_stats': stats}, x,
                                      train=False))
  got = jax.jit(lambda p, s, d: {split: train_steps.evaluate(CNN, p, s, d, split, batch_size=8)
                                 for split in ('train', 'test')})(state.params, stats, dataset)
  for split, (x, y) in {'test': (dataset.x_test, dataset.y_test),
                        'train': (dataset.x_train, dataset.y_train)}.items():
    logits = np.asarray(apply(x), np.float64)
    labels = np.asarray(y)
    want_error = np.mean(np.argmax(logits, 1) != labels)
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    want_loss = -np.mean(log_probs[np.arange(len(labels)), labels])
    np.testing.assert_allclose(got[split]['error'], want_error, atol=1e-7)
    np.testing.assert_allclose(got[split]['loss'], want_loss, rtol=1e-5)
    assert 0.0 < want_error < 1.0
  # The two splits hold different data, so a swapped split would be caught.
  assert got['train']['loss'] != got['test']['loss']


def test_diverged_members():
  ln10 = np.log(10)
  loss = np.array([[1.0, 0.5], [1.0, np.inf], [2.4, ln10 + 0.1], [2.4, ln10 - 0.1],
                   [1.0, 0.4]])
  # 10 classes: chance error 0.9, "at chance" from 0.88.
  final_test_error = np.array([0.2, 0.2, 0.89, 0.89, np.nan])
  np.testing.assert_array_equal(train_steps.diverged(loss, final_test_error, 10),
                                [False, True, True, False, True])  # Row 3 still learns.
  no_loss = np.zeros((2, 0))
  np.testing.assert_array_equal(train_steps.diverged(no_loss, np.array([0.87, 0.885]), 10),
                                [False, True])
