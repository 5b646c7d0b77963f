"""The paper's three case studies as plain functions, on any results table.

  loaded = cases.load_labelled(results='FILE.csv', knob='epochs')   # or workdir='DIR'
  cases.regimes(loaded, compare='LABELS.csv')        label any table, plot it, score it
  cases.advise(loaded, temperature=80, density=0.05) CS1: which way to move the temperature
  cases.evaluate(loaded)                             CS1 evaluated on every cell
  cases.select(loaded, density=0.05)                 CS2 (CS3 on a SAM-rho sweep)

Each prints what its command (`prunephase-regimes`, `-advise`, `-select`; prunephase.cli) prints
and writes CSV/JSON into `loaded['out']` (against other runs of the grid: prunephase.out_of_sample); bad input raises CaseError or tables.TableError with a
one-line message before anything is printed or written.

The rules are prunephase's own, stated in the README ("Deciding with the regime model"): the
paper's case-study code and numbers are not available. CS1: Regime I -> increase the
temperature; II-A -> decrease it; II-B -> keep it.
CS2: among cells not in Regime I pick the highest CKA; if every candidate is in Regime I, the
highest LMC.

A workdir of an adaptive search (`search.mode = 'adaptive'`) is labelled as its report is
(`adaptive_search.final_labels`); its inferred cells (`loaded['inferred']`) are never evidence:
CS1 gives them no advice ('not measured'), CS2 picks among the measured cells only.
"""

import csv
import pathlib
from typing import Any

import ml_collections
import numpy as np

from prunephase import adaptive_search
from prunephase import regimes as regimes_lib
from prunephase import registry
from prunephase import report_files
from prunephase import tables
from prunephase import workdir as workdir_lib
from prunephase.config import names

# Rule parameters a caller may override (the flags of the same names).
RULE_FIELDS = ('rule', 'min_drop', 'noise_factor', 'lmc_threshold', 'cka_tolerance', 'bootstrap',
               'confidence', 'min_confidence')
ADVICE = {'I': 'increase', 'II-A': 'decrease', 'II-B': 'keep'}


class CaseError(ValueError):
  """Bad input to a case study; one line."""


def regime_config(workdir: str | None = None,
                  overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
  """Rule parameters: `overrides` (None values ignored) over the workdir's config over the
  defaults (regimes.DEFAULTS)."""
  config = ml_collections.ConfigDict(regimes_lib.DEFAULTS)
  if workdir:
    path = pathlib.Path(workdir) / workdir_lib.CONFIG_FILE
    try:
      stored = workdir_lib.read_json(path)
    except (OSError, ValueError) as error:
      raise CaseError(f'unreadable {path}: {error}') from None
    config.update(stored.get('regimes', {}))
  for name, value in (overrides or {}).items():
    if name not in RULE_FIELDS:
      raise CaseError(f'unknown rule parameter {name!r}; choose from {", ".join(RULE_FIELDS)}')
    if value is not None:
      config[name] = value
  return config


def load_labelled(results: str | None = None, workdir: str | None = None,
                  knob: str | None = None, out: str | None = None,
                  overrides: dict[str, Any] | None = None) -> dict[str, Any]:
  """Reads a table (`results` CSV, or a finished sweep's `workdir`) and labels its cells.

  Args:
    results: a results table (see prunephase.tables); give this or `workdir`.
    workdir: a finished sweep (its results.csv and config.json: knob and rule parameters).
    knob: the temperature knob, for a table without a knob column.
    out: where outputs go (default: DIR/regimes for a workdir, the table's directory).
    overrides: rule parameters (RULE_FIELDS) over the workdir's and the defaults.

  Returns:
    rows, knob, temperatures (hottest first), densities, labelled (regimes.label_table's
    means, labels and confidence, each (T, D)), config (the rule), out, source (the table),
    inferred ((T, D) booleans: labels an adaptive search inferred; all False otherwise).
  """
  if bool(results) == bool(workdir):
    raise CaseError('give exactly one of --results=FILE.csv or --workdir=DIR')
  path = pathlib.Path(results or pathlib.Path(workdir) / 'results.csv')
  if workdir and not (pathlib.Path(workdir) / workdir_lib.CONFIG_FILE).exists():
    raise CaseError(f'{workdir} is not a prunephase workdir (no config.json)')
  workdir_lib.read_knob_record(path.parent)  # A user's knob, as the sweep recorded it.
  rows = tables.read_table(path)
  knob, temperatures, densities = tables.axes(rows, knob)
  config = regime_config(workdir, overrides)
  searched = searched_axes(workdir) if workdir else None
  if searched is not None:  # The grid, not only its measured cells.
    temperatures, densities = searched
  rule = regimes_lib.RegimeRule.from_config(config)
  labelled = regimes_lib.label_table(rows, temperatures, densities, rule,
                                     int(config.bootstrap), int(config.seed),
                                     str(config.confidence))
  inferred = np.zeros(labelled['labels'].shape, bool)
  if searched is not None:
    with np.errstate(invalid='ignore', divide='ignore'):
      labelled['labels'], inferred = adaptive_search.final_labels(
          temperatures, densities, [dict(r) for r in rows], rule)
  # Never overwrite a sweep's own report: default to DIR/regimes for a workdir.
  default_out = pathlib.Path(workdir) / 'regimes' if workdir else path.parent
  return {'rows': rows, 'knob': knob, 'temperatures': temperatures, 'densities': densities,
          'labelled': labelled, 'config': config, 'out': pathlib.Path(out or default_out),
          'source': path, 'inferred': inferred, 'searched': searched is not None}


def searched_axes(workdir: str) -> tuple[list[float], list[float]] | None:
  """(temperatures hottest first, densities) of a workdir whose config searched adaptively;
  None for a grid run (or a config.json without the fields)."""
  try:
    stored = workdir_lib.read_json(pathlib.Path(workdir) / workdir_lib.CONFIG_FILE)
  except (OSError, ValueError):
    return None
  if (stored.get('search') or {}).get('mode') != 'adaptive':
    return None
  knob = stored['temperature']['knob']
  return (names.hot_to_cold(knob, [float(t) for t in stored['temperature']['grid']]),
          [float(d) for d in stored['prune']['densities']])


def _search_of(loaded: dict[str, Any]) -> dict[str, Any] | None:
  """`report_files.write_report`'s `search` for an adaptive search's table (else None)."""
  inferred = loaded.get('inferred')
  if inferred is None or not searched_axes_known(loaded):
    return None
  return {'labels': loaded['labelled']['labels'], 'inferred': inferred}


def searched_axes_known(loaded: dict[str, Any]) -> bool:
  """Whether `loaded` is a workdir of an adaptive search (its labels: the search's)."""
  return bool(loaded.get('searched'))


def evidence_labels(loaded: dict[str, Any]) -> np.ndarray:
  """(T, D) labels that may serve as evidence: an adaptive search's inferred cells blanked."""
  labels = loaded['labelled']['labels']
  inferred = loaded.get('inferred')
  return labels if inferred is None else np.where(inferred, regimes_lib.NO_LABEL, labels)


def make_out(out: pathlib.Path) -> None:
  """Creates the output directory; CaseError naming it (and why) if that is impossible."""
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise CaseError(f'cannot create the output directory {out}: '
                    f'{error.strerror or error}') from None


def print_table(title: str, header: list[str], lines: list[list[Any]],
                 left_last: bool = False) -> None:
  """Prints a right-aligned table; `left_last` left-aligns the last column (free text)."""
  widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]

  def join(line):
    cells = [str(x).rjust(w) for x, w in zip(line, widths)]
    if left_last:
      cells[-1] = str(line[-1]).ljust(widths[-1])
    return '  '.join(cells).rstrip()

  print(f'\n{title}')
  print(join(header))
  for line in lines:
    print(join(line))


def format_value(value: float, digits: int = 4) -> str:
  """A number for a printed table; 'n/a' for NaN (each caller says why a value may be
  missing)."""
  return 'n/a' if not np.isfinite(value) else f'{value:.{digits}f}'


def count_text(count: int, what: str = 'cell', plural: str | None = None) -> str:
  """'1 cell', '2 cells' (or `what` and `plural`, e.g. 'density', 'densities')."""
  return f'{count} {what if count == 1 else plural or what + "s"}'


def quiet_nanmean(values) -> float:
  """Mean of the finite values; NaN when there are none (without NumPy's empty-mean
  warning)."""
  values = np.asarray(values, float)
  finite = values[np.isfinite(values)]
  return float(finite.mean()) if finite.size else float('nan')


def _has_dense_seeds(rows: list[dict[str, Any]]) -> bool:
  """Whether the table names dense seeds (the units the bootstrap resamples; else rows)."""
  return any(np.isfinite(float(row.get('dense_seed', np.nan))) for row in rows)


def confidence_text(loaded: dict[str, Any], t: int, d: int) -> str:
  """A cell's label confidence for printing, or 'n/a: ' and the reason it has none.

  The confidence is the agreement over bootstrap resamples of the cell's dense seeds
  (regimes.bootstrap_confidence), so an unlabelled cell has none, neither has a cell with
  a single dense seed (a table without a dense_seed column: a single row) to resample, and no
  cell has one when the bootstrap is off (0 resamples).
  """
  labelled = loaded['labelled']
  value = labelled['confidence'][t, d]
  if np.isfinite(value):
    return f'{value:.2f}'
  if labelled['labels'][t, d] == regimes_lib.NO_LABEL:
    return 'n/a: unlabelled cell'
  if int(loaded['config'].bootstrap) <= 0:
    return 'n/a: not computed, bootstrap 0'
  if labelled['num_units'][t, d] < 2:
    if _has_dense_seeds(loaded['rows']):
      return 'n/a: one dense seed, nothing to bootstrap'
    return 'n/a: one seed pair and no dense_seed column, nothing to bootstrap'
  return 'n/a'


# ---------------------------------------------------------------------------- regimes


def read_reference(path: str) -> list[dict[str, Any]]:
  """Rows of a labels CSV (temperature, density, regime), checked; CaseError if unusable."""
  if not pathlib.Path(path).is_file():
    raise CaseError(f'--compare: {path}: no such file')
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    missing = {'temperature', 'density', 'regime'} - set(reader.fieldnames or ())
    if missing:
      raise CaseError(f'--compare: {path}: missing column(s) {", ".join(sorted(missing))}')
    rows = list(reader)
  for line, row in enumerate(rows, start=2):
    for column in ('temperature', 'density'):
      try:
        float(row[column])
      except (TypeError, ValueError):
        raise CaseError(f'--compare: {path} line {line}: column {column}: {row[column]!r} is '
                        'not a number') from None
  if not any(row['regime'].strip() in regimes_lib.REGIMES for row in rows):
    raise CaseError(f'--compare: {path}: no row has a regime I, II-A or II-B')
  return rows


def regimes(loaded: dict[str, Any], compare: str | None = None) -> dict[str, Any]:
  """Writes the labelled table's report (regimes.csv/json, findings.json, phase_diagram.png)
  and prints the label grid; with `compare` (a labels CSV) also the agreement with it.

  Returns:
    The report summary (report_files.write_report's), with 'agreement' when compared.
  """
  out = loaded['out']
  reference = read_reference(compare) if compare else None  # Fails before anything is written.
  make_out(out)
  summary = report_files.write_report(out, loaded['rows'], loaded['knob'], loaded['temperatures'],
                                      loaded['densities'], loaded['config'],
                                      cells_name='regimes.csv', search=_search_of(loaded))
  rule = regimes_lib.RegimeRule.from_config(loaded['config'])
  print(f'regimes of {loaded["source"]} ({rule.describe()}; prunephase\'s rule, not the '
        'paper\'s; parentheses: confidence below '
        f'{loaded["config"].min_confidence:g})')
  print(report_files.label_text_grid(loaded['temperatures'], loaded['densities'], summary['labels'],
                                     summary['confidence'], loaded['knob'],
                                     float(loaded['config'].min_confidence)))
  counts = summary['counts']
  unlabelled = ', '.join(f'{loaded["knob"]}={cell["temperature"]:g} density '
                         f'{cell["density"]:g}' for cell in summary['unlabelled'])
  print(f'cells per regime: I={counts["I"]} II-A={counts["II-A"]} II-B={counts["II-B"]} '
        f'unlabelled={counts["none"]} (of {count_text(summary["num_cells"])})'
        + (f'; unlabelled (a NaN LMC or CKA, or a diverged member): {unlabelled}'
           if unlabelled else ''))
  labels, confidence = summary['labels'], summary['confidence']
  no_confidence = int(((labels != regimes_lib.NO_LABEL) & ~np.isfinite(confidence)).sum())
  if no_confidence:  # The bootstrap is off, or cells with a single unit (confidence_text).
    units = 'dense seed' if _has_dense_seeds(loaded['rows']) else 'seed pair'
    reason = ('not computed: bootstrap 0' if int(loaded['config'].bootstrap) <= 0
              else f'one {units} each: the bootstrap has nothing to resample')
    print(f'confidence n/a in {no_confidence} of {labels.size - counts["none"]} labelled '
          f'cells ({reason})')
  written = 'regimes.csv, regimes.json, findings.json, phase_diagram.png'
  if reference is not None:
    result = regimes_lib.agreement(summary['labels'], loaded['temperatures'],
                                   loaded['densities'], reference)
    print(f'agreement with {compare}: {result["agree"]}/{result["matched"]} matched '
          f'cells ({100 * result["fraction"]:.1f}%)')
    for miss in result['disagreements']:
      print(f'  {loaded["knob"]}={miss["temperature"]:g} density {miss["density"]:g}: '
            f'{miss["ours"] or "n/a"} here, {miss["theirs"]} there')
    workdir_lib.write_json(out / 'agreement.json', {'labels': compare, **result})
    written += ', agreement.json'
    summary = {**summary, 'agreement': result}
  print(f'wrote {out}/: {written}')
  return summary


# ---------------------------------------------------------------------------- advise


def advice_for(label: str) -> str:
  """CS1 rule: I -> increase temperature, II-A -> decrease, II-B -> keep; '' -> none."""
  return ADVICE.get(label, 'none')


# A move counts as significant when its change in test error exceeds this many standard errors
# of the difference of the two cells' means (advice_outcomes' `standard_error`).
SIGNIFICANCE_Z = 2.0
# Why evaluate_advice leaves a cell out of a move's count: reason -> the printed words.
LEFT_OUT = {
    'unlabelled': 'unlabelled, so no advice',
    'not_measured': 'not measured (label inferred by the adaptive search), so no advice',
    'uncertain': 'uncertain (confidence below regimes.min_confidence), so no advice',
    'hottest_row': 'in the hottest row, no hotter temperature to move to',
    'coldest_row': 'in the coldest row, no colder temperature to move to',
    'one_row': 'with no neighbour, the grid has one temperature',
    'no_test_error': 'without a test error',
    'neighbour_without_test_error': 'whose neighbour has no test error',
    'no_standard_error': 'without a standard error (one dense seed here or at the neighbour)',
    'not_significant': f'whose change in test error is within {SIGNIFICANCE_Z:g} standard errors',
}
EVALUATION_ROWS = {  # evaluate_advice's keys in print order -> the printed name.
    'increase': 'increase (Regime I)', 'decrease': 'decrease (Regime II-A)',
    'keep': 'keep (Regime II-B)', 'advice': 'the advice (all regimes)',
    'always_increase': 'always increase (baseline)',
    'always_decrease': 'always decrease (baseline)'}
EVALUATION_KEYS = ('increase', 'decrease', 'keep', 'always_increase', 'always_decrease',
                   'advice')


def advice_outcomes(test_error: np.ndarray, labels: np.ndarray,
                    standard_error: np.ndarray | None = None,
                    uncertain: np.ndarray | None = None,
                    not_measured: np.ndarray | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, int]]]:
  """Whether each cell's advised move (and each baseline's) lowers the test error.

  Rows are hottest first, so 'increase' moves to row t-1 and 'decrease' to row t+1. An
  'increase'/'decrease' is right when that neighbour's test error is lower than the cell's;
  'keep' is right when no neighbour's is lower (it is compared with its lower neighbour).
  The labels and the test errors may come from different runs of the grid (out of sample).

  Args:
    test_error: (T, D) cell means, rows hottest first.
    labels: (T, D) regime labels ('' = unlabelled).
    standard_error: optional (T, D) standard errors of the cell means (std over dense seeds /
      sqrt(their number)). When given, only significant moves are judged: those whose change
      in test error exceeds SIGNIFICANCE_Z x sqrt(se_cell^2 + se_neighbour^2).
    uncertain: optional (T, D) booleans: labels too unsure to advise on (`uncertain_cells`);
      they get no advice (the baselines still judge them).
    not_measured: optional (T, D) booleans: labels an adaptive search inferred; no advice.

  Returns:
    (outcomes, left_out): outcomes[key] is a (T, D) float array, 1 where the move lowered the
    test error, 0 where it did not, NaN where the cell was not judged; left_out[key] counts the
    cells not judged by their first reason (a key of LEFT_OUT). Keys: EVALUATION_KEYS
    ('advice' is each cell's own regime's move).
  """
  outcomes = {k: np.full(labels.shape, np.nan) for k in EVALUATION_KEYS}
  left_out = {k: {} for k in EVALUATION_KEYS}
  rows = test_error.shape[0]

  def noise_reason(t, d, other):
    """Why the move from row t to row `other` is not judged on significance, or None."""
    if standard_error is None:
      return None
    margin = np.hypot(standard_error[t, d], standard_error[other, d])
    if not np.isfinite(margin):
      return 'no_standard_error'
    change = test_error[other, d] - test_error[t, d]
    return None if abs(change) > SIGNIFICANCE_Z * margin else 'not_significant'

  def judge(key, t, d, reasons, other, is_right):
    """Records the outcome of a move, or counts the first reason it cannot be judged."""
    reason = next((name for name, applies in reasons if applies), None)
    if reason is None:  # `other` is a real row only when no reason above applies.
      reason = noise_reason(t, d, other)
    if reason is None:
      outcomes[key][t, d] = float(is_right())
    else:
      left_out[key][reason] = left_out[key].get(reason, 0) + 1
    return reason

  for (t, d), label in np.ndenumerate(labels):
    here = test_error[t, d]
    hotter = test_error[t - 1, d] if t > 0 else np.nan
    colder = test_error[t + 1, d] if t + 1 < rows else np.nan
    no_here = ('no_test_error', not np.isfinite(here))
    up = [('hottest_row', t == 0), no_here,
          ('neighbour_without_test_error', not np.isfinite(hotter))]
    down = [('coldest_row', t + 1 == rows), no_here,
            ('neighbour_without_test_error', not np.isfinite(colder))]
    judge('always_increase', t, d, up, t - 1, lambda: hotter < here)
    judge('always_decrease', t, d, down, t + 1, lambda: colder < here)
    move = advice_for(label)
    if not_measured is not None and not_measured[t, d]:
      reason = 'not_measured'
    elif move == 'none':
      reason = 'unlabelled'
    elif uncertain is not None and uncertain[t, d]:
      reason = 'uncertain'
    elif move == 'increase':
      reason = judge('increase', t, d, up, t - 1, lambda: hotter < here)
    elif move == 'decrease':
      reason = judge('decrease', t, d, down, t + 1, lambda: colder < here)
    else:
      # Keeping forgoes the move to the lower neighbour (never one without a test error).
      lower = t + 1 if np.isfinite(colder) and not colder > hotter else t - 1
      reason = judge('keep', t, d, [('one_row', rows == 1), no_here,
                                    ('neighbour_without_test_error',
                                     not (np.isfinite(hotter) or np.isfinite(colder)))],
                     lower, lambda: not (np.nanmin([hotter, colder]) < here))
    if reason:
      left_out['advice'][reason] = left_out['advice'].get(reason, 0) + 1
    else:
      outcomes['advice'][t, d] = outcomes[move][t, d]
  return outcomes, left_out


def evaluate_advice(test_error: np.ndarray, labels: np.ndarray,
                    standard_error: np.ndarray | None = None,
                    uncertain: np.ndarray | None = None,
                    not_measured: np.ndarray | None = None) -> dict[str, Any]:
  """How often the advised direction lowers test error, over cells with a neighbour.

  The rules are advice_outcomes'; baselines: always increase, always decrease.

  Args:
    test_error: (T, D) cell means, rows hottest first.
    labels: (T, D) regime labels.
    standard_error: optional (T, D); when given, only significant moves are judged (see
      advice_outcomes).
    uncertain: optional (T, D) booleans: cells that get no advice (advice_outcomes).
    not_measured: optional (T, D) booleans: inferred labels, no advice (advice_outcomes).

  Returns:
    For each of 'increase', 'decrease', 'keep' (the cells of regime I, II-A, II-B),
    'always_increase', 'always_decrease' (every cell) and 'advice' (every cell, its regime's
    move): 'right' and 'cells' (how many of the cells judged the move lowered the test
    error), 'accuracy' and 'left_out' (the cells that could not be judged, counted by their
    first reason: a key of `LEFT_OUT`).
  """
  outcomes, left_out = advice_outcomes(test_error, labels, standard_error, uncertain,
                                       not_measured)
  result = {}
  for k in EVALUATION_KEYS:
    judged = outcomes[k][np.isfinite(outcomes[k])]
    result[k] = {'right': int(judged.sum()), 'cells': int(judged.size),
                 'accuracy': float(judged.mean()) if judged.size else float('nan'),
                 'left_out': left_out[k]}
  return result


def uncertain_cells(loaded: dict[str, Any]) -> np.ndarray:
  """(T, D) booleans: labelled cells whose confidence is below `min_confidence`. A NaN
  confidence (not computed, or one dense seed) is not uncertain: nothing was estimated."""
  labelled = loaded['labelled']
  confidence = np.asarray(labelled['confidence'], float)
  with np.errstate(invalid='ignore'):
    low = confidence < float(loaded['config'].min_confidence)
  return low & (labelled['labels'] != regimes_lib.NO_LABEL)


def left_out_text(left_out: dict[str, int]) -> str:
  """E.g. '2 cells in the hottest row, no hotter ...; 1 cell without a test error'; '' for
  none."""
  return '; '.join(f'{count_text(left_out[reason])} {LEFT_OUT[reason]}' for reason in LEFT_OUT
                   if left_out.get(reason))


def evaluate(loaded: dict[str, Any]) -> dict[str, Any]:
  """CS1 evaluated on every cell of a labelled table: prints it, writes
  advise_evaluation.json; returns `evaluate_advice`'s result."""
  out = loaded['out']
  make_out(out)
  test_error = loaded['labelled']['means']['test_error']
  result = evaluate_advice(test_error, loaded['labelled']['labels'],
                           uncertain=uncertain_cells(loaded),
                           not_measured=loaded.get('inferred'))
  lines = [[name, result[k]['cells'], result[k]['right'], format_value(result[k]['accuracy'], 3),
            left_out_text(result[k]['left_out']) or '-']
           for k, name in EVALUATION_ROWS.items()]
  print_table(f'CS1 evaluation on {loaded["source"]}: does the advised move lower test error?'
               f' ({count_text(test_error.size)})',
               ['move', 'cells judged', 'right', 'accuracy', 'cells left out (why)'], lines,
               left_last=True)
  print('right: the temperature a move goes to (one row hotter or colder, same density) has the '
        "lower mean test error; for keep, neither neighbour's is lower")
  advice = result['advice']
  if advice['cells']:
    print(f'advice accuracy {advice["accuracy"]:.3f} (right on {advice["right"]} of '
          f'{count_text(advice["cells"])} with a move to judge)')
  elif not np.isfinite(test_error).any():
    print('advice accuracy n/a: the table has no test errors (no test_error column, or every '
          'field empty), so no move can be judged')
  else:
    print('advice accuracy n/a: no cell has a move to judge')
  for key, move in (('always_increase', 'always increase'),
                    ('always_decrease', 'always decrease')):
    baseline, why = result[key], left_out_text(result[key]['left_out'])
    print(f'baseline {move}: accuracy {format_value(baseline["accuracy"], 3)} over '
          f'{count_text(baseline["cells"])}' + (f' (left out: {why})' if why else ''))
  workdir_lib.write_json(out / 'advise_evaluation.json', result)
  print(f'wrote {out / "advise_evaluation.json"}')
  return result


def advise(loaded: dict[str, Any], temperature: float | None,
           density: float | None) -> dict[str, Any]:
  """CS1 for one cell: prints the advice and the evidence (the cell's density column), writes
  advise.json and returns the evidence."""
  labelled, knob = loaded['labelled'], loaded['knob']
  temperatures, densities = loaded['temperatures'], loaded['densities']
  means, labels = labelled['means'], labelled['labels']
  if density is None or temperature is None:
    raise CaseError('give --density and --temperature (a cell of the table), or --evaluate')
  try:
    t = temperatures.index(float(temperature))
    d = densities.index(float(density))
  except ValueError:
    raise CaseError(f'no cell at temperature {temperature:g}, density {density:g}; the table '
                    f'has temperatures {temperatures} and densities {densities}') from None
  out = loaded['out']
  make_out(out)
  label = labels[t, d]
  move = 'uncertain' if uncertain_cells(loaded)[t, d] else advice_for(label)
  inferred = loaded.get('inferred')
  if inferred is not None and inferred[t, d]:
    move = 'not_measured'
  entry = registry.knob(knob)  # Its words: what raising and lowering the temperature mean.
  up, down = entry.increase, entry.decrease
  words = {'increase': f'increase the temperature: {up}',
           'decrease': f'decrease the temperature: {down}',
           'keep': 'keep the temperature',
           'uncertain': ('uncertain: no advice (an independent run would likely label this '
                         'cell otherwise; raise dense seeds, e.g. seeds.adaptive=True)'),
           'none': 'no advice (unlabelled: a NaN LMC or CKA, or a diverged member)',
           'not_measured': ('not measured: no advice (the label is inferred from measured '
                            'neighbours by the adaptive search; measure the cell for advice)')
           }[move]
  column_cka = means['cka_softmax'][:, d]
  evidence = {
      'temperature': temperatures[t], 'density': densities[d], 'regime': label,
      'confidence': labelled['confidence'][t, d], 'advice': move,
      'inferred': bool(inferred[t, d]) if inferred is not None else False,
      'lmc': means['lmc'][t, d], 'cka_softmax': means['cka_softmax'][t, d],
      'column_max_cka': (float(np.nanmax(column_cka)) if np.isfinite(column_cka).any()
                         else float('nan')),
      'test_error': means['test_error'][t, d],
      'rule': regimes_lib.RegimeRule.from_config(loaded['config']).describe()}
  print(f'{knob}={temperatures[t]:g}, density {densities[d]:g}: regime {label or "n/a"} '
        f'(confidence {confidence_text(loaded, t, d)}) -> {words}')
  lines = []
  for i, value in enumerate(temperatures):
    lines.append([f'{value:g}' + (' <' if i == t else ''), labels[i, d] or 'n/a',
                  format_value(means['lmc'][i, d]), format_value(means['cka_softmax'][i, d]),
                  format_value(means['test_error'][i, d])])
  print_table(f'evidence: the density-{densities[d]:g} column (hottest first)',
               [knob, 'regime', 'lmc', 'cka', 'test_error'], lines)
  for field, name in (('lmc', 'lmc'), ('cka_softmax', 'cka'), ('test_error', 'test_error')):
    if not np.isfinite(means[field][:, d]).all():
      why = (f'the table has no {field} values' if not np.isfinite(means[field]).any()
             else 'an empty field or a diverged member in the cell')
      print(f'{name} n/a: {why}')
  workdir_lib.write_json(out / 'advise.json', evidence)
  print(f'wrote {out / "advise.json"}')
  return evidence


# ---------------------------------------------------------------------------- select


def select_column(knob: str, temperatures, column: dict[str, np.ndarray],
                  labels: np.ndarray) -> dict[str, int | None]:
  """Index of the temperature each method picks in one density column.

  Args:
    knob: the temperature knob.
    temperatures: hottest first.
    column: (T,) arrays 'lmc', 'cka_softmax', 'test_error', 'dense_test_error'.
    labels: (T,) regime labels.
  """
  def best(values, lowest=False):
    values = np.asarray(values, float)
    if not np.isfinite(values).any():
      return None
    return int(np.nanargmin(values) if lowest else np.nanargmax(values))

  candidates = np.array([label not in ('I', regimes_lib.NO_LABEL) for label in labels])
  if candidates.any():
    rule = best(np.where(candidates, column['cka_softmax'], np.nan))
  else:
    rule = best(column['lmc'])
  picks = {'three-regime rule': rule,
           'best dense test accuracy': best(column['dense_test_error'], lowest=True),
           'last checkpoint / coldest': len(temperatures) - 1,
           'LMC only': best(column['lmc']),
           'CKA only': best(column['cka_softmax']),
           'oracle': best(column['test_error'], lowest=True)}
  for name, value in registry.knob(knob).baselines:  # Fixed values, e.g. plain SGD for SAM.
    picks[name] = temperatures.index(value) if value in temperatures else None
  return picks


# What a method of select_column needs in a density column to pick a temperature.
SELECT_NEEDS = {'three-regime rule': ('lmc', 'cka_softmax'),
                'best dense test accuracy': ('dense_test_error',), 'LMC only': ('lmc',),
                'CKA only': ('cka_softmax',), 'oracle': ('test_error',)}


def _explain_unpicked(loaded: dict[str, Any], unpicked: dict[str, int],
                      num_densities: int) -> None:
  """Prints why a method picked nothing (n/a) at some densities, and why gaps are n/a."""
  means, knob = loaded['labelled']['means'], loaded['knob']
  for method, count in unpicked.items():
    if method in SELECT_NEEDS:
      absent = [f for f in SELECT_NEEDS[method] if not np.isfinite(means[f]).any()]
      why = (f'the table has no {" or ".join(absent)} values' if absent else
             f'no {" or ".join(SELECT_NEEDS[method])} in those density columns')
    else:  # A knob's baseline (`registry.Knob.baselines`): a fixed value.
      why = f'that {knob} value is not in the grid'
    print(f'{method}: no pick at {count} of '
          f'{count_text(num_densities, "density", "densities")} ({why})')
  if not np.isfinite(means['test_error']).any():
    print('test_error and gap_to_oracle n/a: the table has no test_error values, so no pick '
          'can be scored')


def chosen_densities(densities, density: float | None) -> list[int]:
  """Indices of the densities a CS2 command reports: all, or the one equal to `density`
  (CaseError naming the table's densities when it has none)."""
  chosen = [d for d in range(len(densities))
            if density is None or np.isclose(densities[d], density)]
  if not chosen:
    raise CaseError(f'no density {density:g} in the table; it has {densities}')
  return chosen


def select(loaded: dict[str, Any], density: float | None = None) -> list[dict[str, Any]]:
  """CS2 (CS3 on a SAM-rho sweep) per density (all, or `density`), against baselines: prints
  one table per density and the mean over them, writes select.csv and select.json and returns
  the records (one per density and method)."""
  labelled, knob = loaded['labelled'], loaded['knob']
  temperatures, densities = loaded['temperatures'], loaded['densities']
  means, labels = labelled['means'], evidence_labels(loaded)  # Measured cells only.
  chosen = chosen_densities(densities, density)
  out = loaded['out']
  make_out(out)
  records, gaps, unpicked = [], {}, {}
  for d in chosen:
    column = {f: means[f][:, d] for f in ('lmc', 'cka_softmax', 'test_error',
                                          'dense_test_error')}
    picks = select_column(knob, temperatures, column, labels[:, d])
    oracle = column['test_error'][picks['oracle']] if picks['oracle'] is not None else np.nan
    lines = []
    for method, index in picks.items():
      if index is None:
        unpicked[method] = unpicked.get(method, 0) + 1
      error = column['test_error'][index] if index is not None else np.nan
      gap = error - oracle
      gaps.setdefault(method, []).append(gap)
      lines.append([method, 'n/a' if index is None else f'{temperatures[index]:g}',
                    labels[index, d] if index is not None else '', format_value(error), format_value(gap)])
      records.append({'density': densities[d], 'method': method,
                      'temperature': None if index is None else temperatures[index],
                      'regime': '' if index is None else labels[index, d],
                      'test_error': error, 'gap_to_oracle': gap})
    print_table(f'density {densities[d]:g}: which {knob} to prune from',
                 ['method', knob, 'regime', 'test_error', 'gap_to_oracle'], lines)
  summary = []
  for method, values in gaps.items():
    values = np.asarray(values, float)
    judged = np.isfinite(values)
    oracle_picks = int(np.sum(values[judged] <= 1e-12))
    summary.append([method, format_value(quiet_nanmean(values)),
                    f'{oracle_picks} of {count_text(int(judged.sum()), "density", "densities")}'
                    if judged.any() else 'n/a'])
  print_table(f'mean over densities ({count_text(len(chosen), "density", "densities")}; a method '
               'without a scored pick at a density is left out there)',
               ['method', 'mean gap to oracle', 'picks the oracle'], summary)
  _explain_unpicked(loaded, unpicked, len(chosen))
  workdir_lib.write_csv(out / 'select.csv', records,
                        ['density', 'method', 'temperature', 'regime', 'test_error',
                         'gap_to_oracle'])
  workdir_lib.write_json(out / 'select.json', {
      'knob': knob, 'records': records,
      'rule': 'avoid Regime I, then highest CKA (all in I: highest LMC); prunephase\'s rule',
      'mean_gap': {m: quiet_nanmean(g) for m, g in gaps.items()}})
  print(f'wrote {out / "select.csv"}, select.json')
  return records
