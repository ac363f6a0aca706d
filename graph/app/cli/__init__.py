"""The `duet` command: run, resume, retry and inspect runs; list tools; evaluate; run the demo.

Only the commands that run the graph import it (and LangGraph, LangChain, the executors):
`duet --help`, `duet schema`, `duet show` and `duet ls` answer without them. Each module
adds its commands to the one Typer `app` (`base`); an error found before any work ends a
command the same way everywhere (`base.config_errors`: one line, exit 2).
"""

# Each module adds its commands, in this order in `duet --help`: a run's first.
from graph.app.cli import runs  # noqa: F401

# isort: split
from graph.app.cli import catalog, evals, exports, profiles, secrets  # noqa: F401
from graph.app.cli.base import app

__all__ = ["app"]
