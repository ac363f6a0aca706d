"""The rooms depend one way: the step runtime never imports the executor deployment."""

from __future__ import annotations

import subprocess
import sys


def test_the_step_runtime_and_the_graph_never_import_the_executor_deployment():
    code = ("import sys, graph.builder, graph.runtime.execution, graph.runtime.remote, "
            "graph.runtime.scheduler, graph.runtime.ledger, graph.runtime.progress, "
            "graph.runtime.taint, graph.nodes.finalize; "
            "print([m for m in sys.modules if m.startswith('graph.executor')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def _imports(path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_eval_modules_import_each_other_one_way():
    """No cycle among `graph.app.eval`'s modules, lazy imports included: LangSmith's path
    uses the runner, the runner does not know LangSmith."""
    from pathlib import Path

    import graph.app.eval as package

    folder = Path(package.__file__).parent
    names = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    edges = {name: {m.rsplit(".", 1)[-1] for m in _imports(folder / f"{name}.py")
                    if m.startswith("graph.app.eval.") and m.rsplit(".", 1)[-1] in names}
             for name in names}
    assert "runner" in edges["langsmith"] and "langsmith" not in edges["runner"]

    def cycle_from(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name):], name]
        return next((c for d in sorted(edges[name]) if (c := cycle_from(d, [*path, name]))),
                    None)

    assert [c for name in sorted(names) if (c := cycle_from(name, []))] == []
