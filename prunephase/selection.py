"""Case study 2 (`prunephase-select`; case study 3 on a SAM-rho sweep): which dense model to
prune, per density, against baselines.

  loaded = cases.load_labelled(workdir='DIR')   # or results='FILE.csv', knob='sam_rho'
  selection.select(loaded, density=0.05)        the picks of every method, scored on test error

The rule is prunephase's own, stated in the README ("Deciding with the regime model"; the
paper's case-study code and numbers are not available): among the cells of a density column not
in Regime I pick the highest CKA; if every candidate is in Regime I, the highest LMC. An
adaptive search's inferred cells are never picked (only measured cells are evidence). Scoring
the picks on other runs of the grid is `prunephase.out_of_sample`. Bad input raises
cases.CaseError with a one-line message before anything is printed or written.
"""

from typing import Any

import numpy as np

from prunephase import cases
from prunephase import files
from prunephase import knobs
from prunephase import regimes as regimes_lib


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
  for name, value in knobs.knob(knob).baselines:  # Fixed values, e.g. plain SGD for SAM.
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
    else:  # A knob's baseline (`knobs.Knob.baselines`): a fixed value.
      why = f'that {knob} value is not in the grid'
    print(f'{method}: no pick at {count} of '
          f'{cases.count_text(num_densities, "density", "densities")} ({why})')
  if not np.isfinite(means['test_error']).any():
    print('test_error and gap_to_oracle n/a: the table has no test_error values, so no pick '
          'can be scored')


def chosen_densities(densities, density: float | None) -> list[int]:
  """Indices of the densities a CS2 command reports: all, or the one equal to `density`
  (cases.CaseError naming the table's densities when it has none)."""
  chosen = [d for d in range(len(densities))
            if density is None or np.isclose(densities[d], density)]
  if not chosen:
    raise cases.CaseError(f'no density {density:g} in the table; it has {densities}')
  return chosen


def select(loaded: dict[str, Any], density: float | None = None) -> list[dict[str, Any]]:
  """CS2 (CS3 on a SAM-rho sweep) per density (all, or `density`), against baselines: prints
  one table per density and the mean over them, writes select.csv and select.json and returns
  the records (one per density and method)."""
  labelled, knob = loaded['labelled'], loaded['knob']
  temperatures, densities = loaded['temperatures'], loaded['densities']
  means, labels = labelled['means'], cases.evidence_labels(loaded)  # Measured cells only.
  chosen = chosen_densities(densities, density)
  out = loaded['out']
  cases.make_out(out)
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
                    labels[index, d] if index is not None else '', cases.format_value(error),
                    cases.format_value(gap)])
      records.append({'density': densities[d], 'method': method,
                      'temperature': None if index is None else temperatures[index],
                      'regime': '' if index is None else labels[index, d],
                      'test_error': error, 'gap_to_oracle': gap})
    cases.print_table(f'density {densities[d]:g}: which {knob} to prune from',
                      ['method', knob, 'regime', 'test_error', 'gap_to_oracle'], lines)
  summary = []
  for method, values in gaps.items():
    values = np.asarray(values, float)
    judged = np.isfinite(values)
    oracle_picks = int(np.sum(values[judged] <= 1e-12))
    summary.append([method, cases.format_value(cases.quiet_nanmean(values)),
                    f'{oracle_picks} of '
                    f'{cases.count_text(int(judged.sum()), "density", "densities")}'
                    if judged.any() else 'n/a'])
  cases.print_table(f'mean over densities '
                    f'({cases.count_text(len(chosen), "density", "densities")}; a method '
                    'without a scored pick at a density is left out there)',
                    ['method', 'mean gap to oracle', 'picks the oracle'], summary)
  _explain_unpicked(loaded, unpicked, len(chosen))
  files.write_csv(out / 'select.csv', records,
                  ['density', 'method', 'temperature', 'regime', 'test_error', 'gap_to_oracle'])
  files.write_json(out / 'select.json', {
      'knob': knob, 'records': records,
      'rule': 'avoid Regime I, then highest CKA (all in I: highest LMC); prunephase\'s rule',
      'mean_gap': {m: cases.quiet_nanmean(g) for m, g in gaps.items()}})
  print(f'wrote {out / "select.csv"}, select.json')
  return records
