"""Case study 1 (`prunephase-advise`): raise, lower or keep the temperature, and how often
that advice is right.

  loaded = cases.load_labelled(workdir='DIR')          # or results='FILE.csv', knob='epochs'
  advice.advise(loaded, temperature=80, density=0.05)  CS1 for one cell, with its evidence
  advice.evaluate(loaded)                              CS1 judged on every cell of the table

The rule is prunephase's own, stated in the README ("Deciding with the regime model"; the
paper's case-study code and numbers are not available): Regime I -> increase the temperature;
II-A -> decrease it; II-B -> keep it. A move is judged right when the temperature it goes to has
the lower test error (`advice_outcomes`); the same judgement on other runs of the grid is
`prunephase.out_of_sample`. An adaptive search's inferred cells (`loaded['inferred']`) and
labels below `min_confidence` get no advice. Bad input raises cases.CaseError with a one-line
message before anything is printed or written.
"""

from typing import Any

import numpy as np

from prunephase import cases
from prunephase import files
from prunephase import knobs
from prunephase import regimes as regimes_lib

ADVICE = {'I': 'increase', 'II-A': 'decrease', 'II-B': 'keep'}


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
  return '; '.join(f'{cases.count_text(left_out[reason])} {LEFT_OUT[reason]}' for reason in LEFT_OUT
                   if left_out.get(reason))


def evaluate(loaded: dict[str, Any]) -> dict[str, Any]:
  """CS1 evaluated on every cell of a labelled table: prints it, writes
  advise_evaluation.json; returns `evaluate_advice`'s result."""
  out = loaded['out']
  cases.make_out(out)
  test_error = loaded['labelled']['means']['test_error']
  result = evaluate_advice(test_error, loaded['labelled']['labels'],
                           uncertain=uncertain_cells(loaded),
                           not_measured=loaded.get('inferred'))
  lines = [[name, result[k]['cells'], result[k]['right'],
            cases.format_value(result[k]['accuracy'], 3),
            left_out_text(result[k]['left_out']) or '-']
           for k, name in EVALUATION_ROWS.items()]
  cases.print_table(f'CS1 evaluation on {loaded["source"]}: does the advised move lower test '
                    f'error? ({cases.count_text(test_error.size)})',
                    ['move', 'cells judged', 'right', 'accuracy', 'cells left out (why)'], lines,
                    left_last=True)
  print('right: the temperature a move goes to (one row hotter or colder, same density) has the '
        "lower mean test error; for keep, neither neighbour's is lower")
  advice = result['advice']
  if advice['cells']:
    print(f'advice accuracy {advice["accuracy"]:.3f} (right on {advice["right"]} of '
          f'{cases.count_text(advice["cells"])} with a move to judge)')
  elif not np.isfinite(test_error).any():
    print('advice accuracy n/a: the table has no test errors (no test_error column, or every '
          'field empty), so no move can be judged')
  else:
    print('advice accuracy n/a: no cell has a move to judge')
  for key, move in (('always_increase', 'always increase'),
                    ('always_decrease', 'always decrease')):
    baseline, why = result[key], left_out_text(result[key]['left_out'])
    print(f'baseline {move}: accuracy {cases.format_value(baseline["accuracy"], 3)} over '
          f'{cases.count_text(baseline["cells"])}' + (f' (left out: {why})' if why else ''))
  files.write_json(out / 'advise_evaluation.json', result)
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
    raise cases.CaseError('give --density and --temperature (a cell of the table), or --evaluate')
  try:
    t = temperatures.index(float(temperature))
    d = densities.index(float(density))
  except ValueError:
    raise cases.CaseError(f'no cell at temperature {temperature:g}, density {density:g}; the '
                          f'table has temperatures {temperatures} and densities '
                          f'{densities}') from None
  out = loaded['out']
  cases.make_out(out)
  label = labels[t, d]
  move = 'uncertain' if uncertain_cells(loaded)[t, d] else advice_for(label)
  inferred = loaded.get('inferred')
  if inferred is not None and inferred[t, d]:
    move = 'not_measured'
  entry = knobs.knob(knob)  # Its words: what raising and lowering the temperature mean.
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
        f'(confidence {cases.confidence_text(loaded, t, d)}) -> {words}')
  lines = []
  for i, value in enumerate(temperatures):
    lines.append([f'{value:g}' + (' <' if i == t else ''), labels[i, d] or 'n/a',
                  cases.format_value(means['lmc'][i, d]),
                  cases.format_value(means['cka_softmax'][i, d]),
                  cases.format_value(means['test_error'][i, d])])
  cases.print_table(f'evidence: the density-{densities[d]:g} column (hottest first)',
                    [knob, 'regime', 'lmc', 'cka', 'test_error'], lines)
  for field, name in (('lmc', 'lmc'), ('cka_softmax', 'cka'), ('test_error', 'test_error')):
    if not np.isfinite(means[field][:, d]).all():
      why = (f'the table has no {field} values' if not np.isfinite(means[field]).any()
             else 'an empty field or a diverged member in the cell')
      print(f'{name} n/a: {why}')
  files.write_json(out / 'advise.json', evidence)
  print(f'wrote {out / "advise.json"}')
  return evidence
