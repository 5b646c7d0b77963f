"""prunephase-select: case study 2 (and 3 on a SAM-rho sweep), which dense model to prune.

  prunephase-select --workdir=DIR [--density=0.05]
  prunephase-select --results=FILE.csv --knob=sam_rho
  prunephase-select --workdir=DIR --replicate=OTHER     picks on DIR scored on OTHER's test errors
"""

from absl import flags

from prunephase import out_of_sample
from prunephase import selection
from prunephase.cli import common
from prunephase.cli import table_flags

flags.declare_key_flag('workdir')  # --help lists them all.
flags.adopt_module_key_flags(table_flags)


def main(argv) -> None:
  del argv
  if table_flags.REPLICATE.value:
    runs = common.fail_on(table_flags.ERRORS, table_flags.load_runs)
    common.fail_on(table_flags.ERRORS, out_of_sample.select_out_of_sample, runs,
                   table_flags.DENSITY.value)
    return
  loaded = common.fail_on(table_flags.ERRORS, table_flags.load)
  common.fail_on(table_flags.ERRORS, selection.select, loaded, table_flags.DENSITY.value)


def run() -> None:
  """Console-script entry point."""
  common.run(main)


if __name__ == '__main__':
  run()
