"""The fields of a config: their meanings (read from the config files' comments), a listing of
every field with its value and meaning (`prunephase --print_config`), and the close matches of
an unknown field name.

A field's meaning is written once, next to its default, as the comment of the line that first
sets it in a config file:

  config.dense.lr = 0.1  # Base learning rate.

or, for a long one, the comment lines directly above that line:

  # Members vmapped together on each device ...
  config.train.members_per_chunk = 'auto'

Files are read in the order given, and the first file that sets a field gives its meaning (so
configs/default.py, loaded by every other config, states the meanings of the fields they share).
Nothing here imports outside the standard library.
"""

import ast
import difflib
import io
import os
import tokenize
from typing import Any, Iterable

NO_DESCRIPTION = 'no description'


def _attribute_path(node: ast.AST, root: str) -> str | None:
  """'dense.lr' for the assignment target `config.dense.lr` (root 'config'), else None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name) and node.id == root and parts:
    return '.'.join(reversed(parts))
  return None


def _comments(source: str) -> tuple[dict[int, str], set[int]]:
  """({line: comment text}, lines that hold nothing but a comment) of Python source."""
  comments, code_lines = {}, set()
  tokens = tokenize.generate_tokens(io.StringIO(source).readline)
  for token in tokens:
    if token.type == tokenize.COMMENT:
      comments[token.start[0]] = token.string.lstrip('#').strip()
    elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENCODING, tokenize.ENDMARKER):
      code_lines.update(range(token.start[0], token.end[0] + 1))
  return comments, set(comments) - code_lines


def meanings_in_file(path: str | os.PathLike, root: str = 'config') -> dict[str, str]:
  """{'dense.lr': 'Base learning rate.', ...} for each `root.a.b = value` line of a config file.

  A field's meaning is the comment at the end of the first statement that sets it, else the
  comment lines directly above that statement (joined into one line); '' when it has neither.
  The dict is in the order the fields are first set.

  Raises:
    OSError: the file cannot be read.
    SyntaxError: the file is not Python.
  """
  with open(path, encoding='utf-8') as f:
    source = f.read()
  comments, comment_only = _comments(source)
  statements = [node for node in ast.walk(ast.parse(source))
                if isinstance(node, (ast.Assign, ast.AnnAssign))]
  found = {}
  for node in sorted(statements, key=lambda n: (n.lineno, n.col_offset)):
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    for target in targets:
      field = _attribute_path(target, root)
      if field is None or field in found:
        continue
      trailing = [comments[line] for line in range(node.lineno, node.end_lineno + 1)
                  if line in comments and line not in comment_only]
      above, line = [], node.lineno - 1
      while line in comment_only:
        above.insert(0, comments[line])
        line -= 1
      found[field] = ' '.join(trailing or above).strip()
  return found


def meanings(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
  """The meanings of every field set in any of `paths`; the first file with one gives it."""
  merged = {}
  for path in paths:
    for field, meaning in meanings_in_file(path).items():
      if not merged.get(field):
        merged[field] = meaning
  return merged


def leaves(config) -> dict[str, Any]:
  """{'dense.lr': 0.1, ...}: every leaf field of a ConfigDict (or nested dict) by dotted path."""
  tree = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
  out = {}

  def visit(node, prefix):
    for key, value in node.items():
      if isinstance(value, dict):
        visit(value, f'{prefix}{key}.')
      else:
        out[f'{prefix}{key}'] = value

  visit(tree, '')
  return out


def listing(config, field_meanings: dict[str, str]) -> list[str]:
  """One line per leaf field, 'section.field = value  # meaning', in the order the config files
  declare them (fields they do not declare last, by name); a field without a meaning says
  'no description'."""
  values = leaves(config)
  order = {field: index for index, field in enumerate(field_meanings)}
  fields = sorted(values, key=lambda field: (order.get(field, len(order)), field))
  settings = [f'{field} = {values[field]!r}' for field in fields]
  width = min(max((len(s) for s in settings), default=0), 48)
  return [f'{setting:<{width}}  # {field_meanings.get(field) or NO_DESCRIPTION}'
          for field, setting in zip(fields, settings)]


def closest(field: str, config) -> str | None:
  """The field of `config` (a leaf or a section) whose name is closest to `field`, if any is
  close."""
  names = set(leaves(config))
  names |= {name.rsplit('.', i)[0] for name in names for i in range(1, name.count('.') + 1)}
  matches = difflib.get_close_matches(field, sorted(names), n=1, cutoff=0.6)
  return matches[0] if matches else None


def value_at(field: str, config) -> Any:
  """The value (or section) `field` ('dense.lr', 'dense') names in `config`.

  Raises:
    KeyError: `config` has no such field.
  """
  node = config
  for part in field.split('.'):
    if not hasattr(node, 'keys') or part not in node.keys():
      raise KeyError(field)
    node = node[part]
  return node


def has_field(field: str, config) -> bool:
  """Whether `field` ('dense.lr' or a section such as 'dense') is a field of `config`."""
  try:
    value_at(field, config)
  except KeyError:
    return False
  return True


def kind_of(value: Any) -> str:
  """What a field with this default takes, in words: 'a whole number', 'true or false', ..."""
  if isinstance(value, bool):
    return 'true or false'
  if isinstance(value, int):
    return 'a whole number'
  if isinstance(value, float):
    return 'a number'
  if isinstance(value, str):
    return 'text'
  if isinstance(value, (tuple, list)):
    return "a tuple such as '(1, 2)' (or the flag once per element)"
  return f'a {type(value).__name__}'
