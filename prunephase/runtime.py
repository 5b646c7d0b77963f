"""Process set-up shared by the command-line tools: flag parsing with the commands' --help and
one-line errors, device layout, multi-host start, error exit."""

import os
import re
import sys


def fail(message: str) -> None:
  """Ends the program with a one-line error and exit status 2."""
  print(f'prunephase: error: {message}', file=sys.stderr, flush=True)
  sys.exit(2)


def one_line(error: BaseException) -> str:
  """'TypeError: the first line of its message': an exception from a user's code (a model,
  a dataset loader) reported in a one-line error."""
  lines = str(error).strip().splitlines()
  return f'{type(error).__name__}: {lines[0]}' if lines else type(error).__name__


HELP_FLAGS = ('help', 'helpshort', 'h', '?')  # absl's --help, --helpshort, -?; and -h.


def help_requested(argv: list[str]) -> bool:
  """Whether the command line asks for the command's help (--help, -h, -?, --helpshort)."""
  for arg in argv[1:]:
    if arg == '--':
      break
    name, _, value = arg.lstrip('-').partition('=')
    if arg.startswith('-') and name in HELP_FLAGS and value.lower() in ('', 'true', '1'):
      return True
  return False


def parse_flags(argv: list[str], help_text=None) -> list[str]:
  """absl's flag parsing, with the command's own help and a one-line error for a bad flag,
  config file, config argument or config override.

  Pass as `app.run(main, flags_parser=parse_flags)` (or with `help_text` bound).

  Args:
    argv: the command line, program name first.
    help_text: a function returning the command's help; when given, --help, -h, -? and
      --helpshort print it and exit 0 (absl's --helpfull still lists every flag).

  Returns:
    The arguments left after the flags (absl's return value).
  """
  from absl import flags  # pylint: disable=import-outside-toplevel
  if help_text is not None and help_requested(argv):
    print(help_text(), flush=True)
    sys.exit(0)
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    fail(_flag_error(error, argv))
  except Exception as error:  # pylint: disable=broad-exception-caught
    # ml_collections raises KeyError or AttributeError for an unknown `--config.a.b=...` field
    # (the config is locked); a config file's own errors come through as they are.
    fail(_config_error(error, argv))
  return argv


def _last_line(text: str) -> str:
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[-1] if lines else ''


def _config_file(argv: list[str]) -> str | None:
  """The --config value of a command line ('configs/default.py:quick'), the last one given."""
  found = None
  for index, arg in enumerate(argv[1:], 1):
    if arg == '--':
      break
    if re.fullmatch(r'--?config=.*', arg):
      found = arg.split('=', 1)[1]
    elif re.fullmatch(r'--?config', arg) and index + 1 < len(argv):
      found = argv[index + 1]
  return found


def _overrides(argv: list[str]) -> list[tuple[str, str]]:
  """(field, argument) of every `--config.a.b=value` (or --noconfig.a.b) in a command line."""
  found = []
  for arg in argv[1:]:
    if arg == '--':
      break
    match = re.match(r'--?(?:no)?config\.([^=\s]+)', arg)
    if match:
      found.append((match.group(1), arg))
  return found


def _where(error: BaseException, files: set[str], text: str = '') -> str:
  """' (default.py line 12)' when the innermost frame of `error` (or of the traceback written
  out in `text`) is in one of the config `files`, else ''."""
  written = re.findall(r'File "([^"]+)", line (\d+)', text)
  innermost = written[-1] if written else None
  trace = error.__traceback__
  while trace is not None and not written:
    innermost = (trace.tb_frame.f_code.co_filename, trace.tb_lineno)
    trace = trace.tb_next
  if innermost and os.path.realpath(innermost[0]) in files:
    return f' ({os.path.basename(innermost[0])} line {innermost[1]})'
  return ''


def _config_files(argv: list[str]) -> set[str]:
  from prunephase.config import args  # pylint: disable=import-outside-toplevel
  top = (_config_file(argv) or '').split(':', 1)[0]
  return {os.path.realpath(top)} | {os.path.realpath(path) for path in args.LOADED}


def _shown(value) -> str:
  """A config value as written in an override: true/false for a bool, else Python's form."""
  return str(value).lower() if isinstance(value, bool) else repr(value)


def _flag_error(error: Exception, argv: list[str]) -> str:
  """The one-line message of absl's error for a bad flag value or an unknown flag."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  message = str(error)
  match = re.match(r'flag --(config\.[^=\s]+)=', message)
  if match and match.group(1) in flags.FLAGS:
    from prunephase.config import fields  # pylint: disable=import-outside-toplevel
    name = match.group(1)
    field = name[len('config.'):]
    given = [arg.split('=', 1)[1] for arg in argv[1:] if arg.startswith(f'--{name}=')]
    value = given[-1] if given else message[match.end():].split(':', 1)[0]
    try:
      current = fields.value_at(field, flags.FLAGS['config'].value)
    except (KeyError, AttributeError, TypeError, OSError):
      current = flags.FLAGS[name].default
    if hasattr(current, 'keys'):
      return (f'config field {field} is a section, not a value: override its fields, e.g. '
              f'--config.{field}.{next(iter(current.keys()), "NAME")}=VALUE')
    return (f'bad value {value} for config field {field}: expected {fields.kind_of(current)}, '
            f'like its default {_shown(current)}')
  if re.match(r'flag --?config=', message):
    # A config file's TypeError or ValueError, wrapped with its traceback by ml_collections.
    # A ValueError's or prunephase's own error's message is a sentence of its own.
    reason = re.sub(r'^(ValueError|prunephase(\.\w+)+Error): ', '', _last_line(message))
    where = _where(error, _config_files(argv), message)
    return f'cannot load the config {_config_file(argv)}: {reason}{where}'
  unknown = re.match(r"Unknown command line flag '((?:no)?config\.[^']*)'", message)
  if unknown and _config_file(argv) is None:
    return f'--{unknown.group(1)} overrides a config field: give --config=FILE before it'
  hint = '; --help lists the flags' if message.startswith('Unknown command line flag') else ''
  return f'bad flag: {_last_line(message) or type(error).__name__}{hint}'


def _config_error(error: Exception, argv: list[str]) -> str:
  """The one-line message of an error raised while loading --config or applying overrides."""
  config_arg = _config_file(argv)
  if config_arg is None:
    return f'bad flag: {one_line(error)}'
  path = config_arg.split(':', 1)[0]
  if isinstance(error, OSError) and not os.path.isfile(path):
    return _missing_file(path)
  if isinstance(error, (KeyError, AttributeError)) and _overrides(argv):
    unknown = _unknown_override(config_arg, _overrides(argv))
    if unknown:
      return unknown
  if isinstance(error, OSError):
    return f'cannot load the config file {path}: {_last_line(error)}'
  where = _where(error, _config_files(argv))
  return f'cannot load the config {config_arg}: {one_line(error)}{where}'


def _missing_file(path: str) -> str:
  if not path:
    return '--config names no file; give one, e.g. --config=configs/default.py'
  return f'cannot load the config file {path}: no such file'


def _unknown_override(config_arg: str, overrides: list[tuple[str, str]]) -> str | None:
  """'unknown config field a.b (did you mean a.c?); ...' for the first override that names no
  field of the config (loaded again, without overrides); None if all do or it fails to load."""
  from prunephase.config import args  # pylint: disable=import-outside-toplevel
  from prunephase.config import fields  # pylint: disable=import-outside-toplevel
  path, _, arg = config_arg.partition(':')
  try:
    module = args.load_config_file(path)
    config = module.get_config(arg) if arg else module.get_config()
  except Exception:  # pylint: disable=broad-exception-caught
    return None
  for field, _ in overrides:
    if not fields.has_field(field, config):
      match = fields.closest(field, config)
      hint = f' (did you mean {match}?)' if match else ''
      return (f'unknown config field {field}{hint}; prunephase --config={config_arg} '
              '--print_config lists the fields')
  return None


def config_value(holder):
  """The parsed config of a `DEFINE_config_file` flag; a file that failed to load (absl defers
  that error to the first access) ends in one line."""
  try:
    value = holder.value
    if value is not None:
      value.keys()  # A file that failed to load raises here, on first attribute access.
    return value
  except OSError as error:
    from absl import flags  # pylint: disable=import-outside-toplevel
    try:
      path = flags.FLAGS[holder.name].config_filename.split(':', 1)[0]
    except flags.Error:
      path = ''
    if not os.path.isfile(path):
      fail(_missing_file(path))
    fail(f'cannot load the config file {path}: {_last_line(error)}')


def split_host_into_devices(count: int) -> None:
  """Makes XLA's CPU backend expose `count` devices (call before JAX creates its backends).

  One XLA CPU device runs a population's small kernels on about 1.5 of 2 cores; with one device
  per core the member axis is sharded over them and trains in parallel (measured 1.5x on this
  project's 2-core machine, benchmarks/scaling.py). Only the CPU backend is affected; an
  explicit --xla_force_host_platform_device_count in XLA_FLAGS wins.
  """
  flags_now = os.environ.get('XLA_FLAGS', '')
  if count > 1 and 'xla_force_host_platform_device_count' not in flags_now:
    os.environ['XLA_FLAGS'] = f'{flags_now} --xla_force_host_platform_device_count={count}'.strip()


def prepare(config) -> None:
  """Device layout and multi-host start for a sweep config, before any other JAX call."""
  split_host_into_devices(int(config.get('cpu_devices', 1) or os.cpu_count() or 1))
  if config.get('distributed') or os.environ.get('PRUNEPHASE_DISTRIBUTED') == '1':
    start_distributed()


def start_distributed() -> None:
  """`jax.distributed.initialize()`: auto-detected on TPU pods and Slurm; elsewhere from
  PRUNEPHASE_COORDINATOR (host:port), PRUNEPHASE_NUM_PROCESSES and PRUNEPHASE_PROCESS_ID.
  CPU-only processes exchange data through gloo collectives."""
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kwargs = {}
  if os.environ.get('PRUNEPHASE_COORDINATOR'):
    kwargs = {'coordinator_address': os.environ['PRUNEPHASE_COORDINATOR'],
              'num_processes': int(os.environ['PRUNEPHASE_NUM_PROCESSES']),
              'process_id': int(os.environ['PRUNEPHASE_PROCESS_ID'])}
  jax.distributed.initialize(**kwargs)
  from prunephase import progress  # pylint: disable=import-outside-toplevel
  progress.Progress.silent = jax.process_index() != 0  # Progress lines from process 0 only.
