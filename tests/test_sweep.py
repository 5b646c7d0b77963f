"""End to end: the whole sweep on a tiny MNIST-1D grid, resume, bad input (analysis: elsewhere)."""

import csv
import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest

from prunephase import artifacts
from prunephase import checkpoints
from prunephase import config as config_lib
from prunephase import files
from prunephase import findings
from prunephase import sweep as sweep_lib
from prunephase import workdir as workdir_lib
from conftest import one_line_error  # pylint: disable=g-import-not-at-top
from conftest import run_command  # pylint: disable=g-import-not-at-top
from conftest import tiny_config  # pylint: disable=g-import-not-at-top

# The end of a message that lists the registered names (which grow with the registry and the
# configs): 'a, b, c'.
NAMES = r'\w+(?:, \w+)*'


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_every_output_is_written_with_values_in_range(finished_run):
  path, _, summary = finished_run
  for name in ('config.json', 'results.csv', 'cells.csv', 'phase_diagram.png', 'lmc_curves.png',
               'metrics.jsonl', 'regimes.json', 'findings.json'):
    assert (path / name).stat().st_size > 0, name
  rows = read_csv(path / 'results.csv')
  assert len(rows) == 2 * 2 * 1 * 3  # temperatures x densities x dense seeds x seed pairs.
  for column in ('temperature', 'density', 'dense_seed', 'seed_a', 'seed_b', 'test_error',
                 'train_error', 'lmc', 'cka_softmax', 'cka_logits', 'regime'):
    assert column in rows[0]
  for row in rows:
    assert 0 <= float(row['test_error']) <= 1
    assert 0 <= float(row['train_error']) <= 1
    assert -1 <= float(row['lmc']) <= 1
    assert 0 <= float(row['cka_softmax']) <= 1 + 1e-5
    assert row['regime'] in ('I', 'II-A', 'II-B')
    assert float(row['actual_density']) == pytest.approx(float(row['density']), abs=0.02)
  cells = read_csv(path / 'cells.csv')
  assert len(cells) == 4
  # Cell means are the means of the rows.
  cell = cells[0]
  members = [r for r in rows if r['temperature'] == cell['temperature']
             and r['density'] == cell['density']]
  assert float(cell['lmc']) == pytest.approx(np.mean([float(r['lmc']) for r in members]),
                                             abs=1e-5)
  assert sum(summary['counts'].values()) == 4
  # The tiny grid's models are barely trained: a cell at chance leaves its findings
  # 'not assessed' (findings.NOT_ASSESSED) rather than stated on chance-level models.
  for name in ('transition', 'connectivity', 'similarity'):
    assert summary['findings'][name]['status'] in (*findings.STATUSES, findings.NOT_ASSESSED)
  assert {row['diverged'] for row in rows} == {'False'}
  # Rows hottest first: the epoch family is hottest at the fewest epochs.
  assert [float(c['temperature']) for c in cells[::2]] == [1.0, 2.0]


def test_outputs_match_an_independent_recomputation(finished_run):
  # Exact checks against what can be recomputed without prunephase: from config.json, the
  # stored LMC curves and the tables themselves (CSV floats have 6 significant digits).
  path, _, summary = finished_run
  config = files.read_json(path / workdir_lib.CONFIG_FILE)
  temperatures, densities = config['temperature']['grid'], config['prune']['densities']
  results = pd.read_csv(path / 'results.csv')
  # One row per temperature x density x dense seed x seed pair of retrain seeds, each once.
  expected = set(itertools.product(
      map(float, temperatures), map(float, densities), config['dense']['seeds'],
      itertools.combinations(config['retrain']['seeds'], 2)))
  keys = [(t, d, s, (a, b)) for t, d, s, a, b in results[
      ['temperature', 'density', 'dense_seed', 'seed_a', 'seed_b']].itertuples(index=False)]
  assert len(keys) == len(expected) == 2 * 2 * 1 * 3 and set(keys) == expected
  # A pair's errors are the means of its two members'.
  for pair, (a, b) in (('test_error', ('test_error_a', 'test_error_b')),
                       ('train_error', ('train_error_a', 'train_error_b'))):
    np.testing.assert_allclose(results[pair], (results[a] + results[b]) / 2, atol=1e-6)

  # cells.csv: means over dense seeds of each dense seed's mean over its pairs.
  fields = ['test_error', 'train_error', 'lmc', 'cka_softmax', 'cka_logits',
            'pruned_test_error', 'dense_test_error']
  by_cell = ['temperature', 'density']
  means = results.groupby(by_cell + ['dense_seed'])[fields].mean().groupby(level=by_cell).mean()
  cells = pd.read_csv(path / 'cells.csv', keep_default_na=False,
                      na_values=['']).set_index(by_cell).sort_index()
  assert len(cells) == len(temperatures) * len(densities)
  pd.testing.assert_frame_equal(cells[fields], means.sort_index(), rtol=2e-5, atol=1e-6)
  np.testing.assert_array_equal(cells['num_pairs'], results.groupby(by_cell).size().sort_index())
  np.testing.assert_array_equal(cells['num_dense_seeds'],
                                results.groupby(by_cell)['dense_seed'].nunique().sort_index())

  # Labels: every row carries its cell's label, as cells.csv and regimes.json give it.
  saved = files.read_json(path / 'regimes.json')
  labels = {(float(c['temperature']), float(c['density'])): c['regime'] for c in saved['labels']}
  assert labels == {(float(t), float(d)): r for (t, d), r in cells['regime'].fillna('').items()}
  results_labels = results['regime'].fillna('')
  assert all(label == labels[t, d] for t, d, label in zip(results['temperature'],
                                                          results['density'], results_labels))
  counted = {r: sum(label == r for label in labels.values()) for r in ('I', 'II-A', 'II-B')}
  assert saved['counts'] == summary['counts'] == {**counted, 'none': len(labels) - sum(
      counted.values())}

  # LMC from each pair's stored curve (docs/definitions.md, LMC): m - e[k], with m the mean of
  # the path's two ends and k the first index of the largest |m - e(t)|. Doubled, the
  # misclassification counts stay integers, so ties are exact as in the definition.
  num_train = files.read_json(path / 'data.json')['num_train']
  store = artifacts.Store(path, tiny_config())
  checked = 0
  for temperature in temperatures:
    for pair in files.read_json(store.measure_file(temperature))['pairs']:
      mistakes = np.asarray(pair['curve']['train_mistakes'])
      twice_gap = mistakes[0] + mistakes[-1] - 2 * mistakes
      k = int(np.argmax(np.abs(twice_gap)))
      lmc = twice_gap[k] / 2 / num_train
      assert pair['lmc_index'] == k
      assert pair['lmc'] == pytest.approx(lmc, rel=1e-6, abs=1e-9)
      row = results[(results['temperature'] == temperature)
                    & (results['density'] == pair['density'])
                    & (results['dense_seed'] == pair['dense_seed'])
                    & (results['seed_a'] == pair['seed_a'])
                    & (results['seed_b'] == pair['seed_b'])]
      assert len(row) == 1
      assert row['lmc'].item() == pytest.approx(lmc, rel=1e-5, abs=1e-7)
      assert row['train_error_a'].item() == pytest.approx(mistakes[0] / num_train, rel=1e-5)
      assert row['train_error_b'].item() == pytest.approx(mistakes[-1] / num_train, rel=1e-5)
      checked += 1
  assert checked == len(results)


def test_metrics_log_has_every_member_and_epoch(finished_run):
  path, _, _ = finished_run
  import json  # pylint: disable=import-outside-toplevel
  rows = [json.loads(line) for line in open(path / 'metrics.jsonl')]
  retrain = [r for r in rows if r['stage'] == 'retrain']
  assert len(retrain) == 2 * (2 * 1 * 3) * 2  # temperatures x members x epochs.
  assert {'loss', 'error', 'test_error', 'lr', 'epoch'} <= set(retrain[0])


def test_rerun_skips_finished_work_and_gives_identical_results(finished_run, tmp_path):
  path, _, _ = finished_run
  before = (path / 'results.csv').read_text()
  sweep, _ = sweep_lib.run_sweep(tiny_config(), path)
  assert (path / 'results.csv').read_text() == before
  assert sweep.timings['train'] < 5  # Nothing was retrained.


def test_resume_after_interruption_gives_identical_results(finished_run, tmp_path, monkeypatch):
  path, _, _ = finished_run
  original_save = checkpoints.save
  calls = []

  def crashing_save(*args, **kwargs):
    calls.append(args[0])
    if len(calls) == 5:  # Dense, 2 masks, then die while saving the first retrain.
      raise KeyboardInterrupt('simulated kill')
    return original_save(*args, **kwargs)

  monkeypatch.setattr(checkpoints, 'save', crashing_save)
  with pytest.raises(KeyboardInterrupt):
    sweep_lib.run_sweep(tiny_config(), tmp_path)
  assert not (tmp_path / 'results.csv').exists()
  monkeypatch.setattr(checkpoints, 'save', original_save)
  sweep_lib.run_sweep(tiny_config(), tmp_path)
  assert (tmp_path / 'results.csv').read_text() == (path / 'results.csv').read_text()


@pytest.mark.parametrize('override, pattern', [
    ('--config.dataset.name=imagenet9',
     re.escape("unknown dataset 'imagenet9'; choose one of ") + NAMES),
    ('--config.model.name=resnet1000',
     re.escape("unknown model 'resnet1000'; choose one of ") + NAMES),
    ('--config.prune.method=snip',
     re.escape("unknown pruning method 'snip'; choose one of ") + NAMES),
    ('--config.prune.densities=(0.5,1.5)',
     re.escape('density 1.5 is outside (0, 1]: prune.densities are fractions of weights kept')),
    ('--config.prune.densities=()', re.escape('empty grid: prune.densities is empty')),
], ids=['dataset', 'model', 'method', 'density', 'no_density'])
def test_bad_config_ends_in_one_line_and_writes_nothing(tmp_path, override, pattern):
  workdir = tmp_path / 'w'
  result = run_command('prunephase', '--config=configs/default.py:quick', f'--workdir={workdir}',
                       override, timeout=120)
  message = one_line_error(result)
  assert re.fullmatch(pattern, message), message
  assert not workdir.exists()


def test_changing_only_the_regime_rule_relabels_without_retraining(finished_run):
  path, _, _ = finished_run
  config = tiny_config()
  config.regimes.rule = 'threshold'
  config.regimes.lmc_threshold = 1.0  # Everything below: all Regime I.
  _, summary = sweep_lib.run_sweep(config, path, stages=('report',))
  assert summary['counts']['I'] == 4
  sweep_lib.run_sweep(tiny_config(), path, stages=('report',))  # Restore the labels.


def test_diverged_dense_models_are_flagged_and_the_sweep_goes_on(tmp_path, capsys):
  config = tiny_config()
  config.dense.lr = 80.0  # Diverges: non-finite loss, every model at chance.
  config.temperature.grid = (2,)
  _, summary = sweep_lib.run_sweep(config, tmp_path)
  rows = read_csv(tmp_path / 'results.csv')
  assert rows and all(row['diverged'] == 'True' for row in rows)
  assert all(row['regime'] == '' for row in rows)
  assert summary['counts']['none'] == 2 and len(summary['unlabelled']) == 2
  assert 'diverged (non-finite loss, or at chance: test error within 0.02' in capsys.readouterr().out
  found = files.read_json(tmp_path / 'findings.json')
  assert len(found['unlabelled_cells']) == 2


def test_workdir_in_use_is_refused(tmp_path):
  held = workdir_lib.Workdir(tmp_path, tiny_config().to_dict())
  try:
    with pytest.raises(files.WorkdirError, match='in use by pid'):
      sweep_lib.run_sweep(tiny_config(), tmp_path, stages=('report',))
  finally:
    held.release()


def test_non_prunephase_directory_is_refused(tmp_path):
  (tmp_path / 'notes.txt').write_text('mine')
  with pytest.raises(files.WorkdirError, match='not a prunephase workdir'):
    sweep_lib.run_sweep(tiny_config(), tmp_path)


def test_unreadable_checkpoint_is_reported(finished_run, tmp_path):
  path, _, _ = finished_run
  import shutil  # pylint: disable=import-outside-toplevel
  copy = tmp_path / 'copy'
  shutil.copytree(path, copy)
  store = artifacts.Store(copy, tiny_config())
  store.measure_file(1).unlink()
  for file in (store.retrain_run_dir(1) / 'epochs' / '2').rglob('*'):
    if file.is_file() and file.stat().st_size > 0 and 'metadata' not in file.name:
      file.write_bytes(b'garbage')
  with pytest.raises((sweep_lib.SweepError, checkpoints.CheckpointError),
                     match='unreadable checkpoint'):
    sweep_lib.run_sweep(tiny_config(), copy, stages=('measure',))


def test_validate_rejects_what_cannot_work():
  config = tiny_config()
  config.retrain.seeds = (1,)
  with pytest.raises(config_lib.ConfigError, match='retrain.seeds needs at least 2'):
    config_lib.validate(config)
  config = tiny_config()
  config.temperature.grid = (1, 99)
  with pytest.raises(config_lib.ConfigError, match='whole numbers in'):
    config_lib.validate(config)


@pytest.mark.parametrize('field, value, message', [
    ('model.name', 'preresnet20', "model 'preresnet20' does not take mnist1d inputs"),
    ('model.kernel_sizes', (5, 5), 'equal lengths'),
    ('measure.pairs_per_call', -1, 'pairs_per_call must be >= 0'),
    ('mesh.data', 0, 'mesh.data >= 1'),
])
def test_validate_names_the_field(field, value, message):
  config = tiny_config()
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config)


def test_mlp_without_hidden_layers_is_refused():
  config = tiny_config()
  config.model.name, config.model.widths = 'mlp', ()
  with pytest.raises(config_lib.ConfigError, match='no prunable layer'):
    config_lib.validate(config)


@pytest.mark.parametrize('args, pattern', [
    (['--config=configs/default.py', '--config.nosuch=1'],
     re.escape('unknown config field nosuch; prunephase --config=configs/default.py '
               '--print_config lists the fields')),
    (['--config=configs/default.py:bogus'],
     re.escape("cannot load the config configs/default.py:bogus: unknown config argument 'bogus' "
               "in 'bogus'; use comma-separated names from ") + NAMES),
    (['--config=configs/nofile.py'],
     re.escape('cannot load the config file configs/nofile.py: no such file')),
], ids=['field', 'argument', 'file'])
def test_bad_flags_end_in_one_line(tmp_path, args, pattern):
  result = run_command('prunephase', *args, f'--workdir={tmp_path / "w"}', timeout=120)
  message = one_line_error(result)
  assert re.fullmatch(pattern, message), message
  assert not (tmp_path / 'w').exists()
