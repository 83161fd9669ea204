"""The package structure is a checked contract: layers point one way, no module cycles, docs list modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports() -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_layer_contract_holds():
    """``lint-imports`` (contract in pyproject.toml) passes: no package imports one above it."""
    proc = _lint_imports()
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): components of the directed graph with more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _module_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("bench3d2d", cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def test_no_import_cycle_between_modules():
    """Counting function-local and type-only imports too, no two modules import each other (even
    through others); a package's ``__init__`` re-exporting its own modules is the one exception."""
    graph = _module_graph()
    for pkg in list(graph):  # an __init__ that re-exports its children is not a cycle
        graph[pkg] = {m for m in graph[pkg] if not m.startswith(pkg + ".")}
    cycles = _strongly_connected(graph)
    assert cycles == [], f"import cycles: {cycles}"


def test_the_cycle_check_finds_a_cycle():
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", sorted(m for m in _module_graph() if m.count(".") >= 1))
def test_every_module_is_in_the_architecture_doc(module):
    """docs/architecture.md's module table names every module of the library."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    path = module.replace(".", "/")
    assert f"`{path}.py`" in text or f"`{path}/`" in text, f"{module} is missing from docs/architecture.md"


def test_no_top_level_baselines_package_is_installed(tmp_path):
    """The baselines/ folder is installed as ``bench3d2d.baselines``: outside the checkout there is no
    top-level ``baselines`` package (a name another distribution on the package index uses)."""
    code = (
        "import importlib.util, json; import bench3d2d.baselines as b; "
        "print(json.dumps([importlib.util.find_spec('baselines') is None, b.__name__]))"
    )
    cmd = [sys.executable, "-c", code]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '[true, "bench3d2d.baselines"]'


@pytest.mark.parametrize("below", ["bench3d2d.harness", "bench3d2d.engine"])
def test_the_report_depends_on_neither_the_harness_nor_the_engine(below):
    """The leaderboard only reads results: no import chain from ``report`` reaches ``below`` (the
    third import-linter contract states the same)."""
    graph = grimp.build_graph("bench3d2d", cache_dir=None)
    assert not graph.chain_exists("bench3d2d.report", below, as_packages=True)
