"""The `duet` commands that describe rather than run: tools, schema, doctor, diagram."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from graph.app.cli.base import AUTH_HELP, MCP_HELP, app, auth_path, config_errors, console, mcp_path
from graph.context import Context


@app.command("tools")
def list_tools(
    mcp: Annotated[Path | None, typer.Option(help=MCP_HELP)] = None,
    auth: Annotated[Path | None, typer.Option(help=AUTH_HELP + " Its secrets are listed as "
                                                               "the planner sees them.")] = None,
    allow_host: Annotated[list[str], typer.Option(
        help="A host[:port] an HTTP MCP server may be reached on, or a secret may go to "
             "(repeat it).")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List every tool a plan may use: its class, idempotency key, signature and source."""
    with config_errors(as_json):
        # A listing says what answers now: a server that cannot be reached is listed as
        # such at once, not waited for as a run waits (it has no work to lose).
        catalog, missing, secrets = asyncio.run(_tool_catalog(
            Context(allowed_hosts=list(allow_host), mcp_config=mcp_path(mcp),
                    auth_config=auth_path(auth) if auth else None,
                    dependency_wait_seconds=0)))
    if as_json:
        typer.echo(json.dumps(catalog, indent=1))
        return
    table = Table("tool", "class", "key", "retry", "source", "signature (as the planner sees it)")
    notes: dict[str, list[str]] = {}
    for tool in catalog:
        kind = ("read-only" if not tool["changes_things"] else "changes things"
                + (" (destructive)" if tool["destructive"] else "")
                + ("*" if tool["changes_things_when"] else ""))
        if tool["changes_things_when"]:
            notes.setdefault(f"* changes things when: {tool['changes_things_when']}",
                             []).append(tool["name"])
        repeat = not tool["changes_things"] or tool["takes_idempotency_key"] or tool["idempotent"]
        name = tool["name"]
        if tool["unavailable"]:
            notes.setdefault(f"unavailable: {tool['unavailable']}", []).append(name)
            name += " [red](unavailable)[/]"
        table.add_row(name, kind, "yes" if tool["takes_idempotency_key"] else "no",
                      "yes" if repeat else "no", tool["source"], tool["signature"])
    console.print(table)
    console.print("key: takes an idempotency key; retry: retried after a timeout or an "
                  "ambiguous failure (it only reads, sends a key, or is idempotent)",
                  style="dim", highlight=False)
    for note, names in notes.items():
        console.print(f"{', '.join(names)}: {note}", markup=False, highlight=False)
    for source, reason in missing.items():
        console.print(f"{source} (none of its tools): unavailable: {reason}", markup=False,
                      highlight=False)
    if secrets:
        console.rule("secrets, as the planner sees them (`duet secrets` checks each)")
        console.print(secrets, markup=False, highlight=False)


async def _tool_catalog(context: Context) -> tuple[list[dict[str, Any]], dict[str, str], str]:
    """The tools a run with `context` may use, the tool sources that did not load, and what
    the planner is told of its secrets."""
    from graph.app.runner import add_mcp_servers
    from graph.runtime.secrets import run_auth, secrets_listing
    from tools import default_registry

    auth = run_auth(context)
    registry = default_registry()
    try:
        if context.mcp_config:
            await add_mcp_servers(registry, context)
        return registry.catalog(), registry.missing(), secrets_listing(registry, auth)
    finally:
        await registry.aclose()


@app.command()
def schema() -> None:
    """Print the JSON Schema of the contracts (Plan, Step, StepResult, Decision, ...)."""
    from graph.contracts import contract_schemas

    typer.echo(json.dumps(contract_schemas(), indent=1))


@app.command()
def doctor() -> None:
    """Check the browser, the demo site, checkpoints and credentials; say what is missing."""
    from graph.app.doctor import run_checks

    checks = run_checks()
    for check in checks:
        mark = "[green]✓[/]" if check.ok else ("[red]✗[/]" if check.required else "[yellow]![/]")
        console.print(f"{mark} [bold]{check.name}[/]: ", end="")
        console.print(check.detail, markup=False)
    raise typer.Exit(0 if all(c.ok for c in checks if c.required) else 1)


@app.command()
def diagram() -> None:
    """Print the state machine as a Mermaid diagram (the README's, generated)."""
    from graph.builder import graph

    typer.echo(graph.get_graph().draw_mermaid().strip())
