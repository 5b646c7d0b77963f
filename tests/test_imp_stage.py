"""Iterative magnitude pruning with weight rewinding through the sweep (`conftest.beyond_run`):
level densities, nested masks, zeros kept, rewind starts, a killed run resumed at its level."""

import shutil

import jax
import numpy as np
import pytest

from conftest import tiny_config  # pylint: disable=g-bad-import-order
from prunephase import config as config_lib
from prunephase import imp
from prunephase import pruning
from prunephase import sweep as sweep_lib
from prunephase.stages import prune_iterative
from prunephase.stages import retrain as retrain_stage

# One xdist worker for every user of the session fixture `beyond_run` (the landscape run,
# half a minute): each worker would build its own (pyproject.toml: --dist loadgroup).
pytestmark = pytest.mark.xdist_group('beyond_run')


def _level_masks(sweep, temperature):
  template = jax.tree.map(lambda a: a[0], sweep.store.dense_models(temperature)['params'])
  return [prune_iterative.load_level_mask(sweep, temperature, level, template)
          for level in range(1, 5)]


def test_levels_follow_the_rate_and_nest(beyond_run):
  sweep, _ = beyond_run
  assert prune_iterative.levels(sweep.config) == (0.6, 0.5, 0.25, 0.2)
  masks = _level_masks(sweep, 2)
  params = jax.tree.map(lambda a: a[0], sweep.store.dense_models(2)['params'])
  for level, density in enumerate((0.6, 0.5, 0.25, 0.2)):
    one = jax.tree.map(lambda m: m[0], masks[level])
    # Exactly the one-shot count of every layer at that density.
    one_shot = pruning.make_masks(params, sweep.store.prunable(params), (density,))
    assert pruning.kept_counts(one) == pruning.kept_counts(pruning.mask_select(one_shot, 0))
    if level:
      before = jax.tree.map(lambda m: m[0], masks[level - 1])
      for new, old in zip(jax.tree.leaves(one), jax.tree.leaves(before)):
        assert not np.any(np.asarray(new) & ~np.asarray(old))  # A subset of the level before.
  assert imp.level_densities((0.2, 0.6), 0.5) == (0.6, 0.5, 0.25, 0.2)


def test_retrained_members_keep_pruned_weights_at_zero_and_start_from_the_rewind_point(
    beyond_run):
  sweep, _ = beyond_run
  states, _ = sweep.store.retrained(1)
  masks = retrain_stage.start_population(sweep, 1)[1]
  for weights, mask in zip(jax.tree.leaves(states.params), jax.tree.leaves(masks)):
    if weights.shape == mask.shape:
      assert np.all(np.asarray(weights)[~np.asarray(mask)] == 0.0)
  start, _ = retrain_stage.start_population(sweep, 1)
  rewind = sweep.store.dense_models(1, epoch=1)['params']
  kernel = np.asarray(rewind['conv1']['kernel'][0])
  mask = np.asarray(masks['conv1']['kernel'][0])
  np.testing.assert_array_equal(np.asarray(start.params['conv1']['kernel'][0]), kernel * mask)


def test_a_run_killed_inside_a_level_resumes_to_the_same_numbers(beyond_run, tmp_path):
  sweep, _ = beyond_run
  copy = tmp_path / 'killed'
  shutil.copytree(sweep.path, copy, ignore=shutil.ignore_patterns('.lock'))
  config = sweep.config
  killed = sweep_lib.Sweep(config, copy)
  for temperature in (1, 2):  # Level 2's mask was saved, its training was not finished.
    shutil.rmtree(killed.store.imp_run(temperature, 2).path)
    for level in (3, 4):
      shutil.rmtree(killed.store.imp_level_dir(temperature, level))
    shutil.rmtree(killed.store.masks_dir(temperature))
    shutil.rmtree(killed.store.retrain_run_dir(temperature))
  sweep_lib.run_sweep(config, copy, stages=('train', 'prune', 'retrain'))
  for temperature in (1, 2):
    resumed, _ = killed.store.retrained(temperature)
    finished, _ = sweep.store.retrained(temperature)
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(finished.params)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_iterative_pruning_needs_a_magnitude_method():
  config = tiny_config()
  config.prune.schedule, config.prune.method = 'iterative', 'random'
  with pytest.raises(config_lib.ConfigError, match='prune.method must be one of uniform'):
    config_lib.validate(config)
