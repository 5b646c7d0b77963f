"""Dependency-free config helpers: the knob table, config-file arguments, validation.

Config files (`configs/*.py`) import only `ml_collections` and this package, so loading a config
and `prunephase --help` import no JAX. Nothing here imports outside the standard library.

  names     fixed names (optimizers, rules, ...) and hot_to_cold (a knob's temperature order)
  paper     the paper's grids (densities, Figure 2's epochs)
  args      parse_arg for `--config=file.py:a,b=1` strings; load_config_file
  validate  ConfigError, validate(config), validate_against_data(config, num_train)
  fields    the fields' meanings (the config files' comments) and `prunephase --print_config`
"""

from prunephase.config.args import load_config_file
from prunephase.config.args import parse_arg
from prunephase.config.names import hot_to_cold
from prunephase.config.validate import ConfigError
from prunephase.config.validate import validate
from prunephase.config.validate import validate_against_data

__all__ = ['ConfigError', 'hot_to_cold', 'load_config_file', 'parse_arg', 'validate',
           'validate_against_data']
