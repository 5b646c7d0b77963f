"""The context every stage runs in: config, workdir, artifact store, dataset, model and mesh.

Everything heavy (the dataset, the model, the mesh) is built on first use, so the report stage
and analysis never load the data.
"""

import dataclasses
import functools
import pathlib
from typing import Any

import jax

from prunephase import artifacts
from prunephase import config as config_lib
from prunephase import data as data_lib
from prunephase import dispatch
from prunephase import metrics_log as metrics_log_lib
from prunephase import models
from prunephase import population
from prunephase import training_loop


@dataclasses.dataclass
class Sweep:
  """One sweep: its config, workdir and artifact store; dataset and model loaded lazily.

  Attributes:
    config: the (validated) ConfigDict.
    path: the workdir.
    timings: seconds spent per stage in this process.
    device: where checkpoints are restored (None = the default device; CPU for analysis).
  """

  config: Any
  path: pathlib.Path
  timings: dict = dataclasses.field(default_factory=dict)
  device: Any = None
  _dataset: Any = None

  @property
  def dataset(self) -> data_lib.Dataset:
    if self._dataset is None:
      self._dataset = data_lib.load_dataset(self.config.dataset)
      config_lib.validate_against_data(self.config, self._dataset.num_train)
    return self._dataset

  @functools.cached_property
  def store(self) -> artifacts.Store:
    """The artifact store; its data facts come from the dataset where one is loaded."""
    if self._dataset is None and not (self.path / artifacts.DATA_FILE).exists():
      self.dataset  # pylint: disable=pointless-statement  # A workdir of <= 0.1: no data.json.
    facts = artifacts.DataFacts.of(self._dataset) if self._dataset is not None else None
    return artifacts.Store(self.path, self.config, facts, self.device)

  @property
  def model(self):
    return self.store.model

  def check_model(self) -> None:
    """ModelError (one line) unless the model initialises on the dataset's inputs and outputs
    one logit per class; shapes only (`jax.eval_shape`: nothing compiled or computed), so the
    sweep runs it before the workdir is touched. A head of the wrong size would otherwise run
    the whole sweep into diverged, unlabelled cells."""
    models.check_model(self.model, self.dataset.input_shape, self.dataset.num_classes,
                       self.config.model.name, self.config.dataset.name)

  @property
  def knob(self) -> str:
    return self.store.knob

  @property
  def temperatures(self) -> list[float]:
    """Hottest first."""
    return self.store.temperatures

  @property
  def densities(self) -> list[float]:
    return self.store.densities

  @property
  def dense_seeds(self) -> list[int]:
    return self.store.dense_seeds

  @property
  def retrain_seeds(self) -> list[int]:
    return self.store.retrain_seeds

  def key(self, temperature: float) -> str:
    return self.store.key(temperature)

  @functools.cached_property
  def mesh(self) -> jax.sharding.Mesh | None:
    """The ('members', 'data') mesh from `config.mesh`, or None on a single device."""
    mesh_config = self.config.get('mesh')
    if jax.device_count() == 1 or mesh_config is None:
      return None
    try:
      return population.make_mesh(int(mesh_config.members), int(mesh_config.data))
    except ValueError as error:
      raise config_lib.ConfigError(str(error)) from error

  @functools.cached_property
  def members_per_chunk(self) -> int | None:
    """Members vmapped together per device (`config.train.members_per_chunk`, resolved for this
    backend and model; None = all at once), for the training and measurement programs."""
    value = (self.config.get('train') or {}).get('members_per_chunk', 'auto')
    return dispatch.resolve_members_per_chunk(value, self.model, self.dataset.input_shape)

  @functools.cached_property
  def training(self) -> training_loop.Runtime:
    """What the trainer needs of the sweep, resolved once (`training_loop.Runtime`): dataset,
    mesh and model; whether the mesh is the automatic layout (no `mesh.members`, one data
    shard); `config.train.steps_per_call` for this backend and model; the chunking; the metrics
    log and the store."""
    mesh_config = self.config.get('mesh') or {}
    steps_per_call = (self.config.get('train') or {}).get('steps_per_call', 'auto')
    return training_loop.Runtime(
        dataset=self.dataset, mesh=self.mesh, model=self.model,
        automatic_layout=bool(not mesh_config.get('members') and mesh_config.get('data', 1) == 1),
        steps_per_call=dispatch.resolve_steps_per_call(steps_per_call, self.model,
                                                       self.dataset.input_shape),
        members_per_chunk=self.members_per_chunk, is_primary=self.is_primary,
        write_metrics=self.write_metrics, store=self.store)

  def write_metrics(self, rows: list[dict]) -> None:
    """Appends `rows` to the metrics log, which opens on this first write (a process or a run
    that trains nothing creates no log and no TensorBoard files)."""
    self.metrics_log.write(rows)

  @property
  def is_primary(self) -> bool:
    """Whether this process writes tables, figures, JSON and logs (process 0 of a run)."""
    return jax.process_index() == 0

  @functools.cached_property
  def metrics_log(self) -> metrics_log_lib.MetricsLog:
    return metrics_log_lib.MetricsLog(self.path / 'metrics.jsonl',
                                  bool(self.config.get('tensorboard', False)))


def sweep_over(sweep: Sweep, store) -> Sweep:
  """A Sweep over a view of the sweep's store (an added seed's, a searched cell's: `store`),
  sharing the sweep's dataset, mesh, chunking and metrics log, so the stages run on it as on
  the sweep."""
  out = Sweep(store.config, sweep.path, device=sweep.device, _dataset=sweep.dataset)
  out.__dict__.update(store=store, mesh=sweep.mesh, members_per_chunk=sweep.members_per_chunk,
                      metrics_log=sweep.metrics_log)
  return out


def run_rounds(sweep: Sweep, what: str, replay, round_line, unit_store, stage_runs,
               stages, summary_lines):
  """Runs a round-by-round addition of work units (added dense seeds, searched cells).

  Each pass replays the rounds from stored measurements (`replay(store)` -> a plan with
  `rounds` and `pending` units), prints the new rounds (`round_line(store, number, round,
  finished)`), and runs `stages` of `stage_runs` on a Sweep over each pending unit's store
  (`unit_store(base_store, unit)`), until nothing is pending; then prints `summary_lines(store,
  plan)` and returns the plan. `what` names the barriers of multi-process runs.
  """
  store, announced = sweep.store, 0
  while True:
    sync(f'{what} replay')  # Every process reads the same measurements.
    plan = replay(store)
    for number in range(announced + 1, len(plan.rounds) + 1):
      finished = number < len(plan.rounds) or not plan.pending
      line = round_line(store, number, plan.rounds[number - 1], finished)
      if line and sweep.is_primary:
        print(line, flush=True)
    announced = len(plan.rounds)
    if not plan.pending:
      break
    for index, unit in enumerate(plan.pending):
      unit_sweep = sweep_over(sweep, unit_store(store, unit))
      for stage in stages:
        sync(f'{what} unit {len(plan.rounds)}.{index} {stage}')
        stage_runs[stage](unit_sweep)
  if sweep.is_primary:
    for line in summary_lines(store, plan):
      print(line, flush=True)
  return plan


def sync(name: str) -> None:
  """Waits for every process of a multi-host run (no-op with one process).

  Every process runs every stage (orbax saves and restores are collective, and the sharded
  training steps span processes); only process 0 writes files. Stages and measure iterations
  start with a barrier so that all processes see the same finished artifacts and take the same
  skip decisions.
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)
