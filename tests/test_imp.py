"""Tests for prunephase.imp: IMP schedules, nested level masks with exact counts, rewinding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_params  # pylint: disable=g-bad-import-order
from prunephase import imp
from prunephase import models
from prunephase import pruning

RATE = 0.2


def perturb(params, seed):
  """Stands in for retraining between levels: new magnitudes, same structure."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: p + jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def start_mask(params):
  return imp.full_mask(params, models.prunable_tree(params))


def counts(mask):
  return {name: kept for name, (kept, _) in pruning.kept_counts(mask).items()}


def assert_subset(new, old):
  for name, leaf in pruning.flatten_mask(new).items():
    previous = np.asarray(pruning.flatten_mask(old)[name])
    assert not np.any(np.asarray(leaf) & ~previous), name


def test_level_densities_are_powers_then_the_target():
  np.testing.assert_allclose(imp.level_densities(0.5), (0.8, 0.64, 0.512, 0.5), rtol=1e-12)
  assert imp.imp_levels(0.5) == 4
  # Exact powers (up to float rounding) are one level each, ending exactly at the target.
  for level in range(1, 15):
    target = round(0.8 ** level, 12)
    densities = imp.level_densities(target, RATE)
    assert len(densities) == level == imp.imp_levels(target, RATE)
    np.testing.assert_allclose(densities, [0.8 ** l for l in range(1, level + 1)], rtol=1e-9)
    assert densities[-1] == target
  # Several targets: one trajectory through all of them, each level pruning <= rate.
  densities = imp.level_densities((0.4, 0.2, 0.1), RATE)
  assert {0.4, 0.2, 0.1} <= set(densities)
  ratios = np.asarray(densities[1:]) / np.asarray(densities[:-1])
  assert np.all(ratios >= 1 - RATE - 1e-12) and np.all(ratios < 1)
  assert imp.level_densities(1.0) == () and imp.imp_levels(1.0) == 0
  assert imp.imp_levels(0.05, 0.5) == 5  # 0.5, 0.25, 0.125, 0.0625, 0.05.
  for bad in (0.0, 1.0, -0.1):
    with pytest.raises(ValueError, match='rate'):
      imp.level_densities(0.5, bad)
  with pytest.raises(ValueError, match='outside'):
    imp.level_densities(1.5)


@pytest.mark.parametrize('method', imp.IMP_METHODS)
def test_density_levels_have_exact_counts_and_are_nested(method):
  params = make_params()
  sizes = {name: total for name, (_, total) in pruning.kept_counts(start_mask(params)).items()}
  pool = sum(sizes.values())
  mask = start_mask(params)
  for level, d in enumerate(imp.level_densities(0.05, RATE)):
    params = perturb(params, level)
    new = imp.next_level_mask(params, mask, density=d, method=method)
    assert_subset(new, mask)
    got = counts(new)
    if method == 'uniform':
      for name, size in sizes.items():
        assert got[name] == size - round((1 - d) * size), (name, d)
      # The same counts as the one-shot mask at that density.
      one_shot = pruning.mask_select(
          pruning.make_masks(params, models.prunable_tree(params), [d]), 0)
      assert got == counts(one_shot)
    else:
      assert sum(got.values()) == pool - round((1 - d) * pool), d
    assert new['bn0']['scale'] is None and new['head']['kernel'] is None
    mask = new
  assert abs(pruning.density(mask) - 0.05) < 1 / pool


def test_rate_levels_prune_rate_of_the_remaining():
  params = make_params(1)
  mask = start_mask(params)
  want = {name: total for name, (_, total) in pruning.kept_counts(mask).items()}
  for level in range(8):
    params = perturb(params, 10 + level)
    new = imp.next_level_mask(params, mask, RATE)
    assert_subset(new, mask)
    want = {name: k - round(RATE * k) for name, k in want.items()}
    assert counts(new) == want
    mask = new
  # Close to, but not always exactly, the rounded power: rounding compounds.
  for name, (kept, total) in pruning.kept_counts(mask).items():
    assert abs(kept - 0.8 ** 8 * total) <= 4, name


@pytest.mark.parametrize('method', ('uniform', 'global'))
def test_without_retraining_levels_equal_one_shot(method):
  params = make_params(2)
  mask = start_mask(params)
  for d in imp.level_densities(0.1, RATE):
    mask = imp.next_level_mask(params, mask, density=d, method=method)
  one_shot = pruning.mask_select(
      pruning.make_masks(params, models.prunable_tree(params), [0.1], method), 0)
  for name, leaf in pruning.flatten_mask(one_shot).items():
    np.testing.assert_array_equal(pruning.flatten_mask(mask)[name], leaf, err_msg=name)


def test_remaining_weights_outrank_pruned_ones_even_at_zero():
  # Remaining weights that are exactly 0 sort after the already pruned ones (ties by index
  # would otherwise prune a remaining zero first and resurrect a pruned weight).
  params = {'a': {'kernel': jnp.asarray([0.0, 0.0, 0.0, 0.0, 1.0, 2.0])}}
  mask = {'a': {'kernel': jnp.asarray([False, False, True, True, True, True])}}
  new = imp.next_level_mask(params, mask, density=0.5)
  np.testing.assert_array_equal(new['a']['kernel'], [False, False, False, True, True, True])
  with pytest.raises(ValueError, match='can only prune'):
    imp.next_level_mask(params, mask, density=0.9)
  with pytest.raises(ValueError, match='exactly one'):
    imp.next_level_mask(params, mask, 0.2, density=0.5)
  with pytest.raises(ValueError, match='unknown IMP method'):
    imp.next_level_mask(params, mask, 0.2, method='random')


def test_density_levels_run_under_vmap():
  members = [make_params(seed) for seed in (3, 4)]
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *members)
  mask = start_mask(members[0])
  fn = jax.jit(jax.vmap(lambda p: imp.next_level_mask(p, mask, density=0.3)))
  got = fn(stacked)
  for i, params in enumerate(members):
    want = imp.next_level_mask(params, mask, density=0.3)
    for name, leaf in pruning.flatten_mask(want).items():
      np.testing.assert_array_equal(pruning.flatten_mask(got)[name][i], leaf)


def test_rewind_zeros_exactly_the_pruned_weights():
  trained = make_params(5)
  mask = start_mask(trained)
  for d in imp.level_densities(0.2, RATE):
    mask = imp.next_level_mask(trained, mask, density=d)
  early = make_params(6)  # The weights at the rewind epoch.
  rewound = imp.rewind(early, mask)
  for name, keep in pruning.flatten_mask(mask).items():
    layer, leaf = name.split('/')
    got, saved = np.asarray(rewound[layer][leaf]), np.asarray(early[layer][leaf])
    keep = np.asarray(keep)
    np.testing.assert_array_equal(got[~keep], 0.0)
    np.testing.assert_array_equal(got[keep], saved[keep])
  for layer, leaf in (('bn0', 'scale'), ('head', 'kernel'), ('head', 'bias')):
    np.testing.assert_array_equal(rewound[layer][leaf], early[layer][leaf])
