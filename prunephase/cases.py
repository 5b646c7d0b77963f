"""A results table labelled for the case studies, and the regimes report of any table.

  loaded = cases.load_labelled(results='FILE.csv', knob='epochs')   # or workdir='DIR'
  cases.regimes(loaded, compare='LABELS.csv')          label any table, plot it, score it
  advice.advise(loaded, temperature=80, density=0.05)  CS1 (prunephase.advice)
  selection.select(loaded, density=0.05)               CS2, CS3 (prunephase.selection)

`load_labelled` is what every case-study command starts from (`prunephase-regimes`, `-advise`,
`-select`; prunephase.cli): the table, its axes, the rule's labels and confidence. The helpers
below it (evidence labels, output directory, printed tables and numbers) are shared by the case
studies (prunephase.advice, prunephase.selection) and their out-of-sample versions
(prunephase.out_of_sample). `regimes` prints what `prunephase-regimes` prints and writes its
report into `loaded['out']`; bad input raises CaseError or tables.TableError with a one-line
message before anything is printed or written.

The rules are prunephase's own, stated in the README ("Deciding with the regime model"): the
paper's case-study code and numbers are not available.

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
from prunephase import files
from prunephase import regimes as regimes_lib
from prunephase import report_files
from prunephase import tables
from prunephase import workdir as workdir_lib
from prunephase.config import names

# Rule parameters a caller may override (the flags of the same names).
RULE_FIELDS = ('rule', 'min_drop', 'noise_factor', 'lmc_threshold', 'cka_tolerance', 'bootstrap',
               'confidence', 'min_confidence')


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
      stored = files.read_json(path)
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
    stored = files.read_json(pathlib.Path(workdir) / workdir_lib.CONFIG_FILE)
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
  search = _search_of(loaded)
  print(f'regimes of {loaded["source"]} ({rule.describe()}; prunephase\'s rule, not the '
        'paper\'s; parentheses: confidence below '
        f'{loaded["config"].min_confidence:g}'
        + ('; square brackets: inferred, not measured)' if search is not None else ')'))
  print(report_files.label_text_grid(loaded['temperatures'], loaded['densities'], summary['labels'],
                                     summary['confidence'], loaded['knob'],
                                     float(loaded['config'].min_confidence),
                                     None if search is None else search['inferred']))
  counts = summary['counts']
  unlabelled = ', '.join(f'{loaded["knob"]}={cell["temperature"]:g} density '
                         f'{cell["density"]:g}' for cell in summary['unlabelled'])
  print(f'cells per regime: I={counts["I"]} II-A={counts["II-A"]} II-B={counts["II-B"]} '
        f'unlabelled={counts["none"]} (of {count_text(summary["num_cells"])})'
        + (f'; unlabelled (a NaN LMC or CKA, or a diverged member): {unlabelled}'
           if unlabelled else ''))
  labels, confidence = summary['labels'], summary['confidence']
  if search is not None:  # Inferred cells have no measurement, so no confidence: say so.
    print(f'inferred from measured neighbours (adaptive search): '
          f'{count_text(int(search["inferred"].sum()))}')
    confidence = np.where(search['inferred'], 0.0, confidence)
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
    files.write_json(out / 'agreement.json', {'labels': compare, **result})
    written += ', agreement.json'
    summary = {**summary, 'agreement': result}
  print(f'wrote {out}/: {written}')
  return summary
