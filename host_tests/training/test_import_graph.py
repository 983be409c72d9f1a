"""The import graph of ``training/``: no import circle, no import of hls_build, and the sweep engine loads without
TensorFlow.

The graph is read from the source (every ``import``, also those inside functions, since a lazy import that closes
a circle is still a circle); no module is imported, so the check costs milliseconds.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "training"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _all_imports(path: Path, package: str) -> list[tuple[str, list[str]]]:
    """Every import statement of ``path`` as ``(module, names)`` with relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [alias.name for alias in node.names]))
    return found


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    found: set[str] = set()
    for base, names in _all_imports(path, _package_of(name, path)):
        targets = [f"{base}.{n}" if f"{base}.{n}" in modules else base for n in names] or [base]
        for target in targets:
            # `import training.a.b` imports training.a.b; count the deepest module of ours it names.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ is run before its submodules; importing the package from a submodule is not
            # a circle Python trips on, but a submodule importing its own package's re-exports would be fragile:
            # count it like any other edge.
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_lazy_and_from_imports():
    graph = _graph()
    # experiments imports run_tasks from the sweep driver at the top, and the trainer only inside a function.
    assert "training.sweep.driver" in graph["training.experiments"]
    assert "training.train" in graph["training.experiments"]
    assert "training.sweep.schedulers" in graph["training.sweep"]


def test_no_import_circle_in_training():
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_training_never_imports_hls_build():
    """The flow is training -> hls_build -> overlays -> board: hls_build may import training, not the reverse."""
    offenders = [
        f"{name}: {base}"
        for name, path in _modules().items()
        for base, names in _all_imports(path, _package_of(name, path))
        if base.split(".")[0] == "hls_build" or (base == "" and "hls_build" in names)
    ]
    assert not offenders, offenders


def test_the_sweep_engine_imports_without_tensorflow_or_ray():
    code = (
        "import sys, training.sweep, training.grid, training.experiment_tables; "
        "print(sorted(m for m in ('tensorflow', 'ray', 'hls4ml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
