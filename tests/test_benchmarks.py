"""The arithmetic and labels behind the benchmarks' printed lines (benchmarks/measures.py).

Pure functions, no device work: the benchmarks themselves run end to end only in the slow
tier (tests/test_accelerator_check.py) or by hand.
"""

import math

import pytest

from benchmarks import measures


@pytest.mark.parametrize('kind, dtype, peak', [
    ('NVIDIA H100 80GB HBM3', 'bf16', 989e12),
    ('NVIDIA H200', 'bf16', 989e12),
    ('NVIDIA A100-SXM4-80GB', 'bf16', 312e12),
    ('NVIDIA A100 80GB PCIe', 'bf16', 312e12),
    ('TPU v4', 'bf16', 275e12),
    ('TPU v5 lite', 'bf16', 197e12),
    ('TPU v5', 'bf16', 459e12),
])
def test_published_peaks_are_the_data_sheets_dense_bf16_figures(kind, dtype, peak):
  assert measures.published_peak(kind, dtype) == peak


@pytest.mark.parametrize('kind, dtype', [
    ('NVIDIA H100 80GB HBM3', 'f32'),  # No single published peak fits an f32 run.
    ('cpu', 'f32'),
    ('cpu', 'bf16'),
    ('NVIDIA GeForce RTX 4090', 'bf16'),  # Not in the table: no number rather than a guess.
])
def test_no_published_peak_outside_the_table(kind, dtype):
  assert measures.published_peak(kind, dtype) is None


def test_fraction_is_achieved_flops_per_second_over_the_peak():
  assert measures.fraction(4e12, 0.5, 16e12) == pytest.approx(0.5)
  for flops, seconds, peak in ((4e12, 0.5, None), (4e12, 0.5, 0.0), (4e12, 0.0, 1e12),
                               (float('nan'), 1.0, 1e12)):
    assert math.isnan(measures.fraction(flops, seconds, peak))


def test_speedup_needs_both_times_measured():
  assert measures.speedup(3.0, 1.5) == pytest.approx(2.0)  # One at a time took twice as long.
  assert math.isnan(measures.speedup(float('nan'), 1.5))
  assert math.isnan(measures.speedup(3.0, 0.0))


def test_best_mfu_takes_each_run_against_its_own_dtypes_published_peak():
  results = [
      {'dtype': 'f32', 'members': 4, 'flops': 600e12, 'seconds': 1.0},  # No f32 peak: skipped.
      {'dtype': 'bf16', 'members': 4, 'flops': 247.25e12, 'seconds': 1.0},
      {'dtype': 'bf16', 'members': 16, 'flops': 989e12, 'seconds': 2.0},
  ]
  value, best = measures.best_mfu(results, 'NVIDIA H100 80GB HBM3')
  assert value == pytest.approx(0.5) and best is results[2]
  value, best = measures.best_mfu(results, 'cpu')
  assert math.isnan(value) and best is None
  assert math.isnan(measures.best_mfu([], 'TPU v4')[0])


def test_mfu_line_is_a_number_or_says_why_not():
  assert measures.mfu_line('gpu_', 0.25, 'NVIDIA H200') == 'gpu_mfu: 0.250'
  assert (measures.mfu_line('gpu_', float('nan'), 'NVIDIA GeForce RTX 4090')
          == 'gpu_mfu: n/a (no published peak for NVIDIA GeForce RTX 4090)')
  assert (measures.mfu_line('cpu_smoke_', float('nan'), 'cpu')
          == 'cpu_smoke_mfu: n/a (no published peak for cpu)')


def test_layout_says_when_nothing_is_vmapped():
  assert measures.layout(27, 1, 27, 1, separate_calls=True) == (
      '27 members on one device, one member per chunk: no vmap, 27 chunks per device one '
      'after another (a call per chunk)')
  assert measures.layout(27, 1, 1, 27) == '27 members on one device, all 27 of a device ' \
      'vmapped at once'
  assert measures.layout(36, 2, 9, 2) == (
      '36 members on 2 devices, vmapped in 9 chunks of 2 per device one after another '
      '(chunks in a loop inside one call)')
  assert measures.layout(4, 4, 1, 1) == '4 members on 4 devices, one per device'
  assert measures.layout(1, 1, 1, 1) == '1 member on one device'


def test_layout_of_the_programs_own_chunk_layout():
  """The words follow `population.chunk_layout`, the split the programs run."""
  from prunephase import population  # pylint: disable=import-outside-toplevel
  assert 'no vmap' in measures.layout(3, 1, *population.chunk_layout(3, 1))
  assert 'all 3 of a device' in measures.layout(3, 1, *population.chunk_layout(3, None))
  assert '9 chunks of 2' in measures.layout(36, 2, *population.chunk_layout(36, 2, 2), False)
