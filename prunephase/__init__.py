"""prunephase: the three-regime model of network pruning (Zhou et al., ICML 2023) in JAX/Flax."""

__version__ = '0.2.0'


def load_run(path: str):
  """Opens a run's workdir for analysis; see `prunephase.analysis`."""
  from prunephase import analysis  # pylint: disable=import-outside-toplevel
  return analysis.load_run(path)
