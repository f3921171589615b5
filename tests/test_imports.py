"""The import graph of leader/, teacher/, student/ and export/ has no cycle, and the light entry
points (`import leader`, `leader.encoding`, `leader.export.runtime`) never import torch.

Edges are read with `ast` from every module: imports at the top and inside functions (a lazy
import still ties two modules together), and module names written as strings (what
`importlib.import_module` loads, e.g. `leader.evaluate.PREDICTORS`). Run this file as a script to
print the graph.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"leader": "leader", "teacher": "leader.teacher", "student": "leader.student", "export": "leader.export"}
"""Source folder -> the package it installs as (pyproject.toml's package-dir)."""


def modules() -> dict[str, Path]:
    """Every module of the four folders by its installed name (a package by its __init__.py)."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of the project it imports (anywhere in its body) or names as a string."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
                targets.add(node.value)
        graph[name] = {t for t in targets if t in known and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_graph_reads_the_known_edges():
    graph = import_graph()
    assert len(graph) > 40
    assert "leader.encoding" in graph["leader.export.runtime"]  # an absolute import
    assert "leader.export.runtime" in graph["leader.export.predict"]  # a relative one
    assert "leader.student.distill" in graph["leader.evaluate"]  # a module named in a string (importlib)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_light_entry_points_do_not_import_torch():
    code = (
        "import sys, leader, leader.encoding, leader.samples, leader.export.runtime\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "", f"imported by the light entry points: {done.stdout.strip()}"


if __name__ == "__main__":
    for module, targets in sorted(import_graph().items()):
        print(f"{module} -> {', '.join(sorted(targets)) or '-'}")
    print("cycles:", cycles(import_graph()) or "none")
