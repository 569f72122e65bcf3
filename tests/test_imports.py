"""The import graph of aigc_jax: no circle, and commands are leaves (no library module imports one)."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'aigc_jax')


def _modules() -> dict[str, str]:
  out = {}
  for folder, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith('.py'):
        rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].replace(os.sep, '.')
        out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = os.path.join(folder, f)
  return out


def _imports(path: str, known: set[str]) -> set[str]:
  """aigc_jax modules imported anywhere in the file, in functions too (a lazy import is still a dependency)."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      found.update(a.name for a in node.names if a.name in known)
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('aigc_jax'):
      for a in node.names:  # `from aigc_jax import x`: the module aigc_jax.x where it is one
        found.add(f'{node.module}.{a.name}' if f'{node.module}.{a.name}' in known else node.module)
  return found & known


def _is_command(path: str) -> bool:
  tree = ast.parse(open(path).read())
  return any(isinstance(n, ast.If) and 'app.run' in ast.unparse(n) and '__main__' in ast.unparse(n.test)
             for n in tree.body)


def test_no_import_circle_and_commands_are_leaves():
  modules = _modules()
  graph = {m: _imports(p, set(modules)) - {m} for m, p in modules.items()}
  commands = {m for m, p in modules.items() if _is_command(p)}
  assert {'aigc_jax.main', 'aigc_jax.sample', 'aigc_jax.evaluate', 'aigc_jax.denoise'} <= commands
  importers = {f'{m} imports {c}' for m, deps in graph.items() for c in deps & commands}
  assert not importers, importers

  done, path = set(), []

  def visit(m):
    if m in path:
      raise AssertionError('import circle: ' + ' -> '.join(path[path.index(m):] + [m]))
    if m in done:
      return
    path.append(m)
    for d in sorted(graph[m]):
      visit(d)
    path.pop()
    done.add(m)

  for m in sorted(graph):
    visit(m)


def test_core_knows_no_modality_and_no_family():
  """The spine (aigc_jax.core) imports only itself: no imaging, data, task, model, objective or command module,
  so a text family reuses it unchanged."""
  modules = _modules()
  offenders = {f'{m} imports {d}' for m, p in modules.items() if m.startswith('aigc_jax.core')
               for d in _imports(p, set(modules)) if not d.startswith('aigc_jax.core')}
  assert not offenders, offenders
