"""`duet profiles`, a sub-application: the browser sessions kept as profiles
(`DUET_HOME/profiles`, `tools.auth.profiles`): list them, show one, delete one. What is
shown names domains, cookie names and ages, never a value."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from graph.app.cli.base import app, config_errors, console
from graph.checkpoints import profiles_folder

profiles_app = typer.Typer(help="The browser sessions kept as profiles: list, show, delete "
                                "(never a value).", no_args_is_help=True)
app.add_typer(profiles_app, name="profiles")
AS_JSON = typer.Option("--json", help="Print as JSON.")


@profiles_app.command("list")
def list_profiles(as_json: Annotated[bool, AS_JSON] = False) -> None:
    """List the kept profiles: when each was saved and the domains it holds a session for."""
    from tools.auth.profiles import Profiles

    profiles = Profiles(profiles_folder())
    with config_errors(as_json):
        summaries = [profiles.summary(name) for name in profiles.names()]
    if as_json:
        typer.echo(json.dumps([{**asdict(s), "saved_at": s.saved_at.isoformat(),
                                "age_seconds": round(s.age_seconds())} for s in summaries],
                              indent=1))
        return
    if not summaries:
        console.print(f"no profiles in {profiles.folder}", markup=False)
        return
    table = Table("profile", "saved", "domains", "cookies", "local storage")
    for summary in summaries:
        table.add_row(summary.name, _age(summary.age_seconds()), ", ".join(summary.domains),
                      str(summary.cookies), f"{summary.origins} origin(s)")
    console.print(table)


@profiles_app.command()
def show(name: Annotated[str, typer.Argument(help="The profile (its session's name).")],
         as_json: Annotated[bool, AS_JSON] = False) -> None:
    """Show a profile: its cookies (domain, name, path, expiry) and local storage keys."""
    from tools.auth.profiles import Profiles

    profiles = Profiles(profiles_folder())
    with config_errors(as_json):
        summary, details = profiles.summary(name), profiles.describe(name)
    if as_json:
        typer.echo(json.dumps(details, indent=1))
        return
    console.print(f"{name}: saved {_age(summary.age_seconds())} ({details['saved_at']}), "
                  f"for {', '.join(summary.domains) or 'no domain'}", markup=False)
    cookies = Table("domain", "cookie", "path", "expires")
    for cookie in details["cookies"]:
        cookies.add_row(cookie["domain"], cookie["name"], cookie["path"],
                        cookie["expires"] or "with the browser")
    console.print(cookies)
    for origin in details["local_storage"]:
        console.print(f"local storage of {origin['origin']}: {', '.join(origin['keys'])}",
                      markup=False)


@profiles_app.command()
def delete(name: Annotated[str, typer.Argument(help="The profile (its session's name).")]
           ) -> None:
    """Delete a profile: the next run that keeps its session logs in again."""
    from tools.auth.profiles import Profiles

    profiles = Profiles(profiles_folder())
    with config_errors():
        profiles.delete(name)
    console.print(f"deleted the profile {name!r}", markup=False)


def _age(seconds: float) -> str:
    """`12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"
