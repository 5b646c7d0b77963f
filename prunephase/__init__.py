"""prunephase: the three-regime model of network pruning (Zhou et al., ICML 2023) in JAX/Flax."""

__version__ = '0.1.0'
