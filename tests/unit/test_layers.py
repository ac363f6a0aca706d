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
