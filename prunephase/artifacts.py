"""The artifact store: where every stage's results live in a workdir, and typed save and load.

  data.json                                      dataset facts (shapes, classes, normalisation)
  dense/<group>/epochs/<epoch>/                  orbax: dense population at saved epochs
  dense/<group>/resume/<epoch>/                  optional mid-run resume point
  <prune>/spec.json                              the prune fields that name the branch
  <prune>/masks/<temperature>/0/                 orbax: masks (S, D, ...), pre-retrain errors
  <prune>/levels/<temperature>/<level>/mask/0/   orbax: an IMP level's masks (S, ...)
  <prune>/levels/<temperature>/<level>/train/    an IMP level's training run (epochs/, resume/)
  <prune>/<retrain>/<temperature>/epochs/<E>/    orbax: retrained population + per-epoch history
  <prune>/<retrain>/<temperature>/resume/<E>/    optional mid-run resume point
  <prune>/<retrain>/<measure>/<temperature>.json per-pair LMC curves and CKA
  config.json, results.csv, cells.csv, *.png     the latest run's config and report

Branch names (`prune-uniform-1f3a9c2e`, ...) come from `config.identity`: a run with another
prune, retrain or measure config writes a new branch beside the old one and reuses everything
upstream. Temperature keys are `grid.temperature_key` ('batch_size=64').

The stages write through `Store` and `analysis.Run` reads through it. A `Store` needs only the
config and `data.json` (no dataset), so a run made on accelerators opens on a laptop without the
data. Workdirs of prunephase <= 0.1 (masks/, retrain/, measure/ at the top) are read in place and
moved into their branch when a run resumes them (`migrate_legacy_layout`).
"""

import dataclasses
import functools
import pathlib
import shutil
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from prunephase import checkpoints
from prunephase import config as config_lib
from prunephase import data as data_lib
from prunephase import files
from prunephase import grid
from prunephase import knobs
from prunephase import models
from prunephase import pruning
from prunephase import train_steps as train_lib
from prunephase.config import identity

DATA_FILE = 'data.json'
SPEC_FILE = 'spec.json'
LEGACY_DIRS = ('masks', 'retrain', 'measure')


class ArtifactError(RuntimeError):
  """An artifact is missing or unreadable; the one-line message says which and what to run."""


@dataclasses.dataclass(frozen=True)
class DataFacts:
  """What the stored models need to know about their dataset (written once, to data.json).

  Attributes:
    name: dataset name.
    input_shape: one example's shape, e.g. (40, 1) or (32, 32, 3).
    num_classes: classifier size.
    num_train: train examples used (decides steps per epoch).
    num_test: test examples used.
    mean: per-channel mean subtracted from uint8 inputs scaled to [0, 1].
    std: per-channel std.
    uint8: whether stored inputs are uint8 images (normalised per batch) or model-ready floats.
  """

  name: str
  input_shape: tuple[int, ...]
  num_classes: int
  num_train: int
  num_test: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  uint8: bool

  @classmethod
  def of(cls, dataset: data_lib.Dataset) -> 'DataFacts':
    return cls(dataset.name, tuple(dataset.input_shape), int(dataset.num_classes),
               dataset.num_train, int(dataset.x_test.shape[0]),
               tuple(float(v) for v in np.asarray(dataset.mean)),
               tuple(float(v) for v in np.asarray(dataset.std)),
               dataset.x_train.dtype == jnp.uint8)

  def prepare_inputs(self, x) -> jax.Array:
    """Stored inputs as float32 model inputs (as `data.prepare_inputs`)."""
    return data_lib.normalise_inputs(jnp.asarray(x), self.mean, self.std)


def _legacy(path: pathlib.Path) -> bool:
  return (path / 'masks').is_dir() or (path / 'retrain').is_dir() or (path / 'measure').is_dir()


def migrate_legacy_layout(path: str | pathlib.Path, previous_config: dict | None) -> bool:
  """Moves a <= 0.1 workdir's masks/, retrain/ and measure/ into the branch of the config it
  was made with (nothing is copied or lost). Returns whether anything moved."""
  path = pathlib.Path(path)
  if previous_config is None or not _legacy(path):
    return False
  prune, retrain, measure = identity.branch_path(previous_config)
  targets = {'masks': path / prune / 'masks', 'retrain': path / prune / retrain,
             'measure': path / prune / retrain / measure}
  for name in LEGACY_DIRS:
    if (path / name).is_dir():
      targets[name].parent.mkdir(parents=True, exist_ok=True)
      if name == 'masks' or not targets[name].exists():
        shutil.move(str(path / name), str(targets[name]))
      else:  # retrain/ may already hold the measure branch's parent: move the entries.
        for entry in (path / name).iterdir():
          shutil.move(str(entry), str(targets[name] / entry.name))
        (path / name).rmdir()
  print(f'prunephase: moved masks/, retrain/, measure/ of {path} into {prune}/ (new layout)',
        flush=True)
  return True


@dataclasses.dataclass(frozen=True)
class RunDir:
  """The directory of one resumable training run (a dense group, a retrain population, an IMP
  level's training), from `Store`: `epochs/<epoch>/` holds its saved epochs (artifacts, with
  the per-epoch history), `resume/<epoch>/` its newest mid-run resume point.

  Attributes:
    path: the run's directory.
  """

  path: pathlib.Path

  @property
  def epochs(self) -> pathlib.Path:
    return self.path / 'epochs'

  @property
  def resume(self) -> pathlib.Path:
    return self.path / 'resume'


class Store:
  """One workdir's artifacts for one config (its branch), restored onto `device`.

  Attributes:
    path: the workdir.
    config: the run's ConfigDict (decides the branch).
    device: where restored arrays go (default: this process's first device).
  """

  def __init__(self, path: str | pathlib.Path, config, facts: DataFacts | None = None,
               device: Any = None):
    self.path = pathlib.Path(path)
    self.config = config
    self.device = device
    self._facts = facts
    self._branch = identity.branch_path(config)

  @property
  def legacy(self) -> bool:
    """A <= 0.1 workdir, read in place (analysis of an old run takes no lock, moves nothing)."""
    return _legacy(self.path)

  @property
  def prune_dir(self) -> pathlib.Path:
    return self.path / 'masks' if self.legacy else self.path / self._branch[0] / 'masks'

  @property
  def retrain_dir(self) -> pathlib.Path:
    return self.path / 'retrain' if self.legacy else self.path.joinpath(*self._branch[:2])

  @property
  def measure_dir(self) -> pathlib.Path:
    return self.path / 'measure' if self.legacy else self.path.joinpath(*self._branch)

  # --------------------------------------------------------------------------- grid and model

  @property
  def knob(self) -> str:
    return self.config.temperature.knob

  @property
  def temperatures(self) -> list[float]:
    """Hottest first."""
    return config_lib.hot_to_cold(self.knob, self.config.temperature.grid)

  @property
  def densities(self) -> list[float]:
    return [float(d) for d in self.config.prune.densities]

  @property
  def dense_seeds(self) -> list[int]:
    return list(self.config.dense.seeds)

  @property
  def retrain_seeds(self) -> list[int]:
    return list(self.config.retrain.seeds)

  def key(self, temperature: float) -> str:
    return grid.temperature_key(self.knob, temperature)

  @property
  def facts(self) -> DataFacts:
    if self._facts is None:
      file = self.path / DATA_FILE
      if not file.exists():
        raise ArtifactError(f'{file} is missing: run the train stage (or pass the dataset)')
      stored = files.read_json(file)
      self._facts = DataFacts(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in stored.items()})
    return self._facts

  def write_facts(self) -> None:
    files.write_json(self.path / DATA_FILE, dataclasses.asdict(self.facts))

  @functools.cached_property
  def model(self):
    dtype = jnp.bfloat16 if self.config.model.mixed_precision else None
    return models.make_model(self.config.model, self.facts.num_classes, dtype)

  def prunable(self, params) -> Any:
    return models.prunable_tree(params, self.config.model.prune_head)

  def dense_groups(self) -> list[grid.DenseGroup]:
    return grid.dense_groups(self.config, self.facts.num_train)

  def retrain_members(self) -> list[dict[str, Any]]:
    """Member order of a retrain population: dense seed, then density, then retrain seed."""
    return [{'dense_seed': s, 'density': d, 'retrain_seed': r}
            for s in self.dense_seeds for d in self.densities for r in self.retrain_seeds]

  def pair_indices(self) -> list[dict[str, Any]]:
    """Every (dense seed, density, seed pair) with the member indices of both ends."""
    index = {(m['dense_seed'], m['density'], m['retrain_seed']): i
             for i, m in enumerate(self.retrain_members())}
    return [{'dense_seed': s, 'density': d, 'seed_a': a, 'seed_b': b,
             'index_a': index[s, d, a], 'index_b': index[s, d, b]}
            for s in self.dense_seeds for d in self.densities
            for a, b in grid.seed_pairs(self.retrain_seeds)]

  def write_specs(self) -> None:
    """spec.json in each branch directory: the fields that name it (process 0 writes)."""
    if self.legacy:
      return
    for directory, stage in ((self.prune_dir.parent, 'prune'), (self.retrain_dir, 'retrain'),
                             (self.measure_dir, 'measure')):
      files.write_json(directory / SPEC_FILE, identity.fields(self.config, stage))

  # --------------------------------------------------------------------------- populations

  def state_template(self, num_members: int) -> train_lib.MemberState:
    shape = self.facts.input_shape
    return jax.eval_shape(lambda: train_lib.init_population(
        self.model, shape, list(range(num_members)), list(range(num_members))))

  def restore_tree(self, directory: pathlib.Path, step: int | None) -> dict[str, Any]:
    """The raw tree (nested dicts of arrays) of a checkpoint on `device`; ArtifactError if
    it is unreadable."""
    try:
      return checkpoints.restore(directory, step, device=self.device or jax.local_devices()[0])
    except checkpoints.CheckpointError as error:
      raise ArtifactError(str(error)) from error

  def restore_population(self, directory: pathlib.Path, step: int
                         ) -> tuple[train_lib.MemberState, dict]:
    """(states, per-epoch history) saved by `save_population`."""
    tree = self.restore_tree(directory, step)
    num_members = int(np.shape(tree['state']['step'])[0])  # Steps taken, one per member.
    states = flax.serialization.from_state_dict(self.state_template(num_members), tree['state'])
    return states, tree.get('history', {})

  @staticmethod
  def save_population(directory: pathlib.Path, step: int, states, history=None,
                      max_to_keep: int | None = None) -> None:
    tree = {'state': flax.serialization.to_state_dict(states)}
    if history is not None:
      tree['history'] = history
    checkpoints.save(directory, step, tree, max_to_keep)

  def dense_dir(self, group: grid.DenseGroup) -> pathlib.Path:
    return self.path / 'dense' / group.name

  def dense_run(self, group: grid.DenseGroup) -> RunDir:
    """The training run of a dense group (its population's epochs and resume points)."""
    return RunDir(self.dense_dir(group))

  def dense_models(self, temperature: float, epoch: int | None = None) -> dict[str, Any]:
    """The dense models of one temperature, one per dense seed: {'params', 'batch_stats'} with
    leading axis len(dense.seeds), in seed order; at `epoch` of their run if given (the rewind
    point of weight rewinding; 0 = the initialisation)."""
    for group in self.dense_groups():
      if knobs.knob(self.knob).checkpoints:
        step, members = int(temperature), list(range(len(group.seeds)))
      elif temperature in group.temperatures:
        step = max(group.save_epochs)
        members = [m for m, t in enumerate(group.temperatures) if t == temperature]
      else:
        continue
      step = step if epoch is None else int(epoch)
      directory = self.dense_run(group).epochs
      if step not in checkpoints.steps(directory):
        raise ArtifactError(f'missing dense checkpoint {directory}/{step}: run the train stage '
                            'first')
      states, _ = self.restore_population(directory, step)
      index = jnp.asarray(members)
      return {'params': jax.tree.map(lambda a: a[index], states.params),
              'batch_stats': jax.tree.map(lambda a: a[index], states.batch_stats)}
    raise ArtifactError(f'no dense group holds temperature {temperature}')

  # --------------------------------------------------------------------------- masks

  def masks_dir(self, temperature: float) -> pathlib.Path:
    return self.prune_dir / self.key(temperature)

  def has_masks(self, temperature: float) -> bool:
    return bool(checkpoints.steps(self.masks_dir(temperature)))

  def save_masks(self, temperature: float, masks, dense_test_error, pruned_test_error,
                 density) -> None:
    """Masks with leading (S, D) axes; errors (S,) and (S, D); achieved densities (S, D)."""
    checkpoints.save(self.masks_dir(temperature), 0, {
        'masks': pruning.flatten_mask(masks),
        'dense_test_error': np.asarray(dense_test_error),
        'pruned_test_error': np.asarray(pruned_test_error), 'density': np.asarray(density)})

  def masks(self, temperature: float, unflatten: bool = True) -> dict[str, Any]:
    """The prune stage's artifact: 'masks' (leading (S, D) axes; flat by path name with
    `unflatten=False`), 'dense_test_error' (S,), 'pruned_test_error' and 'density' (S, D)."""
    directory = self.masks_dir(temperature)
    if not checkpoints.steps(directory):
      raise ArtifactError(f'missing masks {directory}: run the prune stage first')
    tree = self.restore_tree(directory, None)
    if unflatten:
      template = jax.eval_shape(lambda: models.init_variables(
          self.model, jax.random.PRNGKey(0), self.facts.input_shape)[0])
      tree['masks'] = pruning.unflatten_mask(tree['masks'], self.prunable(template))
    return tree

  # --------------------------------------------------------------------------- IMP levels

  def imp_level_dir(self, temperature: float, level: int) -> pathlib.Path:
    """One IMP level's artifacts (`prune.schedule='iterative'`): its mask and training run."""
    return self.prune_dir.parent / 'levels' / self.key(temperature) / str(level)

  def imp_mask_dir(self, temperature: float, level: int) -> pathlib.Path:
    """The level's masks (S, ...), one checkpoint at step 0."""
    return self.imp_level_dir(temperature, level) / 'mask'

  def imp_run(self, temperature: float, level: int) -> RunDir:
    """The training run of the level's masked population (the dense seeds)."""
    return RunDir(self.imp_level_dir(temperature, level) / 'train')

  # --------------------------------------------------------------------------- retrained

  def retrain_epochs(self) -> int:
    """The retrained population's final epoch (its saved step)."""
    section = self.config.retrain
    spe = grid.steps_per_epoch(self.facts.num_train, int(section.batch_size))
    return grid.epochs_of(int(section.epochs) * spe, spe)

  def retrain_run_dir(self, temperature: float) -> pathlib.Path:
    return self.retrain_dir / self.key(temperature)

  def retrain_run(self, temperature: float) -> RunDir:
    """The training run of one temperature's retrain population."""
    return RunDir(self.retrain_run_dir(temperature))

  def has_retrained(self, temperature: float) -> bool:
    return self.retrain_epochs() in checkpoints.steps(self.retrain_run(temperature).epochs)

  def retrained(self, temperature: float) -> tuple[train_lib.MemberState, dict]:
    """The retrained population of one temperature and its per-epoch history (M, epochs)."""
    directory = self.retrain_run(temperature).epochs
    if not self.has_retrained(temperature):
      raise ArtifactError(f'missing retrained models {directory}/{self.retrain_epochs()}: run '
                          'the retrain stage first')
    return self.restore_population(directory, self.retrain_epochs())

  # --------------------------------------------------------------------------- measurements

  def measure_file(self, temperature: float) -> pathlib.Path:
    return self.measure_dir / f'{self.key(temperature)}.json'

  def has_measurement(self, temperature: float) -> bool:
    return self.measure_file(temperature).exists()

  def write_measurement(self, temperature: float, value: dict[str, Any]) -> None:
    files.write_json(self.measure_file(temperature), value)

  def measurement(self, temperature: float) -> dict[str, Any]:
    """{'temperature', 'knob', 'cka_examples', 'cka_estimator', 'pairs': [...]}."""
    path = self.measure_file(temperature)
    if not path.exists():
      raise ArtifactError(f'missing {path}: run the measure stage first')
    return files.read_json(path)
