r"""prunephase-advise: case study 1, which way to move the temperature.

  prunephase-advise --workdir=DIR --density=0.05 --temperature=80   one cell of a sweep
  prunephase-advise --results=FILE.csv --knob=epochs --evaluate     the advice on every cell
  prunephase-advise --workdir=DIR --evaluate --replicate=OTHER      judged on OTHER's test errors
  prunephase-advise --probe --config=configs/default.py --workdir=NEW --density=0.06 \
      --temperature=128                                             from a minimal probe
"""

from absl import flags

from prunephase import advice
from prunephase import out_of_sample
from prunephase import probe
from prunephase import runtime
from prunephase.cli import common
from prunephase.cli import table_flags

TEMPERATURE = flags.DEFINE_float('temperature', None, 'Current temperature value.')
EVALUATE = flags.DEFINE_bool('evaluate', False, 'Evaluate the advice on every cell.')
PROBE = flags.DEFINE_bool('probe', False, 'Run the minimal probe (prune -> retrain x 2 seeds -> '
                          'LMC/CKA) for --temperature, its grid neighbours and --density, from '
                          '--config, into --workdir; then advise.')
flags.adopt_module_key_flags(common)  # --help lists them all.
flags.adopt_module_key_flags(table_flags)


def _probe_errors() -> tuple[type[Exception], ...]:
  from prunephase import pipeline  # pylint: disable=import-outside-toplevel
  return table_flags.ERRORS + pipeline.user_errors()


def main(argv) -> None:
  del argv
  temperature, density = TEMPERATURE.value, table_flags.DENSITY.value
  if PROBE.value:
    config = runtime.config_value(common.CONFIG)
    # Importing the error types starts no JAX backend: probe.run_probe still sets the device
    # layout (and multi-host start) before the first JAX call. Any sweep error is one line.
    common.fail_on(_probe_errors(), probe.run_probe, config, common.WORKDIR.value, temperature,
                   density)
  if table_flags.REPLICATE.value:
    if not EVALUATE.value:
      runtime.fail('--replicate needs --evaluate (prunephase-regimes --replicate compares the '
                   'advice of every cell)')
    runs = common.fail_on(table_flags.ERRORS, table_flags.load_runs)
    common.fail_on(table_flags.ERRORS, out_of_sample.evaluate_out_of_sample, runs)
    return
  loaded = common.fail_on(table_flags.ERRORS, table_flags.load)
  if EVALUATE.value:
    common.fail_on(table_flags.ERRORS, advice.evaluate, loaded)
  else:
    common.fail_on(table_flags.ERRORS, advice.advise, loaded, temperature, density)


def run() -> None:
  """Console-script entry point."""
  common.run(main)


if __name__ == '__main__':
  run()
