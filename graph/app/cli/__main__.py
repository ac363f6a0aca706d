"""`python -m graph.app.cli`: the `duet` command."""

from graph.app.cli import app

app()
