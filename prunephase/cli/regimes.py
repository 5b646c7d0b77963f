"""prunephase-regimes: label and plot any results table, optionally score it against labels.

  prunephase-regimes --results=FILE.csv --out=DIR [--knob=epochs] [--compare=LABELS.csv]
  prunephase-regimes --workdir=DIR          (writes DIR/regimes/, never the sweep's report)
  prunephase-regimes --workdir=DIR --replicate=OTHER[,THIRD]   do the labels replicate?

--replicate compares independent runs of one grid (e.g. other dense seeds) cell by cell and
prints label_replication, confident_replication, advice_replication and pick_replication
(F (k/n), pooled over every pair of runs) and a reliability table; writes replication.json.

  prunephase-regimes --results=FULL.csv --simulate_adaptive [--max_cells=N]

--simulate_adaptive replays the adaptive search (prunephase/adaptive_search.py) on a finished
table, revealing a cell's rows only when the search asks for them, and prints a table of its
rounds, `adaptive_cells: k/n` (cells measured / grid cells) and `adaptive_agreement: F` (the
fraction of the table's labelled cells whose search label, measured or inferred, is the
table's own); it writes nothing.
"""

from absl import flags

from prunephase import adaptive_search
from prunephase import cases
from prunephase import out_of_sample
from prunephase import regimes as regimes_lib
from prunephase import runtime
from prunephase.cli import common
from prunephase.cli import table_flags

COMPARE = flags.DEFINE_string('compare', None, 'A CSV with temperature, density and regime '
                              'columns (e.g. a hand-drawn diagram); prints the fraction of '
                              'matched cells whose labels agree.')
SIMULATE_ADAPTIVE = flags.DEFINE_boolean(
    'simulate_adaptive', False, 'Replay the adaptive search of the phase diagram on this '
    'finished table: which cells it measures and how many of its labels match the table\'s.')
MAX_CELLS = flags.DEFINE_integer('max_cells', None, '--simulate_adaptive: the most cells the '
                                 'search may measure (default: no limit but the grid).')
REMEASURE_BELOW = flags.DEFINE_float(
    'remeasure_below', adaptive_search.REMEASURE_BELOW, '--simulate_adaptive: measure the '
    'column neighbours of measured cells whose label confidence is below this (a sweep\'s '
    'search.remeasure_below).')

flags.declare_key_flag('workdir')  # --help lists them all.
flags.adopt_module_key_flags(table_flags)


def simulate_adaptive(loaded, max_cells: int | None,
                      remeasure_below: float = adaptive_search.REMEASURE_BELOW) -> dict:
  """Replays the adaptive search on the loaded table and prints its rounds and result."""
  config = loaded['config']
  result = adaptive_search.replay(
      loaded['rows'], loaded['temperatures'], loaded['densities'],
      regimes_lib.RegimeRule.from_config(config), max_cells, remeasure_below,
      int(config.bootstrap), int(config.seed), config.get('confidence'))
  n = result['num_cells']
  cases.print_table(f'adaptive search of {loaded["source"]} (a cell\'s rows revealed when '
                    'asked for; agreement: with the full table\'s labels)',
                    ['round', 'new cells', 'measured', 'uncertain left', 'agreement'],
                    [[r['round'], r['new'], f'{r["measured"]}/{n}', r['uncertain'],
                      f'{r["agreement"]:.3f}'] for r in result['rounds']])
  inferred = int(result['inferred'].sum())
  print(f'{inferred} cells inferred from measured neighbours')
  print(f'adaptive_cells: {result["cells"]}/{n}')
  print(f'adaptive_agreement: {result["agreement"]:.3f}')
  return result


def main(argv) -> None:
  del argv
  if SIMULATE_ADAPTIVE.value:
    if table_flags.REPLICATE.value or COMPARE.value:
      runtime.fail('--simulate_adaptive replays one table: give it without --replicate and '
                   '--compare')
    if MAX_CELLS.value is not None and MAX_CELLS.value < 1:
      runtime.fail(f'--max_cells={MAX_CELLS.value}: the search needs at least 1 cell')
    if not 0 <= REMEASURE_BELOW.value <= 1:
      runtime.fail(f'--remeasure_below={REMEASURE_BELOW.value}: a confidence, in [0, 1]')
    loaded = common.fail_on(table_flags.ERRORS, table_flags.load)
    simulate_adaptive(loaded, MAX_CELLS.value, REMEASURE_BELOW.value)
    return
  if MAX_CELLS.value is not None:
    runtime.fail('--max_cells goes with --simulate_adaptive')
  if table_flags.REPLICATE.value:
    if COMPARE.value:
      runtime.fail('give --compare or --replicate, not both')
    runs = common.fail_on(table_flags.ERRORS, table_flags.load_runs)
    common.fail_on(table_flags.ERRORS, out_of_sample.replicate, runs)
    return
  loaded = common.fail_on(table_flags.ERRORS, table_flags.load)
  common.fail_on(table_flags.ERRORS, cases.regimes, loaded, COMPARE.value)


def run() -> None:
  """Console-script entry point."""
  common.run(main)


if __name__ == '__main__':
  run()
