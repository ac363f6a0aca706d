"""`duet eval`, a sub-application: run a task suite and score each run, or compare two
evals."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from graph.app.cli.base import (
    AUTH_HELP,
    MCP_HELP,
    UsageError,
    app,
    auth_path,
    config_errors,
    err,
    mcp_path,
)
from graph.checkpoints import duet_home
from graph.context import parse_settings

EvalAgent = Literal["nova-duet", "react", "both"]


eval_app = typer.Typer(help="Run a task suite and score each run; compare two evals.")
app.add_typer(eval_app, name="eval")


@eval_app.callback(invoke_without_command=True)
def eval_suite(
    suite: Annotated[Path | None, typer.Option(help="A suite file (YAML; default: the CRM "
                                                    "suite, demo_site/eval/crm.yaml).")] = None,
    tasks: Annotated[str | None, typer.Option(help="Only tasks whose id or category matches "
                                                   "this glob (comma-separated).")] = None,
    agent: Annotated[EvalAgent, typer.Option(help="Which agent: this graph, LangChain's "
                                                  "ReAct agent, or both.")] = "nova-duet",
    model: Annotated[str | None, typer.Option(help="Bedrock model id or provider:model "
                                                   "(default: Nova 2 Lite).")] = None,
    reference: Annotated[bool, typer.Option(help="Run each task's reference plan (no "
                                                 "model).")] = False,
    trials: Annotated[int, typer.Option(min=1, help="Runs of each task per agent.")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs at a time.")] = 4,
    min_pass: Annotated[float, typer.Option(help="Exit 1 when an agent's pass@1 is "
                                                 "below this.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print {summary, tasks} as JSON.")
                       ] = False,
    out: Annotated[Path | None, typer.Option(help="Where results go (default: "
                                                  "$DUET_HOME/eval/TIME).")] = None,
    setting: Annotated[list[str], typer.Option(
        "--set", help="NAME=VALUE for any run setting of every run (repeat it), as for "
                      "`duet run`: --set reasoning_effort=low.")] = [],  # noqa: B006
    mcp: Annotated[Path | None, typer.Option(help=MCP_HELP + " (both agents, with the "
                                                  "environment's own servers)")] = None,
    auth: Annotated[Path | None, typer.Option(help=AUTH_HELP + " (nova-duet's runs)")] = None,
    strict: Annotated[bool, typer.Option(help="An answer fact the task or preamble already "
                                              "states is an error, not a warning.")] = False,
    broken: Annotated[bool, typer.Option(help="Run every broken variant of each task's "
                                              "reference plan (no model); exit 1 when one "
                                              "passes its checkers.")] = False,
    compare: Annotated[tuple[Path, Path] | None, typer.Option(
        metavar="OLD NEW", help="Compare two evals (results folders or JSON files) instead "
                                "of running one; exit 1 on any regression.")] = None,
) -> None:
    """Run a task suite and score each run (state, answer, limits, tools); print a table per
    agent and category, write JSON, Markdown and HTML. Exit 1 below --min-pass, or when a
    reference plan fails."""
    from datetime import UTC, datetime

    from graph.app.eval import AgentSettings, load_suite, run_eval
    from graph.app.eval.console import eval_console
    from graph.app.eval.runner import headers, lowest_pass, table_rows
    from graph.app.eval.suite import echoed_facts
    from graph.context import DEFAULT_MODEL

    if compare and compare[0] is not None:
        _compare_evals(*compare, out)
    reference = reference or broken
    with config_errors(as_json):
        if reference and agent != "nova-duet":
            raise UsageError("reference plans are plan files for nova-duet: use --reference "
                             "with --agent nova-duet")
        loaded = load_suite(*([suite] if suite else []), strict=strict)
        context = parse_settings(setting)
        if mcp:
            context["mcp_config"] = mcp_path(mcp)
        if auth:
            context["auth_config"] = auth_path(auth)
        chosen = loaded.select(tasks)
        if not chosen:
            raise UsageError(f"no task of {loaded.name!r} matches {tasks!r}")
    for line in echoed_facts(loaded):
        err.print(f"[yellow]warning:[/] {line}", markup=True, highlight=False, soft_wrap=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = AgentSettings(model=None if reference else (model or DEFAULT_MODEL),
                             context=context, out_dir=out or duet_home() / "eval" / stamp)
    agents: list[str] = ["nova-duet", "react"] if agent == "both" else [agent]
    if broken:
        from graph.app.eval.variants import variants

        chosen = [v.as_task(settings.out_dir / "variants") for t in chosen
                  for v in variants(t, loaded.env.variations)]
    quiet = as_json
    stdout = eval_console()  # piped, its lines keep their width (not Rich's 80 columns)

    def started(job: Any) -> None:
        if not quiet:
            stdout.print(f"  [dim]→ {job.task.id} {job.agent} #{job.trial}[/]")

    def finished(row: Any) -> None:
        if not quiet:
            mark = "[green]✓ pass[/]" if row.passed else "[red]✗ fail[/]"
            failed = ", ".join(k for k, c in row.checks.items() if not c["score"])
            stdout.print(f"  {mark} {row.task} {row.agent} #{row.trial} {row.status} "
                         f"[dim]{row.calls} calls, {row.wall_s:.1f} s[/]"
                         + (f" [red]({failed})[/]" if failed else ""))

    if not quiet:
        stdout.print(f"[bold]duet eval[/] {loaded.name}: {len(chosen)} task(s) × "
                     f"{len(agents)} agent(s) × {trials} trial(s), "
                     f"{settings.model or 'reference plans'}")
    with config_errors(as_json):
        summary, rows, paths = asyncio.run(run_eval(
            loaded, chosen, agents, settings, trials=trials, concurrency=concurrency,
            on_start=started, on_row=finished))
    if as_json:
        from graph.app.eval.runner import as_json as rows_json

        typer.echo(json.dumps(rows_json(summary, rows), indent=1))
    else:
        table = Table(*headers(trials))
        for cells in table_rows(summary):
            table.add_row(*cells)
        stdout.print(table)
        stdout.print("results: " + "\n         ".join(map(str, paths)), markup=False,
                     highlight=False, soft_wrap=True)
    if broken:
        vacuous = [r.task for r in rows if r.passed]
        said = (f"[red]broken plans that passed:[/] {', '.join(vacuous)}" if vacuous else
                f"[green]every broken plan failed a checker[/] ({len(rows)})")
        err.print(said, markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1 if vacuous else 0)
    if reference and (failed := [r.task for r in rows if not r.passed]):
        # A reference plan that fails means the task and its checkers disagree.
        err.print(f"[red]reference plans failed:[/] {', '.join(failed)}", markup=True,
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    raise typer.Exit(0 if lowest_pass(summary) >= min_pass else 1)


def _compare_evals(old: Path, new: Path, out: Path | None) -> None:
    """`duet eval --compare OLD NEW`: print and write the comparison; exit 1 on any
    regression, 2 when a side is not a results folder or file."""
    from graph.app.eval.compare import compare, load_results, markdown

    with config_errors():
        comparison = compare(load_results(old), load_results(new))
    text = markdown(comparison, str(old), str(new))
    folder = out or (new if new.is_dir() else new.parent)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comparison.md").write_text(text, encoding="utf-8")
    typer.echo(text + f"\ncomparison: {folder / 'comparison.md'}")
    raise typer.Exit(1 if comparison.regressions else 0)
