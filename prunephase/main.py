r"""Command line: run the three-regime sweep of one config into one workdir.

  prunephase --config=configs/default.py --workdir=runs/default
  prunephase --config=configs/default.py:quick --workdir=/tmp/quick --stages=train,prune
  prunephase --config=configs/default.py --workdir=DIR --config.prune.method=lamp

Re-running the same command resumes: finished artifacts are skipped.
"""

import time

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from prunephase import runtime

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, optionally with an argument: configs/default.py:quick.',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the run (created if absent).')
_STAGES = flags.DEFINE_list('stages', 'train,prune,retrain,measure,report',
                            'Comma-separated stages to run, in pipeline order.')



def print_summary(sweep, summary: dict, total_seconds: float) -> None:
  """The closing lines: grid, time per stage, outputs, regimes, findings."""
  from prunephase import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  config = sweep.config
  print('\n=== prunephase summary ===')
  print(f'grid: {len(sweep.temperatures)} temperatures ({sweep.knob}) x '
        f'{len(sweep.densities)} densities; {len(sweep.dense_seeds)} dense x '
        f'{len(sweep.retrain_seeds)} retrain seeds; model {config.model.name} on '
        f'{config.dataset.name}; pruning {config.prune.method}')
  times = ', '.join(f'{k} {workdir_lib.format_seconds(v)}' for k, v in sweep.timings.items())
  print(f'time: {times}; total {workdir_lib.format_seconds(total_seconds)}')
  if summary:
    print(f'figure: {sweep.path / "phase_diagram.png"}  (curves: lmc_curves.png)')
    print(f'tables: {sweep.path / "results.csv"} ({summary["num_rows"]} rows), cells.csv')
    counts = summary['counts']
    print(f'regimes (prunephase rule, see regimes.json): I={counts["I"]} '
          f'II-A={counts["II-A"]} II-B={counts["II-B"]} unlabelled={counts["none"]}')
    if summary['unlabelled']:
      cells = ', '.join(f'({c["temperature"]:g}, {c["density"]:g})' for c in summary['unlabelled'])
      print(f'unlabelled cells (a diverged member or NaN metric; see results.csv diverged): '
            f'{cells}')
    for name in ('transition', 'connectivity', 'similarity'):
      finding = summary['findings'][name]
      print(f'finding {name}: {finding["status"]} -- {finding["summary"]}')


def main(argv) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  config = runtime.config_value(_CONFIG)
  if config is None:
    runtime.fail('--config is required, e.g. --config=configs/default.py')
  runtime.prepare(config)
  # Imported here so `--help` and flag errors stay fast.
  import jax  # pylint: disable=import-outside-toplevel
  from prunephase import checkpoints  # pylint: disable=import-outside-toplevel
  from prunephase import data as data_lib  # pylint: disable=import-outside-toplevel
  from prunephase import grid  # pylint: disable=import-outside-toplevel
  from prunephase import sweep as sweep_lib  # pylint: disable=import-outside-toplevel
  from prunephase import workdir as workdir_lib  # pylint: disable=import-outside-toplevel

  if not _WORKDIR.value:
    runtime.fail('--workdir is required')
  stages = [s.strip() for s in _STAGES.value if s.strip()]
  unknown = [s for s in stages if s not in sweep_lib.STAGES]
  if unknown or not stages:
    runtime.fail(f'unknown stage(s) {unknown}; choose from {",".join(sweep_lib.STAGES)}')
  start = time.time()
  print(f'prunephase: {config.model.name} on {config.dataset.name}, workdir {_WORKDIR.value}, '
        f'stages {",".join(stages)}, devices {jax.devices()}', flush=True)
  try:
    sweep, summary = sweep_lib.run_sweep(config, _WORKDIR.value, stages)
  except (grid.ConfigError, data_lib.DataError, sweep_lib.SweepError,
          workdir_lib.WorkdirError, checkpoints.CheckpointError) as error:
    runtime.fail(str(error))
  print_summary(sweep, summary, time.time() - start)


def run() -> None:
  """Console-script entry point."""
  app.run(main, flags_parser=runtime.parse_flags)


if __name__ == '__main__':
  run()
