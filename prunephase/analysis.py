"""Notebook access to a finished (or partial) run: `prunephase.load_run(DIR)`.

  run = prunephase.load_run('runs/default')
  run.results                      # pandas DataFrame of results.csv (list of dicts without pandas)
  run.members()[:3]                # what is stored: temperature, dense seed, density, retrain seed
  run.curves(temperature=32, density=0.08)   # every seed pair's LMC curve of one cell
  member = run.retrained(temperature=32, density=0.08, dense_seed=1, retrain_seed=2)
  logits = run.apply(member, x)    # eval mode, on CPU; x as stored (uint8 images are normalised)
  run.test_error(member)           # loads the dataset (only this and `dataset` need it)

Everything is restored onto the CPU from the stored shapes and `data.json`, so a run made on
accelerators opens on a laptop without its dataset. A temperature's retrained population is
restored once and cached (`cache_size` temperatures), so listing its members is cheap.
"""

import csv
import functools
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from prunephase import artifacts
from prunephase import data as data_lib
from prunephase import pruning
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


class Run:
  """A sweep's workdir opened for analysis (read only; takes no lock).

  Attributes:
    path: the workdir.
    config: its ConfigDict (from config.json; its branch is the one read).
    store: the `artifacts.Store` everything is read through.
  """

  def __init__(self, path: pathlib.Path, config: ml_collections.ConfigDict,
               cache_size: int = 2):
    self.path, self.config = pathlib.Path(path), config
    self._cpu = jax.devices('cpu')[0]
    self._dataset = None
    facts = None  # From data.json; a workdir of <= 0.1 has none, so ask the dataset.
    if not (self.path / artifacts.DATA_FILE).exists():
      facts = artifacts.DataFacts.of(self.dataset)
    self.store = artifacts.Store(self.path, config, facts, device=self._cpu)
    self._population = functools.lru_cache(maxsize=cache_size)(self.store.retrained)

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
    """The run's dataset, loaded on first use (the analysis of stored models never needs it)."""
    if self._dataset is None:
      with jax.default_device(self._cpu):
        self._dataset = data_lib.load_dataset(self.config.dataset)
    return self._dataset

  @property
  def model(self):
    return self.store.model

  @property
  def temperatures(self) -> list[float]:
    return self.store.temperatures

  def members(self) -> list[dict[str, Any]]:
    """Every stored retrained member: {'temperature', 'dense_seed', 'density', 'retrain_seed'}."""
    return [{'temperature': t, **m} for t in self.temperatures
            if self.store.has_retrained(t) for m in self.store.retrain_members()]

  def rows(self, with_curves: bool = False) -> list[dict[str, Any]]:
    """results.csv's rows rebuilt from the artifacts (without labels); with_curves adds each
    pair's path errors under 'curve' ({'train_error': (K,), 'test_error': (K,)})."""
    from prunephase.stages import report  # pylint: disable=import-outside-toplevel
    return report.result_rows(self.store, with_curves)

  def curves(self, temperature: float, density: float) -> list[dict[str, Any]]:
    """Every seed pair's LMC curve of one cell: dense seed, seeds, 'lmc', 'alpha' (K,) from 0
    (member a) to 1 (member b), and the eval-mode errors along the path."""
    out = []
    for pair in self.store.measurement(temperature)['pairs']:
      if float(pair['density']) == float(density):
        curve = {k: np.asarray(v, float) for k, v in pair['curve'].items()}
        out.append({'dense_seed': pair['dense_seed'], 'seed_a': pair['seed_a'],
                    'seed_b': pair['seed_b'], 'lmc': pair['lmc'],
                    'alpha': np.linspace(0.0, 1.0, len(curve['train_error'])), **curve})
    return out

  def dense(self, temperature: float, dense_seed: int) -> dict[str, Any]:
    """The dense model of (temperature, dense seed): {'params', 'batch_stats'}."""
    models = self.store.dense_models(temperature)
    index = self.store.dense_seeds.index(dense_seed)
    return jax.tree.map(lambda a: a[index], models)

  def mask(self, temperature: float, dense_seed: int, density: float):
    """The pruning mask (pytree like params, None where never pruned)."""
    masks = self.store.masks(temperature)['masks']
    s = self.store.dense_seeds.index(dense_seed)
    d = self.store.densities.index(float(density))
    return jax.tree.map(lambda a: a[s, d], masks)

  def retrained(self, temperature: float, density: float, dense_seed: int,
                retrain_seed: int) -> dict[str, Any]:
    """A retrained model: {'params', 'batch_stats', 'history'} (history: per-epoch arrays)."""
    members = self.store.retrain_members()
    wanted = {'dense_seed': dense_seed, 'density': float(density), 'retrain_seed': retrain_seed}
    if wanted not in members:
      raise KeyError(f'no retrained member {wanted}; members are {members[:3]} ...')
    states, history = self._population(float(temperature))
    m = members.index(wanted)
    member = train_lib.unstack_member(states, m)
    return {'params': member.params, 'batch_stats': member.batch_stats,
            'history': {k: v[m] for k, v in history.items()}}

  def apply(self, variables: dict[str, Any], x) -> jax.Array:
    """Eval-mode logits (batch, classes) of a model on stored inputs x (uint8 images are
    normalised with the run's statistics). Train mode is not offered: its BatchNorm statistics
    would be those of the batch x."""
    return self.model.apply({'params': variables['params'],
                             'batch_stats': variables['batch_stats']},
                            self.store.facts.prepare_inputs(x), train=False)

  def test_error(self, variables: dict[str, Any]) -> float:
    """Eval-mode error on the whole test set (loads the dataset)."""
    return float(train_lib.evaluate(self.model, variables['params'], variables['batch_stats'],
                                    self.dataset, 'test')['error'])

  def density(self, mask) -> float:
    return pruning.density(mask)


def load_run(path: str, cache_size: int = 2) -> Run:
  """Opens the workdir `path` of a prunephase run for analysis."""
  path = pathlib.Path(path)
  config_file = path / workdir_lib.CONFIG_FILE
  if not config_file.exists():
    raise FileNotFoundError(f'{path} holds no {workdir_lib.CONFIG_FILE}: not a prunephase run')
  config = ml_collections.ConfigDict(workdir_lib.read_json(config_file))
  return Run(path, config, cache_size)
