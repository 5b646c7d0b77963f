"""Config files and their `--config=file.py:arg` strings, without importing the pipeline.

  parse_arg('cifar100,quick', cifar10=False, cifar100=False, svhn=False, quick=False)
    -> {'cifar10': False, 'cifar100': True, 'svhn': False, 'quick': True}
  parse_arg('quick,width=2', quick=False, width=1) -> {'quick': True, 'width': 2}
  parse_arg('a,b=1,c=x') -> {'a': True, 'b': 1, 'c': 'x'}          (no spec: literal values)

A bare name sets a boolean to True; `name=value` gives any field a value, converted to the
type of its default (with a spec) or read as a Python literal, else kept as text (without one).
Values cannot hold commas (the separator).
"""

import ast
import importlib.util
import os
import pathlib
from typing import Any

# Every config file `load_config_file` has loaded in this process, in order (absl loads the one
# named by --config itself): `prunephase --print_config` reads the fields' meanings from them.
LOADED: list[pathlib.Path] = []


def _convert(name: str, text: str, default: Any) -> Any:
  """`text` as the type of `default` (a bool takes true/false/1/0)."""
  if isinstance(default, bool):
    lowered = text.lower()
    if lowered in ('true', '1', 'yes'):
      return True
    if lowered in ('false', '0', 'no'):
      return False
    raise ValueError(f'config argument {name}={text!r} is not a boolean')
  if default is None or isinstance(default, str):
    return text
  try:
    return type(default)(text)
  except ValueError:
    raise ValueError(f'config argument {name}={text!r} is not a {type(default).__name__}'
                     ) from None


def _literal(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_arg(arg: str | None, **spec: Any) -> dict[str, Any]:
  """The fields of a config argument such as 'quick' or 'cifar100,quick,width=2'.

  Args:
    arg: the text after the config file's ':' (None or '' = no argument).
    **spec: every allowed name with its default; empty = any name, values read as literals.

  Returns:
    A dict: the spec's defaults updated by the argument (without a spec: only the named fields).

  Raises:
    ValueError: a name outside the spec, a repeated name, a value of the wrong type, or a bare
      name whose default is not a boolean; the message is one line naming the argument.
  """
  values, seen = dict(spec), set()
  for token in (t.strip() for t in (arg or '').split(',')):
    if not token:
      continue
    name, has_value, text = (part.strip() for part in token.partition('='))
    if spec and name not in spec:
      raise ValueError(f'unknown config argument {name!r} in {arg!r}; use comma-separated '
                       f'names from {", ".join(spec)}')
    if name in seen:
      raise ValueError(f'repeated {name!r} in config argument {arg!r}')
    seen.add(name)
    if not has_value:
      if spec and not isinstance(spec[name], bool):
        raise ValueError(f'config argument {name!r} needs a value: {name}=...')
      values[name] = True
    elif spec:
      values[name] = _convert(name, text, spec[name])
    else:
      values[name] = _literal(text)
  return values


def load_config_file(path: str | os.PathLike):
  """Imports a config file by path, so configs can build on each other however absl, pytest or
  a notebook found them (`configs/` is not a package on sys.path)."""
  path = pathlib.Path(path).resolve()
  if path not in LOADED:
    LOADED.append(path)
  spec = importlib.util.spec_from_file_location(f'prunephase_config_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
