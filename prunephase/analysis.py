"""Notebook access to a finished (or partial) run: `prunephase.load_run(DIR)`.

  run = prunephase.load_run('runs/default')
  run.results                      # pandas DataFrame of results.csv (list of dicts without pandas)
  member = run.retrained(temperature=12, density=0.08, dense_seed=1, retrain_seed=2)
  logits = run.apply(member, run.dataset.x_test)   # eval mode, on CPU
  run.test_error(member)     # eval-mode test error = member['history']['test_error'][-1]

Everything is restored onto the CPU, so a run made on accelerators can be analysed on a laptop.
"""

import csv
import dataclasses
import functools
import pathlib
from typing import Any

import jax
import ml_collections

from prunephase import data as data_lib
from prunephase import pruning
from prunephase import sweep as sweep_lib
from prunephase import train as train_lib
from prunephase import workdir as workdir_lib


def _read_table(path: pathlib.Path):
  if not path.exists():
    return None
  try:
    import pandas  # pylint: disable=import-outside-toplevel
    return pandas.read_csv(path)
  except ImportError:
    with open(path) as f:
      return list(csv.DictReader(f))


@dataclasses.dataclass
class Run:
  """A sweep's workdir opened for analysis (read only; takes no lock).

  Attributes:
    path: the workdir.
    config: its ConfigDict (from config.json).
  """

  path: pathlib.Path
  config: ml_collections.ConfigDict

  @functools.cached_property
  def _sweep(self) -> sweep_lib.Sweep:
    sweep = sweep_lib.Sweep(self.config, self.path, device=jax.devices('cpu')[0])
    with jax.default_device(jax.devices('cpu')[0]):
      sweep.dataset  # pylint: disable=pointless-statement
    return sweep

  @property
  def results(self):
    """results.csv: pandas DataFrame if pandas is installed, else a list of dicts."""
    return _read_table(self.path / 'results.csv')

  @property
  def cells(self):
    """cells.csv (means per temperature and density)."""
    return _read_table(self.path / 'cells.csv')

  @property
  def dataset(self) -> data_lib.Dataset:
    return self._sweep.dataset

  @property
  def model(self):
    return self._sweep.model

  @property
  def temperatures(self) -> list[float]:
    return self._sweep.temperatures

  def dense(self, temperature: float, dense_seed: int) -> dict[str, Any]:
    """The dense model of (temperature, dense seed): {'params', 'batch_stats'}."""
    models = sweep_lib.dense_checkpoint(self._sweep, temperature)
    index = self._sweep.dense_seeds.index(dense_seed)
    return jax.tree.map(lambda a: a[index], models)

  def mask(self, temperature: float, dense_seed: int, density: float):
    """The pruning mask (pytree like params, None where never pruned)."""
    template = self.dense(temperature, dense_seed)['params']
    masks = sweep_lib.load_masks(self._sweep, temperature, template)['masks']
    s = self._sweep.dense_seeds.index(dense_seed)
    d = self._sweep.densities.index(float(density))
    return jax.tree.map(lambda a: a[s, d], masks)

  def retrained(self, temperature: float, density: float, dense_seed: int,
                retrain_seed: int) -> dict[str, Any]:
    """A retrained model: {'params', 'batch_stats', 'history'} (history: per-epoch arrays)."""
    states, history = sweep_lib.load_retrained(self._sweep, temperature)
    members = sweep_lib.retrain_members(self._sweep)
    wanted = {'dense_seed': dense_seed, 'density': float(density), 'retrain_seed': retrain_seed}
    if wanted not in members:
      raise KeyError(f'no retrained member {wanted}; members are {members[:3]} ...')
    m = members.index(wanted)
    member = train_lib.unstack_member(states, m)
    return {'params': member.params, 'batch_stats': member.batch_stats,
            'history': {k: v[m] for k, v in history.items()}}

  def apply(self, variables: dict[str, Any], x, train: bool = False):
    """Eval-mode logits of a model on stored inputs x (uint8 images are normalised)."""
    inputs = data_lib.prepare_inputs(self.dataset, x)
    return self.model.apply({'params': variables['params'],
                             'batch_stats': variables['batch_stats']}, inputs, train=train)

  def test_error(self, variables: dict[str, Any]) -> float:
    """Eval-mode error on the whole test set."""
    return float(train_lib.evaluate(self.model, variables['params'], variables['batch_stats'],
                                    self.dataset, 'test')['error'])

  def density(self, mask) -> float:
    return pruning.density(mask)


def load_run(path: str) -> Run:
  """Opens the workdir `path` of a prunephase run for analysis."""
  path = pathlib.Path(path)
  config_file = path / workdir_lib.CONFIG_FILE
  if not config_file.exists():
    raise FileNotFoundError(f'{path} holds no {workdir_lib.CONFIG_FILE}: not a prunephase run')
  config = ml_collections.ConfigDict(workdir_lib.read_json(config_file))
  return Run(path, config)
