r"""prunephase: run the three-regime sweep of one config into one workdir.

  prunephase --config=configs/default.py --workdir=runs/default
  prunephase --config=configs/default.py:quick --workdir=/tmp/quick --stages=train,prune
  prunephase --config=configs/default.py --workdir=DIR --config.dense.lr=0.05

Re-running the same command resumes: finished artifacts are skipped.
Override any config field with --config.SECTION.FIELD=VALUE (e.g. --config.dense.lr=0.05);
list every field with its value and meaning (no --workdir needed):

  prunephase --config=configs/default.py --print_config
"""

import os
import pathlib
import sys

from absl import flags
from absl import logging

from prunephase import pipeline
from prunephase import runtime
from prunephase.cli import common
from prunephase.config import args as config_args
from prunephase.config import fields

STAGES = flags.DEFINE_list('stages', 'train,prune,retrain,measure,report',
                           'Comma-separated stages to run, in pipeline order.')
PRINT_CONFIG = flags.DEFINE_bool('print_config', False, 'Print the config (file, argument and '
                                 '--config.* overrides applied), one field per line with its '
                                 'meaning, and exit; no --workdir needed.')

flags.adopt_module_key_flags(common)  # --help lists --config and --workdir.


def print_config(config) -> None:
  """Prints every field of `config` as `section.field = value  # meaning`.

  The meanings are the comments next to the fields in the config files loaded (configs/default.py
  first: the file every other config builds on states them).
  """
  argument = flags.FLAGS[common.CONFIG.name].config_filename
  top = pathlib.Path(argument.split(':', 1)[0]).resolve()
  files = dict.fromkeys([*reversed(config_args.LOADED), top])  # The base config first.
  lines = [f'# {argument}: override a field with --config.SECTION.FIELD=VALUE',
           *fields.listing(config, fields.meanings(files))]
  try:
    print('\n'.join(lines), flush=True)
  except BrokenPipeError:  # A reader such as `head` stopped early: nothing left to say.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  config = runtime.config_value(common.CONFIG)
  if config is None:
    runtime.fail('--config is required, e.g. --config=configs/default.py')
  if PRINT_CONFIG.value:
    print_config(config)  # Before anything touches devices or the workdir.
    return
  runtime.prepare(config)  # Device layout: before anything imports JAX.
  if not common.WORKDIR.value:
    runtime.fail('--workdir is required')
  try:
    common.fail_on(pipeline.user_errors(), pipeline.run_and_summarise, config,
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
