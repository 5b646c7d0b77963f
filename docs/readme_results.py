r"""Writes the README's results section from finished runs of the default config.

Every number between the README's results markers (section "The default run") comes from here,
so what a new user reads is what this code computes. Run the default three times or more, with
the dense seeds of the config (set 1) and with other dense seeds (sets 2, 3, ...), then
regenerate the section:

  prunephase --config=configs/default.py --workdir=runs/default
  prunephase --config=configs/default.py --workdir=runs/default_seeds456 \
      --config.dense.seeds='(4,5,6)'
  prunephase --config=configs/default.py --workdir=runs/default_seeds789 \
      --config.dense.seeds='(7,8,9)'
  python docs/readme_results.py runs/default runs/default_seeds456 runs/default_seeds789 \
      [--write README.md]

It prints (or writes between the README's `results:begin` / `results:end` markers): the machine
and each set's dense seeds; the paper's findings on every set; set 1's labels and grids; label
replication over every pair of sets with the reliability table of the current confidence
estimator, of the same at each set's configured dense seeds only (the table before its
adaptive seeds, when it has some) and of the earlier estimator; and the case studies out of
sample: CS1 (set 1's advice judged on the other sets' test errors) and CS2 (set 1's picks
scored on the other sets), with 95 % bootstrap intervals (`prunephase/out_of_sample.py`).

Every run is relabelled here by the current code with the current defaults
(`regimes.DEFAULTS`), whatever its config.json or findings.json say: the rule, the confidence
estimator and `min_confidence` of an older version must not leak into the section.
"""

import argparse
import contextlib
import io
import os
import pathlib
import platform
import re
import sys
import tempfile
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
# pylint: disable=wrong-import-position
from prunephase import advice as advice_lib  # `advice`: a local name here.
from prunephase import cases
from prunephase import files
from prunephase import findings as findings_lib
from prunephase import out_of_sample
from prunephase import regimes
from prunephase import replication
from prunephase import report_files
from prunephase import tables
from prunephase import workdir as workdir_lib

BEGIN, END = '<!-- results:begin -->', '<!-- results:end -->'
MIN_RUNS = 3
FINDINGS = ('transition', 'connectivity', 'similarity')
# The current defaults label every run; the earlier estimator is shown beside it.
CURRENT = {name: regimes.DEFAULTS[name] for name in cases.RULE_FIELDS}
EARLIER = {**CURRENT, 'confidence': 'bootstrap', 'min_confidence': 0.7}


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


def configured_seeds_table(workdir: str, seeds, out: pathlib.Path) -> pathlib.Path:
  """The run's results.csv with the rows of its configured dense `seeds` only (no added ones,
  `seeds.adaptive`), at `out`: the table the run had before its seed rounds."""
  seeds = {float(seed) for seed in seeds}
  rows = tables.read_table(pathlib.Path(workdir) / 'results.csv')
  columns = list(rows[0]) if rows else []
  out.mkdir(parents=True, exist_ok=True)
  files.write_csv(out / 'results.csv', [r for r in rows if float(r['dense_seed']) in seeds],
                  columns)
  return out / 'results.csv'


def load(workdir: str, out: pathlib.Path, overrides: dict[str, Any],
         configured_seeds_only: bool = False) -> dict[str, Any]:
  """A run labelled by the current code under `overrides`, with its dense seeds and findings.

  The findings are checked anew, as the report stage checks them (`prunephase/report_files.py`),
  not read from the run's findings.json, which an older version may have written.
  `configured_seeds_only`: the run as it stood before adaptive seeds were added.
  """
  stored = files.read_json(pathlib.Path(workdir) / workdir_lib.CONFIG_FILE)
  seeds = tuple(stored.get('dense', {}).get('seeds', ()))
  if configured_seeds_only:
    table = configured_seeds_table(workdir, seeds, out / 'table')
    run = cases.load_labelled(results=str(table), out=str(out), overrides=overrides)
  else:
    run = cases.load_labelled(workdir=workdir, out=str(out), overrides=overrides)
  labelled = run['labelled']
  run['seeds'] = seeds
  run['max_seeds'] = int(np.max(labelled['num_units'], initial=0))  # Most seeds in a cell.
  data = pathlib.Path(workdir) / 'data.json'
  num_classes = files.read_json(data).get('num_classes') if data.exists() else None
  run['findings'] = findings_lib.check(
      labelled['means'], labelled['stds'], run['temperatures'], run['densities'],
      labelled['labels'], regimes.RegimeRule.from_config(run['config']),
      labelled['num_units'],
      report_files.diverged_cells(run['rows'], run['temperatures'], run['densities']), num_classes)
  return run


def quietly(function, *args) -> dict[str, Any]:
  """`function(*args)` with its printing swallowed (its returned dict is what is shown)."""
  with contextlib.redirect_stdout(io.StringIO()):
    return function(*args)


def seeds_text(seeds) -> str:
  return ', '.join(str(s) for s in seeds) or 'n/a'


def fraction(result: dict[str, Any]) -> str:
  """'0.900 (27/30)'."""
  return replication.fraction_line('x', result).split(': ', 1)[1]


def findings_lines(runs: list[dict[str, Any]], before: list[dict[str, Any]] | None) -> list[str]:
  """The findings per set; `before`: the same sets at their configured seeds (None: no set
  added seeds)."""
  first = runs[0]['findings']
  lines = ['**Findings** (`prunephase/findings.py`, rechecked here on every set'
           + ('; in brackets: at the configured dense seeds only, before seeds were added'
              if before else '') + '):', '',
           '| set | dense seeds | most per cell | ' + ' | '.join(FINDINGS) + ' |',
           '|---' * 6 + '|']
  for i, run in enumerate(runs):
    statuses = [run['findings'][name]['status'] for name in FINDINGS]
    if before:
      statuses = [f'{now} [{before[i]["findings"][name]["status"]}]'
                  for now, name in zip(statuses, FINDINGS)]
    lines.append(f'| {i + 1} | {seeds_text(run["seeds"])} | {run["max_seeds"]} | '
                 + ' | '.join(statuses) + ' |')
  lines += ['', 'On set 1:', '']
  lines += [f'* **{name} — {first[name]["status"]}.** {first[name]["summary"]}'
            for name in FINDINGS]
  return lines


def replication_lines(variants: dict[str, list[dict[str, Any]]]) -> list[str]:
  """Label replication over every pair of sets, for each variant: 'current' (every seed, the
  current estimator), optionally 'configured seeds' (before adaptive seeds) and 'earlier' (the
  earlier estimator)."""
  results = {key: quietly(out_of_sample.replicate, runs) for key, runs in variants.items()}
  names = {key: f'{run[0]["config"].confidence}, min_confidence '
                f'{float(run[0]["config"].min_confidence):g}'
           for key, run in variants.items()}
  estimators = {key: f'{run[0]["config"].confidence} ({key})' for key, run in variants.items()}
  runs = variants['current']
  current = results['current']
  num_pairs = len(replication.pairs(len(runs)))
  lines = [f'**Label replication** over the {num_pairs} pairs of sets (`prunephase-regimes '
           '--replicate`): label_replication (cells both sets label alike) '
           f'{fraction(current["label_replication"])}; pick_replication (densities where both '
           'sets\' CS2 rule picks the same temperature) '
           f'{fraction(current["pick_replication"])}. confident_replication: cells both sets '
           'label with confidence ≥ min_confidence; confident_kept: a set\'s confident labels '
           'that another set labels alike; confident_cells: the labels that are confident.', '',
           '| confidence estimator | confident_replication | confident_kept | confident_cells |',
           '|---|---|---|---|']
  for key in variants:
    result = results[key]
    lines.append(f'| {names[key]} ({key}) | '
                 + ' | '.join(fraction(result[name]) for name in
                              ('confident_replication', 'confident_kept', 'confident_cells'))
                 + ' |')
  bins = {key: [row for row in results[key]['reliability']['bins'] if row['bin'] != 'n/a']
          for key in results}
  lines += ['', 'Reliability: the fraction of a pair\'s cells that replicate, by the lower of '
            'the two sets\' confidences. A calibrated confidence replicates about as often as it '
            'says.', '',
            '| confidence | ' + ' | '.join(f'{estimators[key]}: replicated' for key in bins)
            + ' |',
            '|---' * (1 + len(bins)) + '|']
  for k, row in enumerate(bins['current']):
    cells = []
    for key in bins:
      other = bins[key][k]
      cells.append(f'{cases.format_value(other["fraction"], 2)} '
                   f'({other["replicated"]}/{other["cells"]})')
    lines.append(f'| {row["bin"]} | ' + ' | '.join(cells) + ' |')
  return lines


def _accuracy(row: dict[str, Any]) -> str:
  return (f'{cases.format_value(row["accuracy"], 2)} ({row["right"]}/{row["cells"]}) '
          f'{replication.interval_text(row["low"], row["high"], 2)}')


def case_study_lines(runs: list[dict[str, Any]]) -> list[str]:
  """CS1 and CS2 out of sample: set 1's answers scored on the other sets' test errors."""
  advice = quietly(out_of_sample.evaluate_out_of_sample, runs)
  select = quietly(out_of_sample.select_out_of_sample, runs)
  others = f'sets 2–{len(runs)}'
  level = f'{100 * replication.INTERVAL_LEVEL:g} %'
  kinds = {'every_move': 'every move',
           'significant_moves': f'significant moves (> {advice_lib.SIGNIFICANCE_Z:g} SE)'}
  lines = [f'**CS1 out of sample** (`prunephase-advise --evaluate --replicate`): set 1\'s '
           'advice (Regime I: raise the temperature; II-A: lower it; II-B: keep it; no advice '
           f'where the confidence is below {float(runs[0]["config"].min_confidence):g}: '
           f'{cases.count_text(int(advice_lib.uncertain_cells(runs[0]).sum()))} of set 1) judged '
           f'on the test errors of {others}: how often the move lowers the test error, with '
           f'{level} bootstrap intervals over cells.', '',
           '| move | ' + ' | '.join(kinds.values()) + ' |', '|---' * (1 + len(kinds)) + '|']
  for key, name in (('advice', 'the advice'), ('always_increase', 'always raise'),
                    ('always_decrease', 'always lower')):
    lines.append(f'| {name} | ' + ' | '.join(_accuracy(advice[kind][key]) for kind in kinds)
                 + ' |')
  lines += [''] + [f'cs1_verdict ({kind}): {advice["verdict"][kind]}.' for kind in kinds]
  lines += ['', f'**CS2 out of sample** (`prunephase-select --replicate`): the model each method '
            f'picks on set 1, scored on {others} by its gap in test error to that set\'s best '
            f'temperature (mean over densities and sets, {level} interval over densities).', '',
            '| method | mean gap to oracle | picks the oracle | in sample (set 1) |',
            '|---|---|---|---|']
  for method, row in select['summary'].items():
    if method == out_of_sample.FIRST_RUN_ORACLE:
      method = 'set 1\'s best test error'
    lines.append(f'| {method} | {cases.format_value(row["mean_gap"])} '
                 f'{replication.interval_text(row["low"], row["high"], 4)} | '
                 f'{row["picks_the_oracle"]} of {row["scored"]} | '
                 f'{cases.format_value(row["in_sample_mean_gap"])} |')
  return lines


def section(*workdirs: str) -> str:
  """The README section as Markdown, from the finished runs at `workdirs` (set 1 first)."""
  if len(workdirs) < MIN_RUNS:
    raise ValueError(f'give at least {MIN_RUNS} workdirs (runs of one grid with other dense '
                     f'seeds), not {len(workdirs)}')
  with tempfile.TemporaryDirectory() as temporary:
    out = pathlib.Path(temporary)
    runs = [load(w, out / f'current{i}', CURRENT) for i, w in enumerate(workdirs)]
    before = [load(w, out / f'before{i}', CURRENT, configured_seeds_only=True)
              for i, w in enumerate(workdirs)]
    earlier = [load(w, out / f'earlier{i}', EARLIER) for i, w in enumerate(workdirs)]
    if all(b['max_seeds'] == r['max_seeds'] for b, r in zip(before, runs)):
      before = None  # No set added seeds: nothing to compare.
    first, config = runs[0], runs[0]['config']
    rule = regimes.RegimeRule.from_config(config)
    min_confidence = float(config.min_confidence)
    sets = '; '.join(f'set {i} = dense seeds {seeds_text(run["seeds"])}'
                     for i, run in enumerate(runs, 1))
    lines = [f'Measured with `docs/readme_results.py {" ".join(workdirs)}` on {machine()}; '
             f'{sets}. Floats differ between CPU models (and in the last bits between device '
             'layouts); the findings should not.', '',
             'Every set is labelled by this code\'s defaults (`regimes.DEFAULTS`), not by the '
             f'settings stored with the run: {rule.describe()}; confidence: '
             f'{config.confidence} estimator, {int(config.bootstrap)} draws, labels below '
             f'{min_confidence:g} are uncertain (see docs/definitions.md, Confidence).', '']
    lines += findings_lines(runs, before)
    labelled = first['labelled']
    lines += ['', f'Regimes of set 1 (`prunephase-regimes --workdir=...`; parentheses: '
              f'confidence below {min_confidence:g}):', '', '```',
              report_files.label_text_grid(first['temperatures'], first['densities'],
                                           labelled['labels'], labelled['confidence'],
                                           first['knob'], min_confidence), '```', '']
    variants = {'current': runs}
    if before:
      variants['configured seeds'] = before
    variants['earlier'] = earlier
    lines += replication_lines(variants)
    lines.append('')
    lines += case_study_lines(runs)
    cells = report_files.cell_rows(first['knob'], first['temperatures'], first['densities'],
                                   labelled)
    lines += ['', '<details><summary>Set 1\'s grids</summary>', '',
              report_files.markdown_grids(cells), '', '</details>']
  return '\n'.join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workdirs', nargs='+',
                      help=f'{MIN_RUNS} or more finished runs of the default, set 1 first')
  parser.add_argument('--write', help='a README to update between the results markers')
  args = parser.parse_args()
  if len(args.workdirs) < MIN_RUNS:
    parser.error(f'give at least {MIN_RUNS} workdirs, not {len(args.workdirs)}')
  text = section(*args.workdirs)
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
