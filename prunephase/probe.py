"""Case study 1 from a minimal probe: one cell, its neighbours in the temperature grid, one
dense seed and two retrain seeds, run as an ordinary sweep into a new workdir.

  probe.run_probe(config, 'NEW_DIR', temperature=128, density=0.06)
  advice.advise(cases.load_labelled(workdir='NEW_DIR'), 128, 0.06)

`prunephase-advise --probe` does both.
"""

import ml_collections

from prunephase.cases import CaseError
from prunephase.config import names


def probe_config(config, temperature: float, density: float):
  """The minimal probe of one cell: the temperature and its neighbours in the config's grid
  (the II-A/II-B rule compares a cell with its column), one density, one dense seed, two
  retrain seeds."""
  config = ml_collections.ConfigDict(config.to_dict())
  values = names.hot_to_cold(config.temperature.knob, config.temperature.grid)
  if temperature not in values:
    raise CaseError(f'--temperature {temperature:g} is not in the config\'s temperature.grid '
                    f'{values}')
  i = values.index(temperature)
  config.temperature.grid = tuple(values[max(i - 1, 0):i + 2])
  config.prune.densities = (float(density),)
  config.dense.seeds = tuple(config.dense.seeds)[:1]
  config.retrain.seeds = tuple(config.retrain.seeds)[:2]
  config.seeds.adaptive = False  # One dense seed by design: no rounds of added seeds.
  return config


def run_probe(config, workdir: str, temperature: float | None, density: float | None) -> None:
  """Runs the probe sweep of one cell (`probe_config`) into `workdir` (resumable like any sweep).

  Call before anything imports JAX (it sets up the device layout); afterwards
  `load_labelled(workdir=workdir)` reads the probe like any sweep.
  """
  # pylint: disable=import-outside-toplevel
  from absl import logging
  from prunephase import config as config_lib
  from prunephase import runtime
  from prunephase import sweep as sweep_lib
  if config is None or not workdir:
    raise CaseError('--probe needs --config=FILE and --workdir=DIR (a new directory)')
  if density is None or temperature is None:
    raise CaseError('--probe needs --density and --temperature')
  config = probe_config(config, temperature, density)
  config_lib.validate(config)
  runtime.prepare(config)  # The same device layout as `prunephase` would use.
  logging.set_verbosity(logging.WARNING)
  print(f'probe: {config.temperature.knob} {list(config.temperature.grid)} x density '
        f'{density:g}, 1 dense seed x 2 retrain seeds, into {workdir}', flush=True)
  sweep_lib.run_sweep(config, workdir)
