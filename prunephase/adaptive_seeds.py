"""Adaptive dense seeds: more dense seeds where the regime labels are unconfident.

With `seeds.adaptive`, the sweep labels its table after the measure stage (`regimes.label_table`
with the config's `regimes` rule) and adds one dense seed to every temperature that holds an
unconfident cell, with that seed's dense training, pruning, retraining and measurement; then
labels again, a round at a time, until every cell is confident or every temperature with an
unconfident cell holds `seeds.max_dense_seeds` dense seeds.

  unconfident  a labelled cell whose confidence is below `regimes.min_confidence`, or NaN (fewer
               than two dense seeds: nothing to resample). Unlabelled cells (a diverged member,
               a NaN metric) ask for nothing: more seeds would leave them unlabelled.
  new seed     per temperature, from a block of its own: 1000 x the largest configured seed, + 1,
               then the next integer (dense seeds (1, 2, 3): 3001, 3002, ...; (4, 5, 6): 6001):
               runs of other seeds never share an added seed, and the seeds of every round are
               known from the table.
  epochs knob  the temperatures are checkpoints of one dense run, so a seed cannot be added to
               one temperature alone: a seed adds a whole run (every temperature), whenever any
               cell is unconfident, until the run has max_dense_seeds seeds.

Nothing is redone: each added (temperature, seed) is a unit with artifacts of its own, a
`SeedStore` (the same stages, under keys beside the configured seeds' ones):

  dense/<group>+seed<N>/                        <group>: batch_size=64, lr=0.1; epochs: all
  <prune>/masks/<temperature>+seed<N>/
  <prune>/<retrain>/<temperature>+seed<N>/
  <prune>/<retrain>/<measure>/<temperature>+seed<N>.json

Rounds are not stored: `replay` recomputes them from the stored measurements (the labels and
their confidences, seeded by `regimes.seed`, are a function of those), so a killed run resumes in
the round it stopped in, with the same seeds, and the report stage finds the added rows alone.
Cost is counted in member-steps (training steps x members: dense training, IMP level training
and retraining) against every temperature with max_dense_seeds seeds.
"""

from collections.abc import Callable, Mapping, Sequence
import dataclasses
from typing import Any

import ml_collections
import numpy as np

from prunephase import artifacts
from prunephase import grid
from prunephase import knobs
from prunephase import regimes
from prunephase import unit_store
from prunephase.stages import context
from prunephase.stages import prune_iterative
from prunephase.stages import rows as rows_lib

ADDED_SEED_BLOCK = 1000  # first_added_seed.
SUFFIX = '+seed'  # Key of an added seed's artifacts: '<temperature key>+seed<N>'.
UNIT_STAGES = ('train', 'prune', 'retrain', 'measure')
enabled = rows_lib.adds_seeds


@dataclasses.dataclass(frozen=True)
class Addition:
  """One dense seed added by a round.

  Attributes:
    temperatures: the temperatures it is added to: one, or every one (epochs knob).
    seed: the dense seed.
    cells: the unconfident (temperature, density) cells that asked for it.
    index: its position among its temperatures' dense seeds (the configured ones first).
  """

  temperatures: tuple[float, ...]
  seed: int
  cells: tuple[tuple[float, float], ...]
  index: int


@dataclasses.dataclass(frozen=True)
class Round:
  """A round's additions, and the unconfident cells of temperatures already at the maximum."""

  additions: tuple[Addition, ...]
  at_max: tuple[tuple[float, float], ...]


def unconfident(labels: np.ndarray, confidence: np.ndarray, min_confidence: float) -> np.ndarray:
  """(T, D) booleans: labelled cells with confidence < min_confidence or NaN (see module)."""
  labelled = np.asarray(labels, object) != regimes.NO_LABEL
  return labelled & ~(np.asarray(confidence, float) >= min_confidence)


def first_added_seed(configured: Sequence[int]) -> int:
  """The first seed a run adds: ADDED_SEED_BLOCK x its largest configured seed, + 1.

  Runs of other configured seeds ((1, 2, 3) adds 3001, 3002, ...; (4, 5, 6) adds 6001, ...)
  never add the same seed, so their labels stay independent: a replication test between them
  means what it says. (Seeds above ADDED_SEED_BLOCK in a configured set would break this.)
  """
  return ADDED_SEED_BLOCK * max(int(s) for s in configured) + 1


def decide(labels: np.ndarray, confidence: np.ndarray, temperatures: Sequence[float],
           densities: Sequence[float], seeds: Sequence[Sequence[int]], min_confidence: float,
           max_dense_seeds: int, whole_run: bool = False, first_added: int = 0) -> Round:
  """The next round: which temperatures get which new dense seed (a pure function).

  Args:
    labels, confidence: (T, D) outputs of `regimes.label_table`, rows as `temperatures`.
    temperatures, densities: the grid's axes (hottest first).
    seeds: the dense seeds each temperature holds (T lists).
    min_confidence: `regimes.min_confidence`.
    max_dense_seeds: no temperature gets a seed beyond this many.
    whole_run: the epoch knob: one seed for every temperature (they share their seeds).
    first_added: no added seed below this (`first_added_seed`); 0: the next integer.

  Returns:
    The Round; no additions when every cell is confident or the unconfident ones' temperatures
    hold max_dense_seeds seeds.
  """
  wanting = unconfident(labels, confidence, min_confidence)
  cells = lambda rows: tuple((temperatures[t], densities[d])
                             for t in rows for d in np.flatnonzero(wanting[t]))
  if whole_run:
    asked = cells(range(len(temperatures)))
    if not asked:
      return Round((), ())
    if len(seeds[0]) >= max_dense_seeds:
      return Round((), asked)
    return Round((Addition(tuple(temperatures), max(max(seeds[0]) + 1, first_added), asked,
                           len(seeds[0])),), ())
  additions, at_max = [], []
  for t, temperature in enumerate(temperatures):
    if not wanting[t].any():
      continue
    if len(seeds[t]) >= max_dense_seeds:
      at_max.extend(cells([t]))
    else:
      additions.append(Addition((temperature,), max(max(seeds[t]) + 1, first_added), cells([t]),
                                len(seeds[t])))
  return Round(tuple(additions), tuple(at_max))


def unit_config(config, temperatures: Sequence[float], seed: int,
                index: int) -> ml_collections.ConfigDict:
  """The config of one added seed: its dense seed alone at its temperatures, nothing imported;
  `index` is its position among the temperatures' dense seeds."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.dense.seeds = (int(seed),)
  if out.prune.method == 'random':
    # The prune stage keys random masks by a seed's position in the population (prune.seed +
    # 1000 x position): as in a population of every seed, not the first seed's masks again.
    out.prune.seed = int(config.prune.seed) + 1000 * int(index)
  if 'init_from' in out.dense:
    out.dense.init_from = ''  # Another workdir's dense models are the configured seeds only.
  out.temperature.grid = tuple(temperatures)
  out.seeds.adaptive = False
  return out


class SeedStore(unit_store.UnitStore):
  """The artifacts of one added dense seed at `temperatures`, in the base store's branch, under
  keys of their own (see the module docstring); model and data facts are the base store's.

  Attributes:
    seed: the added dense seed.
  """

  def __init__(self, base: artifacts.Store, temperatures: Sequence[float], seed: int,
               index: int = 0):
    super().__init__(base, unit_config(base.config, temperatures, seed, index))
    self.seed = int(seed)

  def key(self, temperature: float) -> str:
    return f'{grid.temperature_key(self.knob, temperature)}{SUFFIX}{self.seed}'

  def dense_groups(self) -> list[grid.DenseGroup]:
    """The unit's dense group, named (its directory, progress lines, metrics log) for the seed:
    the epoch knob's run holds every temperature ('all+seed4'); the other knobs' single member is
    named by its temperature ('lr=0.1+seed4': a population of lr values is 'all' too)."""
    named = lambda g: g.name if g.temperatures[0] is None else grid.temperature_key(
        self.knob, g.temperatures[0])
    return [dataclasses.replace(g, name=f'{named(g)}{SUFFIX}{self.seed}')
            for g in super().dense_groups()]

  def has_measurements(self) -> bool:
    return all(self.has_measurement(t) for t in self.temperatures)


@dataclasses.dataclass
class Plan:
  """The rounds replayed from a workdir's measurements.

  Attributes:
    temperatures: hottest first.
    rounds: every round decided so far (the last may be pending).
    pending: additions of the last round not yet measured (empty when adaptation is done).
    seeds: dense seeds of each temperature after the finished rounds.
    rows: result rows of the configured and finished added seeds.
    labelled: `regimes.label_table` of `rows`.
  """

  temperatures: list[float]
  rounds: list[Round]
  pending: list[Addition]
  seeds: list[list[int]]
  rows: list[dict[str, Any]]
  labelled: dict[str, Any]

  def table_rows(self) -> list[dict[str, Any]]:
    """The rows by temperature (hottest first); in each, the configured seeds, then the added."""
    order = {float(t): i for i, t in enumerate(self.temperatures)}
    return sorted(self.rows, key=lambda row: order[float(row['temperature'])])


def label(store: artifacts.Store, rows: list[dict[str, Any]]) -> dict[str, Any]:
  """`regimes.label_table` of rows with the store's config (rows are not modified)."""
  section = store.config.regimes
  # The confidence estimator, where the config names one, as the report stage passes it: the
  # rounds act on the confidences the report writes.
  estimator = (str(section.confidence),) if section.get('confidence') is not None else ()
  return regimes.label_table([dict(r) for r in rows], store.temperatures, store.densities,
                             regimes.RegimeRule.from_config(section), int(section.bootstrap),
                             int(section.seed), *estimator)


def replay(store: artifacts.Store, with_curves: bool = False) -> Plan:
  """Recomputes the rounds from the stored measurements, up to the first unmeasured addition.

  Raises:
    artifacts.ArtifactError: a configured seed's measurement is missing.
  """
  temperatures, section = store.temperatures, store.config.seeds
  rows = rows_lib.store_rows(store, with_curves)
  seeds = [list(store.dense_seeds) for _ in temperatures]
  rounds = []
  while True:
    labelled = label(store, rows)
    next_round = decide(labelled['labels'], labelled['confidence'], temperatures,
                        store.densities, seeds, float(store.config.regimes.min_confidence),
                        int(section.max_dense_seeds),
                        whole_run=knobs.knob(store.knob).checkpoints,
                        first_added=first_added_seed(store.dense_seeds))
    if not next_round.additions:
      return Plan(temperatures, rounds, [], seeds, rows, labelled)
    rounds.append(next_round)
    units = [SeedStore(store, a.temperatures, a.seed, a.index) for a in next_round.additions]
    pending = [a for a, unit in zip(next_round.additions, units) if not unit.has_measurements()]
    if pending:
      return Plan(temperatures, rounds, pending, seeds, rows, labelled)
    for addition, unit in zip(next_round.additions, units):
      rows = rows + rows_lib.store_rows(unit, with_curves)
      for temperature in addition.temperatures:
        seeds[temperatures.index(temperature)].append(addition.seed)


def run(sweep: context.Sweep, stage_runs: Mapping[str, Callable[[context.Sweep], Any]]) -> Plan:
  """Adds dense seeds round by round (see the module docstring); returns the final plan.

  `stage_runs` maps a stage name to its run function (`prunephase.sweep.RUN`; passed in, so
  that this module, which the report stage reads, does not import the stages).
  """
  return context.run_rounds(
      sweep, 'adaptive seeds', replay, round_line,
      lambda base, a: SeedStore(base, a.temperatures, a.seed, a.index), stage_runs,
      UNIT_STAGES, summary_lines)


# ----------------------------------------------------------------------------- what it tells


def _cells_text(store: artifacts.Store, cells, with_temperature: bool) -> str:
  if not with_temperature:
    return ', '.join(f'{100 * d:g}%' for _, d in cells)
  by_temperature = {}
  for t, d in cells:
    by_temperature.setdefault(t, []).append(f'{100 * d:g}%')
  return '; '.join(f'{grid.temperature_key(store.knob, t)} at {", ".join(v)}'
                   for t, v in by_temperature.items())


def round_line(store: artifacts.Store, number: int, decided: Round, finished: bool) -> str:
  """'[seeds] round 1: adding dense seed 4 to batch_size=256 (unconfident cells: 4%, 6%)'."""
  parts = []
  for a in decided.additions:
    if len(a.temperatures) > 1 or knobs.knob(store.knob).checkpoints:
      parts.append(f'dense seed {a.seed} to the whole run (epochs: one run gives every '
                   f'temperature) (unconfident cells: {_cells_text(store, a.cells, True)})')
    else:
      parts.append(f'dense seed {a.seed} to {grid.temperature_key(store.knob, a.temperatures[0])}'
                   f' (unconfident cells: {_cells_text(store, a.cells, False)})')
  maximum = int(store.config.seeds.max_dense_seeds)
  held = (f'at max_dense_seeds={maximum}, unconfident cells stay: '
          f'{_cells_text(store, decided.at_max, True)}' if decided.at_max else '')
  done = ' (done earlier)' if finished else ''
  return f'[seeds] round {number}: adding {"; ".join(parts)}{done}' + (f'; {held}' if held else '')


def member_steps(store: artifacts.Store, counts: Sequence[int],
                 densities: Sequence[Sequence[float]] | None = None) -> int:
  """Training steps x members of dense training, IMP levels and retraining, with counts[t]
  dense seeds at temperature t, each retrained at densities[t] (None: every density; a
  temperature with none trains nothing). The epoch knob: counts[0] runs give every temperature.

  The one cost formula of the adaptive modes: seeds (every density), the search
  (`adaptive_cells.member_steps`: the configured seeds at the measured cells) and both
  (`adaptive_cell_seeds.cost`).
  """
  config, num_train = store.config, store.facts.num_train
  if densities is None:
    densities = [store.densities] * len(store.temperatures)
  retrain_total = int(config.retrain.epochs) * grid.steps_per_epoch(
      num_train, int(config.retrain.batch_size))
  levels = 0
  if config.prune.get('schedule', 'one_shot') == 'iterative':  # One member per dense seed.
    levels = (len(prune_iterative.levels(config)) - 1) * retrain_total
  per_temperature = lambda cells: (
      len(cells) * len(store.retrain_seeds) * retrain_total + levels if cells else 0)
  groups = store.dense_groups()
  if knobs.knob(store.knob).checkpoints:
    return int(counts[0]) * (groups[0].total_steps + sum(map(per_temperature, densities)))
  dense = {float(t): g.total_steps for g in groups for t in g.temperatures}
  return sum(int(n) * (dense[float(t)] + per_temperature(cells))
             for t, n, cells in zip(store.temperatures, counts, densities) if cells)


def cost(store: artifacts.Store, plan: Plan) -> dict[str, Any]:
  """The member-steps of the plan's seeds against max_dense_seeds seeds everywhere."""
  maximum = int(store.config.seeds.max_dense_seeds)
  spent = member_steps(store, [len(s) for s in plan.seeds])
  full = member_steps(store, [maximum] * len(plan.temperatures))
  return {'member_steps': spent, 'max_seeds_member_steps': full,
          'fraction': spent / full if full else float('nan'), 'max_dense_seeds': maximum}


def regimes_fields(store: artifacts.Store, plan: Plan,
                   spent: dict[str, Any] | None = None) -> dict[str, Any]:
  """What regimes.json records: dense seeds per temperature, the rounds, the cost (`spent`;
  None: `cost`)."""
  cell = lambda c: {'temperature': c[0], 'density': c[1]}
  rounds = [{'round': n, 'added': [{'temperatures': list(a.temperatures), 'dense_seed': a.seed,
                                    'unconfident_cells': [cell(c) for c in a.cells]}
                                   for a in r.additions],
             'unconfident_at_max': [cell(c) for c in r.at_max]}
            for n, r in enumerate(plan.rounds, 1)]
  return {'dense_seeds': [{'temperature': t, 'dense_seeds': list(s)}
                          for t, s in zip(plan.temperatures, plan.seeds)],
          'adaptive_seeds': {'rounds': rounds, 'finished': not plan.pending,
                             'max_dense_seeds': int(store.config.seeds.max_dense_seeds)},
          'adaptive_seed_cost': cost(store, plan) if spent is None else spent}


def summary_lines(store: artifacts.Store, plan: Plan, spent: dict[str, Any] | None = None,
                  reference: str = 'everywhere') -> list[str]:
  """The closing lines: the seeds of each temperature, what stays unconfident, the cost
  (`spent`, None: `cost`; against max_dense_seeds seeds `reference`)."""
  seeds = ', '.join(f'{grid.temperature_key(store.knob, t)} ({", ".join(map(str, s))})'
                    for t, s in zip(plan.temperatures, plan.seeds))
  lines = [f'[seeds] dense seeds: {seeds}']
  if plan.pending:
    lines.append(f'[seeds] round {len(plan.rounds)} is not finished (run the measure stage); '
                 'reported without it')
  left = unconfident(plan.labelled['labels'], plan.labelled['confidence'],
                     float(store.config.regimes.min_confidence))
  cells = [(t, d) for t, d in zip(*np.nonzero(left))]
  if cells and not plan.pending:
    text = _cells_text(store, [(plan.temperatures[t], store.densities[d]) for t, d in cells],
                       True)
    lines.append(f'[seeds] unconfident at max_dense_seeds='
                 f'{int(store.config.seeds.max_dense_seeds)}: {text}')
  spent = cost(store, plan) if spent is None else spent
  lines.append(f'[seeds] adaptive_seed_cost: {spent["member_steps"]} member-steps '
               f'({100 * spent["fraction"]:.0f}% of {spent["max_seeds_member_steps"]} with '
               f'{spent["max_dense_seeds"]} seeds {reference})')
  return lines
