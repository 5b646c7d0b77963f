"""What the benchmarks' printed figures are: published peaks, fractions, speed-ups, layouts.

Plain arithmetic and strings, no JAX, so that tests/test_benchmarks.py checks them without a
backend. Two kinds of "fraction of peak" are printed, and they answer different questions:

* against a matmul measured in the same run on the same devices (`*_matmul_fraction`,
  `population_peak_fraction`): how close the workload comes to what this software stack
  reaches on a large dense matmul here;
* against the vendor's published dense peak of the device for the operands' dtype (`*_mfu`,
  model FLOP/s utilisation): how much of the hardware the workload uses. Only where the peak is
  in `PUBLISHED_PEAKS`; elsewhere the line says `n/a` rather than guessing.
"""

import math

# Dense (no structured sparsity) peak FLOP/s of ONE JAX device, keyed by
# (`jax.Device.device_kind`, operand dtype). Sources: the vendors' data sheets -- NVIDIA's H100
# Tensor Core GPU data sheet (H100 SXM), H200 Tensor Core GPU data sheet (H200 SXM) and A100
# Tensor Core GPU data sheet (SXM and PCIe list the same tensor-core figures); Google's Cloud
# TPU system-architecture pages for v4, v5e and v5p (per chip; each chip is one JAX device).
# NVIDIA's sheets print the sparse figure with a footnote; the dense peak is half of it.
# Left out on purpose:
#  * f32: at JAX's default matmul precision an f32 product on these GPUs may run as TF32 on the
#    tensor cores or on the FP32 units (XLA and cuBLAS decide), and TPUs run it as bf16 passes,
#    so no single published figure is the peak of an f32 run.
#  * variants whose device kind or figure we have not confirmed (H100 PCIe and NVL, H200 NVL,
#    newer TPUs): they get `n/a` instead of a number that may be wrong.
# Caveat: should an H200 NVL (data sheet: 835 TFLOP/s bf16 dense) report the device kind
# 'NVIDIA H200', its mfu here is understated; the line before `gpu_mfu` names the peak used.
PUBLISHED_PEAKS = {
    ('NVIDIA H100 80GB HBM3', 'bf16'): 989e12,  # H100 SXM5.
    ('NVIDIA H200', 'bf16'): 989e12,  # H200 SXM.
    ('NVIDIA A100-SXM4-40GB', 'bf16'): 312e12,
    ('NVIDIA A100-SXM4-80GB', 'bf16'): 312e12,
    ('NVIDIA A100-PCIE-40GB', 'bf16'): 312e12,
    ('NVIDIA A100 80GB PCIe', 'bf16'): 312e12,
    ('TPU v4', 'bf16'): 275e12,
    ('TPU v5 lite', 'bf16'): 197e12,  # v5e.
    ('TPU v5', 'bf16'): 459e12,  # v5p.
    ('TPU v5p', 'bf16'): 459e12,
}

NAN = float('nan')


def published_peak(device_kind: str, dtype: str) -> float | None:
  """The vendor's dense peak FLOP/s of one device of `device_kind` for `dtype` operands
  ('bf16', 'f32'); None where `PUBLISHED_PEAKS` has no figure for the pair."""
  return PUBLISHED_PEAKS.get((device_kind, dtype))


def fraction(flops: float, seconds: float, peak: float | None) -> float:
  """Achieved FLOP/s (`flops` in `seconds`) as a fraction of `peak` FLOP/s; nan where either
  rate is unknown or not positive (a failed cost analysis, a missing peak)."""
  if peak is None or not peak > 0 or not seconds > 0 or not math.isfinite(flops):
    return NAN
  return flops / seconds / peak


def speedup(one_at_a_time_s: float, together_s: float) -> float:
  """Measured seconds of the members one after another over those of the population program
  (> 1: the population program is faster); nan unless both were measured."""
  if not (one_at_a_time_s > 0 and together_s > 0):
    return NAN
  return one_at_a_time_s / together_s


def best_mfu(results: list[dict], device_kind: str) -> tuple[float, dict | None]:
  """(the highest model FLOP/s utilisation, its result) over population `results` (dicts with
  'dtype', 'flops' and the 'seconds' they took), each against the published peak of its own
  dtype; (nan, None) when no result has a published peak."""
  best, best_result = NAN, None
  for result in results:
    peak = published_peak(device_kind, result['dtype'])
    value = fraction(result['flops'], result['seconds'], peak)
    if math.isfinite(value) and not value <= best:
      best, best_result = value, result
  return best, best_result


def mfu_line(prefix: str, value: float, device_kind: str) -> str:
  """`{prefix}mfu: X`, or `{prefix}mfu: n/a (no published peak for DEVICE_KIND)` where no
  population run had a published peak for its dtype."""
  if math.isfinite(value):
    return f'{prefix}mfu: {value:.3f}'
  return f'{prefix}mfu: n/a (no published peak for {device_kind})'


def layout(members: int, devices: int, chunks: int, per_chunk: int,
           separate_calls: bool = False) -> str:
  """How a population program ran its `members`, in words: `chunks` chunks of `per_chunk`
  members on each of `devices` devices (from `prunephase.population.chunk_layout`), the chunks
  in calls of their own (`separate_calls`, the program's steps-per-call form) or one after
  another inside one call.

  With one member per chunk nothing is vmapped on a device, and the label says so: such a
  "population" is the members one at a time, compiled once.
  """
  where = f'{devices} devices' if devices > 1 else 'one device'
  local = members // devices if members % devices == 0 else members
  plural = lambda n: f'{n} member{"s" if n != 1 else ""}'
  order = 'a call per chunk' if separate_calls else 'chunks in a loop inside one call'
  if local == 1:
    return f'{plural(members)} on {where}' + (', one per device' if devices > 1 else '')
  if per_chunk == 1:
    return (f'{plural(members)} on {where}, one member per chunk: no vmap, {chunks} chunks '
            f'per device one after another ({order})')
  if chunks == 1:
    return f'{plural(members)} on {where}, all {local} of a device vmapped at once'
  return (f'{plural(members)} on {where}, vmapped in {chunks} chunks of {per_chunk} per '
          f'device one after another ({order})')
