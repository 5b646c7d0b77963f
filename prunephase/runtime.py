"""Process set-up shared by the command-line tools: device layout, multi-host, error exit."""

import os
import sys


def fail(message: str) -> None:
  """Ends the program with a one-line error and exit status 2."""
  print(f'prunephase: error: {message}', file=sys.stderr, flush=True)
  sys.exit(2)


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
