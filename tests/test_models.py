"""Tests for prunephase.models and prunephase.kernels: im2col Conv1D, PyTorch BatchNorm, their
written-out gradients, parameter counts, predicates."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import matmul_dtypes  # pylint: disable=g-bad-import-order
from prunephase import kernels
from prunephase import models
from prunephase import registry

CIFAR_SHAPE = (32, 32, 3)


def lax_conv1d(x, kernel, stride, padding):
  """Reference cross-correlation in NWC / WIO / NWC layout."""
  return jax.lax.conv_general_dilated(
      x, kernel, window_strides=(stride,), padding=[(padding, padding)],
      dimension_numbers=('NWC', 'WIO', 'NWC'), precision=jax.lax.Precision.HIGHEST)


def conv1d_apply(kernel, x, stride, padding, bias=None, train=False):
  module = models.Conv1D(kernel.shape[-1], kernel.shape[0], stride, padding,
                         use_bias=bias is not None)
  params = {'kernel': kernel} if bias is None else {'kernel': kernel, 'bias': bias}
  return module.apply({'params': params}, x, train)


def param_shapes(model, input_shape=CIFAR_SHAPE):
  """(params, batch_stats) as ShapeDtypeStructs, without running the initialiser."""
  return jax.eval_shape(lambda key: models.init_variables(model, key, input_shape),
                        jax.random.PRNGKey(0))


def prunable_count(params, prune_head=False):
  flags = jax.tree.leaves(models.prunable_tree(params, prune_head))
  sizes = [int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params)]
  return sum(size for flag, size in zip(flags, sizes) if flag)


def config(name, **fields):
  return ml_collections.ConfigDict({'name': name, **fields})


# ------------------------------------------------------------------------------------ Conv1D


@pytest.mark.parametrize('kernel_size,stride,padding', [
    (1, 1, 0), (3, 1, 1), (3, 2, 1), (5, 2, 2), (5, 3, 0), (4, 2, 1), (7, 1, 3), (2, 3, 2)])
def test_conv1d_matches_lax_conv(kernel_size, stride, padding):
  rng = np.random.default_rng(kernel_size * 100 + stride * 10 + padding)
  x = jnp.asarray(rng.normal(size=(3, 17, 4)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(kernel_size, 4, 6)), jnp.float32)
  got = conv1d_apply(kernel, x, stride, padding)
  want = lax_conv1d(x, kernel, stride, padding)
  assert got.shape == want.shape == (3, (17 + 2 * padding - kernel_size) // stride + 1, 6)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv1d_bias_is_added_per_feature():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 9, 3)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 5)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
  got = conv1d_apply(kernel, x, 2, 1, bias)
  np.testing.assert_allclose(got, lax_conv1d(x, kernel, 2, 1) + bias, rtol=1e-5, atol=1e-5)


def test_conv1d_is_cross_correlation_on_a_hand_example():
  # y[l] = sum_k x[l + k] * w[k] (no flip), padding 1 on each side.
  x = jnp.asarray([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
  kernel = jnp.asarray([1.0, 10.0, 100.0]).reshape(3, 1, 1)
  got = conv1d_apply(kernel, x, 1, 1)
  np.testing.assert_allclose(np.asarray(got).ravel(), [210.0, 321.0, 432.0, 43.0])


@pytest.mark.parametrize('kernel_size,stride,padding', [(3, 1, 1), (5, 2, 2), (4, 3, 0)])
def test_conv1d_under_vmap_over_member_kernels(kernel_size, stride, padding):
  rng = np.random.default_rng(7)
  members = 3
  kernels = jnp.asarray(rng.normal(size=(members, kernel_size, 2, 5)), jnp.float32)
  # Shared inputs and per-member inputs.
  x = jnp.asarray(rng.normal(size=(4, 20, 2)), jnp.float32)
  xs = jnp.asarray(rng.normal(size=(members, 4, 20, 2)), jnp.float32)
  shared = jax.vmap(lambda k: conv1d_apply(k, x, stride, padding))(kernels)
  own = jax.vmap(lambda k, xi: conv1d_apply(k, xi, stride, padding))(kernels, xs)
  for m in range(members):
    np.testing.assert_allclose(shared[m], lax_conv1d(x, kernels[m], stride, padding),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(own[m], lax_conv1d(xs[m], kernels[m], stride, padding),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('kernel_size,stride,padding', [(3, 1, 1), (5, 2, 2), (4, 3, 0)])
def test_conv1d_gradients_match_lax_conv(kernel_size, stride, padding, train):
  # Both modes' gradients (input and kernel; training mode's are hand-written in
  # patch_matmul) are those of the reference convolution, for one model and vmapped over member
  # kernels, and equal values too.
  rng = np.random.default_rng(11)
  x = jnp.asarray(rng.normal(size=(3, 17, 4)), jnp.float32)
  kernels = jnp.asarray(rng.normal(size=(2, kernel_size, 4, 6)), jnp.float32)
  weights = jnp.asarray(rng.normal(size=(3, (17 + 2 * padding - kernel_size) // stride + 1, 6)),
                        jnp.float32)
  ours = lambda k, xi: jnp.sum(conv1d_apply(k, xi, stride, padding, train=train) * weights)
  reference = lambda k, xi: jnp.sum(lax_conv1d(xi, k, stride, padding) * weights)
  np.testing.assert_allclose(ours(kernels[0], x), reference(kernels[0], x), rtol=1e-4)
  # Jitted: one compile per gradient instead of one per eager operation.
  grads = lambda f: jax.jit(jax.grad(f, (0, 1)))
  for k in kernels:
    for got, want in zip(grads(ours)(k, x), grads(reference)(k, x)):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  got = jax.jit(jax.vmap(jax.grad(ours), in_axes=(0, None)))(kernels, x)
  want = jax.jit(jax.vmap(jax.grad(reference), in_axes=(0, None)))(kernels, x)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv1d_eval_mode_supports_forward_mode_autodiff():
  # Hessian-vector products (hessian.py) are jax.jvp of jax.grad in eval mode.
  rng = np.random.default_rng(12)
  x = jnp.asarray(rng.normal(size=(3, 17, 4)), jnp.float32)
  kernel, tangent = jnp.asarray(rng.normal(size=(2, 5, 4, 6)), jnp.float32)
  ours = lambda k: jnp.sum(jnp.sin(conv1d_apply(k, x, 2, 2)))
  reference = lambda k: jnp.sum(jnp.sin(lax_conv1d(x, k, 2, 2)))
  hvp = lambda f: jax.jvp(jax.grad(f), (kernel,), (tangent,))[1]
  np.testing.assert_allclose(hvp(ours), hvp(reference), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------- BatchNorm


def numpy_bn_train(x, scale, bias, eps=1e-5):
  """Output, batch mean and UNBIASED batch var of torch BatchNorm in training mode."""
  x = np.asarray(x, np.float64)
  axes = tuple(range(x.ndim - 1))
  count = x.size // x.shape[-1]
  mean = x.mean(axes)
  biased = ((x - mean) ** 2).mean(axes)
  y = (x - mean) / np.sqrt(biased + eps) * scale + bias
  return y, mean, biased * count / (count - 1)


def bn_variables(rng, features, mean=None, var=None):
  return {
      'params': {'scale': jnp.asarray(rng.uniform(0.5, 2.0, features), jnp.float32),
                 'bias': jnp.asarray(rng.normal(size=features), jnp.float32)},
      'batch_stats': {
          'mean': jnp.zeros(features, jnp.float32) if mean is None else jnp.asarray(mean),
          'var': jnp.ones(features, jnp.float32) if var is None else jnp.asarray(var)},
  }


@pytest.mark.parametrize('shape', [(8, 5), (4, 6, 3), (2, 3, 3, 4)])
def test_batchnorm_train_mode_and_running_stats_match_torch(shape):
  rng = np.random.default_rng(len(shape))
  features = shape[-1]
  bn = models.BatchNorm()
  variables = bn_variables(rng, features)
  scale = np.asarray(variables['params']['scale'], np.float64)
  bias = np.asarray(variables['params']['bias'], np.float64)
  running_mean, running_var = np.zeros(features), np.ones(features)
  stats = variables['batch_stats']
  for step in range(3):  # Three steps check the momentum recursion, not just one update.
    x = rng.normal(loc=step - 1.0, scale=1.0 + step, size=shape).astype(np.float32)
    y, updated = bn.apply({'params': variables['params'], 'batch_stats': stats}, jnp.asarray(x),
                          train=True, mutable=['batch_stats'])
    stats = updated['batch_stats']
    want_y, batch_mean, batch_unbiased = numpy_bn_train(x, scale, bias)
    running_mean = 0.9 * running_mean + 0.1 * batch_mean
    running_var = 0.9 * running_var + 0.1 * batch_unbiased
    np.testing.assert_allclose(y, want_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats['mean'], running_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats['var'], running_var, rtol=1e-5, atol=1e-6)


def test_batchnorm_eval_mode_uses_running_stats():
  rng = np.random.default_rng(3)
  mean = rng.normal(size=4).astype(np.float32)
  var = rng.uniform(0.2, 3.0, size=4).astype(np.float32)
  variables = bn_variables(rng, 4, mean, var)
  x = rng.normal(size=(5, 7, 4)).astype(np.float32)
  y = models.BatchNorm().apply(variables, jnp.asarray(x), train=False)
  scale = np.asarray(variables['params']['scale'])
  bias = np.asarray(variables['params']['bias'])
  want = (x.astype(np.float64) - mean) / np.sqrt(var.astype(np.float64) + 1e-5) * scale + bias
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
  # Eval mode does not touch the statistics.
  _, updated = models.BatchNorm().apply(variables, jnp.asarray(x), train=False,
                                        mutable=['batch_stats'])
  np.testing.assert_array_equal(updated['batch_stats']['mean'], mean)
  np.testing.assert_array_equal(updated['batch_stats']['var'], var)


def test_batchnorm_momentum_one_stores_exactly_the_batch_stats():
  rng = np.random.default_rng(4)
  variables = bn_variables(rng, 3, rng.normal(size=3).astype(np.float32),
                           rng.uniform(1, 2, size=3).astype(np.float32))
  x = rng.normal(loc=2.0, scale=3.0, size=(6, 5, 3)).astype(np.float32)
  _, updated = models.BatchNorm(momentum=1.0).apply(variables, jnp.asarray(x), train=True,
                                                    mutable=['batch_stats'])
  flat = x.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(updated['batch_stats']['mean'], flat.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(updated['batch_stats']['var'], flat.var(0, ddof=1), rtol=1e-5)
  # 30 values per feature: the biased variance is 29/30 of it, far outside the tolerance.
  assert not np.allclose(updated['batch_stats']['var'], flat.var(0), rtol=1e-3)


@pytest.mark.parametrize('shape', [(8, 5), (4, 6, 3), (2, 3, 3, 4)])
def test_batch_norm_train_gradient_equals_autodiff(shape):
  """The written-out gradient against autodiff of the same forward, in float64 and with
  cotangents on all three outputs (y, and the mean and variance, which a wrong rule that
  ignored them would get wrong)."""
  rng = np.random.default_rng(7 + len(shape))
  x = rng.normal(loc=1.0, scale=2.0, size=shape)
  scale, bias = rng.uniform(0.5, 2.0, shape[-1]), rng.normal(size=shape[-1])
  w_y, w_mean, w_var = (rng.normal(size=s) for s in (shape, shape[-1:], shape[-1:]))

  def autodiff_bn(x, scale, bias):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.mean(jnp.square(x - mean), axes)
    return (x - mean) / jnp.sqrt(var + 1e-5) * scale + bias, mean, var

  def loss(bn):
    def f(x, scale, bias):
      y, mean, var = bn(x, scale, bias)
      return jnp.sum(jnp.tanh(y) * w_y) + jnp.sum(mean * w_mean) + jnp.sum(var * w_var)
    return f

  with jax.enable_x64():
    # Jitted: one compile per gradient instead of one per eager operation.
    ours = jax.jit(jax.grad(loss(lambda *a: kernels.batch_norm_train(*a, 1e-5)),
                            argnums=(0, 1, 2)))(x, scale, bias)
    reference = jax.jit(jax.grad(loss(autodiff_bn), argnums=(0, 1, 2)))(x, scale, bias)
    for got, want in zip(ours, reference):
      np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # Without the mean and variance cotangents the x gradient would differ.
    y_only = jax.jit(jax.grad(lambda x: jnp.sum(
        jnp.tanh(kernels.batch_norm_train(x, scale, bias, 1e-5)[0]) * w_y)))(x)
    assert not np.allclose(y_only, reference[0], atol=1e-3)


def test_batchnorm_init_stats_and_dtype():
  x = jnp.ones((4, 3), jnp.bfloat16)
  variables = models.BatchNorm().init(jax.random.PRNGKey(0), x, train=True)
  # Initialisation does not update the running statistics (PyTorch: zeros and ones).
  np.testing.assert_array_equal(variables['batch_stats']['mean'], np.zeros(3))
  np.testing.assert_array_equal(variables['batch_stats']['var'], np.ones(3))
  assert variables['batch_stats']['var'].dtype == jnp.float32
  y = models.BatchNorm().apply(variables, x, train=False)
  assert y.dtype == jnp.bfloat16


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize('name,width,conv_weights', [
    ('preresnet20', 1, 270_256), ('preresnet56', 1, 850_864), ('preresnet20', 2, 1_080_160)])
def test_preresnet_prunable_counts_match_the_paper(name, width, conv_weights):
  model = models.make_model(config(name, width=width), num_classes=10)
  params, stats = param_shapes(model)
  assert prunable_count(params) == conv_weights
  assert params['head']['kernel'].shape == (64 * width, 10)
  assert params['head']['bias'].shape == (10,)
  assert prunable_count(params, prune_head=True) == conv_weights + 64 * width * 10
  # Bias-free convs: the only non-BN, non-head params are kernels.
  depth = int(name[len('preresnet'):])
  kernels = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]
             if p[-1].key == 'kernel' and p[0].key != 'head']
  assert len(kernels) == depth - 2 + 1 + 2  # 2 convs per block, stem, 2 shortcuts.
  assert set(stats) == set(k for k in params if k.startswith(('stage', 'bn_final')))


def test_preresnet20_first_layers_shapes():
  params, _ = param_shapes(models.PreResNet(10, 20))
  assert params['stem']['kernel'].shape == (3, 3, 3, 16)
  assert params['stage1_block0']['shortcut']['kernel'].shape == (1, 1, 16, 32)
  assert params['stage2_block0']['conv1']['kernel'].shape == (3, 3, 32, 64)
  assert 'shortcut' not in params['stage0_block0']


@pytest.mark.parametrize('name,convs,conv_weights', [
    # Sum of 9 * c_in * c_out over the VGG configs A and D.
    ('vgg11', 8, 9 * (3 * 64 + 64 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512)),
    ('vgg16', 13, 9 * (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 2 * 256 * 256
                       + 256 * 512 + 5 * 512 * 512)),
])
def test_vgg_builds_and_gives_logits(name, convs, conv_weights):
  model = models.make_model(config(name), num_classes=10)
  params, stats = param_shapes(model)
  assert prunable_count(params) == conv_weights
  assert params['head']['kernel'].shape == (512, 10)
  assert all(params[f'conv{i}']['bias'].shape == params[f'conv{i}']['kernel'].shape[-1:]
             for i in range(convs))
  assert f'conv{convs}' not in params
  logits = jax.eval_shape(
      lambda p, s, x: model.apply({'params': p, 'batch_stats': s}, x, train=False),
      params, stats, jax.ShapeDtypeStruct((5, *CIFAR_SHAPE), jnp.float32))
  assert logits.shape == (5, 10)
  assert logits.dtype == jnp.float32


def test_small_models_give_logits_of_the_right_shape():
  for model in (models.MLP(10, (16,)), models.CNN1D(10, (8, 8), (3, 3), (2, 2))):
    params, stats = param_shapes(model, (40, 1))
    for train in (False, True):
      logits = jax.eval_shape(
          lambda p, s, x, model=model, train=train: model.apply(
              {'params': p, 'batch_stats': s}, x, train=train, mutable=['batch_stats'])[0],
          params, stats, jax.ShapeDtypeStruct((6, 40, 1), jnp.float32))
      assert logits.shape == (6, 10) and logits.dtype == jnp.float32
  # CNN1D: length 40 -> 20 -> 10 with padding 1 and stride 2; 8 channels into the head.
  assert params['head']['kernel'].shape == (10 * 8, 10)
  assert params['conv0']['kernel'].shape == (3, 1, 8)
  assert params['conv1']['kernel'].shape == (3, 8, 8)
  assert 'bias' not in params['conv0']
  mlp_params, _ = param_shapes(models.MLP(10, (16,)), (40, 1))
  assert mlp_params['dense0']['kernel'].shape == (40, 16)
  assert 'bias' not in mlp_params['dense0']
  assert mlp_params['head']['kernel'].shape == (16, 10)


# ------------------------------------------------------------------------- prunable predicate


def test_prunable_tree_marks_only_non_head_kernels():
  params, _ = param_shapes(models.CNN1D(10, (8, 8), (3, 3), (2, 2)), (40, 1))
  flat = {'/'.join(k.key for k in path): flag for path, flag in
          jax.tree_util.tree_flatten_with_path(models.prunable_tree(params))[0]}
  assert flat == {
      'conv0/kernel': True, 'conv1/kernel': True,
      'bn0/scale': False, 'bn0/bias': False, 'bn1/scale': False, 'bn1/bias': False,
      'head/kernel': False, 'head/bias': False}
  with_head = {'/'.join(k.key for k in path): flag for path, flag in
               jax.tree_util.tree_flatten_with_path(models.prunable_tree(params, True))[0]}
  assert with_head == {**flat, 'head/kernel': True}
  # Python bools, not arrays: the predicate is static structure.
  assert all(isinstance(flag, bool) for flag in with_head.values())


def test_prunable_tree_on_vgg_and_preresnet_excludes_biases_and_bn():
  for model in (models.VGG(10, 11), models.PreResNet(10, 20)):
    params, _ = param_shapes(model)
    for path, flag in jax.tree_util.tree_flatten_with_path(models.prunable_tree(params))[0]:
      names = [k.key for k in path]
      assert flag == (names[-1] == 'kernel' and names[0] != 'head'), names
      if names[-1] in ('bias', 'scale'):
        assert not flag


# -------------------------------------------------------------------------------- make_model


def test_make_model_unknown_name_lists_the_choices():
  with pytest.raises(ValueError) as info:
    models.make_model(config('resnet18'), num_classes=10)
  message = str(info.value)
  assert 'resnet18' in message
  for name in registry.names(registry.MODEL):
    assert name in message


def test_make_model_builds_each_kind():
  assert isinstance(models.make_model(config('mlp', widths=(4,)), 10), models.MLP)
  cnn = models.make_model(config('cnn1d', widths=(8, 8), kernel_sizes=(3, 5), strides=(2, 1)), 7)
  assert isinstance(cnn, models.CNN1D)
  assert (cnn.widths, cnn.kernel_sizes, cnn.strides, cnn.num_classes) == ((8, 8), (3, 5),
                                                                          (2, 1), 7)
  resnet = models.make_model(config('preresnet56'), 100)
  assert (resnet.depth, resnet.width, resnet.num_classes) == (56, 1, 100)
  assert models.make_model(config('vgg16'), 10).depth == 16


def test_with_bn_momentum_keeps_the_parameter_tree():
  model = models.MLP(10, (16,))
  other = models.with_bn_momentum(model, 1.0)
  assert other.bn_momentum == 1.0 and model.bn_momentum == 0.1
  a, _ = param_shapes(model, (40, 1))
  b, _ = param_shapes(other, (40, 1))
  assert jax.tree.structure(a) == jax.tree.structure(b)


def test_mixed_precision_keeps_float32_params_stats_and_logits():
  config = ml_collections.ConfigDict(dict(name='cnn1d', widths=(4, 4), kernel_sizes=(3, 3),
                                          strides=(2, 2)))
  model = models.make_model(config, 10, dtype=jnp.bfloat16)
  params, stats = models.init_variables(model, jax.random.PRNGKey(0), (40, 1))
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((params, stats)))
  x = jax.random.normal(jax.random.PRNGKey(1), (8, 40, 1))
  variables = {'params': params, 'batch_stats': stats}
  train_apply = lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'])
  # Every convolution of the forward pass, training and eval mode, multiplies bfloat16 operands
  # (a dropped dtype would leave float32 ones), read off the traced program; the classifier head
  # (the last matmul) stays float32 by design, so the logits and the loss are float32.
  for function in (train_apply, lambda v, x: model.apply(v, x, train=False)):
    dtypes = matmul_dtypes(function, variables, x)
    assert dtypes[:-1] == [('bfloat16', 'bfloat16')] * 2, dtypes
    assert dtypes[-1] == ('float32', 'float32'), dtypes
  full_dtypes = matmul_dtypes(
      lambda v, x: models.make_model(config, 10).apply(v, x, train=False), variables, x)
  assert all(d == ('float32', 'float32') for d in full_dtypes), full_dtypes
  logits, updated = jax.jit(train_apply)(variables, x)
  assert logits.dtype == jnp.float32
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(updated))
  full = jax.jit(lambda v, x: models.make_model(config, 10).apply(v, x, train=False))(variables, x)
  mixed = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  # bf16 keeps 8 bits of mantissa: logits of order 1 agree to a few 1e-2, not to float32's 1e-6.
  np.testing.assert_allclose(mixed, full, atol=0.1)
  assert not np.allclose(mixed, full, atol=1e-6)
