"""The sweep as one call with the command's printed lines: `prunephase`'s library side.

  from prunephase import pipeline
  sweep, summary = pipeline.run_and_summarise(config, 'runs/default', ['train', 'prune'])

The command line (`prunephase --config=... --workdir=...`) is `prunephase.cli.main`; this module
defines no flags, so it imports next to the case studies and in notebooks. Heavy modules (JAX)
are imported on first use, so `prunephase --help` stays fast.
"""

import time


def user_errors() -> tuple[type[Exception], ...]:
  """The exceptions that mean bad input or a bad workdir (one-line messages), not a bug."""
  # pylint: disable=import-outside-toplevel
  from prunephase import checkpoints
  from prunephase import config as config_lib
  from prunephase import data as data_lib
  from prunephase import files
  from prunephase import metrics
  from prunephase import models
  from prunephase import registry
  from prunephase import sweep as sweep_lib
  return (config_lib.ConfigError, data_lib.DataError, sweep_lib.SweepError,
          files.WorkdirError, checkpoints.CheckpointError, models.ModelError,
          registry.RegistryError, metrics.MetricError)


def check_stages(stages) -> list[str]:
  """The stage names, stripped; ConfigError naming the unknown ones (or an empty list)."""
  from prunephase import config as config_lib  # pylint: disable=import-outside-toplevel
  from prunephase import sweep as sweep_lib  # pylint: disable=import-outside-toplevel
  stages = [s.strip() for s in stages if s.strip()]
  unknown = [s for s in stages if s not in sweep_lib.STAGES]
  if unknown or not stages:
    raise config_lib.ConfigError(f'unknown stage(s) {unknown}; choose from '
                                 f'{",".join(sweep_lib.STAGES)}')
  return stages


def print_summary(sweep, summary: dict, total_seconds: float) -> None:
  """The closing lines: grid, time per stage, outputs, regimes, findings."""
  from prunephase import progress  # pylint: disable=import-outside-toplevel
  config = sweep.config
  print('\n=== prunephase summary ===')
  added = (f' (up to {int(config.seeds.max_dense_seeds)} where labels are unconfident)'
           if config.seeds.adaptive else '')
  print(f'grid: {len(sweep.temperatures)} temperatures ({sweep.knob}) x '
        f'{len(sweep.densities)} densities; {len(sweep.dense_seeds)} dense{added} x '
        f'{len(sweep.retrain_seeds)} retrain seeds; model {config.model.name} on '
        f'{config.dataset.name}; pruning {config.prune.method}')
  store = sweep.store
  print(f'branch: {store.measure_dir.relative_to(sweep.path)} (spec.json in each directory)')
  times = ', '.join(f'{k} {progress.format_seconds(v)}' for k, v in sweep.timings.items())
  print(f'time: {times}; total {progress.format_seconds(total_seconds)}')
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
    if summary.get('left_out'):  # Never a finding from garbage: say what it was not read from.
      from prunephase import findings  # pylint: disable=import-outside-toplevel
      print(f'left out of the findings: {findings.describe_left_out(summary["left_out"])}')
    for name in ('transition', 'connectivity', 'similarity'):
      finding = summary['findings'][name]
      print(f'finding {name}: {finding["status"]} -- {finding["summary"]}')
    for line in summary.get('seeds', ()):  # seeds.adaptive: seeds per temperature and cost.
      print(line)
    for line in summary.get('search', ()):  # search.mode=adaptive: cells and cost.
      print(line)


def run_and_summarise(config, workdir: str, stages) -> tuple:
  """Runs `stages` of the sweep of `config` in `workdir`, printing the header and summary.

  Args:
    config: a sweep ConfigDict (validated here).
    workdir: the run's directory (created if absent; a finished run is resumed).
    stages: stage names, any of prunephase.sweep.STAGES; run in pipeline order.

  Returns:
    (sweep, summary) as `prunephase.sweep.run_sweep`.

  Raises:
    One of `user_errors()` with a one-line message for bad input; nothing is written then.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from prunephase import sweep as sweep_lib  # pylint: disable=import-outside-toplevel
  stages = check_stages(stages)
  start = time.time()
  print(f'prunephase: {config.model.name} on {config.dataset.name}, workdir {workdir}, '
        f'stages {",".join(stages)}, devices {jax.devices()}', flush=True)
  sweep, summary = sweep_lib.run_sweep(config, workdir, stages)
  print_summary(sweep, summary, time.time() - start)
  return sweep, summary
