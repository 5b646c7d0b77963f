"""Flags of the case-study commands that read a results table (prunephase-regimes, -advise,
-select), defined once, and the labelled table they select (`load`)."""

from typing import Any

from absl import flags

from prunephase import cases
from prunephase import confidence
from prunephase import knobs
from prunephase import out_of_sample
from prunephase import regimes as regimes_lib
from prunephase import tables
from prunephase.cli import common

RESULTS = flags.DEFINE_string('results', None, 'A results table (CSV); see prunephase.tables.')
OUT = flags.DEFINE_string('out', None, "Output directory (default: DIR/regimes for --workdir, "
                          "the table's directory for --results).")
KNOB = flags.DEFINE_string('knob', None, 'Temperature knob of the table (if it has no knob '
                           'column): ' + ', '.join(knobs.names()))
RULE = flags.DEFINE_enum('rule', None, list(regimes_lib.RULES), 'Regime rule (see '
                         'prunephase/regimes.py); default: the workdir\'s, else transition.')
MIN_DROP = flags.DEFINE_float('min_drop', None, 'transition rule: smallest LMC drop that is a '
                              'transition.')
NOISE_FACTOR = flags.DEFINE_float('noise_factor', None, 'transition rule: a drop must exceed '
                                  'this many of its standard errors (the II-A/II-B band: this '
                                  'many seed spreads).')
LMC_THRESHOLD = flags.DEFINE_float('lmc_threshold', None, 'threshold rule: Regime I below this '
                                   'mean LMC.')
CKA_TOLERANCE = flags.DEFINE_float('cka_tolerance', None, 'II-B within this of the column\'s '
                                   'CKA plateau.')
BOOTSTRAP = flags.DEFINE_integer('bootstrap', None, 'Draws (simulated replicate runs) for each '
                                 'label\'s confidence; 0: not computed.')
CONFIDENCE = flags.DEFINE_enum('confidence', None, list(confidence.ESTIMATORS), 'Confidence '
                               'estimator (see prunephase/confidence.py); default: the '
                               'workdir\'s, else replicate.')
MIN_CONFIDENCE = flags.DEFINE_float('min_confidence', None, 'Labels below this confidence are '
                                    'uncertain: marked, and no advice.')
DENSITY = flags.DEFINE_float('density', None, 'Target density (fraction kept).')
REPLICATE = flags.DEFINE_list(
    'replicate', None, 'Other runs of the same grid (workdirs or results tables, comma-'
    'separated): prunephase-regimes compares their labels, advice and picks with this run\'s; '
    'prunephase-advise --evaluate and prunephase-select score this run\'s answer on their test '
    'errors (out of sample).')

ERRORS = (cases.CaseError, tables.TableError)  # Bad input: one line, nothing written.


def load() -> dict[str, Any]:
  """The table named by --results or --workdir, labelled with the rule the flags give."""
  overrides = {'rule': RULE.value, 'min_drop': MIN_DROP.value,
               'noise_factor': NOISE_FACTOR.value, 'lmc_threshold': LMC_THRESHOLD.value,
               'cka_tolerance': CKA_TOLERANCE.value, 'bootstrap': BOOTSTRAP.value,
               'confidence': CONFIDENCE.value, 'min_confidence': MIN_CONFIDENCE.value}
  return cases.load_labelled(RESULTS.value, common.WORKDIR.value, KNOB.value, OUT.value,
                             overrides)


def load_runs() -> list[dict[str, Any]]:
  """The table of `load` and the runs of --replicate, labelled by the first one's rule."""
  return out_of_sample.load_replicates(load(), REPLICATE.value)
