"""Tests for prunephase.pruning against small, independent NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_params  # pylint: disable=g-bad-import-order
from prunephase import models
from prunephase import pruning
from prunephase import registry

DENSITIES = (0.05, 0.1, 0.2, 0.5, 0.8, 1.0)
# Layer names in pytree order (sorted dict keys), which is also the cross-layer tie order.
PRUNED = ('conv0/kernel', 'conv1/kernel', 'stem/kernel')


def layers(params, names=PRUNED):
  """{'conv0/kernel': flat float64 numpy array, ...} in the given (pytree) order."""
  out = {}
  for name in names:
    leaf = params
    for part in name.split('/'):
      leaf = leaf[part]
    out[name] = np.asarray(leaf, np.float64).ravel()
  return out


# ---------------------------------------------------------------- independent NumPy references


def ref_num_pruned(d, n):
  return round((1 - d) * n)


def ref_keep_lowest_pruned(keys, num_pruned):
  """Bool keep-vector: prune the `num_pruned` entries with the smallest sort keys."""
  order = sorted(range(len(keys)), key=lambda i: keys[i])
  keep = np.ones(len(keys), bool)
  keep[order[:num_pruned]] = False
  return keep


def ref_uniform(flat_layers, d):
  return {name: ref_keep_lowest_pruned([(abs(v), i) for i, v in enumerate(w)],
                                       ref_num_pruned(d, w.size))
          for name, w in flat_layers.items()}


def ref_pooled(flat_layers, scores, d):
  """Prunes the smallest pooled `scores`; ties go to the earlier layer, then the earlier index."""
  keys, owners = [], []
  for layer_index, (name, score) in enumerate(scores.items()):
    keys += [(s, layer_index, i) for i, s in enumerate(score)]
    owners += [(name, i) for i in range(score.size)]
  keep = ref_keep_lowest_pruned(keys, ref_num_pruned(d, len(keys)))
  out = {name: np.ones(w.size, bool) for name, w in flat_layers.items()}
  for (name, i), kept in zip(owners, keep):
    out[name][i] = kept
  return out


def ref_global(flat_layers, d):
  return ref_pooled(flat_layers, {n: np.abs(w) for n, w in flat_layers.items()}, d)


def ref_lamp_scores(w):
  """O(n^2) LAMP score: w_i^2 over the sum of w_j^2 at or after i in (w^2, index) order."""
  w2 = np.asarray(w, np.float64).ravel() ** 2
  idx = np.arange(w2.size)
  tied_later = (w2[None, :] == w2[:, None]) & (idx[None, :] >= idx[:, None])
  later = (w2[None, :] > w2[:, None]) | tied_later
  tails = (later * w2[None, :]).sum(axis=1)
  return np.where(tails > 0, w2 / np.where(tails > 0, tails, 1), 0.0)


def ref_lamp(flat_layers, d):
  return ref_pooled(flat_layers, {n: ref_lamp_scores(w) for n, w in flat_layers.items()}, d)


REFERENCES = {'uniform': ref_uniform, 'global': ref_global, 'lamp': ref_lamp}


def flat_masks(masks, index):
  return {n: np.asarray(m).ravel()
          for n, m in pruning.flatten_mask(pruning.mask_select(masks, index)).items()}


# ------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize('method', ['uniform', 'global', 'lamp'])
def test_masks_match_numpy_reference(method):
  params = make_params()
  masks = pruning.make_masks(params, models.prunable_tree(params), DENSITIES, method)
  for k, d in enumerate(DENSITIES):
    expected = REFERENCES[method](layers(params), d)
    got = flat_masks(masks, k)
    assert sorted(got) == sorted(PRUNED)
    for name in PRUNED:
      np.testing.assert_array_equal(got[name], expected[name], err_msg=f'{method} {d} {name}')


def test_mask_shapes_dtype_and_none_leaves():
  params = make_params()
  masks = pruning.make_masks(params, models.prunable_tree(params), DENSITIES)
  assert masks['conv0']['kernel'].shape == (len(DENSITIES), 5, 1, 8)
  assert masks['stem']['kernel'].shape == (len(DENSITIES), 3, 3, 3, 16)
  assert masks['conv0']['kernel'].dtype == jnp.bool_
  assert masks['bn0'] == {'scale': None, 'bias': None}
  assert masks['head'] == {'kernel': None, 'bias': None}


def test_prune_head_makes_head_kernel_prunable():
  params = make_params()
  masks = pruning.make_masks(params, models.prunable_tree(params, prune_head=True), (0.5,))
  counts = pruning.kept_counts(pruning.mask_select(masks, 0))
  assert counts['head/kernel'] == (36 - round(0.5 * 36), 36)
  assert masks['head']['bias'] is None


@pytest.mark.parametrize('method', ['uniform', 'random'])
def test_layerwise_counts_are_exact(method):
  params = make_params()
  masks = pruning.make_masks(params, models.prunable_tree(params), DENSITIES, method,
                             key=jax.random.key(0))
  # Hand-checked values where rounding matters: 0.95 * 96 = 91.2 -> 5 kept (int() would give 4);
  # 0.95 * 432 = 410.4 -> 22 kept (PreResNet-20's stem at 5 % density).
  assert pruning.kept_counts(pruning.mask_select(masks, 0)) == {
      'conv0/kernel': (2, 40), 'conv1/kernel': (5, 96), 'stem/kernel': (22, 432)}
  assert pruning.kept_counts(pruning.mask_select(masks, 1)) == {
      'conv0/kernel': (4, 40), 'conv1/kernel': (10, 96), 'stem/kernel': (43, 432)}
  for k, d in enumerate(DENSITIES):
    counts = pruning.kept_counts(pruning.mask_select(masks, k))
    for name, n in (('conv0/kernel', 40), ('conv1/kernel', 96), ('stem/kernel', 432)):
      assert counts[name] == (n - round((1 - d) * n), n)
    # Density is the requested one up to per-layer rounding (at most 1/2 weight per layer).
    assert abs(pruning.density(pruning.mask_select(masks, k)) - d) <= 1.5 / (40 + 96 + 432)


def test_layerwise_round_half_to_even():
  # (1 - 0.1875) * 8 = 6.5 -> 6 pruned by Python's (and torch's) round, not 7 (half up).
  params = {'a': {'kernel': jnp.arange(8.0)}, 'b': {'kernel': jnp.arange(32.0)}}
  prunable = {'a': {'kernel': True}, 'b': {'kernel': True}}
  masks = pruning.make_masks(params, prunable, (0.1875,))
  counts = pruning.kept_counts(pruning.mask_select(masks, 0))
  assert counts == {'a/kernel': (2, 8), 'b/kernel': (6, 32)}
  np.testing.assert_array_equal(np.asarray(masks['a']['kernel'][0]), np.arange(8) >= 6)


@pytest.mark.parametrize('method', ['global', 'lamp'])
def test_pooled_counts_and_density_are_exact(method):
  params = make_params()
  masks = pruning.make_masks(params, models.prunable_tree(params), DENSITIES, method)
  total = 40 + 96 + 432
  for k, d in enumerate(DENSITIES):
    mask = pruning.mask_select(masks, k)
    kept = total - round((1 - d) * total)
    assert sum(c for c, _ in pruning.kept_counts(mask).values()) == kept
    assert pruning.density(mask) == pytest.approx(kept / total, abs=1e-12)
    assert abs(pruning.density(mask) - d) <= 0.5 / total


def test_global_is_not_layer_normalised():
  # conv1 has 10x smaller weights, so pooled magnitude pruning takes it first.
  params = make_params()
  masks = pruning.make_masks(params, models.prunable_tree(params), (0.5,), 'global')
  counts = pruning.kept_counts(pruning.mask_select(masks, 0))
  assert counts['conv1/kernel'][0] < 5
  assert counts['conv0/kernel'][0] + counts['stem/kernel'][0] > 270


def test_lamp_keeps_every_layers_largest_weight():
  params = make_params()
  masks = pruning.make_masks(params, models.prunable_tree(params), (0.01,), 'lamp')
  mask = pruning.mask_select(masks, 0)
  # N - round(0.99 * 568) = 6 kept in total, at least the maximum of each of the 3 layers.
  assert sum(c for c, _ in pruning.kept_counts(mask).values()) == 6
  for name, w in layers(params).items():
    assert pruning.flatten_mask(mask)[name].ravel()[np.argmax(np.abs(w))]


def test_lamp_scores_match_reference():
  rng = np.random.default_rng(1)
  for shape in [(7,), (5, 1, 8), (3, 3, 2, 4)]:
    w = rng.normal(size=shape).astype(np.float32)
    scores = np.asarray(pruning.lamp_scores(jnp.asarray(w)))
    assert scores.shape == shape
    np.testing.assert_allclose(scores.ravel(), ref_lamp_scores(w), rtol=2e-5, atol=1e-7)
    assert scores.ravel()[np.argmax(np.abs(w))] == 1.0
  # Hand computation: squares 1, 4, 9 -> 1/14, 4/13, 9/9; the sign does not matter.
  np.testing.assert_allclose(np.asarray(pruning.lamp_scores(jnp.array([3.0, -1.0, 2.0]))),
                             [1.0, 1 / 14, 4 / 13], rtol=1e-6)


def test_lamp_scores_ties_and_zeros():
  # Equal squares: the earlier index gets the smaller score; all-zero tails give 0, not NaN.
  np.testing.assert_allclose(np.asarray(pruning.lamp_scores(jnp.array([2.0, -2.0, 2.0]))),
                             [1 / 3, 1 / 2, 1.0], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(pruning.lamp_scores(jnp.zeros((2, 3)))),
                                np.zeros((2, 3)))


def tied_params():
  rng = np.random.default_rng(2)
  return {
      'conv0': {'kernel': jnp.asarray(rng.choice([0.0, 0.5, -0.5, 1.0], size=(5, 1, 8)),
                                      jnp.float32)},
      'conv1': {'kernel': jnp.zeros((3, 8, 4), jnp.float32)},
      'stem': {'kernel': jnp.asarray(rng.choice([0.0, 0.5, -1.0], size=(3, 3, 3, 16)),
                                     jnp.float32)},
      'head': {'kernel': jnp.ones((12, 3)), 'bias': jnp.zeros(3)},
  }


@pytest.mark.parametrize('method', ['uniform', 'global', 'lamp'])
def test_ties_and_zeros_give_exact_counts_and_match_reference(method):
  params = tied_params()
  masks = pruning.make_masks(params, models.prunable_tree(params), DENSITIES, method)
  total = 40 + 96 + 432
  for k, d in enumerate(DENSITIES):
    got = flat_masks(masks, k)
    expected = REFERENCES[method](layers(params), d)
    for name in PRUNED:
      np.testing.assert_array_equal(got[name], expected[name], err_msg=f'{method} {d} {name}')
    counts = pruning.kept_counts(pruning.mask_select(masks, k))
    if method == 'uniform':
      assert counts['conv1/kernel'] == (96 - round((1 - d) * 96), 96)
    else:
      assert sum(c for c, _ in counts.values()) == total - round((1 - d) * total)


@pytest.mark.parametrize('method', registry.names(registry.PRUNING_METHOD))
def test_density_one_keeps_everything_and_masks_are_nested(method):
  params = make_params()
  masks = pruning.make_masks(params, models.prunable_tree(params), DENSITIES, method,
                             key=jax.random.key(3))
  full = pruning.mask_select(masks, len(DENSITIES) - 1)
  assert pruning.density(full) == 1.0
  assert all(bool(np.all(m)) for m in pruning.flatten_mask(full).values())
  for m in pruning.flatten_mask(masks).values():
    m = np.asarray(m)
    # Densities are increasing, so each mask must contain the previous one.
    assert np.all(m[1:] >= m[:-1])


def test_random_keys():
  params = make_params()
  prunable = models.prunable_tree(params)
  a = pruning.make_masks(params, prunable, DENSITIES, 'random', key=jax.random.key(0))
  b = pruning.make_masks(params, prunable, DENSITIES, 'random', key=jax.random.key(0))
  c = pruning.make_masks(params, prunable, DENSITIES, 'random', key=jax.random.key(1))
  for name, m in pruning.flatten_mask(a).items():
    np.testing.assert_array_equal(np.asarray(m), np.asarray(pruning.flatten_mask(b)[name]))
    # Density 1.0 (last) keeps everything whatever the key; the others must differ.
    assert not np.array_equal(np.asarray(m[:-1]), np.asarray(pruning.flatten_mask(c)[name][:-1]))
  # Not magnitude pruning in disguise: the random stem mask differs from the uniform one.
  uniform = pruning.make_masks(params, prunable, DENSITIES)
  assert not np.array_equal(np.asarray(a['stem']['kernel']), np.asarray(uniform['stem']['kernel']))


def test_vectorized_equals_one_density_at_a_time():
  params = make_params()
  prunable = models.prunable_tree(params)
  for method in registry.names(registry.PRUNING_METHOD):
    together = pruning.make_masks(params, prunable, DENSITIES, method, key=jax.random.key(4))
    for k, d in enumerate(DENSITIES):
      alone = pruning.make_masks(params, prunable, (d,), method, key=jax.random.key(4))
      for name, m in pruning.flatten_mask(pruning.mask_select(together, k)).items():
        np.testing.assert_array_equal(np.asarray(m),
                                      np.asarray(pruning.flatten_mask(alone)[name][0]))


def test_apply_mask():
  params = make_params()
  masks = pruning.make_masks(params, models.prunable_tree(params), DENSITIES)
  mask = pruning.mask_select(masks, 2)  # Density 0.2.
  pruned = pruning.apply_mask(params, mask)
  for name in PRUNED:
    layer, leaf = name.split('/')
    m = np.asarray(mask[layer][leaf])
    np.testing.assert_array_equal(np.asarray(pruned[layer][leaf]),
                                  np.where(m, np.asarray(params[layer][leaf]), 0.0))
    # Random normal weights have no exact zeros, so the zeros are exactly the pruned entries.
    np.testing.assert_array_equal(np.asarray(pruned[layer][leaf]) != 0, m)
  for layer, leaf in (('bn0', 'scale'), ('bn0', 'bias'), ('head', 'kernel'), ('head', 'bias')):
    np.testing.assert_array_equal(np.asarray(pruned[layer][leaf]), np.asarray(params[layer][leaf]))
  # The mask is cast to the parameter dtype.
  half = jax.tree_util.tree_map(lambda p: p.astype(jnp.bfloat16), params)
  assert pruning.apply_mask(half, mask)['conv0']['kernel'].dtype == jnp.bfloat16


def test_apply_mask_under_vmap_and_broadcast():
  params = make_params()
  prunable = models.prunable_tree(params)
  masks = jax.tree_util.tree_map(lambda m: m[2:4], pruning.make_masks(params, prunable, DENSITIES))
  members = jax.tree_util.tree_map(lambda p: jnp.stack([p, 2 * p]), params)
  # Member i gets density i's mask: leading member axes on both params and mask.
  pruned = jax.vmap(pruning.apply_mask)(members, masks)
  for name in PRUNED:
    layer, leaf = name.split('/')
    np.testing.assert_array_equal(
        np.asarray(pruned[layer][leaf]),
        np.asarray(members[layer][leaf]) * np.asarray(masks[layer][leaf]))
  np.testing.assert_array_equal(np.asarray(pruned['head']['kernel']),
                                np.asarray(members['head']['kernel']))
  # One mask shared by all members broadcasts over the member axis.
  shared = pruning.apply_mask(members, pruning.mask_select(masks, 0))
  np.testing.assert_array_equal(
      np.asarray(shared['conv0']['kernel']),
      np.asarray(members['conv0']['kernel']) * np.asarray(masks['conv0']['kernel'][0]))


def test_flatten_unflatten_round_trip():
  params = make_params()
  prunable = models.prunable_tree(params)
  masks = pruning.make_masks(params, prunable, (0.1, 0.3), 'lamp')
  flat = pruning.flatten_mask(masks)
  assert sorted(flat) == sorted(PRUNED)
  back = pruning.unflatten_mask(flat, prunable)
  assert jax.tree_util.tree_structure(back, is_leaf=lambda x: x is None) == \
      jax.tree_util.tree_structure(masks, is_leaf=lambda x: x is None)
  assert back['head']['kernel'] is None and back['bn0']['scale'] is None
  for name in PRUNED:
    layer, leaf = name.split('/')
    np.testing.assert_array_equal(np.asarray(back[layer][leaf]), np.asarray(masks[layer][leaf]))
  with pytest.raises(ValueError, match='missing'):
    pruning.unflatten_mask({k: v for k, v in flat.items() if k != 'conv0/kernel'}, prunable)
  with pytest.raises(ValueError, match='unexpected'):
    pruning.unflatten_mask({**flat, 'head/kernel': flat['conv0/kernel']}, prunable)


def test_real_model_tree():
  model = models.CNN1D(num_classes=10, widths=(8, 8), kernel_sizes=(5, 3), strides=(2, 2))
  # eval_shape gives the real parameter tree without running the initialisers (fast).
  shapes = jax.eval_shape(
      lambda: models.init_variables(model, jax.random.key(0), (40, 1))[0])
  rng = np.random.default_rng(5)
  params = jax.tree_util.tree_map(
      lambda s: jnp.asarray(rng.normal(size=s.shape), jnp.float32), shapes)
  masks = pruning.make_masks(params, models.prunable_tree(params), (0.05, 1.0), 'uniform')
  counts = pruning.kept_counts(pruning.mask_select(masks, 0))
  assert counts == {'conv0/kernel': (2, 40), 'conv1/kernel': (10, 192)}  # 0.95*192 = 182.4.


def test_bad_inputs_raise():
  params = make_params()
  prunable = models.prunable_tree(params)
  with pytest.raises(ValueError, match=r"unknown pruning method 'magnitude'.*uniform, global"):
    pruning.make_masks(params, prunable, (0.5,), 'magnitude')
  for bad in (0.0, -0.1, 1.5, float('nan')):
    with pytest.raises(ValueError, match=r'outside \(0, 1\]'):
      pruning.make_masks(params, prunable, (0.5, bad))
  with pytest.raises(ValueError, match='empty'):
    pruning.make_masks(params, prunable, ())
  with pytest.raises(ValueError, match='no prunable leaves'):
    pruning.make_masks(params, jax.tree_util.tree_map(lambda _: False, params), (0.5,))
  with pytest.raises(ValueError, match='needs a PRNG key'):
    pruning.make_masks(params, prunable, (0.5,), 'random')
  with pytest.raises(ValueError, match='structure'):
    pruning.make_masks(params, {'conv0': {'kernel': True}}, (0.5,))
  with pytest.raises(ValueError, match='no prunable leaves'):
    pruning.density({'bn0': {'scale': None}})
