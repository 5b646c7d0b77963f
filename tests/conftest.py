"""Shared fixtures and helpers: a tiny MNIST-1D sweep run once per session, the commands run
from this checkout, mock tfds data, small parameter trees."""

import sys

# Imported by pytest, or by a script a test starts (which must not make a cache of its own).
_UNDER_PYTEST = 'pytest' in sys.modules

import contextlib  # pylint: disable=g-import-not-at-top,wrong-import-position
import csv
import importlib.util
import os
import pathlib
import shutil
import subprocess
import tempfile
from unittest import mock

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))

# One persistent XLA compilation cache for the whole test run, set before JAX is imported:
# compiling is most of the suite's time on a CPU, and both xdist workers and the commands they
# start compile many of the same programs. Results do not change (a cached program is the
# compiled one). The pytest process that starts the run (the xdist controller, or pytest alone)
# makes the directory and removes it at its end; workers and started commands inherit it through
# the environment. A size limit switches on JAX's file lock around every cache read and write
# (it needs `filelock`, a test dependency), so concurrent processes never read a half-written
# entry. A JAX_COMPILATION_CACHE_DIR of your own is used as it is and kept.
XLA_CACHE_VARIABLES = ('JAX_COMPILATION_CACHE_DIR', 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS',
                       'JAX_COMPILATION_CACHE_MAX_SIZE', 'PRUNEPHASE_TESTS_XLA_CACHE')
_XLA_CACHE = None
if (_UNDER_PYTEST and 'PYTEST_XDIST_WORKER' not in os.environ
    and 'JAX_COMPILATION_CACHE_DIR' not in os.environ
    and importlib.util.find_spec('filelock') is not None):
  _XLA_CACHE = tempfile.mkdtemp(prefix='prunephase-tests-xla-')
  os.environ.update({'JAX_COMPILATION_CACHE_DIR': _XLA_CACHE,
                     'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0.2',
                     'JAX_COMPILATION_CACHE_MAX_SIZE': str(8 << 30),
                     'PRUNEPHASE_TESTS_XLA_CACHE': _XLA_CACHE})

# Tests compile with XLA's backend optimisation level 0: the same programs, compiled without
# LLVM's costly optimisation passes, which takes about a third less time over the suite (the
# programs here are small and compiling is most of their time). Runs of prunephase itself, the
# benchmarks and the README's figures use XLA's defaults. Set PRUNEPHASE_TESTS_XLA_DEFAULT=1 to
# test at the default level. Inherited by the xdist workers and the commands tests start (tests
# that set device counts add to XLA_FLAGS rather than replace it).
if (_UNDER_PYTEST and 'PYTEST_XDIST_WORKER' not in os.environ
    and not os.environ.get('PRUNEPHASE_TESTS_XLA_DEFAULT')
    and 'xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', '')):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_backend_optimization_level=0').strip()


def xla_flags_with(*flags: str) -> str:
  """XLA_FLAGS for a command a test starts: the test run's flags plus `flags`."""
  return ' '.join([os.environ.get('XLA_FLAGS', ''), *flags]).strip()


from configs import default as default_config  # pylint: disable=g-import-not-at-top,wrong-import-position

# Console script -> the module that runs it (run with this interpreter, from this checkout: an
# installed console script may point at another copy of prunephase).
COMMANDS = {'prunephase': 'prunephase.cli.main', 'prunephase-regimes': 'prunephase.cli.regimes',
            'prunephase-advise': 'prunephase.cli.advise',
            'prunephase-select': 'prunephase.cli.select'}


def pytest_unconfigure(config):
  """Removes the run's compilation cache (see XLA_CACHE_VARIABLES) in the process that made it."""
  del config
  if _XLA_CACHE is not None:
    shutil.rmtree(_XLA_CACHE, ignore_errors=True)


def run_command(command: str, *args: str, timeout: float = 300, prefix: tuple[str, ...] = (),
                **kwargs) -> subprocess.CompletedProcess:
  """Runs a console script (`COMMANDS`) of this checkout in a subprocess; output as text.

  `prefix` goes before the interpreter (e.g. a command that drops privileges).
  """
  return subprocess.run([*prefix, sys.executable, '-m', COMMANDS[command], *map(str, args)],
                        cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
                        **kwargs)


# Flags that shrink an example config file (examples/*.py) to seconds of training.
EXAMPLE_FLAGS = ('--config.dataset.num_samples=600', '--config.dense.iterations=40',
                 '--config.retrain.epochs=2', '--config.measure.cka_examples=100',
                 '--config.measure.lmc_points=3', '--config.regimes.bootstrap=2',
                 '--config.temperature.grid=(16,)')  # One temperature: half the compiling.


def read_results(workdir: pathlib.Path) -> list[dict]:
  """The rows of a workdir's results.csv, as strings."""
  with open(pathlib.Path(workdir) / 'results.csv', encoding='utf-8', newline='') as file:
    return list(csv.DictReader(file))


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
  """The non-empty stderr lines of a command that failed."""
  return [line for line in result.stderr.splitlines() if line.strip()]


ERROR_PREFIX = 'prunephase: error: '


def one_line_error(result: subprocess.CompletedProcess) -> str:
  """The message of a command that ended in prunephase's one-line error, after checking that
  shape: exit status 2 and a single non-empty stderr line 'prunephase: error: MESSAGE', with no
  traceback."""
  lines = error_lines(result)
  assert result.returncode == 2, result.stderr[-2000:]
  assert len(lines) == 1, result.stderr[-2000:]
  assert lines[0].startswith(ERROR_PREFIX), lines[0]
  assert 'Traceback' not in result.stderr
  return lines[0][len(ERROR_PREFIX):]


def one_error_line(result: subprocess.CompletedProcess) -> str:
  """`one_line_error`'s checks; the whole line, 'prunephase: error: MESSAGE'."""
  return ERROR_PREFIX + one_line_error(result)


@contextlib.contextmanager
def mock_tfds(num_examples: int):
  """Every tfds dataset exists, with `num_examples` random examples per split.

  `tfds.testing.mock_data` does not make `builder.is_prepared()` true, which prunephase checks
  before reading (to fail fast offline), so that is patched too.
  """
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  with tfds.testing.mock_data(num_examples=num_examples,
                              policy=tfds.testing.MockPolicy.USE_CODE), \
      mock.patch.object(tfds.core.DatasetBuilder, 'is_prepared', return_value=True):
    yield


def tiny_config():
  """Seconds-sized grid: 2 temperatures (epochs) x 2 densities, 1 dense x 3 retrain seeds."""
  config = default_config.get_config('quick')
  config.dataset.num_samples = 600
  config.model.widths = (8, 8, 8)
  config.dense.epochs = 2
  config.temperature.knob = 'epochs'
  config.temperature.grid = (1, 2)
  config.prune.densities = (0.2, 0.6)
  config.retrain.epochs = 2
  config.retrain.seeds = (1, 2, 3)
  config.measure.test_error_epochs = 2
  config.measure.cka_examples = 100
  config.measure.lmc_points = 5
  config.regimes.bootstrap = 5
  return config


def tiny_config_file(directory: pathlib.Path) -> pathlib.Path:
  """A config file giving `tiny_config()`, for running the tiny sweep's workdir through the
  `prunephase` command."""
  path = pathlib.Path(directory) / 'tiny_config.py'
  path.write_text(f'import sys\nsys.path.insert(0, {str(REPO / "tests")!r})\n'
                  'from conftest import tiny_config\n\n\n'
                  'def get_config(arg=""):\n  del arg\n  return tiny_config()\n')
  return path


@pytest.fixture(scope='session')
def finished_run(tmp_path_factory):
  """(workdir, sweep, summary) of the tiny sweep, every stage."""
  from prunephase import sweep as sweep_lib  # pylint: disable=import-outside-toplevel
  path = tmp_path_factory.mktemp('run')
  sweep, summary = sweep_lib.run_sweep(tiny_config(), path)
  return path, sweep, summary


def beyond_config(init_from):
  """The tiny sweep with everything beyond the paper: iterative pruning (rate 0.5: levels 0.6,
  0.5, 0.25, 0.2), weight rewinding to epoch 1, Hessian metrics and trained Bezier curves, and
  the dense models imported from `init_from`."""
  config = tiny_config()
  config.dense.init_from = str(init_from)
  config.prune.schedule = 'iterative'
  config.prune.rate_per_level = 0.5
  config.retrain.mode = 'weight_rewinding'
  config.retrain.rewind_epoch = 1
  config.measure.hessian = True
  config.measure.hessian_batches = 2
  config.measure.hessian_iters = 8
  config.measure.hessian_probes = 4
  config.measure.bezier_curve = True
  config.measure.curve_epochs = 1
  config.measure.curve_points = 5
  config.report.panels = ('test_error', 'lmc', 'cka_softmax', 'curve_mc',
                          'hessian_top_eigenvalue')
  return config


@pytest.fixture(scope='session')
def beyond_run(finished_run, tmp_path_factory):
  """(sweep, results.csv rows) of `beyond_config` on the tiny run's dense models."""
  import csv  # pylint: disable=import-outside-toplevel
  from prunephase import sweep as sweep_lib  # pylint: disable=import-outside-toplevel
  path, _, _ = finished_run
  sweep, _ = sweep_lib.run_sweep(beyond_config(path), tmp_path_factory.mktemp('beyond') / 'run')
  with open(sweep.path / 'results.csv') as f:
    return sweep, list(csv.DictReader(f))


# ----------------------------------------------------------------------------- small trees


def make_params(seed=0):
  """Three prunable kernels of 40, 96 and 432 weights plus BN and head leaves (not prunable)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  normal = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  return {
      'stem': {'kernel': normal(3, 3, 3, 16)},  # 432 weights, the paper's PreResNet stem.
      'conv0': {'kernel': normal(5, 1, 8)},  # 40 weights.
      'bn0': {'scale': normal(8), 'bias': normal(8)},
      'conv1': {'kernel': 0.1 * normal(3, 8, 4)},  # 96 weights, smaller scale than the others.
      'head': {'kernel': normal(12, 3), 'bias': normal(3)},
  }


def half_mask(params, seed=0):
  """Keeps a random half of the first layer's kernel (dense0 or conv0); every other leaf
  unmasked (None)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  first = 'dense0' if 'dense0' in params else 'conv0'
  mask = jax.tree.map(lambda _: None, params)
  kernel = params[first]['kernel']
  mask[first] = {'kernel': jnp.asarray(rng.random(kernel.shape) < 0.5)}
  return mask


def matmul_dtypes(function, *args) -> list[tuple[str, ...]]:
  """Operand dtypes of every matmul and convolution of `function`'s traced program, in program
  order, sub-programs (custom gradients, jitted and scanned bodies) included."""
  import jax  # pylint: disable=import-outside-toplevel
  found = []

  def visit(jaxpr):
    for equation in jaxpr.eqns:
      if equation.primitive.name in ('dot_general', 'conv_general_dilated'):
        found.append(tuple(str(v.aval.dtype) for v in equation.invars))
      for value in equation.params.values():
        for sub in (value if isinstance(value, (list, tuple)) else [value]):
          inner = getattr(sub, 'jaxpr', None)
          if inner is not None:
            visit(getattr(inner, 'jaxpr', inner))

  visit(jax.make_jaxpr(function)(*args).jaxpr)
  return found


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  """Same structure and every leaf close."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
