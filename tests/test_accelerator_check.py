"""benchmarks/accelerator_check.sh end to end in its reduced CPU form, so the GPU check can't rot.

The set-up finds every package here, so nothing is installed from wheels; prunephase itself is
installed with --no-deps where a build backend is available offline, else run from the source.
"""

import math
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAST_LINES = ('cpu_smoke_population_speedup', 'cpu_smoke_matmul_fraction', 'cpu_smoke_mfu',
              'cpu_smoke_lmc_speedup', 'cpu_smoke_quick_sweep_s')
# A CPU has no published peak (benchmarks/measures.py), so its mfu line says so instead.
NO_PEAK = 'n/a (no published peak for cpu)'


@pytest.mark.slow  # The benchmark script end to end: about 40 s.
def test_accelerator_check_cpu_smoke_ends_with_its_machine_readable_lines(tmp_path):
  env = dict(os.environ, PYTHON=sys.executable, WHEELS=str(tmp_path / 'no_wheels'),
             ACCEL_DIR=str(tmp_path / 'accel'), JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  result = subprocess.run(['bash', str(REPO / 'benchmarks' / 'accelerator_check.sh'),
                           '--cpu-smoke'], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert 'sizes: SMOKE (reduced, CPU)' in lines
  assert any(line.startswith('prunephase imported from ') for line in lines)
  assert any(line.startswith('quick sweep (mlp, ') for line in lines)
  values = {}
  for line in lines[-len(LAST_LINES):]:
    name, value = line.split(': ', 1)
    values[name] = value
  assert tuple(values) == LAST_LINES, lines[-len(LAST_LINES):]
  assert values.pop('cpu_smoke_mfu') == NO_PEAK
  numbers = {name: float(value) for name, value in values.items()}
  assert all(math.isfinite(v) and v > 0 for v in numbers.values()), numbers
