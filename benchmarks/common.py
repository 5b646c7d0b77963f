"""Timing helpers shared by the benchmarks."""

import time

import jax
import numpy as np


def median_seconds(fn, calls: int) -> float:
  """Median wall seconds of `calls` calls of `fn` (which must block)."""
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def timed(fn, repeats: int) -> float:
  """Median wall seconds of `fn()` (which must block) after one warm-up call."""
  fn()
  return median_seconds(fn, repeats)


def time_epochs(program, states, hparams, masks, dataset, repeats: int) -> tuple[float, float]:
  """(median seconds of a population epoch after the first, seconds of the first incl. compile)."""
  times = []
  for epoch in range(repeats + 1):
    start = time.perf_counter()
    states, metrics = program.epoch(states, hparams, masks, dataset, epoch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return float(np.median(times[1:])), times[0]
