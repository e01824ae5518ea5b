"""The package's layers point one way: no module imports (directly or through others) one that imports it.

An AST walk over noether_sim/ and kernels/ (shipped as noether_sim.kernels), relative imports
resolved, imports inside functions included (a lazy import still ties two modules together). An import
of a package a module lives in (``from . import __version__``) is not an edge: it is the package's
``__init__``, which every module runs under anyway.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"noether_sim": ROOT / "noether_sim", "noether_sim.kernels": ROOT / "kernels"}


def _modules(packages):
    mods = {}
    for pkg, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join((pkg,) + parts)] = path
    return mods


def import_graph(packages):
    """{module: set of modules of the same packages it imports}."""
    mods = _modules(packages)
    edges = {m: set() for m in mods}
    for m, path in mods.items():
        here = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[:len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t in mods and t != m and not m.startswith(t + "."):
                    edges[m].add(t)
    return edges


def import_circles(edges):
    """Every strongly connected set of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_in_the_package():
    edges = import_graph(PACKAGES)
    assert "noether_sim.kernels.driver" in edges and "noether_sim.discover" in str(sorted(edges))
    assert "noether_sim.kernels.record" in edges["noether_sim.kernels.lanes"]  # relative imports resolved
    assert import_circles(edges) == []


def test_the_check_finds_a_circle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")  # a lazy import counts
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from . import __version__\n")  # the package itself: not an edge
    assert import_circles(import_graph({"pkg": pkg})) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
