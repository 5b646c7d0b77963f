"""launch/: the scripts parse (`bash -n`), their dry runs print the expected commands, and wrong
usage ends with a usage line. Nothing is submitted, copied or run: no gcloud, sbatch or srun is
needed (and none is called), and nothing is downloaded."""

import os
import pathlib
import shlex
import subprocess

import pytest

from conftest import REPO  # pylint: disable=g-bad-import-order

LAUNCH = REPO / 'launch'
SCRIPTS = ['local.sh', 'tpu_pod.sh', 'slurm.sbatch', 'slurm_families.sh']
CONFIG = 'configs/default.py:quick'


def run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
  """Runs launch/<script> with bash from the repository root; `env` adds variables."""
  environ = {k: v for k, v in os.environ.items()
             if k not in ('PRUNEPHASE', 'GPUS_PER_NODE', 'SLURM_GPUS_ON_NODE', 'SLURM_SUBMIT_DIR',
                          'PARTITION', 'ACCOUNT', 'TIME', 'LOG_DIR', 'JOB_PREFIX', 'PYTHON',
                          'JAX_PIP_SPEC', 'LIBTPU_FIND_LINKS', 'CPUS_PER_TASK')}
  environ.update(env)
  return subprocess.run(['bash', str(LAUNCH / script), *args], cwd=REPO, env=environ,
                        capture_output=True, text=True, timeout=20, check=False)


def commands(result: subprocess.CompletedProcess) -> list[list[str]]:
  """The printed command lines (comments skipped), each split as the shell would."""
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()
          if line.strip() and not line.startswith('#')]


def assert_valid_shell(text: str, tmp_path: pathlib.Path) -> None:
  """A dry run's output is a script that bash can parse (so it can be pasted)."""
  path = tmp_path / 'printed.sh'
  path.write_text(text)
  check = subprocess.run(['bash', '-n', str(path)], capture_output=True, text=True, check=False)
  assert check.returncode == 0, check.stderr


@pytest.mark.parametrize('script', SCRIPTS)
def test_bash_syntax_and_executable(script):
  path = LAUNCH / script
  check = subprocess.run(['bash', '-n', str(path)], capture_output=True, text=True, check=False)
  assert check.returncode == 0, check.stderr
  assert os.access(path, os.X_OK), f'{path} is not executable'
  text = path.read_text()
  assert text.startswith('#!/usr/bin/env bash\n')
  assert 'set -euo pipefail' in text


# local.sh


def test_local_dry_run_prints_the_prunephase_command(tmp_path):
  result = run('local.sh', '--dry-run', CONFIG, str(tmp_path / 'w'), '--config.mesh.data=2',
               PRUNEPHASE='/opt/env/bin/prunephase')
  assert commands(result) == [['/opt/env/bin/prunephase', f'--config={CONFIG}',
                               f'--workdir={tmp_path / "w"}', '--config.mesh.data=2']]
  assert not (tmp_path / 'w').exists()


def test_local_dry_run_finds_prunephase_itself(tmp_path):
  result = run('local.sh', '--dry-run', CONFIG, str(tmp_path / 'w'))
  lines = commands(result)
  # .venv/bin/prunephase, prunephase on PATH, or (neither) the venv creation and then .venv's.
  assert lines[-1][0].endswith('prunephase')
  assert lines[-1][1:] == [f'--config={CONFIG}', f'--workdir={tmp_path / "w"}']
  assert f'prunephase --config={CONFIG}' in result.stdout
  assert_valid_shell(result.stdout, tmp_path)


@pytest.mark.parametrize('args', [[], ['--dry-run'], ['--dry-run', CONFIG],
                                  ['--dry-run', '--config.x=1', 'w'],
                                  ['--dry-run', 'configs/missing.py', 'w']])
def test_local_wrong_usage(args):
  result = run('local.sh', *args)
  assert result.returncode != 0
  assert 'usage: launch/local.sh' in result.stderr
  assert not result.stdout


# tpu_pod.sh

POD = ['--name', 'my-pod', '--zone', 'us-central2-b', '--config', CONFIG,
       '--workdir', '/mnt/shared/quick']


def test_tpu_pod_dry_run_from_git(tmp_path):
  result = run('tpu_pod.sh', '--dry-run', *POD, '--project', 'my-proj', '--repo',
               'https://github.com/example/prunephase.git', '--ref', 'v0.1.0', '--',
               '--config.mesh.data=2')
  lines = commands(result)
  assert len(lines) == 3
  for line in lines:
    assert line[:8] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'my-pod', '--zone',
                        'us-central2-b']
    assert '--worker=all' in line and line[line.index('--project') + 1] == 'my-proj'
  assert 'gcloud compute tpus tpu-vm ssh my-pod --zone us-central2-b --worker=all' in result.stdout
  clone, setup, sweep = (line[line.index('--command') + 1] for line in lines)
  assert 'git clone --quiet https://github.com/example/prunephase.git prunephase' in clone
  assert 'checkout --quiet --detach v0.1.0' in clone
  assert 'python3 -m venv .venv' in setup
  assert ('.venv/bin/pip install -e . \'jax[tpu]\' -f '
          'https://storage.googleapis.com/jax-releases/libtpu_releases.html') in setup
  assert sweep == ('cd prunephase && .venv/bin/prunephase --config=configs/default.py:quick '
                   '--workdir=/mnt/shared/quick --config.distributed=True --config.mesh.data=2')
  assert_valid_shell(result.stdout, tmp_path)
  for command in (clone, setup, sweep):
    assert_valid_shell(command, tmp_path)


def test_tpu_pod_dry_run_from_a_local_copy(tmp_path):
  result = run('tpu_pod.sh', '--dry-run', *POD, '--repo', '.', '--background',
               PYTHON='python3.11', LIBTPU_FIND_LINKS='')
  lines = commands(result)
  assert [line[0] for line in lines] == ['tar', 'gcloud', 'gcloud', 'gcloud', 'gcloud']
  tar, scp = lines[0], lines[1]
  assert tar[tar.index('-C') + 1] == str(REPO) and '--exclude=.venv' in tar
  archive = tar[tar.index('-czf') + 1]
  assert scp == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', archive,
                 'my-pod:prunephase-src.tar.gz', '--zone', 'us-central2-b', '--worker=all']
  setup, sweep = lines[3][-1], lines[4][-1]
  assert 'python3.11 -m venv .venv' in setup and ' -f ' not in setup
  assert 'nohup .venv/bin/prunephase' in sweep and '--config.distributed=True' in sweep
  assert 'echo $! > prunephase.pid' in sweep
  assert_valid_shell(result.stdout, tmp_path)


def test_tpu_pod_skip_setup_only_starts_the_sweep():
  result = run('tpu_pod.sh', '--dry-run', *POD, '--skip-setup')
  lines = commands(result)
  assert len(lines) == 1 and '--config.distributed=True' in lines[0][-1]


@pytest.mark.parametrize('args', [
    [],
    ['--dry-run', '--zone', 'z', '--repo', '.', '--config', CONFIG, '--workdir', '/mnt/w'],
    ['--dry-run', '--name', 'n', '--zone', 'z', '--repo', '.', '--config', CONFIG],
    ['--dry-run', '--name', 'n', '--zone', 'z', '--config', CONFIG, '--workdir', '/mnt/w'],
    ['--dry-run', *POD[:-1], 'relative/workdir', '--repo', '.'],
    ['--dry-run', *POD[:-1], 'gs://bucket/run', '--repo', '.'],
    ['--dry-run', *POD, '--repo', '/no/such/dir'],
    ['--dry-run', *POD, '--repo', '.', '--bogus'],
    ['--dry-run', *POD, '--repo', '.', '--ref', 'v1'],
])
def test_tpu_pod_wrong_usage(args):
  result = run('tpu_pod.sh', *args)
  assert result.returncode != 0
  assert 'usage: launch/tpu_pod.sh' in result.stderr
  assert 'gcloud' not in result.stdout


# Slurm


def test_slurm_sbatch_header_and_dry_run(tmp_path):
  text = (LAUNCH / 'slurm.sbatch').read_text().splitlines()
  # sbatch reads #SBATCH lines only before the first command.
  first_command = next(i for i, line in enumerate(text) if line.strip()
                       and not line.startswith('#'))
  directives = [i for i, line in enumerate(text) if line.startswith('#SBATCH')]
  assert directives and max(directives) < first_command
  assert '#SBATCH --ntasks-per-node=1' in text
  result = run('slurm.sbatch', '--dry-run', CONFIG, '/shared/quick', '--config.mesh.data=2',
               GPUS_PER_NODE='4', PRUNEPHASE='prunephase')
  lines = commands(result)
  assert lines[1] == ['export', 'JAX_LOCAL_DEVICE_IDS=0,1,2,3']
  assert lines[2] == ['srun', '--ntasks-per-node=1', '--kill-on-bad-exit=1', 'prunephase',
                      f'--config={CONFIG}', '--workdir=/shared/quick', '--config.distributed=True',
                      '--config.mesh.data=2']
  assert_valid_shell(result.stdout, tmp_path)


def test_slurm_sbatch_gpus_from_slurm():
  result = run('slurm.sbatch', '--dry-run', CONFIG, '/shared/quick', SLURM_GPUS_ON_NODE='2')
  assert 'JAX_LOCAL_DEVICE_IDS=0,1\n' in result.stdout


@pytest.mark.parametrize('args', [[], ['--dry-run', CONFIG], ['--dry-run', '--x', 'w']])
def test_slurm_sbatch_wrong_usage(args):
  result = run('slurm.sbatch', *args, GPUS_PER_NODE='1')
  assert result.returncode != 0 and 'usage:' in result.stderr


def test_slurm_families_one_sbatch_per_family(tmp_path):
  families = ['configs/cifar10_epochs.py', 'configs/cifar10_batch_size.py',
              'configs/cifar10_epochs.py:cifar100,quick']
  result = run('slurm_families.sh', '--dry-run', '/shared/runs', *families, '--',
               '--config.mesh.data=2', PARTITION='gpu', ACCOUNT='proj', GPUS_PER_NODE='4',
               TIME='2:00:00', PRUNEPHASE='/env/bin/prunephase')
  lines = commands(result)
  assert lines[0] == ['mkdir', '-p', '/shared/runs/slurm-logs']
  submits = [line for line in lines if line[0] == 'sbatch']
  assert len(submits) == len(families) == len(lines) - 1
  names = ['cifar10_epochs', 'cifar10_batch_size', 'cifar10_epochs-cifar100-quick']
  for line, family, name in zip(submits, families, names):
    assert f'--job-name=prunephase-{name}' in line
    for option in ('--nodes=1', '--ntasks=1', '--gpus-per-node=4', '--partition=gpu',
                   '--account=proj', '--time=2:00:00',
                   '--output=/shared/runs/slurm-logs/%x-%j.out'):
      assert option in line
    wrap = shlex.split(line[line.index('--wrap') + 1])
    assert wrap == ['exec', '/env/bin/prunephase', f'--config={family}',
                    f'--workdir=/shared/runs/{name}', '--config.mesh.data=2']
    assert '--config.distributed=True' not in wrap
  assert_valid_shell(result.stdout, tmp_path)


def test_slurm_families_defaults():
  result = run('slurm_families.sh', '--dry-run', '/r', 'configs/default.py', GPUS_PER_NODE='0')
  (submit,) = [line for line in commands(result) if line[0] == 'sbatch']
  assert '--time=24:00:00' in submit
  assert not [o for o in submit if o.startswith(('--gpus', '--partition', '--account'))]


@pytest.mark.parametrize('args', [
    [], ['--dry-run', '/r'], ['--dry-run', '/r', 'configs/missing.py'],
    ['--dry-run', '/r', 'configs/default.py', 'configs/default.py'],
    ['--dry-run', '/r', 'configs/default.py', '--config.x=1'],
])
def test_slurm_families_wrong_usage(args):
  result = run('slurm_families.sh', *args)
  assert result.returncode != 0
  assert 'usage: launch/slurm_families.sh' in result.stderr
  assert 'sbatch --' not in result.stdout
