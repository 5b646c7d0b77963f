r"""Case study 3 on MNIST-1D: SAM's rho as the temperature.

  prunephase --config=configs/mnist1d_sam_rho.py --workdir=runs/mnist1d_sam_rho
  prunephase-select --workdir=runs/mnist1d_sam_rho      # which rho to prune from, per density

Everything as configs/default.py except the dense family and, outside `quick`, the data, the
retraining length and the seeds its results were measured with (default.py's
`use_5000_samples`: 5,000 samples, 24 retraining epochs, 3 dense seeds). The family: SAM (the
paper's semantics, see prunephase/optim.py) at rho in {0, 0.05, 0.1, 0.2, 0.4} for 24 epochs at batch 64 (lr 0.1, x0.1
at 50 % and 75 %); all five rho values x 3 dense seeds train in ONE vmapped program. rho = 0 is
plain SGD (the ascent step is zero, the second gradient equals the first); 0.05 is SAM's
default (Foret et al.). Larger rho = hotter. Retraining is plain SGD as in the paper.
`prunephase-select` then prints the rho each rule picks per density next to SAM's default and
plain SGD, with test errors and gaps to the oracle.

Run time and results: see the README ("Deciding with the regime model").
"""

import pathlib

import ml_collections

from prunephase.config import load_config_file
from prunephase.config import parse_arg


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  """The SAM-rho family; `arg='quick'` is a smoke-sized grid."""
  default = load_config_file(pathlib.Path(__file__).with_name('default.py'))
  config = default.get_config(arg)
  quick = parse_arg(arg, quick=False)['quick']
  config.dense.optimizer = 'sam'
  config.dense.epochs = 4 if quick else 24
  config.dense.iterations = 0
  config.temperature.knob = 'sam_rho'
  config.temperature.grid = (0.0, 0.4) if quick else (0.0, 0.05, 0.1, 0.2, 0.4)
  if not quick:
    default.use_5000_samples(config)
  return config
