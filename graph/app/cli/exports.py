"""`duet export`: write a finished run's final plan as a plan file, to rerun it without the
model (`duet run TASK --plan-file FILE [--var NAME=VALUE]`)."""

from __future__ import annotations

import asyncio
import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from graph.app.cli.base import app, config_errors, console


@app.command()
def export(
    thread: Annotated[str, typer.Argument(help="The thread id of a run that has ended.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the plan file (default: plan.yaml in the "
                               "run's folder).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the path, the variables and "
                                                         "the rerun command as JSON.")] = False,
) -> None:
    """Write a run's final plan as a plan file whose variables default to the run's values.

    The task's values become `{{ name }}` variables; `duet run TASK --plan-file FILE`
    reruns it with no reasoning call, `--var NAME=VALUE` with other values."""
    from graph.app.export import export_plan

    with config_errors(as_json):
        exported = asyncio.run(export_plan(thread))
    path = exported.write(output)
    rerun = shlex.join(exported.rerun_command(path))
    if as_json:
        typer.echo(json.dumps({"thread_id": thread, "path": str(path),
                               "variables": exported.variables, "rerun": rerun}, indent=1))
        return
    console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
    if exported.variables:
        console.print("variables, each with the value the run had (a rerun without --var "
                      "repeats it):", markup=False)
        for name, value in exported.variables.items():
            console.print(f"  {name} = {value}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"rerun without the model: {rerun} [--var NAME=VALUE ...]", markup=False,
                  highlight=False, soft_wrap=True)
