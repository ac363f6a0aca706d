"""What a run shows as it goes and when it ends: a line per event (`graph.events`), then
its answer, its status and where its records are."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from graph.app.cli.base import console, err
from graph.checkpoints import default_checkpointer_url

if TYPE_CHECKING:
    from graph.contracts import FinalState
    from graph.events import (
        Event,
        HandOffRequested,
        NodeUpdate,
        PlanReviewRequested,
        Resumed,
    )

STATUS_STYLE = {"ok": "green", "error": "red", "rejected": "magenta", "timeout": "yellow",
                "blocked": "red"}


def print_event(event: Event) -> None:
    """One live progress line per node update and step event."""
    from graph import events as e

    match event:
        case e.StepStarted():
            console.print(f"  [dim]→ {event.step_id}[/] {event.tool}")
        case e.StepFinished():
            style = STATUS_STYLE.get(event.status, "white")
            nova_act = (f", Nova Act {event.nova_act_seconds:.1f} s "
                        + (f"${event.nova_act_cost_usd:.5f}" if event.nova_act_cost_usd
                           is not None else "unpriced")) if event.nova_act_seconds else ""
            console.print(f"  [{style}]✓ {event.step_id} {event.status}[/] "
                          f"[dim]{event.duration_ms:.0f} ms, {event.attempts} attempt(s)"
                          f"{nova_act}[/]")
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
        case e.ReplayHandedOver():
            console.print(f"[yellow]↪ the model takes over:[/] {escape(event.reason)}",
                          highlight=False, soft_wrap=True)
        case e.StepRetried():
            console.print(f"  [yellow]↻ {event.step_id} retry after {event.error}[/]")
        case e.StepWaiting():
            console.print(f"  [yellow]… {event.step_id} waiting for {event.reason}[/]")
        case e.NodeUpdate() if event.says_something():
            console.print(node_line(event))
        case e.PlanReviewRequested():
            print_review(event)
        case e.HandOffRequested():
            print_hand_off(event)
        case e.HandOffAnswered():
            console.print(f"[bold cyan]● person[/] {escape(event.step_id)} answered "
                          f"{event.action}{' by ' + escape(event.by) if event.by else ''}",
                          highlight=False)
        case e.PlanReviewAnswered():
            done = {"approve": "approved", "edit": f"edited: runs as plan "
                    f"v{event.edited_version}", "reject": "rejected"}[event.action]
            console.print(f"[bold cyan]● review[/] plan v{event.plan_version} {done}"
                          f"{' by ' + escape(event.by) if event.by else ''}"
                          f"{': ' + escape(event.reason) if event.reason else ''}",
                          highlight=False, soft_wrap=True)


def print_review(event: PlanReviewRequested) -> None:
    """A plan waiting for review: its goal, then a line per step with its arguments, and
    whether it writes, where it goes and which secrets it uses."""
    console.print(f"[bold yellow]● review[/] plan v{event.plan_version} waits for you before "
                  f"any step runs: {escape(event.goal)}", highlight=False, soft_wrap=True)
    if event.error:
        err.print(f"  [red]your last answer was refused:[/] {escape(event.error)}",
                  highlight=False, soft_wrap=True)
    for step in event.steps:
        marks = [*(["[red]writes[/]"] if step.get("writes") else []),
                 *([f"hosts: {escape(', '.join(step['hosts']))}"] if step.get("hosts") else []),
                 *([f"secrets: {escape(', '.join(step['secrets']))}"]
                   if step.get("secrets") else []),
                 *([f"[red]why a human: {escape(step['escalated'])}[/]"]
                   if step.get("escalated") else [])]
        after = f" after {', '.join(step['depends_on'])}" if step.get("depends_on") else ""
        console.print(f"  {escape(step['step_id'])} {escape(step['tool'])}{after} "
                      f"{escape(json.dumps(step['args']))}"
                      + (f"\n      {' · '.join(marks)}" if marks else ""),
                      highlight=False, soft_wrap=True)


def print_hand_off(event: HandOffRequested) -> None:
    """A step waiting for a person: what is asked, the page, its screenshot, and the
    DevTools link to take the page over."""
    console.print(f"[bold yellow]● person needed[/] {escape(event.step_id)} "
                  f"({escape(event.need)}): {escape(event.asked)}\n  page: "
                  f"{escape(event.url)}"
                  + (f"\n  screenshot: {escape(event.screenshot)}" if event.screenshot else "")
                  + (f"\n  take it over: {escape(event.devtools)}" if event.devtools else ""),
                  highlight=False, soft_wrap=True)
    if event.error:
        err.print(f"  [red]your last answer was refused:[/] {escape(event.error)}",
                  highlight=False, soft_wrap=True)


def node_line(event: NodeUpdate) -> str:
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


def print_final(thread_id: str, final: FinalState, as_json: bool,
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
            f"{final.usage.total_tokens} tokens, {final.usage.describe_cost()}\n"
            f"checkpoint: {default_checkpointer_url()}\n"
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
