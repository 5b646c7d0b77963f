"""Sharded populations: a mesh of fake CPU devices gives the single-device results."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order
from conftest import xla_flags_with  # pylint: disable=g-bad-import-order
from prunephase import data as data_lib
from prunephase import models
from prunephase import population
from prunephase import train_steps as train_lib

SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    import jax
    from conftest import tiny_config
    from prunephase import sweep as sweep_lib
    config = tiny_config()
    config.mesh.members, config.mesh.data = 4, 2
    assert jax.device_count() == 8, jax.devices()
    sweep, _ = sweep_lib.run_sweep(config, sys.argv[1])
    print('MESH', dict(sweep.mesh.shape))
''')


def test_pad_members_repeats_the_last_member():
  tree = {'w': jnp.arange(3.0)}
  padded, count = population.pad_members(tree, 4)
  assert count == 3
  np.testing.assert_array_equal(padded['w'], [0.0, 1.0, 2.0, 2.0])
  same, count = population.pad_members(tree, 3)
  assert count == 3 and same is tree


def test_make_mesh_rejects_sizes_that_do_not_divide_the_devices():
  with pytest.raises(ValueError, match='must divide'):
    population.make_mesh(0, 3, devices=jax.devices()[:1] * 2)


def test_automatic_layout_on_cpu_devices_uses_fewer_devices_instead_of_padding():
  """One process's CPU devices share its cores: a member count the member axis does not divide
  goes on fewer devices, with no data axis (and no padded copy)."""
  script = textwrap.dedent('''
      from prunephase import population
      mesh = population.make_mesh()
      for members in (8, 3, 6, 5):
        layout = population.mesh_without_padding(mesh, members, 16)
        print(members, dict(layout.shape), [d.id for d in layout.devices.flat])
  ''')
  env = {**os.environ,
         'XLA_FLAGS': xla_flags_with('--xla_force_host_platform_device_count=4')}
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.splitlines() == [
      "8 {'members': 4, 'data': 1} [0, 1, 2, 3]",
      "3 {'members': 3, 'data': 1} [0, 1, 2]",
      "6 {'members': 3, 'data': 1} [0, 1, 2]",
      "5 {'members': 1, 'data': 1} [0]"]


def test_an_epoch_makes_no_host_round_trip():
  dataset = data_lib.load_mnist1d(300)
  model = models.CNN1D(10, (4, 4), (3, 3), (2, 2))
  states = train_lib.init_population(model, dataset.input_shape, [0, 1], [0, 1])
  hparams = train_lib.Hparams(lr=jnp.full(2, 0.1), weight_decay=jnp.full(2, 1e-4),
                              sam_rho=jnp.zeros(2))
  program = population.PopulationProgram(model, train_lib.TrainSpec(32, 7), masked=False)
  epoch, steps = jax.device_put(jnp.int32(0)), jax.device_put(jnp.int32(7))
  program._epoch(states, hparams, None, dataset, epoch, steps)  # pylint: disable=protected-access
  states = train_lib.init_population(model, dataset.input_shape, [0, 1], [0, 1])
  with jax.transfer_guard('disallow'):
    states, metrics = program._epoch(states, hparams, None, dataset, epoch, steps)  # pylint: disable=protected-access
  assert np.all(np.isfinite(np.asarray(metrics['loss'])))


def test_sharded_sweep_equals_the_single_device_run(finished_run, tmp_path):
  """8 fake CPU devices, mesh 4 members x 2 data: 3 members padded to 4, batches split; the
  measure stage shards the 6 pairs of each temperature over the 4-way member axis."""
  single_path, _, _ = finished_run
  env = {**os.environ,
         'XLA_FLAGS': xla_flags_with('--xla_force_host_platform_device_count=8')}
  result = subprocess.run(
      [sys.executable, '-c', SCRIPT.format(tests=str(REPO / 'tests')), str(tmp_path / 'mesh')],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "MESH {'members': 4, 'data': 2}" in result.stdout
  assert 'padded to 4 for the 4-way member axis' in result.stdout
  import pandas as pd  # pylint: disable=import-outside-toplevel
  single = pd.read_csv(single_path / 'results.csv')
  mesh = pd.read_csv(tmp_path / 'mesh' / 'results.csv')
  assert (single.regime == mesh.regime).all()
  numeric = single.select_dtypes('number').columns
  # Tolerance: float32 reductions split over devices differ in the last bits.
  np.testing.assert_allclose(mesh[numeric], single[numeric], rtol=1e-4, atol=1e-5)


def test_steps_in_calls_of_member_chunks_on_a_mesh_equal_one_device():
  """Chunks of steps, each call training one chunk of every device's members
  (`population.steps_program`), on meshes of 4 x 1 and 2 x 2 fake CPU devices: the states and
  epoch metrics of one whole-epoch program on one device."""
  script = textwrap.dedent('''
      import jax, jax.numpy as jnp, numpy as np
      from prunephase import data as data_lib, models, population, train_steps as train_lib
      dataset = data_lib.load_mnist1d(300)
      model = models.CNN1D(10, (4, 4), (3, 3), (2, 2))
      spec = train_lib.TrainSpec(32, 4)  # Calls of 2 steps: one compiled chunk program.
      start = train_lib.init_population(model, dataset.input_shape, list(range(8)),
                                        list(range(8)))
      hparams = train_lib.Hparams(lr=jnp.linspace(0.05, 0.2, 8),
                                  weight_decay=jnp.full(8, 1e-4), sam_rho=jnp.zeros(8))
      results = {}
      # (members x data mesh, steps per call, members per chunk)
      for layout in ((None, None, None), ((4, 1), 2, 1), ((2, 2), 2, 3)):
        shape, steps_per_call, chunk = layout
        mesh = shape and population.make_mesh(*shape, devices=jax.devices()[:4])
        program = population.PopulationProgram(model, spec, False, mesh, steps_per_call, chunk)
        states, placed = program.place(jax.tree.map(jnp.copy, (start, hparams)))
        data = population.replicate(mesh, dataset)
        states, metrics = program.epoch(states, placed, None, data, 0)
        results[layout] = jax.device_get((states.params, states.batch_stats, metrics))
      want = jax.tree.leaves(results[None, None, None])
      for layout, result in results.items():
        for got, expected in zip(jax.tree.leaves(result), want):
          np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=str(layout))
      print('EQUAL', len(results))
  ''')
  env = {**os.environ,
         'XLA_FLAGS': xla_flags_with('--xla_force_host_platform_device_count=4')}
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'EQUAL 3' in result.stdout
