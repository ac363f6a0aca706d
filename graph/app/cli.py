"""The `duet` command: run, resume, retry and inspect runs; print the contracts; run the demo.

Only the commands that run the graph import it (and LangGraph, LangChain, the executors):
`duet --help`, `duet schema`, `duet show` and `duet ls` answer without them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import sys
import webbrowser
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from graph.checkpoints import default_checkpointer_url, duet_home
from graph.context import Context, SettingError, parse_settings
from graph.redaction import RedactingFilter

if TYPE_CHECKING:
    from graph.contracts import FinalState
    from graph.events import Event, NodeUpdate, Resumed

app = typer.Typer(help="nova-duet: Nova 2 Lite plans, executors act.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)



@app.callback()
def _setup_logging() -> None:
    """Warnings and errors go to stderr, with secrets redacted."""
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


EXIT_CONFIG = 2


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
Approval = Literal["ask", "auto", "deny"]
Decide = Literal["approve", "reject"]
STATUS_STYLE = {"ok": "green", "error": "red", "rejected": "magenta", "timeout": "yellow",
                "blocked": "red"}


def _print_event(event: Event) -> None:
    """One live progress line per node update and step event."""
    from graph import events as e

    match event:
        case e.StepStarted():
            console.print(f"  [dim]→ {event.step_id}[/] {event.tool}")
        case e.StepFinished():
            style = STATUS_STYLE.get(event.status, "white")
            console.print(f"  [{style}]✓ {event.step_id} {event.status}[/] "
                          f"[dim]{event.duration_ms:.0f} ms, {event.attempts} attempt(s)[/]")
        case e.ToolSourceUnavailable():
            err.print(f"[yellow]! {event.source} unavailable; the run goes on without it:[/] "
                      f"{event.error}", markup=True, highlight=False, soft_wrap=True)
        case e.ToolSourceWaiting():
            console.print(f"  [yellow]… {event.source} waiting up to "
                          f"{event.wait_seconds:g}s for it to start:[/] {escape(event.reason)}",
                          highlight=False, soft_wrap=True)
        case e.ToolSourceBack():
            console.print(f"  [green]✓ {event.source} started[/] [dim]after waiting "
                          f"{event.waited_seconds:g}s[/]", highlight=False)
        case e.Resumed(note=str(note)):
            err.print(f"[yellow]{note}[/]", markup=True, highlight=False)
        case e.RunRetried():
            console.print(f"[bold cyan]● retry {event.retry}[/] of a run that ended "
                          f"{event.after}: kept {len(event.kept)} succeeded step(s), "
                          f"to run: {', '.join(event.again) or 'a new plan'}"
                          + (f" [yellow](asks first: {', '.join(event.uncertain)})[/]"
                             if event.uncertain else ""))
        case e.StepRetried():
            console.print(f"  [yellow]↻ {event.step_id} retry after {event.error}[/]")
        case e.StepWaiting():
            console.print(f"  [yellow]… {event.step_id} waiting for {event.reason}[/]")
        case e.NodeUpdate() if event.says_something():
            console.print(_node_line(event))


def _node_line(event: NodeUpdate) -> str:
    """A node update as one line: its new plan, decision, refusals, folding, status."""
    line = f"[bold cyan]● {event.node}[/]"
    if event.plan:
        ids = ", ".join(s["id"] for s in event.plan)
        line += f" plan v{event.plan_version}: {len(event.plan)} steps ({ids})"
    if event.decision:
        line += f" decision: {event.decision['action']} - {event.decision['reason']}"
    if event.rejected:
        line += f" [magenta]rejected: {event.rejected}[/]"
    if event.summarized_count:
        line += f" folded {event.summarized_count} results into the summary"
    if event.status:
        line += f" status: {event.status}"
    return line


def _print_final(thread_id: str, final: FinalState, as_json: bool,
                 resumed: Resumed | None = None, storage_failed: bool = False) -> None:
    """The run's end: its final state (as JSON, or the answer and where things are); for a
    resume that found the run ended, what `resumed` says of it. A run whose storage failed
    gets no report (it would read that storage; its reason says what continues it)."""
    from graph.app.threads import trace_path
    from graph.contracts import RunStatus
    from graph.state import RETRYABLE

    report = None if storage_failed else _write_report(thread_id)
    if as_json:
        payload = {"thread_id": thread_id, **final.model_dump(mode="json"),
                   "report": str(report) if report else None}
        if resumed:
            payload["resume"] = resumed.model_dump(include={"ended", "retry", "note"})
        typer.echo(json.dumps(payload, indent=1))
    else:
        style = "green" if final.status == RunStatus.COMPLETED else "red"
        console.rule(f"[{style}]{final.status.value}[/] {final.reason}")
        console.print(final.final_answer or "(no answer)", markup=False)
        console.print(
            f"\n[dim]thread {thread_id} · {final.usage.reasoning_calls} reasoning calls, "
            f"{final.usage.total_tokens} tokens\ncheckpoint: {default_checkpointer_url()}\n"
            f"trace: {trace_path(thread_id)}\nresume: duet resume {thread_id} · "
            f"inspect: duet show {thread_id}"
            + (f"\nretry (once the cause is fixed): duet retry {thread_id} [--set ...]"
               if final.status in RETRYABLE else "") + "[/]"
        )
        if report:
            console.print(f"report: {report}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(0 if final.status == RunStatus.COMPLETED else 1)


def _write_report(thread_id: str) -> Path | None:
    """Write the run's report page; a report that fails says so and leaves the run as it is."""
    from graph.app.report import write_report

    try:
        return asyncio.run(write_report(thread_id))
    except Exception as exc:  # noqa: BLE001 - the run has ended either way
        err.print(f"[yellow]could not write the run report:[/] {type(exc).__name__}: {exc}")
        return None


def _ask_human(request: dict[str, Any]) -> dict[str, str]:
    """Ask on the terminal whether each step that changes things may run."""
    answers = {}
    for step in request["steps"]:
        console.print(f"[yellow]approval needed[/] {step['step_id']}: {step['tool']} "
                      f"{json.dumps(step['args'])}", markup=True, highlight=False)
        if step.get("destructive"):
            console.print("  [red]destructive:[/] its tool says it may destroy data",
                          markup=True, highlight=False)
        if step.get("escalated"):
            console.print(f"  [red]why a human:[/] {step['escalated']}", markup=True,
                          highlight=False)
        approved = typer.confirm("  run this step?", default=False)
        answers[step["step_id"]] = "approve" if approved else "reject"
    return answers


_ask_human.by = "a human at the terminal"  # type: ignore[attr-defined]


def _decider(decide: str | None, as_json: bool) -> Callable[[dict[str, Any]], dict] | None:
    """How approvals are answered: a fixed answer, the terminal, or not at all (the run waits)."""
    if decide:
        def fixed(request: dict[str, Any]) -> dict[str, str]:
            return {step["step_id"]: decide for step in request["steps"]}

        fixed.by = f"the --decide {decide} option"  # type: ignore[attr-defined]
        return fixed
    if not as_json and sys.stdin.isatty():
        return _ask_human
    return None


def _execute(task: str | None, thread: str | None, as_json: bool, decide: str | None = None,
             retry: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Run `task`, resume `thread` (no task), or retry it with `retry`'s settings; print
    its end."""
    from graph.app.runner import retry_thread, run_thread
    from graph.app.threads import IncompatibleThread, NotRetryable, UnknownThread, new_thread_id
    from graph.checkpoints import CheckpointerUnavailable
    from graph.events import Resumed, StorageFailed
    from graph.reasoning import ConfigurationError
    from tools.mcp import MCPConfigError

    resumed: Resumed | None = None
    storage_failed = False

    def on_event(event: Event) -> None:
        nonlocal resumed, storage_failed
        if isinstance(event, Resumed) and event.ended:
            resumed = event  # the run had ended: the final print says so
        storage_failed = storage_failed or isinstance(event, StorageFailed)
        if not as_json:
            _print_event(event)

    thread = thread or new_thread_id()  # known here, so a cancelled run can be resumed
    common = {"on_event": on_event, "decide": _decider(decide, as_json)}
    try:
        thread_id, final = asyncio.run(
            retry_thread(thread, settings=retry, **common, **kwargs) if retry is not None
            else run_thread(task, thread_id=thread, **common, **kwargs))
    except (ConfigurationError, UnknownThread, IncompatibleThread, NotRetryable,
            MCPConfigError) as exc:
        fail(exc, as_json, thread_id=None if task is not None else thread)
    except CheckpointerUnavailable as exc:
        # Before any work (its settings are saved): the same command continues it.
        again = f"duet {'retry' if retry is not None else 'resume'} {thread}"
        fail(exc, as_json, said=f"{exc}; nothing ran: `{again}` starts it once it is back",
             thread_id=thread, continue_with=again)
    except KeyboardInterrupt:
        err.print(f"[yellow]cancelled[/]; continue with: duet resume {thread}")
        raise typer.Exit(1) from None
    _print_final(thread_id, final, as_json, resumed, storage_failed)


def _parse_vars(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"--var takes NAME=VALUE, not {pair!r}")
        parsed[name] = value
    return parsed


MCP_HELP = ("An mcpServers JSON file: its MCP servers' tools join the run as "
            "<server>_<tool> (an HTTP server's host must be allowed with --allow-host).")


def _mcp_path(path: Path | None) -> str | None:
    """The MCP config's absolute path (saved with the run, so a resume finds it)."""
    if path is None:
        return None
    if not path.is_file():
        raise typer.BadParameter(f"no MCP config file at {str(path)!r}", param_hint="--mcp")
    return str(path.resolve())


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="What you want done.")],
    plan_file: Annotated[Path | None, typer.Option(help="Offline planner: run this plan.")] = None,
    var: Annotated[list[str], typer.Option(help="NAME=VALUE for the plan file.")] = [],  # noqa: B006
    model: Annotated[str | None, typer.Option(help="Bedrock model id or provider:model.")] = None,
    thread: Annotated[str | None, typer.Option(help="Thread id (default: a new one).")] = None,
    allow_host: Annotated[list[str], typer.Option(
        help="A host[:port] the executors may reach (repeat it); none by default, and this "
             "machine only with a port.")] = [],  # noqa: B006
    approve: Annotated[Approval, typer.Option(help="Steps that change things: ask a human, "
                                                   "run them, or reject them.")] = "ask",
    executor_url: Annotated[str | None, typer.Option(
        help="Run the steps on these executor deployments (LangGraph servers, comma-"
             "separated; default $DUET_EXECUTOR_URL).")] = None,
    mcp: Annotated[Path | None, typer.Option(help=MCP_HELP)] = None,
    setting: Annotated[list[str], typer.Option(
        "--set", help="NAME=VALUE for any run setting (repeat it), parsed by its type: "
                      "--set max_steps=500 --set deadline_seconds=1800. `duet resume` keeps "
                      "them.")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print the final state as JSON.")] = False,
) -> None:
    """Run a task; exit 0 only when it completes."""
    try:
        settings = parse_settings(setting)
    except SettingError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    context = Context(plan_file=str(plan_file) if plan_file else None,
                      plan_variables=_parse_vars(var), approval=approve,
                      allowed_hosts=list(allow_host), mcp_config=_mcp_path(mcp))
    if model:
        context.model = model
    if executor_url:
        context.executor_url = executor_url
    _execute(task, thread, as_json, context=dataclasses.replace(context, **settings))


@app.command()
def resume(
    thread: Annotated[str, typer.Argument(help="The thread id of a saved run.")],
    decide: Annotated[Decide | None, typer.Option(help="Answer every pending approval so.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final state as JSON.")] = False,
) -> None:
    """Continue a run from its last checkpoint; completed steps are not redone.

    A run that has ended is left as it is, and said so: `duet retry` continues one that
    failed."""
    _execute(None, thread, as_json, decide)


@app.command()
def retry(
    thread: Annotated[str, typer.Argument(help="The thread id of a run that ended failed or "
                                               "budget_exhausted.")],
    decide: Annotated[Decide | None, typer.Option(help="Answer every approval it asks so.")
                      ] = None,
    setting: Annotated[list[str], typer.Option(
        "--set", help="NAME=VALUE for any run setting from now on (repeat it), as for `duet "
                      "run`: --set max_steps=500 raises a spent budget.")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print the final state as JSON.")] = False,
) -> None:
    """Continue a run that ended failed or budget_exhausted, once the cause is fixed.

    The steps that succeeded are kept, never sent again; the others run again (a write that
    may have taken effect, whose tool takes no idempotency key, asks you first)."""
    try:
        settings = parse_settings(setting)
    except SettingError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    _execute(None, thread, as_json, decide, retry=settings)


@app.command()
def show(
    thread: Annotated[str, typer.Argument(help="The thread id of a saved run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show a run's plan, steps, results, timings and tokens."""
    from graph.app.threads import UnknownThread, saved_run
    from graph.state import RETRYABLE

    try:
        values, final = asyncio.run(saved_run(thread))
    except UnknownThread as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    if as_json:
        typer.echo(json.dumps({"thread_id": thread, "task": values.get("task"),
                               **final.model_dump(mode="json"),
                               "retries": values.get("retries", 0)}, indent=1))
        return
    status = final.status.value
    if not values.get("status"):
        status += f" (not ended: duet resume {thread})"
    elif final.status in RETRYABLE:
        status += f" (continue it: duet retry {thread})"
    if values.get("retries"):
        status = f"{status} · retried {values['retries']} time(s)"
    console.print(f"[bold]{values.get('task')}[/]\nstatus: {status} {final.reason}")
    table = Table("plan", "step", "tool", "status", "attempts", "ms", "error")
    for r in final.results:
        table.add_row(str(r.plan_version), r.step_id, r.tool,
                      f"[{STATUS_STYLE.get(r.status, 'white')}]{r.status}[/]", str(r.attempts),
                      f"{r.duration_ms:.0f}", r.error.message[:80] if r.error else "")
    console.print(table)
    usage = final.usage
    console.print(f"reasoning calls {usage.reasoning_calls}, input tokens {usage.input_tokens} "
                  f"(cache read {usage.cache_read_tokens}, cache written "
                  f"{usage.cache_write_tokens}), output tokens {usage.output_tokens}, "
                  f"estimated cost ${usage.estimated_cost_usd:.5f}")
    if final.final_answer:
        console.rule("answer")
        console.print(final.final_answer, markup=False)


@app.command()
def report(
    thread: Annotated[str, typer.Argument(help="The thread id of a saved run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report's data as JSON "
                                                         "instead.")] = False,
    open_page: Annotated[bool, typer.Option("--open", help="Open it in a browser.")] = False,
) -> None:
    """Write a run's report page (one HTML file that loads nothing) and print its path."""
    from graph.app.report import report_data, write_report
    from graph.app.threads import UnknownThread

    try:
        if as_json:
            typer.echo(json.dumps(asyncio.run(report_data(thread)), indent=1))
            return
        path = asyncio.run(write_report(thread))
    except UnknownThread as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
    typer.echo(str(path))
    if open_page:
        webbrowser.open(path.as_uri())


@app.command("ls")
def list_runs(
    limit: Annotated[int, typer.Option(help="How many of the newest runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List recent runs: thread, status, task, age, steps and cost."""
    from graph.app.threads import recent_runs

    rows = asyncio.run(recent_runs(limit))
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table("thread", "status", "age", "steps", "calls", "cost USD", "task")
    for row in rows:
        style = "green" if row["status"] == "completed" else "red"
        table.add_row(row["thread_id"], f"[{style}]{row['status']}[/]", _age(row["age_seconds"]),
                      str(row["steps"]), str(row["reasoning_calls"]), f"{row['cost_usd']:.5f}",
                      row["task"][:60])
    console.print(table)


def _age(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@app.command("tools")
def list_tools(
    mcp: Annotated[Path | None, typer.Option(help=MCP_HELP)] = None,
    allow_host: Annotated[list[str], typer.Option(
        help="A host[:port] an HTTP MCP server may be reached on (repeat it).")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List every tool a plan may use: its class, idempotency key, signature and source."""
    from tools.mcp import MCPConfigError

    try:
        # A listing says what answers now: a server that cannot be reached is listed as
        # such at once, not waited for as a run waits (it has no work to lose).
        catalog, missing = asyncio.run(_tool_catalog(
            Context(allowed_hosts=list(allow_host), mcp_config=_mcp_path(mcp),
                    dependency_wait_seconds=0)))
    except MCPConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
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


async def _tool_catalog(context: Context) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The tools a run with `context` may use, and the tool sources that did not load."""
    from graph.app.runner import add_mcp_servers
    from tools import default_registry

    registry = default_registry()
    try:
        if context.mcp_config:
            await add_mcp_servers(registry, context)
        return registry.catalog(), registry.missing()
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


EvalAgent = Literal["nova-duet", "react", "both"]


@app.command("eval")
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

    from graph.app.eval import AgentSettings, SuiteError, load_suite, run_eval
    from graph.app.eval.console import eval_console
    from graph.app.eval.runner import headers, lowest_pass, table_rows
    from graph.app.eval.suite import echoed_facts
    from graph.context import DEFAULT_MODEL
    from graph.reasoning import ConfigurationError

    if compare and compare[0] is not None:
        _compare_evals(*compare, out)
    reference = reference or broken
    if reference and agent != "nova-duet":
        err.print("[red]error:[/] reference plans are plan files for nova-duet: use "
                  "--reference with --agent nova-duet")
        raise typer.Exit(EXIT_CONFIG)
    try:
        loaded = load_suite(*([suite] if suite else []), strict=strict)
    except SuiteError as exc:  # one line, as written (its brackets are not markup)
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    for line in echoed_facts(loaded):
        err.print(f"[yellow]warning:[/] {line}", markup=True, highlight=False, soft_wrap=True)
    try:
        context = parse_settings(setting)
    except SettingError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(EXIT_CONFIG) from None
    if mcp:
        context["mcp_config"] = _mcp_path(mcp)
    chosen = loaded.select(tasks)
    if not chosen:
        err.print(f"[red]error:[/] no task of {loaded.name!r} matches {tasks!r}")
        raise typer.Exit(EXIT_CONFIG)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = AgentSettings(model=None if reference else (model or DEFAULT_MODEL),
                             context=context, out_dir=out or duet_home() / "eval" / stamp)
    agents = ["nova-duet", "react"] if agent == "both" else [agent]
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
    try:
        summary, rows, paths = asyncio.run(run_eval(
            loaded, chosen, agents, settings, trials=trials, concurrency=concurrency,
            on_start=started, on_row=finished))
    except ConfigurationError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_CONFIG) from None
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
    from graph.app.eval.compare import CompareError, compare, load_results, markdown

    try:
        comparison = compare(load_results(old), load_results(new))
    except CompareError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    text = markdown(comparison, str(old), str(new))
    folder = out or (new if new.is_dir() else new.parent)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comparison.md").write_text(text, encoding="utf-8")
    typer.echo(text + f"\ncomparison: {folder / 'comparison.md'}")
    raise typer.Exit(1 if comparison.regressions else 0)


DEMO_TASK = ("Follow up every overdue invoice in the CRM: add a reminder note to each "
             "customer, mark the invoices as reminded, and verify none is left overdue.")


@app.command()
def demo(
    model: Annotated[str | None, typer.Option(help="Plan with this model instead of the "
                                                   "offline plan file.")] = None,
    port: Annotated[int, typer.Option(help="Port of the demo site (0: any free port).")] = 0,
    approve: Annotated[Approval, typer.Option(help="Steps that change things: the demo runs "
                                                   "them ('auto'); 'ask' shows each.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the final state as JSON.")] = False,
) -> None:
    """Start the demo CRM on 127.0.0.1 (fresh data) and run the follow-up task against it."""
    from demo_site import serve

    site_dir = duet_home() / "demo"
    shutil.rmtree(site_dir, ignore_errors=True)
    site_dir.mkdir(parents=True)
    with serve(site_dir / "crm.sqlite", port) as url:
        if not as_json:
            console.print(f"[bold]demo site[/] {url} (data: {site_dir / 'crm.sqlite'})")
        plan_file = files("demo_site").joinpath("plans/overdue_followup.yaml")
        # The demo's executors may reach its own site, and nothing else.
        context = Context(plan_file=None if model else str(plan_file),
                          plan_variables={"site": url}, approval=approve,
                          allowed_hosts=[urlsplit(url).netloc])
        if model:
            context.model = model
            task = f"{DEMO_TASK} The CRM's JSON API is at {url}/api."
        else:
            task = DEMO_TASK
            if not as_json:
                console.print("[dim]offline planner mode: the plan comes from "
                              f"{plan_file}; pass --model to plan with Nova 2 Lite[/]")
        _execute(task, None, as_json, context=context)


if __name__ == "__main__":
    app()
