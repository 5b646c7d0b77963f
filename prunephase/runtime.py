"""Process set-up shared by the command-line tools: device layout, multi-host, error exit."""

import os
import sys


def fail(message: str) -> None:
  """Ends the program with a one-line error and exit status 2."""
  print(f'prunephase: error: {message}', file=sys.stderr, flush=True)
  sys.exit(2)


def one_line(error: BaseException) -> str:
  """'TypeError: the first line of its message': an exception from a user's code (a model,
  a dataset loader) reported in a one-line error."""
  lines = str(error).strip().splitlines()
  return f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a one-line error for a bad config file, argument or override.

  Pass as `app.run(main, flags_parser=parse_flags)`. ml_collections raises KeyError or
  AttributeError for an unknown `--config.a.b=...` field (the config is locked) and wraps a
  config file's own error in a message that holds its traceback; both become one line here.
  """
  from absl import flags  # pylint: disable=import-outside-toplevel
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    fail(f'bad flag: {lines[-1] if lines else error}')
  except (KeyError, AttributeError, TypeError, ValueError) as error:
    overrides = [a for a in argv[1:] if a.startswith('--config.')]
    name = str(error).strip('"\'')
    culprit = [a for a in overrides if name and name in a]
    fail(f'bad config override {(culprit or overrides or [""])[0]}: {type(error).__name__} '
         f'{error} (unknown field, or a value of the wrong type; the config file lists the '
         'fields)')
  return argv


def config_value(holder):
  """The parsed config of a `DEFINE_config_file` flag; a file that failed to load (absl defers
  that error to the first access) ends in one line."""
  try:
    value = holder.value
    if value is not None:
      value.keys()  # A file that failed to load raises here, on first attribute access.
    return value
  except OSError as error:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    fail(f'cannot load the config file: {lines[-1] if lines else error}')


def split_host_into_devices(count: int) -> None:
  """Makes XLA's CPU backend expose `count` devices (call before JAX creates its backends).

  One XLA CPU device runs a population's small kernels on about 1.5 of 2 cores; with one device
  per core the member axis is sharded over them and trains in parallel (measured 1.5x on this
  project's 2-core machine, benchmarks/scaling.py). Only the CPU backend is affected; an
  explicit --xla_force_host_platform_device_count in XLA_FLAGS wins.
  """
  flags_now = os.environ.get('XLA_FLAGS', '')
  if count > 1 and 'xla_force_host_platform_device_count' not in flags_now:
    os.environ['XLA_FLAGS'] = f'{flags_now} --xla_force_host_platform_device_count={count}'.strip()


def prepare(config) -> None:
  """Device layout and multi-host start for a sweep config, before any other JAX call."""
  split_host_into_devices(int(config.get('cpu_devices', 1) or os.cpu_count() or 1))
  if config.get('distributed') or os.environ.get('PRUNEPHASE_DISTRIBUTED') == '1':
    start_distributed()


def start_distributed() -> None:
  """`jax.distributed.initialize()`: auto-detected on TPU pods and Slurm; elsewhere from
  PRUNEPHASE_COORDINATOR (host:port), PRUNEPHASE_NUM_PROCESSES and PRUNEPHASE_PROCESS_ID.
  CPU-only processes exchange data through gloo collectives."""
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kwargs = {}
  if os.environ.get('PRUNEPHASE_COORDINATOR'):
    kwargs = {'coordinator_address': os.environ['PRUNEPHASE_COORDINATOR'],
              'num_processes': int(os.environ['PRUNEPHASE_NUM_PROCESSES']),
              'process_id': int(os.environ['PRUNEPHASE_PROCESS_ID'])}
  jax.distributed.initialize(**kwargs)
  from prunephase import workdir  # pylint: disable=import-outside-toplevel
  workdir.Progress.silent = jax.process_index() != 0  # Progress lines from process 0 only.
