"""Adaptive dense seeds on the cells an adaptive search measured (`search.mode = 'adaptive'` and
`seeds.adaptive` together).

The search runs to its end first, as alone (`adaptive_cells`: its rounds read its own units'
rows only, so added seeds never change them). Then rounds as `adaptive_seeds`' add one dense
seed to every temperature with an unconfident MEASURED cell (`regimes.label_table` of the rows,
as the report labels them, below `regimes.min_confidence` or NaN); an inferred cell has no rows
and asks for nothing. A seed added to a temperature is trained, pruned, retrained and measured
at that temperature's measured densities only (the search's final set for it), so every row
stays in a measured cell. The final labels, measured and inferred (`adaptive_search.final_labels`
in `adaptive_cells.report_search`), then read every row, the added seeds' included.

Each added (temperature, seed) is a unit, a `CellSeedStore`: the stages under keys of their own
in the sweep's branch, beside the search's units ('+density=') and a grid run's added seeds
('+seed'); its dense models are the added seed's of `adaptive_seeds` (the same training: a
workdir that added that seed on its grid reuses them, and the reverse):

  dense/<group>+seed<N>/                              <group>: batch_size=64, lr=0.1; epochs: all
  <prune>/masks/<temperature>+seed<N>+density=<d1>_<d2>/
  <prune>/<retrain>/<temperature>+seed<N>+density=<d1>_<d2>/
  <prune>/<retrain>/<measure>/<temperature>+seed<N>+density=<d1>_<d2>.json

Rounds are not stored: `replay` recomputes the search's and then the seeds' from the stored
measurements, so a killed run resumes in the round it stopped in, with the same seeds. Cost is
counted in member-steps (training steps x members: dense training and retraining) of every seed
at its temperature's measured cells against max_dense_seeds seeds at each of them.
"""

from collections.abc import Callable, Mapping
import dataclasses
from typing import Any

import numpy as np

from prunephase import adaptive_cells
from prunephase import adaptive_search
from prunephase import adaptive_seeds
from prunephase import artifacts
from prunephase import grid
from prunephase import knobs
from prunephase import regimes
from prunephase import unit_store
from prunephase.stages import context
from prunephase.stages import rows as rows_lib

UNIT_STAGES = ('train', 'prune', 'retrain', 'measure')


def enabled(config) -> bool:
  """Whether a config searches adaptively and adds dense seeds."""
  return adaptive_cells.enabled(config) and adaptive_seeds.enabled(config)


@dataclasses.dataclass(frozen=True)
class Unit:
  """One added seed at one temperature: the addition, the temperature and its measured
  densities (grid order)."""

  addition: adaptive_seeds.Addition
  temperature: float
  densities: tuple[float, ...]


class CellSeedStore(unit_store.UnitStore):
  """The artifacts of one unit, in the base store's branch, under keys of their own (see the
  module docstring); model and data facts are the base store's, dense models the added seed's.

  Attributes:
    seed: the added dense seed.
  """

  def __init__(self, base: artifacts.Store, unit: Unit):
    addition = unit.addition
    config = adaptive_cells.unit_config(base.config, unit.temperature, unit.densities)
    super().__init__(base, adaptive_seeds.unit_config(config, (unit.temperature,),
                                                      addition.seed, addition.index))
    self.seed = int(addition.seed)
    # The seed's dense models at every temperature it is added to (the epoch knob: its run).
    self._dense = adaptive_seeds.SeedStore(base, addition.temperatures, addition.seed,
                                           addition.index)

  def key(self, temperature: float) -> str:
    return (f'{grid.temperature_key(self.knob, temperature)}{adaptive_seeds.SUFFIX}{self.seed}'
            f'{adaptive_cells.SUFFIX}' + '_'.join(f'{d:g}' for d in self.densities))

  def dense_groups(self) -> list[grid.DenseGroup]:
    """The added seed's dense group, as `adaptive_seeds.SeedStore` names and trains it."""
    return self._dense.dense_groups()


@dataclasses.dataclass
class Plan(adaptive_seeds.Plan):
  """`adaptive_seeds.Plan` of the seeds' rounds (pending: `Unit`s; rows: the search's and the
  finished added seeds'; labelled: labels of unmeasured cells blanked), with the search's.

  Attributes:
    search: the search's plan (its own rows only).
    measured: per temperature (hottest first), the densities the search measured.
  """

  search: adaptive_cells.Plan | None = None
  measured: list[tuple[float, ...]] = dataclasses.field(default_factory=list)

  def table_rows(self) -> list[dict[str, Any]]:
    """The rows in grid order; in a cell, the configured seeds' first, then the added."""
    return dataclasses.replace(self.search, rows=self.rows).table_rows()

  def search_with_rows(self) -> adaptive_cells.Plan:
    """The search's plan holding every row: its final labels read the added seeds too."""
    return dataclasses.replace(self.search, rows=list(self.rows))


def _label(store: artifacts.Store, rows, measured: np.ndarray) -> dict[str, Any]:
  """`adaptive_seeds.label` of the rows, unmeasured (inferred) cells unlabelled."""
  with np.errstate(invalid='ignore', divide='ignore'):  # Unmeasured cells are empty.
    labelled = adaptive_seeds.label(store, rows)
  return {**labelled, 'labels': np.where(measured, labelled['labels'], regimes.NO_LABEL)}


def replay(store: artifacts.Store, with_curves: bool = False) -> Plan:
  """Recomputes the search's rounds, then the seeds', up to the first unmeasured unit (no seed
  rounds while the search is not finished)."""
  searched = adaptive_cells.replay(store, with_curves)
  temperatures, densities = store.temperatures, store.densities
  mask = adaptive_search.measured_mask([{'temperature': t, 'density': d}
                                        for t, d in searched.cells()], temperatures, densities)
  measured = [tuple(d for j, d in enumerate(densities) if mask[i, j])
              for i in range(len(temperatures))]
  rows, rounds = list(searched.rows), []
  seeds = [list(store.dense_seeds) for _ in temperatures]
  plan = lambda pending, labelled: Plan(temperatures, rounds, pending, seeds, rows, labelled,
                                        search=searched, measured=measured)
  while True:
    labelled = _label(store, rows, mask)
    if searched.pending:
      return plan([], labelled)
    decided = adaptive_seeds.decide(
        labelled['labels'], labelled['confidence'], temperatures, densities, seeds,
        float(store.config.regimes.min_confidence), int(store.config.seeds.max_dense_seeds),
        whole_run=knobs.knob(store.knob).checkpoints,
        first_added=adaptive_seeds.first_added_seed(store.dense_seeds))
    if not decided.additions:
      return plan([], labelled)
    rounds.append(decided)
    units = [Unit(a, float(t), measured[temperatures.index(t)]) for a in decided.additions
             for t in a.temperatures if measured[temperatures.index(t)]]
    stores = [CellSeedStore(store, u) for u in units]
    pending = [u for u, s in zip(units, stores) if not s.has_measurement(u.temperature)]
    if pending:
      return plan(pending, labelled)
    for view in stores:
      rows = rows + rows_lib.store_rows(view, with_curves)
    for addition in decided.additions:
      for temperature in addition.temperatures:
        seeds[temperatures.index(temperature)].append(addition.seed)


def run(sweep: context.Sweep, stage_runs: Mapping[str, Callable[[context.Sweep], Any]]) -> Plan:
  """Adds dense seeds to the measured cells round by round, after the search (see the module
  docstring); returns the final plan. `stage_runs` as `adaptive_seeds.run`'s."""
  return context.run_rounds(
      sweep, 'adaptive cell seeds', replay, adaptive_seeds.round_line, CellSeedStore,
      stage_runs, UNIT_STAGES, summary_lines)


# ----------------------------------------------------------------------------- what it tells


def cost(store: artifacts.Store, plan: Plan) -> dict[str, Any]:
  """The member-steps of the plan's seeds at the measured cells against max_dense_seeds seeds
  at each of them."""
  maximum = int(store.config.seeds.max_dense_seeds)
  spent = adaptive_seeds.member_steps(store, [len(s) for s in plan.seeds], plan.measured)
  full = adaptive_seeds.member_steps(store, [maximum] * len(plan.temperatures),
                                     plan.measured)
  return {'member_steps': spent, 'max_seeds_member_steps': full,
          'fraction': spent / full if full else float('nan'), 'max_dense_seeds': maximum,
          'measured_cells': sum(map(len, plan.measured))}


def regimes_fields(store: artifacts.Store, plan: Plan) -> dict[str, Any]:
  """What regimes.json records, as `adaptive_seeds.regimes_fields`, the cost at the measured
  cells; the rounds are finished only when the search's are too."""
  fields = adaptive_seeds.regimes_fields(store, plan, cost(store, plan))
  fields['adaptive_seeds']['finished'] = not plan.pending and not plan.search.pending
  return fields


def summary_lines(store: artifacts.Store, plan: Plan) -> list[str]:
  """`adaptive_seeds.summary_lines`, the cost at the measured cells."""
  if plan.search.pending:
    return ['[seeds] no dense seeds added: the search is not finished (run the measure stage)']
  spent = cost(store, plan)
  return adaptive_seeds.summary_lines(
      store, plan, spent, f'at each of the {spent["measured_cells"]} measured cells')
