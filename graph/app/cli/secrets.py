"""`duet secrets`: the secrets plans may use by name, and whether each resolves now."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from graph.app.cli.base import AUTH_HELP, UsageError, app, auth_path, config_errors, console


@app.command("secrets")
def list_secrets(
    auth: Annotated[Path | None, typer.Option(help=AUTH_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the secrets of an auth config: name, kind, source, hosts, and whether each
    resolves now (why not, if not); never a value. Exit 1 when one does not resolve."""
    from tools.auth import AuthConfig

    with config_errors(as_json):
        source = auth_path(auth) if auth else os.environ.get("DUET_AUTH_CONFIG")
        if not source:
            raise UsageError("no auth config: pass --auth FILE or set DUET_AUTH_CONFIG")
        statuses = AuthConfig.load(source).store().status()
    if as_json:
        typer.echo(json.dumps([{"name": s.name, "kind": s.kind, "source": s.source,
                                "hosts": list(s.hosts), "available": s.available,
                                "problem": s.problem} for s in statuses], indent=1))
    else:
        table = Table("secret", "kind", "source", "hosts", "now")
        for status in statuses:
            table.add_row(status.name, status.kind, status.source, ", ".join(status.hosts),
                          "[green]resolves[/]" if status.available
                          else f"[red]unavailable[/]: {status.problem}")
        console.print(table)
        if not statuses:
            console.print(f"{source} names no secret", markup=False, highlight=False)
    raise typer.Exit(0 if all(status.available for status in statuses) else 1)
