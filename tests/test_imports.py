"""The import structure: no cycles in espresso_cl/ or benchmarks/, and the pure modules import
without pyopencl (a CI box or a converter may have NumPy but no OpenCL)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("espresso_cl", "benchmarks")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> list:
    """(module, imported names) of every import in ``path``, at any depth (function-level
    imports included); relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, tuple(alias.name for alias in node.names)))
    return found


def import_graph() -> dict:
    files = {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}

    def known(module: str) -> str:
        while module and module not in files:
            module = module.rpartition(".")[0]
        return module

    graph = {}
    for name, path in files.items():
        targets = set()
        for module, names in _imports(path, name):
            # `from x import y` imports module x.y where there is one, else a name of x.
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in files]
            if len(submodules) < len(names) or not names:
                targets.add(known(module))
            targets.update(submodules)
        graph[name] = targets - {"", name}
    return graph


def _cycle(graph: dict) -> list:
    """One import cycle as a list of modules, or [] when there is none."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "espresso_cl.tuning" in graph["espresso_cl.registry"]
    assert "benchmarks.suite" in graph["benchmarks.headline"]


def test_a_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycle = _cycle(import_graph())
    assert not cycle, " -> ".join(cycle)


@pytest.mark.parametrize("module", ["espresso_cl.reference", "espresso_cl.tuning", "espresso_cl.registry",
                                    "espresso_cl.layers", "espresso_cl.fold", "espresso_cl.settings"])
def test_pure_modules_import_without_pyopencl(module):
    # A meta-path finder that refuses pyopencl, as on a machine without it.
    code = ("import sys\n"
            "class NoOpenCL:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'pyopencl' or name.startswith('pyopencl.'):\n"
            "            raise ImportError('no pyopencl here')\n"
            "sys.meta_path.insert(0, NoOpenCL())\n"
            f"import {module}\n"
            "assert 'pyopencl' not in sys.modules\n"
            "import espresso_cl\n"
            "try:\n"
            "    espresso_cl.get_runtime\n"
            "except ImportError:\n"
            "    print('refused')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused", "the probe did not block pyopencl"
