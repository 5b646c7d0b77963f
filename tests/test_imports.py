"""The package's import graph has no cycle.

Every `import prunephase...` and `from prunephase... import ...` counts, at module level or
inside a function (a deferred import is still a dependency: it only hides the circle until the
function runs). `from prunephase.stages import report` is an edge to prunephase.stages.report
and to the package prunephase.stages, whose __init__ runs first (unless the importer lives in
that package); a package's __init__ is its own node.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = 'prunephase'


def _modules() -> dict[str, pathlib.Path]:
  modules = {}
  for path in (ROOT / PACKAGE).rglob('*.py'):
    parts = path.relative_to(ROOT).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    modules[name] = path
  return modules


def import_graph() -> dict[str, set[str]]:
  """module -> the package modules it imports (anywhere in its source)."""
  modules = _modules()
  graph = {}
  for name, path in modules.items():
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for alias in node.names:
          target = f'{node.module}.{alias.name}'
          edges.add(target if target in modules else node.module)
      elif isinstance(node, ast.Import):
        edges.update(alias.name for alias in node.names)
    # Importing a module runs its packages' __init__ first: an edge to each of them too, except
    # to the importer's own packages (a submodule is only ever imported inside its package's).
    own = {'.'.join(name.split('.')[:k]) for k in range(1, name.count('.') + 1)}
    edges |= {'.'.join(e.split('.')[:k]) for e in edges for k in range(2, e.count('.') + 1)}
    graph[name] = {e for e in edges if e in modules and e != name and e not in own}
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan, iterative)."""
  index, low, on_stack, stack, found = {}, {}, set(), [], []
  counter = 0
  for start in sorted(graph):
    if start in index:
      continue
    work = [(start, iter(sorted(graph[start])))]
    index[start] = low[start] = counter
    counter += 1
    stack.append(start)
    on_stack.add(start)
    while work:
      node, successors = work[-1]
      advanced = False
      for succ in successors:
        if succ not in index:
          index[succ] = low[succ] = counter
          counter += 1
          stack.append(succ)
          on_stack.add(succ)
          work.append((succ, iter(sorted(graph[succ]))))
          advanced = True
          break
        if succ in on_stack:
          low[node] = min(low[node], index[succ])
      if advanced:
        continue
      work.pop()
      if work:
        low[work[-1][0]] = min(low[work[-1][0]], low[node])
      if low[node] == index[node]:
        component = []
        while True:
          member = stack.pop()
          on_stack.discard(member)
          component.append(member)
          if member == node:
            break
        if len(component) > 1:
          found.append(sorted(component))
  return found


def test_cycles_finds_a_circle():
  assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
  assert cycles({'a': {'b'}, 'b': set()}) == []


def test_the_package_has_no_import_cycle():
  graph = import_graph()
  assert 'prunephase.regimes' in graph and 'prunephase.config.names' in graph['prunephase.regimes']
  assert cycles(graph) == []
