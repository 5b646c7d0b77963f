"""prunephase-regimes: label and plot any results table, optionally score it against labels.

  prunephase-regimes --results=FILE.csv --out=DIR [--knob=epochs] [--compare=LABELS.csv]
  prunephase-regimes --workdir=DIR          (writes DIR/regimes/, never the sweep's report)
  prunephase-regimes --workdir=DIR --replicate=OTHER[,THIRD]   do the labels replicate?

--replicate compares independent runs of one grid (e.g. other dense seeds) cell by cell and
prints label_replication, confident_replication, advice_replication and pick_replication
(F (k/n), pooled over every pair of runs) and a reliability table; writes replication.json.
"""

from absl import flags

from prunephase import cases
from prunephase import out_of_sample
from prunephase import runtime
from prunephase.cli import common
from prunephase.cli import table_flags

COMPARE = flags.DEFINE_string('compare', None, 'A CSV with temperature, density and regime '
                              'columns (e.g. a hand-drawn diagram); prints the fraction of '
                              'matched cells whose labels agree.')

flags.declare_key_flag('workdir')  # --help lists them all.
flags.adopt_module_key_flags(table_flags)


def main(argv) -> None:
  del argv
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
