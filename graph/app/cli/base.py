"""What every `duet` command shares: the Typer app, the consoles, and how an error found
before any work ends a command (one line, exit 2)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from graph.redaction import RedactingFilter
from tools.errors import ConfigError

app = typer.Typer(help="nova-duet: Nova 2 Lite plans, executors act.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)
EXIT_CONFIG = 2


@app.callback()
def _setup_logging() -> None:
    """Warnings and errors go to stderr, with secrets redacted."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def fail(exc: Exception, as_json: bool = False, said: str | None = None,
         **payload: Any) -> NoReturn:
    """End the command on an error found before any work: one line on stderr (`said`, or
    the error's own message) and, with `--json`, the error as JSON on stdout (with
    `payload`); exit 2."""
    err.print(Text.assemble(("error: ", "red"), said or str(exc)), soft_wrap=True,
              highlight=False)
    if as_json:
        typer.echo(json.dumps({**payload, "status": None, "error": {
            "type": type(exc).__name__, "message": str(exc)}}, indent=1))
    raise typer.Exit(EXIT_CONFIG) from None


@contextmanager
def config_errors(as_json: bool = False, **payload: Any) -> Iterator[None]:
    """A `ConfigError` raised in the block (a bad setting, file, suite or thread) ends the
    command through `fail`."""
    try:
        yield
    except ConfigError as exc:
        fail(exc, as_json, **payload)


MCP_HELP = ("An mcpServers JSON file: its MCP servers' tools join the run as "
            "<server>_<tool> (an HTTP server's host must be allowed with --allow-host).")


def mcp_path(path: Path | None) -> str | None:
    """The MCP config's absolute path (saved with the run, so a resume finds it)."""
    if path is None:
        return None
    if not path.is_file():
        raise typer.BadParameter(f"no MCP config file at {str(path)!r}", param_hint="--mcp")
    return str(path.resolve())


AUTH_HELP = ("An auth config (YAML or JSON): the secrets plans may use by name, where each "
             "is read and the hosts it may go to, and the HTTP auth of each API host; it "
             "holds no value (default $DUET_AUTH_CONFIG).")


def auth_path(path: Path) -> str:
    """The auth config's absolute path (saved with the run, so a resume finds it)."""
    if not path.is_file():
        raise typer.BadParameter(f"no auth config file at {str(path)!r}", param_hint="--auth")
    return str(path.resolve())


class UsageError(ConfigError):
    """Options that do not go together, or name nothing."""
