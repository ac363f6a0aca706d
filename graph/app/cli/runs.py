"""The `duet` commands of one run: run, resume, retry, show, report, ls, and the demo."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import sys
import webbrowser
from collections.abc import Callable
from contextlib import ExitStack
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

import click
import typer
from rich.markup import escape
from rich.table import Table

from graph.app.cli.base import (
    AUTH_HELP,
    MCP_HELP,
    UsageError,
    app,
    auth_path,
    config_errors,
    console,
    err,
    fail,
    mcp_path,
)
from graph.app.cli.live import STATUS_STYLE, print_event, print_final
from graph.checkpoints import duet_home
from graph.context import Context, parse_settings

if TYPE_CHECKING:
    from graph.events import Event, Resumed

Approval = Literal["ask", "auto", "deny"]
Decide = Literal["approve", "reject"]
ReviewAction = Literal["approve", "edit", "reject"]
REASON_HELP = ("With --decide reject: why, for the planner (a plan review's rejection "
               "needs one; the planner writes a new plan that comes back for review).")
EDIT_PLAN_HELP = ("Answer a plan review by running this plan instead (JSON or YAML, checked "
                  "as any plan).")


def _ask_human(request: dict[str, Any]) -> Any:
    """Ask on the terminal: approve, edit or reject a plan under review (the live view
    showed it), or whether each step that changes things may run."""
    if request.get("kind") == "plan_review":
        return _review_at_terminal(request)
    if request.get("kind") == "handoff":
        return _hand_off_at_terminal(request)
    answers: dict[str, Any] = {}
    for step in request["steps"]:
        console.print(f"[yellow]approval needed[/] {step['step_id']}: {step['tool']} "
                      f"{json.dumps(step['args'])}", markup=True, highlight=False)
        if step.get("destructive"):
            console.print("  [red]destructive:[/] its tool says it may destroy data",
                          markup=True, highlight=False)
        if step.get("escalated"):
            console.print(f"  [red]why a human:[/] {step['escalated']}", markup=True,
                          highlight=False)
        if typer.confirm("  run this step?", default=False):
            answers[step["step_id"]] = "approve"
            continue
        why = typer.prompt("  why (optional: the planner reads it)", default="",
                           show_default=False).strip()
        answers[step["step_id"]] = {"reject": why} if why else "reject"
    return answers


def _review_at_terminal(request: dict[str, Any]) -> Any:
    """Approve, edit (a plan file) or reject (with a reason) the plan under review."""
    from graph.answers import PlanReview
    from graph.reasoning import PlanFileError, PlanFileReasoner

    while True:
        action = typer.prompt(f"  plan v{request['plan_version']}", type=ReviewAction)
        if action == "approve":
            return PlanReview(action="approve")
        if action == "reject":
            reason = typer.prompt("  why (the planner reads it)").strip()
            if reason:
                return PlanReview(action="reject", reason=reason)
            continue
        path = typer.prompt("  the plan to run instead (a JSON or YAML file)")
        try:
            return PlanReview(action="edit", plan=PlanFileReasoner(path).load_plan())
        except PlanFileError as exc:
            err.print(f"[red]{escape(str(exc))}[/]")


def _hand_off_at_terminal(request: dict[str, Any]) -> Any:
    """The person at the terminal answers a hand-off (the live view showed it): a value
    read without echo (getpass), done once they finished on the page, or refuse."""
    import getpass
    import os

    from graph.answers import AnswerRefused, read_hand_off_answer

    actions = [form["action"] for form in request["answers"]]
    if "done" in actions and request.get("devtools") and os.environ.get("DISPLAY"):
        webbrowser.open(request["devtools"])  # a display: the page opens for them
    while True:
        action = typer.prompt(f"  {' / '.join(actions)}", type=click.Choice(actions))
        answer: dict[str, str] = {"action": action}
        if action == "value":
            answer["value"] = getpass.getpass("  the value (not shown): ")
        elif action == "refuse":
            answer["reason"] = typer.prompt("  why", default="", show_default=False)
        try:
            return read_hand_off_answer(answer, request)
        except AnswerRefused as exc:
            err.print(f"[red]{escape(str(exc))}[/]")


_ask_human.by = "a human at the terminal"  # type: ignore[attr-defined]


def _decider(decide: Decide | None, reason: str = "",
             edit_plan: Path | None = None) -> Callable[[dict[str, Any]], Any] | None:
    """The fixed answers of `--decide`, `--reason` and `--edit-plan`, or None (then the
    terminal asks, or the run waits). Raises `UsageError` for options that do not go
    together, `PlanFileError` for an edited plan that is not a plan."""
    if reason and decide != "reject":
        raise UsageError("--reason goes with --decide reject")
    if not (decide or edit_plan):
        return None
    from graph.answers import AnswerRefused, PlanReview
    from graph.reasoning import PlanFileReasoner

    review = (PlanReview(action="edit", plan=PlanFileReasoner(edit_plan).load_plan())
              if edit_plan else PlanReview(action="reject", reason=reason) if reason
              else PlanReview(action="approve") if decide == "approve" else None)
    step_answer = {"reject": reason} if reason else decide

    def fixed(request: dict[str, Any]) -> Any:
        if request.get("kind") == "handoff":  # a person answers it; reject refuses it
            return {"action": "refuse", "reason": reason} if decide == "reject" else None
        if request.get("kind") != "plan_review":
            steps = request["steps"]
            return {step["step_id"]: step_answer for step in steps} if step_answer else None
        if review is None and decide == "reject":
            raise AnswerRefused("a plan review is rejected with a reason, for the planner: "
                                "--decide reject --reason WHY")
        return review

    flags = [*(["--edit-plan", str(edit_plan)] if edit_plan else []),
             *(["--decide", decide] if decide else [])]
    plural = "s" if len(flags) > 2 else ""
    fixed.by = f"the {' '.join(flags)} option{plural}"  # type: ignore[attr-defined]
    return fixed


def _execute(task: str | None, thread: str | None, as_json: bool,
             decide: Callable[[dict[str, Any]], Any] | None = None,
             retry: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Run `task`, resume `thread` (no task), or retry it with `retry`'s settings; print
    its end. Pauses are answered by `decide`, else on the terminal when there is one."""
    from graph.app.runner import retry_thread, run_thread
    from graph.app.threads import new_thread_id
    from graph.checkpoints import CheckpointerUnavailable
    from graph.events import Resumed, StorageFailed

    resumed: Resumed | None = None
    storage_failed = False

    def on_event(event: Event) -> None:
        nonlocal resumed, storage_failed
        if isinstance(event, Resumed) and event.ended:
            resumed = event  # the run had ended: the final print says so
        storage_failed = storage_failed or isinstance(event, StorageFailed)
        if not as_json:
            print_event(event)

    thread = thread or new_thread_id()  # known here, so a cancelled run can be resumed
    if decide is None and not as_json and sys.stdin.isatty():
        decide = _ask_human
    try:
        with config_errors(as_json, thread_id=None if task is not None else thread):
            thread_id, final = asyncio.run(
                retry_thread(thread, settings=retry, on_event=on_event, decide=decide,
                             **kwargs) if retry is not None
                else run_thread(task, thread_id=thread, on_event=on_event, decide=decide,
                                **kwargs))
    except CheckpointerUnavailable as exc:
        # Before any work (its settings are saved): the same command continues it.
        again = f"duet {'retry' if retry is not None else 'resume'} {thread}"
        fail(exc, as_json, said=f"{exc}; nothing ran: `{again}` starts it once it is back",
             thread_id=thread, continue_with=again)
    except KeyboardInterrupt:
        err.print(f"[yellow]cancelled[/]; continue with: duet resume {thread}")
        raise typer.Exit(1) from None
    print_final(thread_id, final, as_json, resumed, storage_failed)


def _parse_vars(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"--var takes NAME=VALUE, not {pair!r}")
        parsed[name] = value
    return parsed


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="What you want done.")],
    plan_file: Annotated[Path | None, typer.Option(help="Offline planner: run this plan.")] = None,
    var: Annotated[list[str], typer.Option(help="NAME=VALUE for the plan file.")] = [],  # noqa: B006
    model: Annotated[str | None, typer.Option(help="Bedrock model id or provider:model; with "
                                                   "--plan-file, it takes over when a "
                                                   "replayed step fails.")] = None,
    thread: Annotated[str | None, typer.Option(help="Thread id (default: a new one).")] = None,
    allow_host: Annotated[list[str], typer.Option(
        help="A host[:port] the executors may reach (repeat it); none by default, and this "
             "machine only with a port.")] = [],  # noqa: B006
    approve: Annotated[Approval, typer.Option(help="Steps that change things: ask a human, "
                                                   "run them, or reject them.")] = "ask",
    review: Annotated[bool, typer.Option(
        "--review", help="Review each plan before any of its steps runs: approve, edit or "
                         "reject it (review_plan).")] = False,
    executor_url: Annotated[str | None, typer.Option(
        help="Run the steps on these executor deployments (LangGraph servers, comma-"
             "separated; default $DUET_EXECUTOR_URL).")] = None,
    mcp: Annotated[Path | None, typer.Option(help=MCP_HELP)] = None,
    auth: Annotated[Path | None, typer.Option(help=AUTH_HELP)] = None,
    setting: Annotated[list[str], typer.Option(
        "--set", help="NAME=VALUE for any run setting (repeat it), parsed by its type: "
                      "--set max_steps=500 --set deadline_seconds=1800. `duet resume` keeps "
                      "them.")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print the final state as JSON.")] = False,
) -> None:
    """Run a task; exit 0 only when it completes."""
    with config_errors(as_json):
        settings = parse_settings(setting)
    context = Context(plan_file=str(plan_file) if plan_file else None,
                      plan_variables=_parse_vars(var), approval=approve, review_plan=review,
                      allowed_hosts=list(allow_host), mcp_config=mcp_path(mcp),
                      self_healing=bool(plan_file and model))
    if model:
        context.model = model
    if executor_url:
        context.executor_url = executor_url
    if auth:
        context.auth_config = auth_path(auth)
    _execute(task, thread, as_json, context=dataclasses.replace(context, **settings))


@app.command()
def resume(
    thread: Annotated[str, typer.Argument(help="The thread id of a saved run.")],
    decide: Annotated[Decide | None, typer.Option(
        help="Answer every pending approval, and a plan review, so.")] = None,
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "",
    edit_plan: Annotated[Path | None, typer.Option(help=EDIT_PLAN_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final state as JSON.")] = False,
) -> None:
    """Continue a run from its last checkpoint; completed steps are not redone.

    A run that has ended is left as it is, and said so: `duet retry` continues one that
    failed."""
    with config_errors(as_json, thread_id=thread):
        decider = _decider(decide, reason, edit_plan)
    _execute(None, thread, as_json, decider)


@app.command()
def retry(
    thread: Annotated[str, typer.Argument(help="The thread id of a run that ended failed or "
                                               "budget_exhausted.")],
    decide: Annotated[Decide | None, typer.Option(help="Answer every approval it asks so.")
                      ] = None,
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "",
    setting: Annotated[list[str], typer.Option(
        "--set", help="NAME=VALUE for any run setting from now on (repeat it), as for `duet "
                      "run`: --set max_steps=500 raises a spent budget.")] = [],  # noqa: B006
    auth: Annotated[Path | None, typer.Option(help=AUTH_HELP + " From now on.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final state as JSON.")] = False,
) -> None:
    """Continue a run that ended failed or budget_exhausted, once the cause is fixed.

    The steps that succeeded are kept, never sent again; the others run again (a write that
    may have taken effect, whose tool takes no idempotency key, asks you first)."""
    with config_errors(as_json):
        settings = parse_settings(setting)
        decider = _decider(decide, reason)
    if auth:
        settings["auth_config"] = auth_path(auth)
    _execute(None, thread, as_json, decider, retry=settings)


@app.command()
def show(
    thread: Annotated[str, typer.Argument(help="The thread id of a saved run.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show a run's plan, steps, results, timings and tokens."""
    from graph.app.threads import saved_run
    from graph.state import RETRYABLE

    with config_errors(as_json):
        values, final = asyncio.run(saved_run(thread))
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
    nova_act = any(r.nova_act_seconds for r in final.results)
    table = Table("plan", "step", "tool", "status", "attempts", "ms",
                  *(["Nova Act s"] if nova_act else []), "error")
    for r in final.results:
        table.add_row(str(r.plan_version), r.step_id, r.tool,
                      f"[{STATUS_STYLE.get(r.status, 'white')}]{r.status}[/]", str(r.attempts),
                      f"{r.duration_ms:.0f}",
                      *([f"{r.nova_act_seconds:.1f}" if r.nova_act_seconds else ""]
                        if nova_act else []),
                      r.error.message[:80] if r.error else "")
    console.print(table)
    usage = final.usage
    console.print(f"reasoning calls {usage.reasoning_calls}, input tokens {usage.input_tokens} "
                  f"(cache read {usage.cache_read_tokens}, cache written "
                  f"{usage.cache_write_tokens}), output tokens {usage.output_tokens}, "
                  f"{usage.describe_cost()}")
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

    with config_errors(as_json):
        if as_json:
            typer.echo(json.dumps(asyncio.run(report_data(thread)), indent=1))
            return
        path = asyncio.run(write_report(thread))
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


DEMO_TASK = ("Follow up every overdue invoice in the CRM: add a reminder note to each "
             "customer, mark the invoices as reminded, and verify none is left overdue.")


@app.command()
def demo(
    model: Annotated[str | None, typer.Option(help="Plan with this model instead of the "
                                                   "offline plan file.")] = None,
    port: Annotated[int, typer.Option(help="Port of the demo site (0: any free port).")] = 0,
    approve: Annotated[Approval, typer.Option(help="Steps that change things: the demo runs "
                                                   "them ('auto'); 'ask' shows each.")] = "auto",
    credentials: Annotated[Path | None, typer.Option(
        help="Log in with the credentials in this file (a 0600 JSON or YAML mapping of "
             "username, password, totp_seed, api_token, outside any git repository) instead "
             "of fresh ones.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final state as JSON.")] = False,
) -> None:
    """Start the demo CRM on 127.0.0.1 (fresh data, behind its login) and run the follow-up
    task against it: the executor logs in with secrets given to the run by name only."""
    from demo_site import serve
    from demo_site.auth import AuthStore
    from demo_site.credentials import demo_login

    site_dir = duet_home() / "demo"
    shutil.rmtree(site_dir, ignore_errors=True)
    site_dir.mkdir(parents=True)
    db = site_dir / "crm.sqlite"
    with ExitStack() as stack:
        with config_errors(as_json):
            login = stack.enter_context(demo_login(db, credentials))
        url = stack.enter_context(serve(db, port, auth=True))
        if not as_json:
            console.print(f"[bold]demo site[/] {url} (data: {db}); its user's secrets, by name "
                          f"only, in {login.secrets_file} (mode 0600, removed at the end)",
                          highlight=False)
        plan_file = files("demo_site").joinpath("plans/overdue_followup.yaml")
        # The demo's executors may reach its own site, and nothing else.
        context = Context(plan_file=None if model else str(plan_file),
                          plan_variables={"site": url}, approval=approve,
                          allowed_hosts=[urlsplit(url).netloc],
                          auth_config=json.dumps(login.auth_config(url)))
        if model:
            context.model = model
            task = f"{DEMO_TASK} The CRM's JSON API is at {url}/api."
        else:
            task = DEMO_TASK
            if not as_json:
                console.print("[dim]offline planner mode: the plan comes from "
                              f"{plan_file}; pass --model to plan with Nova 2 Lite[/]")
        try:
            _execute(task, None, as_json, context=context)
        finally:
            if not as_json:  # the login's requests, as the CRM logged them (no value)
                stages = ", ".join(f"{a['stage']} {a['outcome']}"
                                   for a in AuthStore(db).login_attempts())
                console.print(f"[bold]logged in[/] by the executor, through the login recipe: "
                              f"{stages or 'no login request'}", highlight=False)
