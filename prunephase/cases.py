"""The paper's three case studies as commands, on any results table.

  prunephase-regimes --results=FILE.csv --out=DIR [--knob=epochs]   label any table, plot it
                     [--compare=LABELS.csv]                         and score it against labels
  prunephase-advise  --workdir=DIR --density=0.05 --temperature=80  CS1: which way to move
  prunephase-advise  --workdir=DIR --evaluate                       CS1 evaluated on a sweep
  prunephase-advise  --probe --config=configs/default.py --workdir=NEW --density=0.06
                     --temperature=128                              CS1 from a minimal probe
  prunephase-select  --workdir=DIR [--density=0.05]                 CS2 (and CS3 on a SAM-rho
                                                                    sweep): which model to prune

The rules are prunephase's own (paper_notes §8: the paper's case-study code and numbers are not
available). CS1: Regime I -> increase the temperature; II-A -> decrease it; II-B -> keep it.
CS2: among cells not in Regime I pick the highest CKA; if every candidate is in Regime I, the
highest LMC. Each command prints a compact table and writes CSV/JSON next to the figures.
"""

import json
import pathlib
import sys
from typing import Any

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
import numpy as np

from prunephase import grid
from prunephase import regimes as regimes_lib
from prunephase import report
from prunephase import runtime
from prunephase import tables
from prunephase import workdir as workdir_lib

_RESULTS = flags.DEFINE_string('results', None, 'A results table (CSV); see prunephase.tables.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A finished sweep (reads results.csv and its '
                               'config.json).')
_OUT = flags.DEFINE_string('out', None, "Output directory (default: DIR/regimes for --workdir, "
                           "the table's directory for --results).")
_KNOB = flags.DEFINE_string('knob', None, 'Temperature knob of the table (if it has no knob '
                            'column): ' + ', '.join(grid.KNOBS))
_RULE = flags.DEFINE_enum('rule', None, list(regimes_lib.RULES), 'Regime rule (see '
                          'prunephase/regimes.py); default: the workdir\'s, else transition.')
_MIN_DROP = flags.DEFINE_float('min_drop', None, 'transition rule: smallest LMC drop that is a '
                               'transition.')
_NOISE_FACTOR = flags.DEFINE_float('noise_factor', None, 'transition rule: a drop must exceed '
                                   'this many seed-noise units.')
_LMC_THRESHOLD = flags.DEFINE_float('lmc_threshold', None, 'threshold rule: Regime I below this '
                                    'mean LMC.')
_CKA_TOLERANCE = flags.DEFINE_float('cka_tolerance', None, 'II-B within this of the column\'s '
                                    'CKA plateau.')
_COMPARE = flags.DEFINE_string('compare', None, 'regimes: a CSV with temperature, density and '
                               'regime columns (e.g. a hand-drawn diagram); prints the fraction '
                               'of matched cells whose labels agree.')
_BOOTSTRAP = flags.DEFINE_integer('bootstrap', None, 'Bootstrap resamples for confidences.')
_DENSITY = flags.DEFINE_float('density', None, 'Target density (fraction kept).')
_TEMPERATURE = flags.DEFINE_float('temperature', None, 'Current temperature value (advise).')
_EVALUATE = flags.DEFINE_bool('evaluate', False, 'advise: evaluate the advice on every cell.')
_PROBE = flags.DEFINE_bool('probe', False, 'advise: run the minimal probe (prune -> retrain x 2 '
                           'seeds -> LMC/CKA) for --temperature, its grid neighbours and '
                           '--density, from --config, into --workdir; then advise.')
_CONFIG = config_flags.DEFINE_config_file('config', None, 'advise --probe: the sweep config.',
                                          lock_config=True)

MOVES = {  # knob -> (what "increase the temperature" means, what "decrease" means)
    'epochs': ('train fewer epochs (an earlier checkpoint)', 'train more epochs'),
    'batch_size': ('use a smaller batch', 'use a larger batch'),
    'lr': ('raise the learning rate', 'lower the learning rate'),
    'weight_decay': ('raise the weight decay', 'lower the weight decay'),
    'sam_rho': ('raise SAM rho', 'lower SAM rho'),
}


class CaseError(ValueError):
  """Bad command-line input; one line."""


def _regime_config() -> ml_collections.ConfigDict:
  """Rule parameters: flags override the workdir's config, which overrides the defaults."""
  config = ml_collections.ConfigDict(regimes_lib.DEFAULTS)
  if _WORKDIR.value:
    stored = workdir_lib.read_json(pathlib.Path(_WORKDIR.value) / workdir_lib.CONFIG_FILE)
    config.update(stored.get('regimes', {}))
  for name, flag in (('rule', _RULE), ('min_drop', _MIN_DROP), ('noise_factor', _NOISE_FACTOR),
                     ('lmc_threshold', _LMC_THRESHOLD), ('cka_tolerance', _CKA_TOLERANCE),
                     ('bootstrap', _BOOTSTRAP)):
    if flag.value is not None:
      config[name] = flag.value
  return config


def load_labelled() -> dict[str, Any]:
  """Reads the table named by the flags and labels it."""
  if bool(_RESULTS.value) == bool(_WORKDIR.value):
    raise CaseError('give exactly one of --results=FILE.csv or --workdir=DIR')
  path = pathlib.Path(_RESULTS.value or pathlib.Path(_WORKDIR.value) / 'results.csv')
  if _WORKDIR.value and not (pathlib.Path(_WORKDIR.value) / workdir_lib.CONFIG_FILE).exists():
    raise CaseError(f'{_WORKDIR.value} is not a prunephase workdir (no config.json)')
  rows = tables.read_table(path)
  knob, temperatures, densities = tables.axes(rows, _KNOB.value)
  regime_config = _regime_config()
  labelled = regimes_lib.label_table(rows, temperatures, densities,
                                     regimes_lib.RegimeRule.from_config(regime_config),
                                     int(regime_config.bootstrap), int(regime_config.seed))
  # Never overwrite a sweep's own report: default to DIR/regimes for --workdir.
  default_out = pathlib.Path(_WORKDIR.value) / 'regimes' if _WORKDIR.value else path.parent
  out = pathlib.Path(_OUT.value or default_out)
  return {'rows': rows, 'knob': knob, 'temperatures': temperatures, 'densities': densities,
          'labelled': labelled, 'config': regime_config, 'out': out, 'source': path}


def load_labelled_or_fail() -> dict[str, Any]:
  """`load_labelled`, ending the program with one line on a bad table or flag."""
  try:
    return load_labelled()
  except (CaseError, tables.TableError) as error:
    runtime.fail(str(error))


def _print_table(title: str, header: list[str], lines: list[list[Any]]) -> None:
  widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
  print(f'\n{title}')
  print('  '.join(str(h).rjust(w) for h, w in zip(header, widths)))
  for line in lines:
    print('  '.join(str(x).rjust(w) for x, w in zip(line, widths)))


def _fmt(value: float, digits: int = 4) -> str:
  return 'nan' if not np.isfinite(value) else f'{value:.{digits}f}'


# ---------------------------------------------------------------------------- regimes


def regimes_main(argv) -> None:
  """prunephase-regimes: label and plot any results table."""
  del argv
  loaded = load_labelled_or_fail()
  out = loaded['out']
  try:  # A bad --compare file fails before anything is written.
    reference = read_reference(_COMPARE.value) if _COMPARE.value else None
    out.mkdir(parents=True, exist_ok=True)
  except CaseError as error:
    runtime.fail(str(error))
  except OSError as error:
    runtime.fail(f'cannot create the output directory {out}: {error.strerror}')
  summary = report.write_report(out, loaded['rows'], loaded['knob'], loaded['temperatures'],
                                loaded['densities'], loaded['config'],
                                cells_name='regimes.csv')
  rule = regimes_lib.RegimeRule.from_config(loaded['config'])
  print(f'regimes of {loaded["source"]} ({rule.describe()}; prunephase\'s rule, not the '
        'paper\'s; parentheses: confidence below '
        f'{loaded["config"].min_confidence:g})')
  print(report.label_text_grid(loaded['temperatures'], loaded['densities'], summary['labels'],
                               summary['confidence'], loaded['knob'],
                               float(loaded['config'].min_confidence)))
  counts = summary['counts']
  print(f'counts: I={counts["I"]} II-A={counts["II-A"]} II-B={counts["II-B"]} '
        f'unlabelled={counts["none"]}' + (f' (NaN cells: {summary["unlabelled"]})'
                                          if summary['unlabelled'] else ''))
  written = 'regimes.csv, regimes.json, findings.json, phase_diagram.png'
  if reference is not None:
    result = regimes_lib.agreement(summary['labels'], loaded['temperatures'],
                                   loaded['densities'], reference)
    print(f'agreement with {_COMPARE.value}: {result["agree"]}/{result["matched"]} matched '
          f'cells ({100 * result["fraction"]:.1f}%)')
    for miss in result['disagreements']:
      print(f'  {loaded["knob"]}={miss["temperature"]:g} density {miss["density"]:g}: '
            f'{miss["ours"] or "n/a"} here, {miss["theirs"]} there')
    workdir_lib.write_json(out / 'agreement.json', {'labels': _COMPARE.value, **result})
    written += ', agreement.json'
  print(f'wrote {out}/: {written}')


def read_reference(path: str) -> list[dict[str, Any]]:
  """Rows of a labels CSV (temperature, density, regime), checked; CaseError if unusable."""
  import csv  # pylint: disable=import-outside-toplevel
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


# ---------------------------------------------------------------------------- advise

ADVICE = {'I': 'increase', 'II-A': 'decrease', 'II-B': 'keep'}


def advice_for(label: str) -> str:
  """CS1 rule: I -> increase temperature, II-A -> decrease, II-B -> keep; '' -> none."""
  return ADVICE.get(label, 'none')


def evaluate_advice(test_error: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
  """How often the advised direction lowers test error, over cells with a neighbour.

  Rows are hottest first, so 'increase' moves to row t-1 and 'decrease' to row t+1. An
  'increase'/'decrease' is right when that neighbour's test error is lower than the cell's;
  'keep' is right when no neighbour's is lower. Baselines: always increase, always decrease.
  """
  outcome = {'increase': [], 'decrease': [], 'keep': [], 'always_increase': [],
             'always_decrease': []}
  rows = test_error.shape[0]
  for (t, d), label in np.ndenumerate(labels):
    here = test_error[t, d]
    hotter = test_error[t - 1, d] if t > 0 else np.nan
    colder = test_error[t + 1, d] if t + 1 < rows else np.nan
    if not np.isfinite(here):
      continue
    if np.isfinite(hotter):
      outcome['always_increase'].append(hotter < here)
    if np.isfinite(colder):
      outcome['always_decrease'].append(colder < here)
    move = advice_for(label)
    if move == 'increase' and np.isfinite(hotter):
      outcome['increase'].append(hotter < here)
    elif move == 'decrease' and np.isfinite(colder):
      outcome['decrease'].append(colder < here)
    elif move == 'keep' and (np.isfinite(hotter) or np.isfinite(colder)):
      outcome['keep'].append(not (np.nanmin([hotter, colder]) < here))
  result = {k: {'right': int(np.sum(v)), 'cells': len(v),
                'accuracy': float(np.mean(v)) if v else float('nan')}
            for k, v in outcome.items()}
  advised = outcome['increase'] + outcome['decrease'] + outcome['keep']
  result['advice'] = {'right': int(np.sum(advised)), 'cells': len(advised),
                      'accuracy': float(np.mean(advised)) if advised else float('nan')}
  return result


def probe_config(config, temperature: float, density: float):
  """The minimal probe of one cell: the temperature and its neighbours in the config's grid
  (the II-A/II-B rule compares a cell with its column), one density, one dense seed, two
  retrain seeds."""
  config = ml_collections.ConfigDict(config.to_dict())
  values = grid.hot_to_cold(config.temperature.knob, config.temperature.grid)
  if temperature not in values:
    raise CaseError(f'--temperature {temperature:g} is not in the config\'s temperature.grid '
                    f'{values}')
  i = values.index(temperature)
  config.temperature.grid = tuple(values[max(i - 1, 0):i + 2])
  config.prune.densities = (float(density),)
  config.dense.seeds = tuple(config.dense.seeds)[:1]
  config.retrain.seeds = tuple(config.retrain.seeds)[:2]
  return config


def run_probe() -> None:
  """Runs the probe sweep into --workdir (resumable like any sweep)."""
  from prunephase import sweep as sweep_lib  # pylint: disable=import-outside-toplevel
  config = runtime.config_value(_CONFIG)
  if config is None or not _WORKDIR.value:
    raise CaseError('--probe needs --config=FILE and --workdir=DIR (a new directory)')
  if _DENSITY.value is None or _TEMPERATURE.value is None:
    raise CaseError('--probe needs --density and --temperature')
  config = probe_config(config, _TEMPERATURE.value, _DENSITY.value)
  grid.validate(config)
  runtime.prepare(config)  # The same device layout as `prunephase` would use.
  logging.set_verbosity(logging.WARNING)
  print(f'probe: {config.temperature.knob} {list(config.temperature.grid)} x density '
        f'{_DENSITY.value:g}, 1 dense seed x 2 retrain seeds, into {_WORKDIR.value}', flush=True)
  sweep_lib.run_sweep(config, _WORKDIR.value)


def advise_main(argv) -> None:
  """prunephase-advise: CS1 for one cell, or evaluated over every cell of a sweep."""
  del argv
  from prunephase import checkpoints  # pylint: disable=import-outside-toplevel
  from prunephase import data as data_lib  # pylint: disable=import-outside-toplevel
  from prunephase import sweep as sweep_lib  # pylint: disable=import-outside-toplevel
  from prunephase import workdir as wd  # pylint: disable=import-outside-toplevel
  try:
    if _PROBE.value:
      run_probe()
    loaded = load_labelled()
    if not _EVALUATE.value and (_DENSITY.value is None or _TEMPERATURE.value is None):
      raise CaseError('give --density and --temperature (a cell of the table), or --evaluate')
  except (CaseError, tables.TableError, grid.ConfigError, data_lib.DataError,
          sweep_lib.SweepError, wd.WorkdirError, checkpoints.CheckpointError) as error:
    runtime.fail(str(error))
  labelled, knob = loaded['labelled'], loaded['knob']
  temperatures, densities = loaded['temperatures'], loaded['densities']
  means, labels = labelled['means'], labelled['labels']
  out = loaded['out']
  if _EVALUATE.value:
    result = evaluate_advice(means['test_error'], labels)
    lines = [[k, v['right'], v['cells'], _fmt(v['accuracy'], 3)] for k, v in result.items()]
    _print_table(f'CS1 evaluation on {loaded["source"]}: does the advised move lower test error?',
                 ['advice', 'right', 'cells', 'accuracy'], lines)
    workdir_lib.write_json(out / 'advise_evaluation.json', result)
    print(f'wrote {out / "advise_evaluation.json"}')
    return
  try:
    t = temperatures.index(float(_TEMPERATURE.value))
    d = densities.index(float(_DENSITY.value))
  except ValueError:
    runtime.fail(f'no cell at temperature {_TEMPERATURE.value:g}, density '
                 f'{_DENSITY.value:g}; the table has temperatures {temperatures} and densities '
                 f'{densities}')
  label = labels[t, d]
  move = advice_for(label)
  up, down = MOVES[knob]
  words = {'increase': f'increase the temperature: {up}',
           'decrease': f'decrease the temperature: {down}',
           'keep': 'keep the temperature', 'none': 'no advice (the cell has NaN metrics)'}[move]
  evidence = {
      'temperature': temperatures[t], 'density': densities[d], 'regime': label,
      'confidence': labelled['confidence'][t, d], 'advice': move,
      'lmc': means['lmc'][t, d], 'cka_softmax': means['cka_softmax'][t, d],
      'column_max_cka': float(np.nanmax(means['cka_softmax'][:, d])),
      'test_error': means['test_error'][t, d],
      'rule': regimes_lib.RegimeRule.from_config(loaded['config']).describe()}
  print(f'{knob}={temperatures[t]:g}, density {densities[d]:g}: regime {label or "n/a"} '
        f'(confidence {_fmt(evidence["confidence"], 2)}) -> {words}')
  lines = []
  for i, temperature in enumerate(temperatures):
    lines.append([f'{temperature:g}' + (' <' if i == t else ''), labels[i, d] or 'n/a',
                  _fmt(means['lmc'][i, d]), _fmt(means['cka_softmax'][i, d]),
                  _fmt(means['test_error'][i, d])])
  _print_table(f'evidence: the density-{densities[d]:g} column (hottest first)',
               [knob, 'regime', 'lmc', 'cka', 'test_error'], lines)
  workdir_lib.write_json(out / 'advise.json', evidence)
  print(f'wrote {out / "advise.json"}')


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
  if knob == 'sam_rho':
    for name, value in (('SAM default rho=0.05', 0.05), ('plain SGD (rho=0)', 0.0)):
      picks[name] = temperatures.index(value) if value in temperatures else None
  return picks


def select_main(argv) -> None:
  """prunephase-select: CS2 (CS3 on a SAM-rho sweep) per density, against baselines."""
  del argv
  loaded = load_labelled_or_fail()
  labelled, knob = loaded['labelled'], loaded['knob']
  temperatures, densities = loaded['temperatures'], loaded['densities']
  means, labels = labelled['means'], labelled['labels']
  chosen = [d for d in range(len(densities))
            if _DENSITY.value is None or np.isclose(densities[d], _DENSITY.value)]
  if not chosen:
    runtime.fail(f'no density {_DENSITY.value:g} in the table; it has {densities}')
  records, gaps = [], {}
  for d in chosen:
    column = {f: means[f][:, d] for f in ('lmc', 'cka_softmax', 'test_error',
                                          'dense_test_error')}
    picks = select_column(knob, temperatures, column, labels[:, d])
    oracle = column['test_error'][picks['oracle']] if picks['oracle'] is not None else np.nan
    lines = []
    for method, index in picks.items():
      error = column['test_error'][index] if index is not None else np.nan
      gap = error - oracle
      gaps.setdefault(method, []).append(gap)
      lines.append([method, 'n/a' if index is None else f'{temperatures[index]:g}',
                    labels[index, d] if index is not None else '', _fmt(error), _fmt(gap)])
      records.append({'density': densities[d], 'method': method,
                      'temperature': None if index is None else temperatures[index],
                      'regime': '' if index is None else labels[index, d],
                      'test_error': error, 'gap_to_oracle': gap})
    _print_table(f'density {densities[d]:g}: which {knob} to prune from',
                 ['method', knob, 'regime', 'test_error', 'gap_to_oracle'], lines)
  summary = [[m, _fmt(float(np.nanmean(g)) if np.isfinite(g).any() else np.nan),
              f'{int(np.sum(np.asarray(g) <= 1e-12))}/{len(g)}'] for m, g in gaps.items()]
  _print_table('mean over densities', ['method', 'mean gap to oracle', 'picks the oracle'],
               summary)
  out = loaded['out']
  workdir_lib.write_csv(out / 'select.csv', records,
                        ['density', 'method', 'temperature', 'regime', 'test_error',
                         'gap_to_oracle'])
  workdir_lib.write_json(out / 'select.json', {
      'knob': knob, 'records': records,
      'rule': 'avoid Regime I, then highest CKA (all in I: highest LMC); prunephase\'s rule',
      'mean_gap': {m: float(np.nanmean(g)) for m, g in gaps.items()}})
  print(f'wrote {out / "select.csv"}, select.json')


def run_regimes():
  app.run(regimes_main, flags_parser=runtime.parse_flags)


def run_advise():
  app.run(advise_main, flags_parser=runtime.parse_flags)


def run_select():
  app.run(select_main, flags_parser=runtime.parse_flags)
