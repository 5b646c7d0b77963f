r"""Writes the README's results section from finished runs of the default config.

Every number between the README's results markers (section "The default run") comes from here,
so what a new user reads is what this code computes. Run the default twice, with the dense seeds
of the config (set A) and with three others (set B), then regenerate the section:

  prunephase --config=configs/default.py --workdir=runs/default
  prunephase --config=configs/default.py --workdir=runs/default_seeds456 \
      --config.dense.seeds='(4,5,6)'
  python docs/readme_results.py runs/default runs/default_seeds456 [--write README.md]

It prints (or writes between the README's `results:begin` / `results:end` markers): the machine,
the findings of set A, its grids, the case studies CS1 (advice accuracy) and CS2 (gap of the
chosen model to the oracle) on both seed sets, and label stability (the fraction of cells with
the same label on A and B). The rule's tunable parameters are chosen on set A (the value of
`min_drop` and `cka_tolerance` from a small grid that maximises CS1 accuracy there) and then
applied to set B unchanged, so set B's figures are out of sample; the defaults' figures are
shown beside them.
"""

import argparse
import itertools
import os
import pathlib
import platform
import re
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
# pylint: disable=wrong-import-position
from prunephase import cases
from prunephase import regimes
from prunephase import report
from prunephase import tables
from prunephase import workdir as workdir_lib

MIN_DROPS = (0.03, 0.05, 0.08)
CKA_TOLERANCES = (0.0005, 0.001, 0.002)
BEGIN, END = '<!-- results:begin -->', '<!-- results:end -->'


def machine() -> str:
  """'N cores (CPU model), X GiB' of this machine."""
  model = platform.processor() or 'unknown CPU'
  try:
    for line in open('/proc/cpuinfo'):
      if line.startswith('model name'):
        model = line.split(':', 1)[1].strip()
        break
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30
  except (OSError, ValueError):
    memory = float('nan')
  return f'{os.cpu_count()} cores ({model}), {memory:.0f} GiB'


def load(workdir: str) -> dict:
  rows = tables.read_table(pathlib.Path(workdir) / 'results.csv')
  config = workdir_lib.read_json(pathlib.Path(workdir) / workdir_lib.CONFIG_FILE)
  knob, temperatures, densities = tables.axes(rows, config['temperature']['knob'])
  return {'rows': rows, 'config': config, 'knob': knob, 'temperatures': temperatures,
          'densities': densities, 'seeds': tuple(config['dense']['seeds'])}


def case_studies(run: dict, rule: regimes.RegimeRule) -> dict:
  """Labels of a run under `rule`, CS1 advice accuracy and CS2 mean gaps per method."""
  labelled = regimes.label_table([dict(r) for r in run['rows']], run['temperatures'],
                                 run['densities'], rule, bootstrap=0)
  means, labels = labelled['means'], labelled['labels']
  advice = cases.evaluate_advice(means['test_error'], labels)
  gaps = {}
  for d in range(len(run['densities'])):
    column = {f: means[f][:, d] for f in ('lmc', 'cka_softmax', 'test_error',
                                          'dense_test_error')}
    picks = cases.select_column(run['knob'], run['temperatures'], column, labels[:, d])
    oracle = column['test_error'][picks['oracle']]
    for method, index in picks.items():
      gaps.setdefault(method, []).append(column['test_error'][index] - oracle)
  return {'labels': labels, 'advice': advice,
          'gaps': {m: float(np.mean(g)) for m, g in gaps.items()}}


def choose_parameters(run: dict) -> regimes.RegimeRule:
  """The (min_drop, cka_tolerance) of the grid with the best CS1 accuracy on `run` (the first
  of the grid on ties)."""
  best = None
  for min_drop, tolerance in itertools.product(MIN_DROPS, CKA_TOLERANCES):
    rule = regimes.RegimeRule(min_drop=min_drop, cka_tolerance=tolerance)
    accuracy = case_studies(run, rule)['advice']['advice']['accuracy']
    if best is None or accuracy > best[0] + 1e-12:
      best = (accuracy, rule)
  return best[1]


def section(workdir_a: str, workdir_b: str) -> str:
  """The README section as Markdown."""
  run_a, run_b = load(workdir_a), load(workdir_b)
  default = regimes.RegimeRule()
  chosen = choose_parameters(run_a)
  studies = {(name, rule_name): case_studies(run, rule)
             for name, run in (('A', run_a), ('B', run_b))
             for rule_name, rule in (('default', default), ('chosen on A', chosen))}
  found = workdir_lib.read_json(pathlib.Path(workdir_a) / 'findings.json')
  found_b = workdir_lib.read_json(pathlib.Path(workdir_b) / 'findings.json')
  cells = list(csv_rows(pathlib.Path(workdir_a) / 'cells.csv'))
  lines = [f'Measured with `docs/readme_results.py {workdir_a} {workdir_b}` on {machine()}; '
           f'set A = dense seeds {run_a["seeds"]}, set B = dense seeds {run_b["seeds"]}. '
           'Floats differ between CPU models (and in the last bits between device layouts); '
           'the findings should not.', '',
           f'**Findings on set A** (`findings.json`; rule: {default.describe()}):', '']
  for name in ('transition', 'connectivity', 'similarity'):
    lines.append(f'* **{name} — {found[name]["status"]}.** {found[name]["summary"]}')
  lines += ['', '**The same findings on set B** (other dense seeds, same code and config): ' +
            '; '.join(f'{name} — {found_b[name]["status"]}'
                      for name in ('transition', 'connectivity', 'similarity')) +
            f'. Transition on B: {found_b["transition"]["summary"]}.']
  labels_a = studies['A', 'default']['labels']
  confidence = regimes.label_table([dict(r) for r in run_a['rows']], run_a['temperatures'],
                                   run_a['densities'], default, bootstrap=200)['confidence']
  lines += ['', 'Regimes of set A (`prunephase-regimes --workdir=...`; parentheses: bootstrap '
            'confidence below 0.7):', '', '```',
            report.label_text_grid(run_a['temperatures'], run_a['densities'], labels_a,
                                   confidence, run_a['knob'], 0.7), '```']
  lines += ['', '**Case studies** (prunephase\'s rules, see `prunephase/cases.py`). CS1: how '
            'often the advised move (Regime I: raise the temperature; II-A: lower it; II-B: '
            'keep it) lowers the test error, against always raising or always lowering. CS2: '
            'the mean gap in test error between the model each method picks and the best one '
            '(oracle), over densities. The rule\'s parameters chosen on set A: '
            f'min_drop {chosen.min_drop:g}, cka_tolerance {chosen.cka_tolerance:g} (the best CS1 '
            f'accuracy on A over min_drop {MIN_DROPS} x cka_tolerance {CKA_TOLERANCES}; ties '
            'keep the first).', '',
            '| seed set | rule parameters | CS1 advice accuracy | always raise | always lower '
            '| CS2 gap: rule | CKA only | best dense | coldest |', '|---' * 9 + '|']
  for (name, rule_name), result in studies.items():
    advice, gaps = result['advice'], result['gaps']
    lines.append(
        f'| {name}{" (out of sample)" if name == "B" and rule_name != "default" else ""} '
        f'| {rule_name} | {advice["advice"]["accuracy"]:.2f} ({advice["advice"]["right"]}/'
        f'{advice["advice"]["cells"]}) | {advice["always_increase"]["accuracy"]:.2f} | '
        f'{advice["always_decrease"]["accuracy"]:.2f} | {gaps["three-regime rule"]:.4f} | '
        f'{gaps["CKA only"]:.4f} | {gaps["best dense test accuracy"]:.4f} | '
        f'{gaps["last checkpoint / coldest"]:.4f} |')
  for rule_name in ('default', 'chosen on A'):
    a, b = studies['A', rule_name]['labels'], studies['B', rule_name]['labels']
    lines.append('')
    lines.append(f'Label stability ({rule_name} parameters): {int((a == b).sum())} of {a.size} '
                 f'cells ({(a == b).mean():.0%}) carry the same label on sets A and B.')
  lines += ['', '<details><summary>Set A\'s grids (cells.csv)</summary>', '',
            report.markdown_grids(cells), '', '</details>']
  return '\n'.join(lines)


def csv_rows(path):
  import csv  # pylint: disable=import-outside-toplevel
  with open(path, newline='') as f:
    yield from csv.DictReader(f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workdir_a')
  parser.add_argument('workdir_b')
  parser.add_argument('--write', help='a README to update between the results markers')
  args = parser.parse_args()
  text = section(args.workdir_a, args.workdir_b)
  if not args.write:
    print(text)
    return
  readme = pathlib.Path(args.write).read_text()
  if BEGIN not in readme or END not in readme:
    sys.exit(f'{args.write}: no {BEGIN} ... {END} markers')
  pattern = re.compile(re.escape(BEGIN) + '.*?' + re.escape(END), re.S)
  pathlib.Path(args.write).write_text(pattern.sub(lambda _: f'{BEGIN}\n{text}\n{END}', readme))
  print(f'updated {args.write}')


if __name__ == '__main__':
  main()
