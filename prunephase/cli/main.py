r"""`prunephase`: run the three-regime sweep of one config into one workdir.

  prunephase --config=configs/default.py --workdir=runs/default
  prunephase --config=configs/default.py:quick --workdir=/tmp/quick --stages=train,prune
  prunephase --config=configs/default.py --workdir=DIR --config.prune.method=lamp

Re-running the same command resumes: finished artifacts are skipped. The work is done by
`prunephase.main.run_and_summarise`.
"""

import os
import sys

from absl import flags
from absl import logging

from prunephase import main as main_lib
from prunephase import runtime
from prunephase.cli import common

STAGES = flags.DEFINE_list('stages', 'train,prune,retrain,measure,report',
                           'Comma-separated stages to run, in pipeline order.')

flags.adopt_module_key_flags(common)  # --help lists --config and --workdir.


def main(argv) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  config = runtime.config_value(common.CONFIG)
  if config is None:
    runtime.fail('--config is required, e.g. --config=configs/default.py')
  runtime.prepare(config)  # Device layout: before anything imports JAX.
  if not common.WORKDIR.value:
    runtime.fail('--workdir is required')
  try:
    common.fail_on(main_lib.user_errors(), main_lib.run_and_summarise, config,
                   common.WORKDIR.value, STAGES.value)
  except SystemExit as stop:
    # The one-line error is out. A failed checkpoint read can leave TensorStore reads finishing
    # on other threads, whose callbacks would print tracebacks while the interpreter shuts
    # down: leave at once (every artifact is written atomically, nothing is half-written).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(stop.code if isinstance(stop.code, int) else 1)


def run() -> None:
  """Console-script entry point."""
  common.run(main)


if __name__ == '__main__':
  run()
