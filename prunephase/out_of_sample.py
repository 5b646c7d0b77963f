"""The case studies against other runs of the same grid: does the answer replicate?

  runs = out_of_sample.load_replicates(loaded, ['OTHER'])   other runs of the same grid
  out_of_sample.replicate(runs)                   do labels, advice and picks replicate?
  out_of_sample.evaluate_out_of_sample(runs)      CS1 judged on the other runs' test errors
  out_of_sample.select_out_of_sample(runs)        CS2 scored on the other runs' test errors

`loaded` is `cases.load_labelled(...)` of the first run; the commands are `prunephase-regimes
--replicate`, `prunephase-advise --evaluate --replicate` and `prunephase-select --replicate`.
The statistics (agreement, reliability, bootstrap intervals) are `prunephase.replication`; the
case-study rules are `prunephase.advice` (CS1) and `prunephase.selection` (CS2). Each function
prints what its command prints and writes JSON into the first run's `out`; bad input raises
cases.CaseError with a one-line message.
"""

import pathlib
from typing import Any

import numpy as np

from prunephase import advice as advice_lib  # `advice`: a local name here.
from prunephase import cases
from prunephase import files
from prunephase import regimes as regimes_lib
from prunephase import replication
from prunephase import selection
from prunephase import tables


def _table_knob(rows: list[dict[str, Any]]) -> str | None:
  """The one value of a table's knob column, or None (no column, or several values)."""
  knobs = {row.get('knob') for row in rows if row.get('knob')}
  return knobs.pop() if len(knobs) == 1 else None


def load_replicates(loaded: dict[str, Any], paths: list[str]) -> list[dict[str, Any]]:
  """The first run and the other runs of its grid at `paths`, all labelled by one rule.

  Args:
    loaded: the first run (cases.load_labelled's); its rule parameters label every run, so that
      only the data differ.
    paths: other runs: a finished sweep's directory (results.csv, config.json) or a results
      table; a table without a knob column takes the first run's knob.

  Returns:
    [loaded, *the other runs] (cases.load_labelled's dicts).

  Raises:
    cases.CaseError: a path is neither, or a run's grid (knob, temperatures, densities) differs
      from the first's; the message names the difference.
  """
  overrides = {name: loaded['config'][name] for name in cases.RULE_FIELDS}
  runs = [loaded]
  for path in paths:
    where = pathlib.Path(path)
    if where.is_dir():
      table, source = where / 'results.csv', {'workdir': str(where)}
    elif where.is_file():
      table, source = where, {'results': str(where)}
    else:
      raise cases.CaseError(f'--replicate: {path}: no such workdir or results table')
    knob = _table_knob(tables.read_table(table)) or loaded['knob']
    run = cases.load_labelled(**source, knob=knob, out=str(loaded['out']), overrides=overrides)
    difference = replication.grid_difference(loaded, run,
                                             (str(loaded['source']), str(run['source'])))
    if difference:
      raise cases.CaseError(f'--replicate: grid mismatch between {loaded["source"]} and '
                      f'{run["source"]}: {difference}')
    runs.append(run)
  return runs


def column_means(means: dict[str, np.ndarray], d: int) -> dict[str, np.ndarray]:
  """The (T,) arrays selection.select_column reads, of density column d."""
  return {f: means[f][:, d] for f in ('lmc', 'cka_softmax', 'test_error', 'dense_test_error')}


def _rule_picks(run: dict[str, Any]) -> np.ndarray:
  """(D,) the temperature index CS2's three-regime rule picks per density; -1 for none."""
  labelled = run['labelled']
  picks = [selection.select_column(run['knob'], run['temperatures'],
                                   column_means(labelled['means'], d),
                                   labelled['labels'][:, d])['three-regime rule']
           for d in range(len(run['densities']))]
  return np.array([-1 if pick is None else pick for pick in picks])


def _runs_header(runs: list[dict[str, Any]]) -> str:
  """'run 1 = A/results.csv, run 2 = B/results.csv'."""
  return ', '.join(f'run {i + 1} = {run["source"]}' for i, run in enumerate(runs))


REPLICATION_LINES = ('label_replication', 'confident_replication', 'advice_replication',
                     'pick_replication')
MAX_DISAGREEMENTS = 20  # Printed; replication.json lists them all.


def replicate(runs: list[dict[str, Any]]) -> dict[str, Any]:
  """Whether labels, CS1 advice and CS2 picks replicate across runs of one grid
  (`prunephase-regimes --replicate`): prints REPLICATION_LINES and a reliability table, writes
  replication.json into the first run's output directory and returns its content."""
  first = runs[0]
  out, knob = first['out'], first['knob']
  temperatures, densities = first['temperatures'], first['densities']
  cases.make_out(out)
  labels = [run['labelled']['labels'] for run in runs]
  confidence = [run['labelled']['confidence'] for run in runs]
  min_confidence = float(first['config'].min_confidence)
  labelled = [grid != regimes_lib.NO_LABEL for grid in labels]
  # NaN (no confidence: one dense seed) is never confident.
  confident = [mask & (np.nan_to_num(c, nan=-1.0) >= min_confidence)
               for mask, c in zip(labelled, confidence)]
  advice = [np.vectorize(advice_lib.advice_for, otypes=[object])(grid) for grid in labels]
  picks = [_rule_picks(run) for run in runs]
  statistics = dict(zip(REPLICATION_LINES, (
      replication.pairwise_agreement(labels, labelled),
      replication.pairwise_agreement(labels, confident),
      replication.pairwise_agreement(advice, [a != 'none' for a in advice]),
      replication.pairwise_agreement(picks, [p >= 0 for p in picks]))))
  num_labelled = sum(int(mask.sum()) for mask in labelled)
  calibration = {
      'confident_kept': replication.confident_kept(labels, confident, labelled),
      'confident_cells': {'agree': sum(int(c.sum()) for c in confident), 'cells': num_labelled,
                          'fraction': (sum(int(c.sum()) for c in confident) / num_labelled
                                       if num_labelled else float('nan'))}}
  table = replication.reliability(labels, confidence)
  rule = regimes_lib.RegimeRule.from_config(first['config']).describe()
  num_pairs = len(replication.pairs(len(runs)))
  print(f'replication over {cases.count_text(len(runs), "run")} of one grid ({len(temperatures)} {knob} '
        f'x {cases.count_text(len(densities), "density", "densities")}; {cases.count_text(num_pairs, "pair")} of '
        f'runs): {_runs_header(runs)}')
  print(f'every run labelled by the first run\'s rule: {rule}')
  for name in REPLICATION_LINES:
    print(replication.fraction_line(name, statistics[name]))
  for name, value in calibration.items():
    print(replication.fraction_line(name, value))
  print('counted over every pair of runs: label and advice: the cells both runs label; '
        f'confident: the cells both runs label with confidence >= {min_confidence:g}; pick: '
        'the densities where both runs\' three-regime rule (CS2) picks a temperature; '
        'confident_kept: a run\'s confident cells that another run labels the same, over '
        'ordered pairs; confident_cells: labelled cells that are confident, over runs')
  if num_pairs > 1:
    for p, (i, j) in enumerate(replication.pairs(len(runs))):
      print(f'  runs {i + 1} and {j + 1}: ' + ', '.join(
          replication.fraction_line(name, statistics[name]['pairs'][p])
          for name in REPLICATION_LINES))
  lines = [[row['bin'] if row['bin'] != 'n/a' else 'n/a (no confidence)', row['cells'],
            row['replicated'], cases.format_value(row['fraction'], 3)]
           for row in table if row['bin'] != 'n/a' or row['cells']]
  cases.print_table('reliability: label replication by confidence (a pair\'s cell has the lower of '
               'its two runs\' confidences)', ['confidence', 'cells', 'replicated', 'fraction'],
               lines)
  disagreements = []
  for i, j in replication.pairs(len(runs)):
    for (t, d), label in np.ndenumerate(labels[i]):
      if labelled[i][t, d] and labelled[j][t, d] and label != labels[j][t, d]:
        disagreements.append({
            'runs': [i + 1, j + 1], 'temperature': temperatures[t], 'density': densities[d],
            'labels': [label, labels[j][t, d]],
            'confidences': [confidence[i][t, d], confidence[j][t, d]]})
  if disagreements:
    print(f'\ncells whose label differs ({len(disagreements)}):')
    for miss in disagreements[:MAX_DISAGREEMENTS]:
      (i, j), (a, b), (ca, cb) = miss['runs'], miss['labels'], miss['confidences']
      print(f'  {knob}={miss["temperature"]:g} density {miss["density"]:g}: {a} in run {i} '
            f'(confidence {cases.format_value(ca, 2)}), {b} in run {j} (confidence {cases.format_value(cb, 2)})')
    if len(disagreements) > MAX_DISAGREEMENTS:
      print(f'  ... and {len(disagreements) - MAX_DISAGREEMENTS} more (replication.json)')
  result = {
      'runs': [str(run['source']) for run in runs], 'knob': knob,
      'temperatures': temperatures, 'densities': densities, 'rule': rule,
      'min_confidence': min_confidence, **statistics, **calibration,
      'reliability': {'confidence': "the lower of the two runs' confidences of a cell",
                      'bins': table},
      'picks': [[None if p < 0 else temperatures[p] for p in run_picks] for run_picks in picks],
      'disagreements': disagreements}
  files.write_json(out / 'replication.json', result)
  print(f'wrote {out / "replication.json"}')
  return result


def _interval_rows(outcomes: dict[str, list[np.ndarray]]) -> dict[str, dict[str, Any]]:
  """Each name's pooled mean with its bootstrap interval over units (replication's)."""
  return replication.bootstrap_means({name: np.stack(values)
                                      for name, values in outcomes.items()})


def _interval_note(units: str) -> str:
  return (f'intervals: {100 * replication.INTERVAL_LEVEL:g}% percentile bootstrap over {units} '
          f'({replication.INTERVAL_RESAMPLES} resamples, seed {replication.INTERVAL_SEED})')


def advice_verdict(rows: dict[str, dict[str, Any]]) -> str:
  """Whether the advice beats the better fixed direction, in words, from interval rows.

  'better than' when the advice's interval lies above the better baseline's accuracy, 'worse
  than' when it lies below, else 'no better than' (the data cannot tell them apart); the
  baselines judge every cell, the advice only the cells it advises on.
  """
  advice = rows['advice']
  name, best = max(((k, rows[k]) for k in ('always_increase', 'always_decrease')),
                   key=lambda item: np.nan_to_num(item[1]['accuracy'], nan=-1.0))
  if not (np.isfinite(advice['accuracy']) and np.isfinite(best['accuracy'])):
    return 'n/a: no move to judge'
  words = ('better than' if advice['low'] > best['accuracy'] else
           'worse than' if advice['high'] < best['accuracy'] else 'no better than')
  return (f'the advice ({advice["accuracy"]:.3f}, interval '
          f'{replication.interval_text(advice["low"], advice["high"])}) is {words} '
          f'{name.replace("_", " ")} ({best["accuracy"]:.3f})')


def evaluate_out_of_sample(runs: list[dict[str, Any]]) -> dict[str, Any]:
  """CS1 out of sample (`prunephase-advise --evaluate --replicate`): the first run's advice,
  judged on the test errors of every other run, every move and only the significant ones,
  with bootstrap intervals over cells. Prints it, writes advise_out_of_sample.json and returns
  its content."""
  first = runs[0]
  out = first['out']
  cases.make_out(out)
  labels = cases.evidence_labels(first)  # An adaptive search's inferred cells: no advice.
  uncertain = advice_lib.uncertain_cells(first)
  tables_out = {}
  for kind in ('every_move', 'significant_moves'):
    outcomes = {k: [] for k in advice_lib.EVALUATION_KEYS}
    left_out = {k: {} for k in advice_lib.EVALUATION_KEYS}
    for run in runs[1:]:
      labelled = run['labelled']
      units = labelled['num_units']
      standard_error = None
      if kind == 'significant_moves':
        standard_error = np.where(units > 1, labelled['stds']['test_error']
                                  / np.sqrt(np.maximum(units, 1)), np.nan)
      result, why = advice_lib.advice_outcomes(labelled['means']['test_error'], labels,
                                               standard_error, uncertain)
      for k in advice_lib.EVALUATION_KEYS:
        outcomes[k].append(result[k].ravel())
        for reason, count in why[k].items():
          left_out[k][reason] = left_out[k].get(reason, 0) + count
    intervals = _interval_rows(outcomes)
    tables_out[kind] = {
        k: {'right': int(np.nansum(np.stack(outcomes[k]))), 'cells': intervals[k]['judged'],
            'accuracy': intervals[k]['estimate'], 'low': intervals[k]['low'],
            'high': intervals[k]['high'], 'left_out': left_out[k]}
        for k in advice_lib.EVALUATION_KEYS}
  in_sample = advice_lib.evaluate_advice(first['labelled']['means']['test_error'], labels,
                                         uncertain=uncertain)
  others = ', '.join(f'run {i + 2}' for i in range(len(runs) - 1))
  print(f'CS1 out of sample: the advice of run 1\'s labels, judged on the test errors of '
        f'{others} ({_runs_header(runs)}; every cell counted once per judging run)')
  level = f'{100 * replication.INTERVAL_LEVEL:g}% interval'
  titles = {'every_move': 'every move',
            'significant_moves': f'significant moves only (|change in test error| > '
                                 f'{advice_lib.SIGNIFICANCE_Z:g} standard errors of the judging '
                                 'run\'s dense seeds, both cells)'}
  verdicts = {}
  for kind, title in titles.items():
    rows = tables_out[kind]
    cases.print_table(title, ['move', 'cells judged', 'right', 'accuracy', level],
                 [[name, rows[k]['cells'], rows[k]['right'], cases.format_value(rows[k]['accuracy'], 3),
                   replication.interval_text(rows[k]['low'], rows[k]['high'])]
                  for k, name in advice_lib.EVALUATION_ROWS.items()])
    why = advice_lib.left_out_text(rows['advice']['left_out'])
    if why:
      print(f'the advice left out: {why}')
    verdicts[kind] = advice_verdict(rows)
    print(f'cs1_verdict ({kind}): {verdicts[kind]}')
  print(_interval_note('cells'))
  advice = in_sample['advice']
  print(f'in sample (run 1\'s own test errors, every move): advice accuracy '
        f'{cases.format_value(advice["accuracy"], 3)} ({advice["right"]}/{advice["cells"]})')
  result = {'labels_from': str(first['source']),
            'test_errors_from': [str(run['source']) for run in runs[1:]],
            'significance': f'|change in test error| > {advice_lib.SIGNIFICANCE_Z:g} x '
                            'sqrt(se_a^2 + se_b^2), se = std over the judging run\'s dense seeds '
                            '/ sqrt(n)',
            'interval': {'level': replication.INTERVAL_LEVEL, 'method': 'percentile bootstrap',
                         'units': 'cells', 'resamples': replication.INTERVAL_RESAMPLES,
                         'seed': replication.INTERVAL_SEED},
            **tables_out, 'verdict': verdicts, 'in_sample': in_sample}
  files.write_json(out / 'advise_out_of_sample.json', result)
  print(f'wrote {out / "advise_out_of_sample.json"}')
  return result


# selection.select_column's oracle, scored elsewhere.
FIRST_RUN_ORACLE = 'best test error in run 1'


def select_out_of_sample(runs: list[dict[str, Any]],
                         density: float | None = None) -> dict[str, Any]:
  """CS2 out of sample (`prunephase-select --replicate`): each method picks on the first run;
  the pick is scored on every other run's test errors (its gap to that run's oracle), with
  bootstrap intervals over densities. Prints it, writes select_out_of_sample.json and returns
  its content."""
  first = runs[0]
  knob, temperatures, densities = first['knob'], first['temperatures'], first['densities']
  means, labels = first['labelled']['means'], cases.evidence_labels(first)  # Measured only.
  chosen = selection.chosen_densities(densities, density)
  out = first['out']
  cases.make_out(out)
  gaps, in_sample, records = {}, {}, []
  for d in chosen:
    picks = selection.select_column(knob, temperatures, column_means(means, d), labels[:, d])
    picks[FIRST_RUN_ORACLE] = picks.pop('oracle')
    own = means['test_error'][:, d]
    lines = []
    for method, index in picks.items():
      row = [method, 'n/a' if index is None else f'{temperatures[index]:g}',
             '' if index is None else labels[index, d]]
      in_sample.setdefault(method, []).append(
          own[index] - np.nanmin(own) if index is not None and np.isfinite(own).any()
          else np.nan)
      method_gaps = []
      for r, run in enumerate(runs[1:], start=2):
        errors = run['labelled']['means']['test_error'][:, d]
        oracle = np.nanmin(errors) if np.isfinite(errors).any() else np.nan
        gap = errors[index] - oracle if index is not None else np.nan
        method_gaps.append(gap)
        row.append(cases.format_value(gap))
        records.append({'density': densities[d], 'method': method, 'run': r,
                        'temperature': None if index is None else temperatures[index],
                        'gap_to_oracle': gap})
      gaps.setdefault(method, []).append(method_gaps)
      lines.append(row)
    cases.print_table(f'density {densities[d]:g}: the {knob} each method picks on run 1, its gap to '
                 'the oracle of the run that scores it',
                 ['method', knob, 'regime (run 1)',
                  *(f'gap run {r}' for r in range(2, len(runs) + 1))], lines)
  # gaps[method]: (densities, other runs) -> (other runs, densities) for bootstrap_means.
  arrays = {method: np.asarray(values, float).T for method, values in gaps.items()}
  intervals = replication.bootstrap_means(arrays)
  summary, level = {}, f'{100 * replication.INTERVAL_LEVEL:g}% interval'
  lines = []
  for method, values in arrays.items():
    judged = values[np.isfinite(values)]
    oracle_picks = int(np.sum(judged <= 1e-12))
    summary[method] = {'mean_gap': intervals[method]['estimate'],
                       'low': intervals[method]['low'], 'high': intervals[method]['high'],
                       'scored': int(judged.size), 'picks_the_oracle': oracle_picks,
                       'in_sample_mean_gap': cases.quiet_nanmean(in_sample[method])}
    lines.append([method, cases.format_value(summary[method]['mean_gap']),
                  replication.interval_text(summary[method]['low'], summary[method]['high'], 4),
                  f'{oracle_picks} of {judged.size}', cases.format_value(summary[method]['in_sample_mean_gap'])])
  cases.print_table(f'CS2 out of sample, mean over {cases.count_text(len(chosen), "density", "densities")} x '
               f'{cases.count_text(len(runs) - 1, "scoring run")} ({_runs_header(runs)})',
               ['method', 'mean gap to oracle', level, 'picks the oracle',
                'in sample (run 1)'], lines)
  print(_interval_note('densities') + '; a density\'s gaps on every scoring run are resampled '
        'together')
  result = {'knob': knob, 'picks_from': str(first['source']),
            'scored_on': [str(run['source']) for run in runs[1:]],
            'interval': {'level': replication.INTERVAL_LEVEL, 'method': 'percentile bootstrap',
                         'units': 'densities', 'resamples': replication.INTERVAL_RESAMPLES,
                         'seed': replication.INTERVAL_SEED},
            'summary': summary, 'records': records}
  files.write_json(out / 'select_out_of_sample.json', result)
  print(f'wrote {out / "select_out_of_sample.json"}')
  return result
