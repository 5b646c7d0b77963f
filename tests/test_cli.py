"""The command-line layer: flags only in prunephase.cli, every command importable together, and
`--help` without JAX."""

import subprocess
import sys
import textwrap

import pytest

from conftest import COMMANDS  # pylint: disable=g-bad-import-order
from conftest import REPO
from conftest import run_command


def test_every_command_and_the_library_import_in_one_process():
  # Used to fail: prunephase.pipeline and prunephase.cases both defined --workdir at import.
  script = textwrap.dedent("""
      from absl import flags
      import prunephase.pipeline, prunephase.cases  # The library defines no flags ...
      assert not any(name in flags.FLAGS for name in ('workdir', 'config', 'results')), \\
          sorted(flags.FLAGS)
      import prunephase.cli.main, prunephase.cli.regimes, prunephase.cli.advise
      import prunephase.cli.select  # ... the commands define each flag once.
      print('FLAGS', ' '.join(sorted(n for n in flags.FLAGS if not n.startswith('help'))))
      """)
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  flag_names = set(result.stdout.split('FLAGS ')[1].split())
  assert {'config', 'workdir', 'stages', 'results', 'out', 'knob', 'rule', 'min_drop',
          'noise_factor', 'lmc_threshold', 'cka_tolerance', 'compare', 'bootstrap', 'density',
          'temperature', 'evaluate', 'probe'} <= flag_names


def test_pyproject_scripts_are_the_cli_modules():
  text = (REPO / 'pyproject.toml').read_text()
  for command, module in COMMANDS.items():
    assert f'{command} = "{module}:run"' in text


@pytest.mark.parametrize('command', sorted(COMMANDS))
def test_help_imports_no_jax(command):
  # --help exits inside flag parsing; `-X importtime` lists every module imported on the way.
  result = subprocess.run([sys.executable, '-X', 'importtime', '-m', COMMANDS[command], '--help'],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0 and '--workdir' in result.stdout, result.stderr[-2000:]
  imported = {line.split('|')[-1].strip() for line in result.stderr.splitlines()
              if line.startswith('import time:')}
  assert 'prunephase.cli.common' in imported
  assert not {'jax', 'flax', 'optax', 'orbax', 'tensorflow_datasets'} & imported


def test_loading_a_config_through_the_flags_imports_no_jax():
  script = textwrap.dedent("""
      import sys
      from absl import flags
      from prunephase.cli import main
      flags.FLAGS(['prunephase', '--config=configs/cifar10_epochs.py:quick', '--workdir=w'])
      assert flags.FLAGS.config.model.name == 'preresnet20'
      print('JAX' if 'jax' in sys.modules else 'NO JAX')
      """)
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == 'NO JAX'


def test_no_module_outside_cli_imports_cli():
  # The command line is a layer on top: prunephase/cli/ imports the library, never the reverse
  # (imports inside functions included), so there are no console-script shims to keep alive.
  import ast  # pylint: disable=import-outside-toplevel
  offenders = []
  for path in sorted((REPO / 'prunephase').rglob('*.py')):
    if 'cli' in path.relative_to(REPO / 'prunephase').parts:
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
      if any(n == 'prunephase.cli' or n.startswith('prunephase.cli.') for n in names):
        offenders.append(f'{path.relative_to(REPO)}:{node.lineno}')
  assert not offenders, offenders


def test_missing_required_flags_are_one_line():
  result = run_command('prunephase', '--workdir=w', timeout=120)
  assert (result.returncode, result.stderr.strip()) == (
      2, 'prunephase: error: --config is required, e.g. --config=configs/default.py')
  result = run_command('prunephase', '--config=configs/default.py:quick', timeout=120)
  assert (result.returncode, result.stderr.strip()) == (2, 'prunephase: error: --workdir is '
                                                           'required')
  result = run_command('prunephase-select', timeout=120)
  assert (result.returncode, result.stderr.strip()) == (
      2, 'prunephase: error: give exactly one of --results=FILE.csv or --workdir=DIR')
