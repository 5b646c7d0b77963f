"""Every command's `--help` lists its own flags; `prunephase --print_config` lists every config
field with its meaning; config errors are one plain line. All fast: no JAX, no sweep."""

import re
import subprocess
import sys
import time

import pytest

from conftest import COMMANDS  # pylint: disable=g-bad-import-order
from conftest import REPO
from conftest import default_config
from conftest import error_lines
from conftest import run_command
from prunephase import config as config_lib
from prunephase.config import fields as fields_lib

TABLE_FLAGS = {'workdir', 'results', 'out', 'knob', 'rule', 'min_drop', 'noise_factor',
               'lmc_threshold', 'cka_tolerance', 'bootstrap', 'confidence', 'min_confidence',
               'density', 'replicate'}
OWN_FLAGS = {
    'prunephase': {'config', 'workdir', 'stages', 'print_config'},
    'prunephase-regimes': TABLE_FLAGS | {'compare', 'simulate_adaptive', 'max_cells',
                                         'remeasure_below'},
    'prunephase-advise': TABLE_FLAGS | {'config', 'temperature', 'evaluate', 'probe'},
    'prunephase-select': TABLE_FLAGS,
}
VARIANTS = ('mnist1d_sam_rho.py', 'cifar10_epochs.py', 'cifar10_batch_size.py',
            'cifar10_sam_rho.py')
LINE = re.compile(r'(?P<field>[\w.]+) = (?P<value>.*?)  +# (?P<meaning>.*)')


def leaf_fields(tree, prefix=''):
  """Every leaf field of a ConfigDict by dotted path."""
  out = set()
  for key, value in tree.items():
    if hasattr(value, 'items'):
      out |= leaf_fields(value, f'{prefix}{key}.')
    else:
      out.add(f'{prefix}{key}')
  return out


def listed(stdout: str) -> dict[str, tuple[str, str]]:
  """{field: (value, meaning)} of `--print_config` output (comment lines skipped)."""
  fields = {}
  for line in stdout.splitlines():
    if line.startswith('#') or not line.strip():
      continue
    match = LINE.fullmatch(line)
    assert match, line
    fields[match['field']] = (match['value'], match['meaning'])
  return fields


def flag_names(help_text: str) -> set[str]:
  """The flags a help text lists (lines starting with two spaces and --name)."""
  return set(re.findall(r'^  --(\w+)', help_text, flags=re.MULTILINE))


@pytest.mark.parametrize('command', sorted(COMMANDS))
def test_help_lists_the_commands_own_flags_and_an_example(command):
  result = run_command(command, '--help', timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  assert flag_names(result.stdout) == OWN_FLAGS[command]
  assert re.search(rf'^  {command} --\w+', result.stdout, flags=re.MULTILINE)  # An example.
  assert 'Try --helpfull' not in result.stdout + result.stderr
  assert 'absl' not in result.stdout
  for alias in ('-h', '--helpshort'):
    assert run_command(command, alias, timeout=60).stdout == result.stdout


def test_prunephase_help_says_how_to_override_and_list_fields():
  start = time.perf_counter()
  result = run_command('prunephase', '--help', timeout=60)
  seconds = time.perf_counter() - start
  assert result.returncode == 0
  for text in ('--config', '--workdir', '--stages', '--print_config', '--config.dense.lr',
               'train,prune,retrain,measure,report'):
    assert text in result.stdout, text
  assert seconds < 3, f'prunephase --help took {seconds:.1f} s'


def test_helpfull_is_still_absls():
  result = run_command('prunephase', '--helpfull', timeout=60)
  assert '--workdir' in result.stdout and 'absl' in result.stdout


def test_print_config_lists_every_field_with_its_meaning(tmp_path):
  workdir = tmp_path / 'run'
  result = run_command('prunephase', '--config=configs/default.py', '--print_config',
                       f'--workdir={workdir}', timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  fields = listed(result.stdout)
  assert set(fields) == leaf_fields(default_config.get_config())
  for field, (_, meaning) in fields.items():
    assert meaning.strip() and meaning != 'no description', field
  assert fields['dense.lr'] == ('0.1', 'Base learning rate.')
  assert not workdir.exists()
  assert not result.stderr.strip()


def test_print_config_shows_the_argument_and_overrides_without_a_workdir():
  result = run_command('prunephase', '--config=configs/default.py:quick', '--print_config',
                       '--config.dense.lr=0.05', '--config.model.widths=(8, 8, 8)', timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  fields = listed(result.stdout)
  assert fields['dense.lr'][0] == '0.05'
  assert fields['model.widths'][0] == '(8, 8, 8)'
  assert fields['dense.iterations'][0] == str(default_config.get_config('quick').dense.iterations)


@pytest.mark.parametrize('variant', VARIANTS)
def test_print_config_of_every_variant_has_the_meanings(variant):
  result = run_command('prunephase', f'--config=configs/{variant}:quick', '--print_config',
                       timeout=60)
  assert result.returncode == 0, result.stderr[-2000:]
  fields = listed(result.stdout)
  assert leaf_fields(default_config.get_config()) <= set(fields)
  assert all(meaning != 'no description' for _, meaning in fields.values())


def test_help_and_print_config_import_no_jax():
  for args in (['--help'], ['--config=configs/default.py', '--print_config']):
    result = subprocess.run([sys.executable, '-X', 'importtime', '-m', COMMANDS['prunephase'],
                             *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.split('|')[-1].strip() for line in result.stderr.splitlines()
                if line.startswith('import time:')}
    assert not {'jax', 'flax', 'optax', 'orbax', 'tensorflow_datasets'} & imported, args


def test_a_typo_in_a_field_is_one_plain_line():
  result = run_command('prunephase', '--config=configs/default.py', '--config.retrain.epoch=3',
                       '--workdir=unused', timeout=60)
  assert result.returncode == 2
  assert error_lines(result) == [
      'prunephase: error: unknown config field retrain.epoch (did you mean retrain.epochs?); '
      'prunephase --config=configs/default.py --print_config lists the fields']
  assert not (REPO / 'unused').exists()


def test_a_typo_in_a_section_is_one_plain_line():
  result = run_command('prunephase', '--config=configs/default.py:quick',
                       '--config.retrian.epochs=3', '--workdir=unused', timeout=60)
  [line] = error_lines(result)
  assert 'unknown config field retrian.epochs (did you mean retrain.epochs?)' in line
  assert '\\' not in line and '"' not in line


def test_a_value_of_the_wrong_type_is_one_line():
  result = run_command('prunephase', '--config=configs/default.py', '--config.retrain.epochs=abc',
                       '--workdir=unused', timeout=60)
  assert result.returncode == 2
  assert error_lines(result) == ['prunephase: error: bad value abc for config field '
                                 'retrain.epochs: expected a whole number, like its default 8']


@pytest.mark.parametrize('args, message', [
    (['--config=configs/missing.py'],
     'cannot load the config file configs/missing.py: no such file'),
    (['--config=configs/default.py:fast'], "unknown config argument 'fast'"),
    (['--config.dense.lr=1'], '--config.dense.lr overrides a config field: give --config=FILE'),
    (['--config=configs/default.py', '--config.tensorboard=maybe'],
     'bad value maybe for config field tensorboard: expected true or false'),
    (['--config=configs/default.py', '--config.dense=1'], 'config field dense is a section'),
])
def test_bad_config_files_arguments_and_overrides_are_one_line(args, message):
  result = run_command('prunephase', *args, '--workdir=unused', timeout=60)
  assert result.returncode == 2
  [line] = error_lines(result)
  assert line.startswith('prunephase: error: ') and message in line, line
  assert 'Traceback' not in result.stderr


def test_an_error_in_a_config_file_is_one_line_with_its_place(tmp_path):
  path = tmp_path / 'broken.py'
  path.write_text('def get_config(arg=None):\n  return undefined_name\n')
  result = run_command('prunephase', f'--config={path}', '--workdir=unused', timeout=60)
  assert error_lines(result) == [
      f'prunephase: error: cannot load the config {path}: NameError: name '
      "'undefined_name' is not defined (broken.py line 2)"]


def test_meanings_are_read_from_trailing_comments_or_the_lines_above(tmp_path):
  path = tmp_path / 'config.py'
  path.write_text(
      'def get_config():\n'
      '  config.a.x = 1  # Trailing.\n'
      '  # Above,\n'
      '  # on two lines.\n'
      '  config.a.y = (1,\n'
      '                2)\n'
      '\n'
      '  config.a.z = 0\n'
      '  config.a.x = 2  # A later comment: not the meaning.\n')
  assert fields_lib.meanings_in_file(path) == {
      'a.x': 'Trailing.', 'a.y': 'Above, on two lines.', 'a.z': ''}


def test_validate_reports_a_missing_field_as_a_config_error():
  config = default_config.get_config()
  del config.measure['hessian_iters']
  with pytest.raises(config_lib.ConfigError, match='measure.hessian_iters'):
    config_lib.validate(config)
