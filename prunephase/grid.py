"""The experiment grid: cell keys, seed pairs and dense groups (validation: prunephase.config).

A *cell* is one (temperature, density) pair. The temperature is the value of one dense-training
hyperparameter (`config.temperature.knob`); rows of every table and figure run from the hottest
(noisiest dense training) to the coldest.
"""

from collections.abc import Sequence
import dataclasses
import itertools
import math

from prunephase import knobs


def temperature_key(knob: str, value: float) -> str:
  """A stable, path-safe key such as 'epochs=8' or 'lr=0.05'."""
  return f'{knob}={value:g}'


def seed_pairs(seeds: Sequence[int]) -> list[tuple[int, int]]:
  """All unordered pairs (a, b), a before b in `seeds` order: (1,2), (1,3), (2,3)."""
  return list(itertools.combinations(seeds, 2))


@dataclasses.dataclass(frozen=True)
class DenseGroup:
  """Dense members trained by one compiled program.

  Attributes:
    name: directory name ('all' or 'batch_size=64').
    batch_size: dense batch size.
    total_steps: steps of the run.
    temperatures: temperature value of each member (None for the epoch family, whose
      temperatures are checkpoints of every member).
    seeds: dense seed of each member.
    save_epochs: epochs (1-based) whose checkpoints are artifacts.
  """

  name: str
  batch_size: int
  total_steps: int
  temperatures: tuple
  seeds: tuple
  save_epochs: tuple


def steps_per_epoch(num_train: int, batch_size: int) -> int:
  """Full batches in one epoch (the incomplete last batch is dropped)."""
  return num_train // batch_size


def epochs_of(total_steps: int, steps_per_epoch: int) -> int:
  """Epochs a run of `total_steps` spans (the last one may be partial)."""
  return math.ceil(total_steps / steps_per_epoch)


def dense_groups(config, num_train: int) -> list[DenseGroup]:
  """How the dense family splits into programs: one per batch size (a PROGRAMS knob), else one
  (a CHECKPOINTS knob's members are the seeds, any other's every (temperature, seed))."""
  knob, dense = knobs.knob(config.temperature.knob), config.dense
  values = knob.hot_to_cold(config.temperature.grid)
  seeds = tuple(dense.seeds)
  if knob.programs:  # The batch size: each value its own program.
    groups = []
    for batch in values:
      spe = steps_per_epoch(num_train, int(batch))
      epochs = epochs_of(dense.iterations, spe)
      groups.append(DenseGroup(f'batch_size={batch:g}', int(batch), int(dense.iterations),
                               (batch,) * len(seeds), seeds, (epochs,)))
    return groups
  spe = steps_per_epoch(num_train, dense.batch_size)
  if knob.checkpoints:  # Epochs: every temperature is a checkpoint of one run.
    return [DenseGroup('all', dense.batch_size, dense.epochs * spe, (None,) * len(seeds), seeds,
                       tuple(sorted(int(v) for v in values)))]
  members = [(v, s) for v in values for s in seeds]
  return [DenseGroup('all', dense.batch_size, dense.epochs * spe,
                     tuple(v for v, _ in members), tuple(s for _, s in members),
                     (dense.epochs,))]
