"""Adaptive search of the phase diagram in the sweep (`search.mode = 'adaptive'`).

Instead of every (temperature, density) cell, the sweep measures what `adaptive_search` asks
for: its coarse subgrid first (every other temperature and density, and the last of each), then,
round by round, the cells near a regime boundary or next to an unconfident label, until it asks
for nothing or `search.max_cells` cells are measured. The unmeasured cells get the label of their
measured neighbours (`adaptive_search.final_labels`), marked inferred in every output.

The unit of work is one temperature's cells of one round: a `CellStore`, the same stages (train,
prune, retrain, measure) run on a store whose grid is that temperature and those densities, with
keys of their own in the sweep's branch:

  dense/<group>/                                       shared: the grid's dense models
  <prune>/masks/<temperature>+density=<d1>_<d2>/
  <prune>/<retrain>/<temperature>+density=<d1>_<d2>/
  <prune>/<retrain>/<measure>/<temperature>+density=<d1>_<d2>.json

Dense models are trained when a round first needs their temperature (batch size: one group per
temperature, as in a grid run; lr, weight decay, SAM rho: one group per temperature, named by it;
epochs: the one run that gives every temperature). Nothing is redone: a later round adds units
beside the earlier ones. Rounds are not stored: `replay` recomputes them from the stored
measurements (the search is a deterministic function of them), so a killed run resumes in the
round it stopped in. Cost is counted in member-steps (training steps x members: dense training
and retraining) against the full grid's.

With `seeds.adaptive` too, rounds of added dense seeds follow the search, at the measured cells
only (`adaptive_cell_seeds`). Not combined with iterative pruning (config.validate says so).
"""

from collections.abc import Callable, Mapping, Sequence
import dataclasses
from typing import Any

import ml_collections
import numpy as np

from prunephase import adaptive_search
from prunephase import adaptive_seeds
from prunephase import artifacts
from prunephase import grid
from prunephase import regimes
from prunephase import unit_store
from prunephase.stages import context
from prunephase.stages import rows as rows_lib

SUFFIX = '+density='  # Key of a unit's artifacts: '<temperature key>+density=0.04_0.2'.
UNIT_STAGES = ('train', 'prune', 'retrain', 'measure')
MODES = ('grid', 'adaptive')


enabled = rows_lib.searches


@dataclasses.dataclass(frozen=True)
class Unit:
  """One temperature's cells of one round: the densities, in grid order."""

  temperature: float
  densities: tuple[float, ...]


def units_of(cells: Sequence[tuple[float, float]], temperatures: Sequence[float],
             densities: Sequence[float]) -> list[Unit]:
  """The cells grouped by temperature (hottest first), densities in grid order."""
  wanted = {(float(t), float(d)) for t, d in cells}
  units = []
  for t in temperatures:
    mine = tuple(float(d) for d in densities if (float(t), float(d)) in wanted)
    if mine:
      units.append(Unit(float(t), mine))
  return units


def unit_config(config, temperature: float,
                densities: Sequence[float]) -> ml_collections.ConfigDict:
  """The config of one unit: its temperature and densities alone, an ordinary grid search."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.temperature.grid = (temperature,)
  out.prune.densities = tuple(float(d) for d in densities)
  out.search.mode = 'grid'
  return out


class CellStore(unit_store.UnitStore):
  """The artifacts of one unit, in the base store's branch, under keys of their own (see the
  module docstring); model, data facts and dense models are the base store's."""

  def __init__(self, base: artifacts.Store, temperature: float, densities: Sequence[float]):
    super().__init__(base, unit_config(base.config, temperature, densities))

  def key(self, temperature: float) -> str:
    return (f'{grid.temperature_key(self.knob, temperature)}{SUFFIX}'
            + '_'.join(f'{d:g}' for d in self.densities))

  def dense_groups(self) -> list[grid.DenseGroup]:
    """The dense group of the unit's temperature: the grid's own for the batch-size and epoch
    knobs (the epoch run with every temperature's checkpoint), one named by the temperature for
    the vmapped knobs (the grid's 'all' would hold every temperature)."""
    if self.knob == 'epochs':
      return self.base.dense_groups()
    groups = super().dense_groups()
    if self.knob == 'batch_size':
      return groups
    return [dataclasses.replace(g, name=grid.temperature_key(self.knob, g.temperatures[0]))
            for g in groups]


@dataclasses.dataclass
class Plan:
  """The rounds replayed from a workdir's measurements.

  Attributes:
    temperatures: hottest first.
    densities: the grid's densities.
    rounds: the cells of every round asked for so far (the last may be pending).
    pending: units of the last round not yet measured (empty when the search is done).
    rows: result rows of the measured cells.
  """

  temperatures: list[float]
  densities: list[float]
  rounds: list[list[tuple[float, float]]]
  pending: list[Unit]
  rows: list[dict[str, Any]]

  def cells(self) -> list[tuple[float, float]]:
    """The cells of the finished rounds (those `rows` hold)."""
    return [c for r in (self.rounds[:-1] if self.pending else self.rounds) for c in r]

  def table_rows(self) -> list[dict[str, Any]]:
    """The rows in grid order: temperature (hottest first), then density."""
    t_order = {float(t): i for i, t in enumerate(self.temperatures)}
    d_order = {float(d): j for j, d in enumerate(self.densities)}
    return sorted(self.rows, key=lambda r: (t_order[float(r['temperature'])],
                                            d_order[float(r['density'])]))


def search_options(config) -> dict[str, Any]:
  """`adaptive_search.next_cells`' keyword arguments from the config's regimes and search."""
  section = config.regimes
  max_cells = int(config.search.max_cells)
  return {'rule': regimes.RegimeRule.from_config(section), 'max_cells': max_cells or None,
          'remeasure_below': float(config.search.get('remeasure_below',
                                                     adaptive_search.REMEASURE_BELOW)),
          'bootstrap': int(section.bootstrap),
          'seed': int(section.seed), 'estimator': section.get('confidence')}


def replay(store: artifacts.Store, with_curves: bool = False) -> Plan:
  """Recomputes the rounds from the stored measurements, up to the first unmeasured unit."""
  temperatures, densities = store.temperatures, store.densities
  options = search_options(store.config)
  rows, rounds = [], []
  while True:
    cells = adaptive_search.next_cells(temperatures, densities, rows, **options)
    if not cells:
      return Plan(temperatures, densities, rounds, [], rows)
    rounds.append([(float(t), float(d)) for t, d in cells])
    units = units_of(cells, temperatures, densities)
    stores = [CellStore(store, u.temperature, u.densities) for u in units]
    pending = [u for u, s in zip(units, stores) if not s.has_measurement(u.temperature)]
    if pending:
      return Plan(temperatures, densities, rounds, pending, rows)
    for view in stores:
      rows = rows + rows_lib.store_rows(view, with_curves)


def run(sweep: context.Sweep, stage_runs: Mapping[str, Callable[[context.Sweep], Any]]) -> Plan:
  """Measures the cells the search asks for, round by round; returns the final plan.

  `stage_runs` maps a stage name to its run function (`prunephase.sweep.RUN`; passed in, so
  that this module, which the report stage reads, does not import the stages).
  """
  return context.run_rounds(
      sweep, 'adaptive search', replay, round_line,
      lambda base, unit: CellStore(base, unit.temperature, unit.densities), stage_runs,
      UNIT_STAGES, summary_lines)


# ----------------------------------------------------------------------------- what it tells


def round_line(store: artifacts.Store, number: int, cells, finished: bool) -> str:
  """'[search] round 2: measuring 3 cells (batch_size=32 at 4%, 20%; batch_size=256 at 6%)',
  temperatures hottest first, densities in grid order."""
  text = '; '.join(f'{grid.temperature_key(store.knob, u.temperature)} at '
                   + ', '.join(f'{100 * d:g}%' for d in u.densities)
                   for u in units_of(cells, store.temperatures, store.densities))
  done = ' (done earlier)' if finished else ''
  return (f'[search] round {number}: measuring {len(cells)} cell{"s" * (len(cells) != 1)} '
          f'({text}){done}')


def member_steps(store: artifacts.Store, cells: Sequence[tuple[float, float]]) -> int:
  """Training steps x members of dense training and retraining for `cells`: every dense seed
  of each temperature they hold (the epoch knob: the one run), every retrain member of each
  (`adaptive_seeds.member_steps` with the configured seeds at the cells' densities)."""
  if not cells:
    return 0
  held = {(float(t), float(d)) for t, d in cells}
  densities = [[d for d in store.densities if (float(t), float(d)) in held]
               for t in store.temperatures]
  return adaptive_seeds.member_steps(
      store, [len(store.dense_seeds)] * len(store.temperatures), densities)


def cost(store: artifacts.Store, plan: Plan) -> dict[str, Any]:
  """Cells and member-steps of the plan against the full grid's."""
  cells = plan.cells()
  full = [(t, d) for t in plan.temperatures for d in plan.densities]
  spent, total = member_steps(store, cells), member_steps(store, full)
  return {'cells': len(cells), 'grid_cells': len(full), 'member_steps': spent,
          'grid_member_steps': total, 'fraction': spent / total if total else float('nan')}


def labels(store: artifacts.Store, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
  """(labels, inferred), (T, D): the search's labels, measured or inferred, of the plan's rows."""
  rule = regimes.RegimeRule.from_config(store.config.regimes)
  with np.errstate(invalid='ignore', divide='ignore'):
    return adaptive_search.final_labels(plan.temperatures, plan.densities,
                                        [dict(r) for r in plan.rows], rule)


def report_search(store: artifacts.Store, plan: Plan) -> dict[str, Any]:
  """What `report.write_report` takes as `search`: labels, inferred mask, and the fields
  regimes.json records (the rounds, the measured and inferred counts, the cost)."""
  found, inferred = labels(store, plan)
  cell = lambda c: {'temperature': c[0], 'density': c[1]}
  fields = {
      'adaptive_search': {
          'rounds': [{'round': n, 'cells': [cell(c) for c in r]}
                     for n, r in enumerate(plan.rounds, 1)],
          'finished': not plan.pending, 'max_cells': int(store.config.search.max_cells),
          'measured_cells': int((~inferred).sum()), 'inferred_cells': int(inferred.sum())},
      'adaptive_cost': cost(store, plan)}
  return {'labels': found, 'inferred': inferred, 'fields': fields}


def summary_lines(store: artifacts.Store, plan: Plan) -> list[str]:
  """The closing lines: cells measured, member-steps against the full grid's."""
  spent = cost(store, plan)
  lines = []
  if plan.pending:
    lines.append(f'[search] round {len(plan.rounds)} is not finished (run the measure stage); '
                 'reported without it')
  lines.append(f'adaptive_cells: {spent["cells"]}/{spent["grid_cells"]}')
  lines.append(f'adaptive_member_steps: {spent["member_steps"]} of {spent["grid_member_steps"]} '
               f'({100 * spent["fraction"]:.0f}%)')
  return lines
