"""Tests for prunephase.config: parse_arg, the knob table, the paper's grids, and that configs
load and validate without JAX."""

import subprocess
import sys
import textwrap

import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order
from prunephase import config as config_lib
from prunephase import knobs
from prunephase import registry
from prunephase.config import names
from prunephase.config import paper


def test_parse_arg_without_spec_reads_literals():
  assert config_lib.parse_arg('a,b=1,c=x') == {'a': True, 'b': 1, 'c': 'x'}
  assert config_lib.parse_arg('w=0.5, n=-3 ,s=yes') == {'w': 0.5, 'n': -3, 's': 'yes'}
  assert config_lib.parse_arg('') == config_lib.parse_arg(None) == {}


def test_parse_arg_with_spec_is_typed_and_keeps_defaults():
  spec = {'quick': False, 'width': 1, 'lr': 0.1, 'name': 'cnn1d'}
  assert config_lib.parse_arg('', **spec) == spec
  assert config_lib.parse_arg('quick,width=2,lr=1e-3,name=mlp', **spec) == {
      'quick': True, 'width': 2, 'lr': 0.001, 'name': 'mlp'}
  assert config_lib.parse_arg('quick=false', **spec)['quick'] is False
  assert config_lib.parse_arg(' quick , width = 3 ', **spec)['width'] == 3


@pytest.mark.parametrize('arg, message', [
    ('fast', "unknown config argument 'fast' in 'fast'; use comma-separated names from quick, "
             'width'),
    ('quick,quick', "repeated 'quick'"),
    ('width', "config argument 'width' needs a value"),
    ('width=two', "width='two' is not a int"),
    ('quick=maybe', "quick='maybe' is not a boolean"),
])
def test_parse_arg_errors_are_one_line(arg, message):
  with pytest.raises(ValueError) as error:
    config_lib.parse_arg(arg, quick=False, width=1)
  assert message in str(error.value) and '\n' not in str(error.value)


def test_knob_order():
  assert names.hot_to_cold('epochs', [40, 10, 20]) == [10, 20, 40]  # fewer epochs: hotter
  assert names.hot_to_cold('batch_size', [64, 16]) == [16, 64]
  assert names.hot_to_cold('lr', [0.01, 0.1]) == [0.1, 0.01]  # larger lr: hotter
  assert names.hot_to_cold('sam_rho', [0.0, 0.4]) == [0.4, 0.0]


def test_the_kernel_modules_use_the_names_stated_here():
  from prunephase import cka, data, lmc, regimes, tfds_data  # pylint: disable=import-outside-toplevel,multiple-imports
  assert cka.ESTIMATORS is names.CKA_ESTIMATORS
  assert data.AUGMENTATIONS is names.AUGMENTATIONS
  assert lmc.POINT_BATCHING is names.POINT_BATCHING
  assert regimes.RULES is names.REGIME_RULES
  assert tfds_data.DATASETS is registry.TFDS_DATASETS
  assert names.knobs is knobs  # The knobs' order comes from their entries.


def test_the_papers_grids():
  # The paper's Figure 2 grid (docs/paper_figure2/).
  assert paper.DENSITIES == (0.05, 0.06, 0.07, 0.08, 0.10, 0.14, 0.20, 0.40, 0.80)
  assert paper.EPOCHS == (10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160)
  epochs = config_lib.load_config_file(REPO / 'configs' / 'cifar10_epochs.py').get_config()
  assert tuple(epochs.temperature.grid) == paper.EPOCHS
  assert tuple(epochs.prune.densities) == paper.DENSITIES


def test_configs_load_and_validate_without_jax():
  script = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {str(REPO)!r})
      from prunephase import config
      for name in ('default', 'mnist1d_sam_rho', 'cifar10_epochs', 'cifar10_batch_size',
                   'cifar10_sam_rho'):
        for arg in ('', 'quick'):
          config.validate(config.load_config_file({str(REPO)!r} + f'/configs/{{name}}.py')
                          .get_config(arg))
      from prunephase import grid, tables  # Light too: names and validation live in config.
      heavy = sorted(m for m in ('jax', 'flax', 'optax', 'orbax', 'tensorflow_datasets',
                                 'numpy') if m in sys.modules)
      print('HEAVY', heavy)
      """)
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'HEAVY []' in result.stdout
