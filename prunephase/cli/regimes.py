"""prunephase-regimes: label and plot any results table, optionally score it against labels.

  prunephase-regimes --results=FILE.csv --out=DIR [--knob=epochs] [--compare=LABELS.csv]
  prunephase-regimes --workdir=DIR          (writes DIR/regimes/, never the sweep's report)
"""

from absl import flags

from prunephase import cases
from prunephase.cli import common
from prunephase.cli import table_flags

COMPARE = flags.DEFINE_string('compare', None, 'A CSV with temperature, density and regime '
                              'columns (e.g. a hand-drawn diagram); prints the fraction of '
                              'matched cells whose labels agree.')

flags.declare_key_flag('workdir')  # --help lists them all.
flags.adopt_module_key_flags(table_flags)


def main(argv) -> None:
  del argv
  loaded = common.fail_on(table_flags.ERRORS, table_flags.load)
  common.fail_on(table_flags.ERRORS, cases.regimes, loaded, COMPARE.value)


def run() -> None:
  """Console-script entry point."""
  common.run(main)


if __name__ == '__main__':
  run()
