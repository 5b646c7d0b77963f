r"""Population steps/s on 1, 2, 4, 8 devices (fake CPU devices here, or the real ones).

  python benchmarks/scaling.py                 # 1, 2, 4, 8 fake CPU devices, one process each
  python benchmarks/scaling.py --real          # the devices this machine has (e.g. one GPU)

Each device count runs in its own process with
XLA_FLAGS=--xla_force_host_platform_device_count=N: the population (default 8 members of the
default MNIST-1D model) is sharded over a ('members', 'data') = (N, 1) mesh and trained for a
few epochs; the median epoch time gives member-steps/s. On a 2-core CPU, N fake devices share
the same two cores; one device keeps only about 1.5 of them busy, so sharding still helps:
1.54x at 2 devices and 1.73x at 4 or 8 on the project's machine (README, Performance), the
reason `prunephase` splits a CPU host into one XLA device per core.
"""

import argparse
import os
import subprocess
import sys

WORKER = r'''
import os, sys
sys.path.insert(0, {repo!r})
import jax, jax.numpy as jnp
from configs import default as default_config
from prunephase import data as data_lib, models, population, train_steps as train_lib
members, repeats = {members}, {repeats}
config = default_config.get_config()
default_config.use_5000_samples(config)  # The data of its recorded figures.
dataset = data_lib.load_mnist1d(config.dataset.num_samples)
model = models.make_model(config.model, 10)
spec = train_lib.TrainSpec(64, dataset.num_train // 64)
mesh = population.make_mesh() if jax.device_count() > 1 else None
program = population.PopulationProgram(model, spec, masked=False, mesh=mesh)
states = train_lib.init_population(model, dataset.input_shape, list(range(members)), list(range(members)))
hparams = train_lib.Hparams(lr=jnp.full(members, 0.1), weight_decay=jnp.full(members, 1e-4), sam_rho=jnp.zeros(members))
states, hparams = program.place((states, hparams))
if mesh is not None:
  dataset = jax.device_put(dataset, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
from benchmarks.common import time_epochs
seconds, _ = time_epochs(program, states, hparams, None, dataset, repeats)
print('RESULT', jax.device_count(), jax.devices()[0].platform, members * spec.steps_per_epoch / seconds, seconds)
'''


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--members', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--real', action='store_true', help='use the real devices only')
  args = parser.parse_args()
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  counts = [None] if args.real else [1, 2, 4, 8]
  rows = []
  for count in counts:
    env = dict(os.environ)
    if count is not None:
      env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={count}'
      env['JAX_PLATFORMS'] = 'cpu'
    code = WORKER.format(repo=repo, members=args.members, repeats=args.repeats)
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith('RESULT'))
    _, devices, platform, rate, seconds = line.split()
    rows.append((int(devices), platform, float(rate), float(seconds)))
  base = rows[0][2]
  print(f'{args.members} members of the default MNIST-1D model, batch 64, '
        f'{os.cpu_count()} CPU cores')
  for devices, platform, rate, seconds in rows:
    print(f'{devices} {platform} device(s): {rate:8.1f} member-steps/s ({seconds:.3f} s/epoch), '
          f'{rate / base:.2f}x the first row')


if __name__ == '__main__':
  main()
