"""Tests for table reading (prunephase.tables), labelled tables (prunephase.cases) and the
prunephase-regimes / -advise / -select commands on synthetic tables with known answers (the
case-study rules themselves: tests/test_advice.py, tests/test_selection.py)."""

import csv
import json
import re

from absl import flags
import numpy as np
import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order
from conftest import one_line_error
from conftest import run_command
from conftest import tiny_config
from conftest import tiny_config_file
from prunephase import cases
from prunephase import probe
from prunephase import tables
from prunephase.cli import advise as advise_cli
from prunephase.cli import regimes as regimes_cli


def _write(path, header, rows):
  path.write_text('\n'.join([','.join(header)] + [','.join(map(str, r)) for r in rows]) + '\n')
  return path


# ---------------------------------------------------------------------------- tables


def test_read_table_parses_numbers_and_nan(tmp_path):
  path = _write(tmp_path / 't.csv', ['knob', 'temperature', 'density', 'lmc', 'cka_softmax',
                                     'test_error', 'note'],
                [['epochs', 10, 0.1, -0.5, 0.9, '', 'x'],
                 ['epochs', 20, 1, 'nan', ' 0.8 ', 0.2, '']])
  rows = tables.read_table(path)
  assert len(rows) == 2
  assert rows[0]['temperature'] == 10.0 and rows[0]['density'] == 0.1
  assert rows[0]['lmc'] == -0.5 and rows[0]['cka_softmax'] == 0.9
  assert np.isnan(rows[0]['test_error'])
  assert np.isnan(rows[1]['lmc']) and rows[1]['cka_softmax'] == 0.8
  assert rows[0]['knob'] == 'epochs' and rows[0]['note'] == 'x'  # non-numeric kept as text


def test_read_table_accepts_cka_as_cka_softmax(tmp_path):
  path = _write(tmp_path / 't.csv', ['temperature', 'density', 'lmc', 'cka'],
                [[10, 0.5, 0.0, 0.75]])
  (row,) = tables.read_table(path)
  assert row['cka_softmax'] == 0.75
  assert 'cka' not in row


@pytest.mark.parametrize('header,missing', [
    (['temperature', 'density', 'cka_softmax'], 'lmc'),
    (['temperature', 'lmc', 'cka'], 'density'),
    (['temperature', 'density', 'lmc'], 'cka_softmax (or cka)'),
])
def test_read_table_missing_column(tmp_path, header, missing):
  path = _write(tmp_path / 't.csv', header, [[1] * len(header)])
  with pytest.raises(tables.TableError, match=r'missing column\(s\) ' + re.escape(missing)):
    tables.read_table(path)


def test_read_table_non_numeric_value(tmp_path):
  path = _write(tmp_path / 'bad.csv', ['temperature', 'density', 'lmc', 'cka_softmax'],
                [[10, 0.5, 0.0, 0.9], [20, 0.5, 'abc', 0.9]])
  with pytest.raises(tables.TableError) as error:
    tables.read_table(path)
  assert str(error.value) == f"{path} line 3: column lmc: 'abc' is not a number"


@pytest.mark.parametrize('density', [0, 1.5, -0.1])
def test_read_table_density_outside_unit_interval(tmp_path, density):
  path = _write(tmp_path / 't.csv', ['temperature', 'density', 'lmc', 'cka'],
                [[10, 1.0, 0.0, 0.9], [10, density, 0.0, 0.9]])
  with pytest.raises(tables.TableError, match=r't\.csv line 3: density .* is outside \(0, 1\]'):
    tables.read_table(path)


def test_read_table_empty_temperature(tmp_path):
  path = _write(tmp_path / 't.csv', ['temperature', 'density', 'lmc', 'cka'],
                [['', 0.5, 0.0, 0.9]])
  with pytest.raises(tables.TableError, match='line 2: column temperature is empty'):
    tables.read_table(path)


def test_read_table_empty(tmp_path):
  path = _write(tmp_path / 'empty.csv', ['temperature', 'density', 'lmc', 'cka'], [])
  with pytest.raises(tables.TableError, match='the table has no rows'):
    tables.read_table(path)
  blank = tmp_path / 'blank.csv'
  blank.write_text('')
  with pytest.raises(tables.TableError, match=r'missing column\(s\) temperature, density, lmc'):
    tables.read_table(blank)
  with pytest.raises(tables.TableError, match='no such file'):
    tables.read_table(tmp_path / 'absent.csv')


def _rows(knob, temperatures, densities=(0.5, 0.1)):
  return [{'knob': knob, 'temperature': t, 'density': d} for t in temperatures
          for d in densities]


def test_axes_from_knob_column():
  assert tables.axes(_rows('epochs', [40.0, 10.0, 20.0])) == (
      'epochs', [10.0, 20.0, 40.0], [0.1, 0.5])  # fewer epochs is hotter
  assert tables.axes(_rows('lr', [0.01, 0.1, 0.05])) == (
      'lr', [0.1, 0.05, 0.01], [0.1, 0.5])  # a larger learning rate is hotter


def test_axes_without_knob_column():
  rows = [{'temperature': t, 'density': 0.5} for t in (64.0, 512.0, 128.0)]
  with pytest.raises(tables.TableError, match='cannot tell which temperatures are hotter'):
    tables.axes(rows)
  assert tables.axes(rows, 'batch_size') == ('batch_size', [64.0, 128.0, 512.0], [0.5])
  # The argument wins over the column; two knobs in one table need the argument.
  assert tables.axes(_rows('epochs', [1.0, 2.0]), 'weight_decay')[1] == [2.0, 1.0]
  mixed = _rows('epochs', [1.0]) + _rows('lr', [2.0])
  with pytest.raises(tables.TableError, match='needs one value in a knob column'):
    tables.axes(mixed)


def test_axes_unknown_knob():
  with pytest.raises(tables.TableError, match="unknown knob 'momentum'"):
    tables.axes(_rows('epochs', [1.0]), 'momentum')
  with pytest.raises(tables.TableError, match="unknown knob 'temp'"):
    tables.axes(_rows('temp', [1.0]))


# ---------------------------------------------------------------------------- commands

# A 3 temperatures (epochs 10, 20, 40; hottest first) x 2 densities table, 2 seed pairs per cell
# from 2 dense seeds. The commands run the threshold rule here (`_run`): Regime I below LMC
# -0.02; II-B within 0.01 of the column's regime-II max CKA.
#   density 0.1: CKA 0.80 / 0.90 / (0.95, LMC -0.3)  -> II-A, II-B, I
#   density 0.5: CKA 0.70 / 0.915 / 0.92              -> II-A, II-B, II-B
# LMC and CKA are equal within each cell's pairs, so every confidence is 1.
CELLS = {  # (epochs, density): (lmc, cka, test errors of the two pairs, dense test error)
    (10, 0.1): (0.01, 0.80, (0.19, 0.21), 0.05),
    (20, 0.1): (0.0, 0.90, (0.14, 0.16), 0.06),
    (40, 0.1): (-0.3, 0.95, (0.29, 0.31), 0.04),
    (10, 0.5): (0.0, 0.70, (0.115, 0.125), 0.05),
    (20, 0.5): (0.005, 0.915, (0.105, 0.115), 0.06),
    (40, 0.5): (0.0, 0.92, (0.095, 0.105), 0.04),
}
LABELS = {(10, 0.1): 'II-A', (20, 0.1): 'II-B', (40, 0.1): 'I',
          (10, 0.5): 'II-A', (20, 0.5): 'II-B', (40, 0.5): 'II-B'}
COLUMNS = ['knob', 'temperature', 'density', 'dense_seed', 'seed_a', 'seed_b', 'lmc',
           'cka_softmax', 'test_error', 'dense_test_error']


def _results(path, drop=None, replace=None):
  rows = []
  for (t, d), (lmc, cka, errors, dense) in CELLS.items():
    for seed_b, error in zip((2, 3), errors):
      rows.append(dict(zip(COLUMNS, ['epochs', t, d, seed_b - 2, 1, seed_b, lmc, cka, error,
                                     dense])))
  if replace:
    index, column, value = replace
    rows[index][column] = value
  header = [c for c in COLUMNS if c != drop]
  return _write(path, header, [[r[c] for c in header] for r in rows])


def _run(command, *args):
  """Runs a console script; the expectations below were worked out with the threshold rule and
  cka_tolerance 0.01 (the transition rule has its own command test)."""
  return run_command(command, *args, '--cka_tolerance=0.01', '--rule=threshold', timeout=120)


def test_regimes_command(tmp_path):
  results = _results(tmp_path / 'results.csv')
  out = tmp_path / 'out'
  proc = _run('prunephase-regimes', f'--results={results}', f'--out={out}')
  assert proc.returncode == 0, proc.stderr
  grid = {}
  for line in proc.stdout.splitlines():
    left, _, right = line.partition(' | ')
    if right and left.strip().replace('.', '').isdigit():
      grid[float(left)] = right.split()
  assert grid == {10.0: ['II-A', 'II-A'], 20.0: ['II-B', 'II-B'], 40.0: ['I', 'II-B']}
  assert 'cells per regime: I=1 II-A=2 II-B=3 unlabelled=0 (of 6 cells)' in proc.stdout
  for name in ('regimes.csv', 'regimes.json', 'phase_diagram.png', 'findings.json'):
    assert (out / name).stat().st_size > 0, name
  with open(out / 'regimes.csv', newline='') as f:
    cells = list(csv.DictReader(f))
  assert len(cells) == 6
  for cell in cells:
    key = (int(float(cell['temperature'])), float(cell['density']))
    assert cell['regime'] == LABELS[key], key
    assert float(cell['regime_confidence']) == 1.0
    assert int(cell['num_pairs']) == 2
    assert np.isclose(float(cell['lmc']), CELLS[key][0])
    assert np.isclose(float(cell['test_error']), np.mean(CELLS[key][2]))
  report = json.loads((out / 'regimes.json').read_text())
  assert report['counts'] == {'I': 1, 'II-A': 2, 'II-B': 3, 'none': 0}
  assert report['unlabelled_cells'] == []
  assert report['rule'] == 'threshold'
  assert report['parameters'] == {'rule': 'threshold', 'min_drop': 0.05, 'noise_factor': 1.0,
                                  'lmc_threshold': -0.02, 'cka_tolerance': 0.01}
  found = json.loads((out / 'findings.json').read_text())
  assert {k: found[k]['status'] for k in ('transition', 'connectivity', 'similarity')} == {
      'transition': 'reproduced', 'connectivity': 'reproduced', 'similarity': 'reproduced'}
  assert found['transition']['low_density']['best_temperature'] == 20.0


FIGURE2 = REPO / 'docs' / 'paper_figure2'


def test_regimes_compare_with_the_papers_figure_2(tmp_path):
  proc = run_command('prunephase-regimes', f'--results={FIGURE2 / "metrics.csv"}',
                     '--knob=epochs', f'--compare={FIGURE2 / "labels.csv"}', f'--out={tmp_path}',
                     timeout=120)
  assert proc.returncode == 0, proc.stderr
  line = next(l for l in proc.stdout.splitlines() if l.startswith('agreement with'))
  agree, matched = map(int, line.split(': ')[1].split()[0].split('/'))
  assert matched == 139 and agree / matched >= 0.9, proc.stdout
  assert 'transition rule' in proc.stdout
  saved = json.loads((tmp_path / 'agreement.json').read_text())
  assert (saved['agree'], saved['matched']) == (agree, matched)


@pytest.mark.parametrize('content, message', [
    (None, '--compare: {labels}: no such file'),
    ('temperature,density\n10,0.1\n', '--compare: {labels}: missing column(s) regime'),
    ('temperature,density,regime\nten,0.1,I\n',
     "--compare: {labels} line 2: column temperature: 'ten' is not a number"),
    ('temperature,density,regime\n10,0.1,ambiguous\n',
     '--compare: {labels}: no row has a regime I, II-A or II-B'),
], ids=['absent', 'no_regime_column', 'not_a_number', 'no_regime'])
def test_regimes_compare_bad_file_is_one_line_and_writes_nothing(tmp_path, content, message):
  labels = tmp_path / 'labels.csv'
  if content is not None:
    labels.write_text(content)
  out = tmp_path / 'out'
  proc = _run('prunephase-regimes', f'--results={_results(tmp_path / "r.csv")}',
              f'--out={out}', f'--compare={labels}')
  assert one_line_error(proc) == message.format(labels=labels)
  assert not out.exists()


def test_advise_command(tmp_path):
  results = _results(tmp_path / 'results.csv')
  proc = _run('prunephase-advise', f'--results={results}', '--density=0.1',
              '--temperature=40')
  assert proc.returncode == 0, proc.stderr
  first = proc.stdout.splitlines()[0]
  assert first == ('epochs=40, density 0.1: regime I (confidence 1.00) -> increase the '
                   'temperature: train fewer epochs (an earlier checkpoint)')
  evidence = json.loads((tmp_path / 'advise.json').read_text())
  assert evidence['advice'] == 'increase' and evidence['regime'] == 'I'
  assert evidence['lmc'] == -0.3 and np.isclose(evidence['column_max_cka'], 0.95)


def test_probe_config_is_the_cell_and_its_neighbours():
  config = tiny_config()
  config.temperature.grid = (1, 2, 3, 4)
  config.dense.epochs = 4
  config.seeds.adaptive = True  # As in configs/default.py: the probe turns it off.
  probed = probe.probe_config(config, 2, 0.3)
  assert not probed.seeds.adaptive
  assert tuple(probed.temperature.grid) == (1, 2, 3)  # epochs: fewer is hotter, hottest first
  assert tuple(probed.prune.densities) == (0.3,)
  assert tuple(probed.dense.seeds) == (1,) and tuple(probed.retrain.seeds) == (1, 2)
  assert tuple(config.temperature.grid) == (1, 2, 3, 4)  # The config itself is unchanged.
  with pytest.raises(cases.CaseError, match=r"--temperature 5 is not in the config's "
                     r'temperature.grid \[1, 2, 3, 4\]'):
    probe.probe_config(config, 5, 0.3)


def test_advise_probe_command(tmp_path):
  workdir = tmp_path / 'probe'
  proc = run_command('prunephase-advise', '--probe', f'--config={tiny_config_file(tmp_path)}',
                     f'--workdir={workdir}', '--temperature=2', '--density=0.2')
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.splitlines()
  assert lines[0] == (f'probe: epochs [1, 2] x density 0.2, 1 dense seed x 2 retrain seeds, into '
                      f'{workdir}')
  advice = next(line for line in lines if line.startswith('epochs=2, density 0.2: regime '))
  evidence = json.loads((workdir / 'regimes' / 'advise.json').read_text())
  assert f'-> {evidence["advice"]}' in advice
  assert (workdir / 'results.csv').exists()


@pytest.fixture
def parsed_flags():
  """Parses command-line flags in this process for the commands' main functions; resets them
  after."""
  def parse(*args):
    flags.FLAGS(['prunephase-test', *args, '--cka_tolerance=0.01', '--rule=threshold'])  # As _run.
  yield parse
  flags.FLAGS.unparse_flags()


@pytest.mark.parametrize('temperature,density,word,regime', [
    (40, 0.1, 'increase', 'I'), (10, 0.1, 'decrease', 'II-A'), (20, 0.5, 'keep', 'II-B'),
    (40, 0.5, 'keep', 'II-B')])
def test_advise_main_words(tmp_path, capsys, parsed_flags, temperature, density, word, regime):
  results = _results(tmp_path / 'results.csv')
  parsed_flags(f'--results={results}', f'--density={density}', f'--temperature={temperature}',
               '--bootstrap=5')
  advise_cli.main([])
  first = capsys.readouterr().out.splitlines()[0]
  assert first.startswith(f'epochs={temperature}, density {density}: regime {regime} ')
  assert f'-> {word} the temperature' in first
  assert json.loads((tmp_path / 'advise.json').read_text())['advice'] == word


def test_regimes_main_without_test_error(tmp_path, capsys, parsed_flags):
  # test_error is optional: labels and findings must still come out (the transition finding,
  # which ranks test errors, reads 'not reproduced').
  results = _results(tmp_path / 'results.csv', drop='test_error')
  parsed_flags(f'--results={results}', f'--out={tmp_path / "out"}', '--bootstrap=5')
  regimes_cli.main([])
  assert 'cells per regime: I=1 II-A=2 II-B=3 unlabelled=0 (of 6 cells)' in capsys.readouterr().out
  found = json.loads((tmp_path / 'out' / 'findings.json').read_text())
  assert found['transition']['status'] == 'not reproduced'
  assert found['connectivity']['status'] == 'reproduced'


def test_advise_evaluate_command(tmp_path):
  # Test-error means: density 0.1: 0.20, 0.15, 0.30; density 0.5: 0.12, 0.11, 0.10.
  #   0.1: II-A decrease 0.15<0.20 T; II-B keep (0.20, 0.30 not lower) T; I increase 0.15<0.30 T
  #   0.5: II-A decrease 0.11<0.12 T; II-B keep but 0.10<0.11 F; II-B keep (0.11 not lower) T
  results = _results(tmp_path / 'results.csv')
  proc = _run('prunephase-advise', f'--results={results}', '--evaluate',
              f'--out={tmp_path / "eval"}')
  assert proc.returncode == 0, proc.stderr
  assert 'does the advised move lower test error?' in proc.stdout
  result = json.loads((tmp_path / 'eval' / 'advise_evaluation.json').read_text())
  expected = {'increase': (1, 1), 'decrease': (2, 2), 'keep': (2, 3),
              'always_increase': (1, 4), 'always_decrease': (3, 4), 'advice': (5, 6)}
  assert {k: (v['right'], v['cells']) for k, v in result.items()} == expected
  assert np.isclose(result['advice']['accuracy'], 5 / 6)


def test_select_command(tmp_path):
  results = _results(tmp_path / 'results.csv')
  proc = _run('prunephase-select', f'--results={results}')
  assert proc.returncode == 0, proc.stderr
  assert 'density 0.1: which epochs to prune from' in proc.stdout
  with open(tmp_path / 'select.csv', newline='') as f:
    records = list(csv.DictReader(f))
  picks = {(float(r['density']), r['method']): r for r in records}
  assert len(picks) == len(records) == 12  # 2 densities x 6 methods (no SAM rows for epochs)
  # density 0.1: rule -> epochs 20 (max CKA outside Regime I) = oracle; LMC only -> 10
  # (0.20, gap 0.05); CKA only, best dense and last -> 40 (0.30, gap 0.15).
  # density 0.5: rule -> 40 = oracle; LMC only -> 20 (gap 0.01).
  expected = {
      0.1: {'three-regime rule': 20, 'oracle': 20, 'LMC only': 10, 'CKA only': 40,
            'best dense test accuracy': 40, 'last checkpoint / coldest': 40},
      0.5: {'three-regime rule': 40, 'oracle': 40, 'LMC only': 20, 'CKA only': 40,
            'best dense test accuracy': 40, 'last checkpoint / coldest': 40}}
  gaps = {0.1: {20: 0.0, 10: 0.05, 40: 0.15}, 0.5: {40: 0.0, 20: 0.01}}
  for density, methods in expected.items():
    for method, temperature in methods.items():
      record = picks[(density, method)]
      assert float(record['temperature']) == temperature, (density, method)
      assert record['regime'] == LABELS[(temperature, density)]
      assert np.isclose(float(record['gap_to_oracle']), gaps[density][temperature], atol=1e-9)
    assert float(picks[(density, 'oracle')]['gap_to_oracle']) == 0.0
  summary = json.loads((tmp_path / 'select.json').read_text())
  assert summary['mean_gap']['three-regime rule'] == 0.0
  assert np.isclose(summary['mean_gap']['LMC only'], 0.03)


def test_missing_lmc_column_is_a_one_line_error(tmp_path):
  results = _results(tmp_path / 'results.csv', drop='lmc')
  proc = _run('prunephase-regimes', f'--results={results}', f'--out={tmp_path / "out"}')
  assert one_line_error(proc).startswith(f'{results}: missing column(s) lmc;')
  assert not (tmp_path / 'out').exists()


def test_malformed_value_is_a_one_line_error(tmp_path):
  # Row index 2 is the file's line 4 (line 1 is the header).
  results = _results(tmp_path / 'results.csv', replace=(2, 'cka_softmax', '0.9x'))
  proc = _run('prunephase-select', f'--results={results}')
  assert one_line_error(proc) == (
      f"{results} line 4: column cka_softmax: '0.9x' is not a number")
