"""Notebook access to a finished (or partial) run: `prunephase.load_run(DIR)`.

  run = prunephase.load_run('runs/default')
  run.results                      # pandas DataFrame of results.csv, numeric columns numeric
  run.results[run.results.density == 0.08]   # one density's seed pairs
  run.members()[:3]                # what is stored: temperature, dense seed, density, retrain seed
  run.curves(temperature=32, density=0.08)   # every seed pair's LMC curve of one cell
  member = run.retrained(temperature=32, density=0.08, dense_seed=1, retrain_seed=2)
  logits = run.apply(member, x)    # eval mode, on CPU: x (N, *example) -> logits (N, classes)
  run.test_error(member)           # loads the dataset (only this and `dataset` need it)

`apply` takes a batch as the dataset stores it (MNIST-1D (N, 40, 1), CIFAR-10 (N, 32, 32, 3)
uint8, normalised as in training), the same without a trailing channel axis of 1 (MNIST-1D
(N, 40), as the mnist1d package gives it), or one example without the batch axis.

Temperatures, densities and seeds must be on the run's grid (floats match to a relative 1e-6):
a value off the grid is an `AnalysisError` (a ValueError, and a KeyError) naming the grid's
values; a value on the grid whose stage has not run yet is an `artifacts.ArtifactError` saying
which stage to run.

Everything is restored onto the CPU from the stored shapes and `data.json`, so a run made on
accelerators opens on a laptop without its dataset. A temperature's retrained population is
restored once and cached (`cache_size` temperatures), so listing its members is cheap.
"""

from collections.abc import Sequence
import functools
import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd

from prunephase import artifacts
from prunephase import data as data_lib
from prunephase import files
from prunephase import metrics
from prunephase import pruning
from prunephase import tables
from prunephase import train_steps as train_lib
from prunephase import workdir as workdir_lib


# Columns of results.csv and cells.csv that hold text or flags; the others hold numbers.
_TEXT_COLUMNS = ('knob', 'regime', 'diverged')
_REL_TOL = 1e-6  # Grid values given as floats (0.04 vs 0.04000001) match to this.


class AnalysisError(ValueError, KeyError):
  """An argument does not fit the run (a value off its grid, inputs of another shape); the
  message is one line naming what would fit. A KeyError too, as a missing member used to be."""

  __str__ = BaseException.__str__  # KeyError's would quote the message.


def _read_table(path: pathlib.Path) -> pd.DataFrame:
  """A report table as a DataFrame: numeric columns numeric (empty fields NaN).

  pandas parses numbers itself; a column it left as text is converted here, and one of
  `tables.NUMERIC` (temperature, density, seeds, errors, lmc, cka) or a metric entry's column
  (`metrics.column_names`) that will not convert is an ArtifactError rather than a text column
  that silently matches no number.
  """
  if not path.exists():
    raise artifacts.ArtifactError(f'missing {path}: run the report stage first')
  table = pd.read_csv(path)
  for column in table.columns:
    if column in _TEXT_COLUMNS or pd.api.types.is_numeric_dtype(table[column]):
      continue
    try:
      table[column] = pd.to_numeric(table[column])
    except (TypeError, ValueError):
      if column in tables.NUMERIC or column in metrics.column_names():
        raise artifacts.ArtifactError(f'{path}: column {column} holds text where numbers belong'
                                      ) from None
  return table


def _format(value) -> str:
  return f'{value:g}' if isinstance(value, float) else str(value)


def _on_grid(name: str, plural: str, value, grid: Sequence, exact: bool = False):
  """The grid's own value equal to `value` (floats to a relative `_REL_TOL`; seeds, `exact`,
  equal); AnalysisError naming the grid's values if there is none."""
  listed = ', '.join(_format(g) for g in grid)
  if isinstance(value, (str, bytes)) or np.ndim(value) != 0:
    raise AnalysisError(f'{name} {value!r} is not a number; {plural}: {listed}')
  number = float(value)
  for candidate in grid:
    if (number == candidate if exact else
        math.isclose(number, float(candidate), rel_tol=_REL_TOL, abs_tol=1e-12)):
      return candidate
  raise AnalysisError(f"{name} {_format(value)} is not on this run's grid; {plural}: {listed}")


def _shape_text(shape: Sequence[int], batch: bool) -> str:
  dims = (['N'] if batch else []) + [str(d) for d in shape]
  return f'({dims[0]},)' if len(dims) == 1 else f'({", ".join(dims)})'


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
  def results(self) -> pd.DataFrame:
    """results.csv, one row per (temperature, density, dense seed, seed pair): numeric columns
    (temperature, density, seeds, errors, lmc, cka_*, ...) are numbers, empty fields NaN.

    Raises:
      ArtifactError: the report stage has not written it yet (`rows()` rebuilds the rows
        from the artifacts once every temperature is measured).
    """
    return _read_table(self.path / 'results.csv')

  @property
  def cells(self) -> pd.DataFrame:
    """cells.csv, one row per (temperature, density): means, stds, regime label (as
    `results`, numeric columns are numbers)."""
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
    """The grid's temperatures, hottest first."""
    return self.store.temperatures

  @property
  def densities(self) -> list[float]:
    return self.store.densities

  def _temperature(self, temperature: float) -> float:
    return _on_grid('temperature', f'temperatures ({self.store.knob})', temperature,
                    self.temperatures)

  def _density(self, density: float) -> float:
    return _on_grid('density', 'densities', density, self.densities)

  def _dense_seed(self, dense_seed: int) -> int:
    return _on_grid('dense seed', 'dense seeds', dense_seed, self.store.dense_seeds, exact=True)

  def _retrain_seed(self, retrain_seed: int) -> int:
    return _on_grid('retrain seed', 'retrain seeds', retrain_seed, self.store.retrain_seeds,
                    exact=True)

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
    temperature, density = self._temperature(temperature), self._density(density)
    out = []
    for pair in self.store.measurement(temperature)['pairs']:
      if math.isclose(float(pair['density']), density, rel_tol=_REL_TOL):
        curve = {k: np.asarray(v, float) for k, v in pair['curve'].items()}
        out.append({'dense_seed': pair['dense_seed'], 'seed_a': pair['seed_a'],
                    'seed_b': pair['seed_b'], 'lmc': pair['lmc'],
                    'alpha': np.linspace(0.0, 1.0, len(curve['train_error'])), **curve})
    return out

  def dense(self, temperature: float, dense_seed: int) -> dict[str, Any]:
    """The dense model of (temperature, dense seed): {'params', 'batch_stats'}."""
    temperature, dense_seed = self._temperature(temperature), self._dense_seed(dense_seed)
    models = self.store.dense_models(temperature)
    index = self.store.dense_seeds.index(dense_seed)
    return jax.tree.map(lambda a: a[index], models)

  def mask(self, temperature: float, dense_seed: int, density: float):
    """The pruning mask (pytree like params, None where never pruned)."""
    temperature, density = self._temperature(temperature), self._density(density)
    s = self.store.dense_seeds.index(self._dense_seed(dense_seed))
    d = self.densities.index(density)
    masks = self.store.masks(temperature)['masks']
    return jax.tree.map(lambda a: a[s, d], masks)

  def retrained(self, temperature: float, density: float, dense_seed: int,
                retrain_seed: int) -> dict[str, Any]:
    """A retrained model: {'params', 'batch_stats', 'history'} (history: per-epoch arrays)."""
    temperature = self._temperature(temperature)
    wanted = {'dense_seed': self._dense_seed(dense_seed), 'density': self._density(density),
              'retrain_seed': self._retrain_seed(retrain_seed)}
    m = self.store.retrain_members().index(wanted)  # On the grid: every member is stored.
    states, history = self._population(temperature)
    member = train_lib.unstack_member(states, m)
    return {'params': member.params, 'batch_stats': member.batch_stats,
            'history': {k: v[m] for k, v in history.items()}}

  def _model_inputs(self, x) -> tuple[jax.Array, bool]:
    """x as a (N, *input_shape) model batch (not yet normalised), and whether it was a single
    example. Batch readings come first where a shape could be read both ways."""
    example = tuple(self.store.facts.input_shape)
    # MNIST-1D's (40, 1) is (40,) outside this project: a channel axis of 1 may be left out.
    bare = example[:-1] if len(example) > 1 and example[-1] == 1 else None
    shape = tuple(np.shape(x))
    for form in (example, bare):
      if form is not None and len(shape) == len(form) + 1 and shape[1:] == form:
        return jnp.reshape(jnp.asarray(x), shape[:1] + example), False
    for form in (example, bare):
      if form is not None and shape == form:
        return jnp.reshape(jnp.asarray(x), (1,) + example), True
    forms = [_shape_text(f, batch=True) for f in (example, bare) if f is not None]
    singles = [_shape_text(f, batch=False) for f in (example, bare) if f is not None]
    raise AnalysisError(f'x has shape {_shape_text(shape, batch=False)}; expected '
                        f'{" or ".join(forms)} ({self.store.facts.name} examples), or one '
                        f'example {" or ".join(singles)}')

  def apply(self, variables: dict[str, Any], x) -> jax.Array:
    """Eval-mode logits of a model (train mode is not offered: its BatchNorm statistics would
    be those of the batch x).

    Args:
      variables: {'params', 'batch_stats'} of one model (`retrained`, `dense`).
      x: (N, *example) inputs as the dataset stores them (`store.facts.input_shape`, e.g.
        MNIST-1D (N, 40, 1) floats, CIFAR-10 (N, 32, 32, 3) uint8, normalised with the run's
        statistics); where the example ends in a channel axis of 1, also without it (MNIST-1D
        (N, 40)); or one example without the batch axis.

    Returns:
      (N, classes) float logits; (classes,) for a single example.

    Raises:
      AnalysisError: x has another shape (the one-line message names the expected ones).
    """
    inputs, single = self._model_inputs(x)
    logits = self.model.apply({'params': variables['params'],
                               'batch_stats': variables['batch_stats']},
                              self.store.facts.prepare_inputs(inputs), train=False)
    return logits[0] if single else logits

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
  config = ml_collections.ConfigDict(files.read_json(config_file))
  return Run(path, config, cache_size)
