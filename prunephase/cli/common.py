"""Flags shared by `prunephase` and the case-study commands, the way every command runs, and
its `--help`.

Defined once here so that all commands' modules import together in one process.
"""

import functools
import sys
import textwrap

from absl import app
from absl import flags
from ml_collections import config_flags

from prunephase import runtime

WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory of a run: prunephase creates it (or resumes the run in it); '
    'prunephase-regimes/-advise/-select read its results.csv and config.json; '
    'prunephase-advise --probe runs a probe into it.')
CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, optionally with an argument: configs/default.py:quick '
    '(prunephase, prunephase-advise --probe); --config.SECTION.FIELD=VALUE overrides a field.',
    lock_config=True)

HELP_WIDTH = 100  # Columns of the --help text.
_KEEP = '\0'  # A space the --help text is not wrapped at.


def fail_on(errors: tuple[type[Exception], ...], function, *args, **kwargs):
  """`function(*args, **kwargs)`, ending the program with one line on one of `errors`."""
  try:
    return function(*args, **kwargs)
  except errors as error:
    runtime.fail(str(error))


def _default_text(flag) -> str:
  """A flag's default as typed on a command line ('' for none)."""
  default = flag.default
  if default is None:
    return ''
  if isinstance(default, bool):
    return 'true' if default else 'false'
  if isinstance(default, (list, tuple)):
    return ','.join(str(value) for value in default)
  return str(default)


def _flag_help(flag) -> str:
  """The flag's meaning, its choices (an enum) and its default, as one paragraph."""
  text = ' '.join(flag.help.split())
  choices = getattr(flag.parser, 'enum_values', None)
  if choices:
    text = text.removeprefix(f'<{"|".join(choices)}>: ') + f' One of: {", ".join(choices)}.'
  default = _default_text(flag)
  if default:
    text += f' (default:{_KEEP}{default})'
  return text


def help_text(main) -> str:
  """The `--help` of the command whose `main` function this is.

  Its module's docstring (what the command does, usage examples), then the command's own flags
  (the key flags of that module: defined there or declared key there), each with its meaning
  and default.
  """
  module = sys.modules[main.__module__]
  own = sorted(flags.FLAGS.get_key_flags_for_module(module), key=lambda flag: flag.name)
  column = max((len(flag.name) for flag in own), default=0) + 6
  lines = [(module.__doc__ or '').strip(), '', 'flags:']
  for flag in own:
    wrapped = textwrap.wrap(_flag_help(flag), HELP_WIDTH - column, break_on_hyphens=False)
    wrapped = [line.replace(_KEEP, ' ') for line in wrapped] or ['']
    lines.append(f'  --{flag.name}'.ljust(column) + wrapped[0])
    lines += [' ' * column + line for line in wrapped[1:]]
  return '\n'.join(lines)


def run(main) -> None:
  """Runs `main(argv)` as a console script: absl flags, one-line flag errors, and a `--help`
  that lists the command's own flags (`help_text`)."""
  parser = functools.partial(runtime.parse_flags, help_text=functools.partial(help_text, main))
  app.run(main, flags_parser=parser)
