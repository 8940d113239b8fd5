"""The project's habits, checked by the README's test command: ruff (lint and format), mypy, the
import contracts (import-linter, configured in pyproject.toml) and no import cycles.

Each tool runs as a subprocess from the checkout's root, under its configuration in pyproject.toml,
with a bounded time; a finding fails the test with the tool's own output. The tools come with the
``test`` extra: ``pip install -e '.[test]'``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The packages whose modules may not import each other in a cycle: runner and its built-ins
#: (plugins/, installed as runner.builtins; grimp reads folders, so it is `plugins` here).
PACKAGES = ("runner", "plugins")


def tool(name: str) -> str:
    """The console script ``name`` installed beside this interpreter (or, for a --user install, on PATH)."""
    path = Path(sysconfig.get_path("scripts")) / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed beside {sys.executable}; install the test extra: pip install -e '.[test]'")
    return found


def run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        output = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x for x in (e.stdout, e.stderr) if x)
        pytest.fail(f"{' '.join(args)} took more than {timeout:.0f} s:\n{output}")


def report(proc: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(map(str, proc.args))} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"


def test_ruff_check() -> None:
    proc = run([tool("ruff"), "check", "--no-fix", "--output-format", "concise", "."], timeout=120)
    assert proc.returncode == 0, report(proc)


def test_ruff_format() -> None:
    proc = run([tool("ruff"), "format", "--check", "."], timeout=120)
    assert proc.returncode == 0, report(proc)


def test_mypy() -> None:
    proc = run([tool("mypy")], timeout=600)  # files and settings: [tool.mypy] in pyproject.toml
    assert proc.returncode == 0, report(proc)


def test_import_contracts() -> None:
    """[tool.importlinter]: the core imports neither tracking, report, run nor sweeps; the built-ins
    only runner.api; runner.api nothing of runner; no cycles between sibling packages."""
    proc = run([tool("lint-imports"), "--no-cache"], timeout=300)
    assert proc.returncode == 0, report(proc)


def import_graph(monkeypatch: pytest.MonkeyPatch):
    import grimp  # installed with import-linter

    monkeypatch.syspath_prepend(str(ROOT))  # plugins/ is found as `plugins` only from the checkout
    return grimp.build_graph(*PACKAGES, cache_dir=None)  # every import statement, those in functions too


def cycles(graph) -> Iterator[list[str]]:
    """Each strongly connected set of modules (more than one module, or one importing itself), as one
    cycle through it: [a, b, ..., a]."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & graph.modules) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iteratively
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(edges[successor])))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
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
                    if len(component) > 1 or node in edges[node]:
                        components.append(sorted(component))

    for module in edges:
        if module not in index:
            visit(module)
    for component in components:
        yield cycle_through(component, edges)


def cycle_through(component: list[str], edges: dict[str, list[str]]) -> list[str]:
    """The shortest cycle from the component's first module back to it, inside the component."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in edges[node]:
                if successor == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if successor in members and successor not in previous:
                    previous[successor] = node
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no cycle through {component}")


def describe(cycle: list[str], graph) -> str:
    """a -> b (l.12: from a import b) -> a (l.40, in a function: ...)"""
    steps = [cycle[0]]
    for importer, imported in zip(cycle, cycle[1:]):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = "; ".join(f"l.{d['line_number']}: {d['line_contents'].strip()}" for d in details)
        steps.append(f"{imported} ({where})")
    return "\n    -> ".join(steps)


def test_no_import_cycles(monkeypatch: pytest.MonkeyPatch) -> None:
    """No module of runner or its built-ins imports itself through others, function-level imports included."""
    graph = import_graph(monkeypatch)
    found = list(cycles(graph))
    assert not found, "import cycles:\n  " + "\n  ".join(describe(c, graph) for c in found)


def test_cycle_finder_sees_imports_in_functions(tmp_path: Path) -> None:
    """The cycle check itself: a cycle closed by an import inside a function is found and printed."""
    import grimp

    package = tmp_path / "cyclic_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic_pkg import b\n")
    (package / "b.py").write_text("def late():\n    from cyclic_pkg import c\n")
    (package / "c.py").write_text("import cyclic_pkg.a\n")
    (package / "d.py").write_text("from cyclic_pkg import a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("cyclic_pkg", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    found = list(cycles(graph))
    assert found == [["cyclic_pkg.a", "cyclic_pkg.b", "cyclic_pkg.c", "cyclic_pkg.a"]]
    assert "l.2: from cyclic_pkg import c" in describe(found[0], graph)
