"""Saved runs, read without building the graph: their settings, traces and latest
checkpoint. What `duet show` and `duet ls` use, so they answer without loading LangChain.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graph.answers import HANDOFF, PLAN_REVIEW
from graph.checkpoints import duet_home, open_checkpointer, open_store
from graph.context import Context
from graph.contracts import FinalState, RunStatus, StepResult, Usage
from graph.events import Event, parse_event
from graph.runtime.ledger import StepLedger
from tools.errors import ConfigError

INTERRUPT = "__interrupt__"  # LangGraph's channel for pending interrupts


class UnknownThread(ConfigError):
    """No saved run has this thread id."""


class IncompatibleThread(ConfigError):
    """A run saved by an earlier version whose state this version cannot continue."""


class NotRetryable(ConfigError):
    """`retry` was asked of a run that did not end `failed` or `budget_exhausted`."""


def new_thread_id() -> str:
    """A fresh thread id."""
    return uuid.uuid4().hex[:12]


def trace_path(thread_id: str) -> Path:
    """The JSONL trace of a thread."""
    return duet_home() / "traces" / f"{thread_id}.jsonl"


def read_trace(path: Path) -> list[Event]:
    """The events of a JSONL trace; empty when there is none. A line cut off by a killed
    writer, or of an event this version does not know, is left out."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            event = parse_event(json.loads(line))
        except ValueError:
            continue
        if event is not None:
            events.append(event)
    return events


def settings_path(thread_id: str) -> Path:
    """Where a run's task and settings are saved (so `resume` continues it as it was)."""
    return duet_home() / "runs" / f"{thread_id}.json"


def final_state(values: dict[str, Any], waiting: Sequence[Any] = (),
                results: list[StepResult] | None = None) -> FinalState:
    """The contract's final fields from a thread's state values and pending interrupts;
    `results` when they are not in the values (a run that has not ended keeps them in
    the step ledger)."""
    status, reason = values.get("status"), values.get("reason", "")
    if not status and waiting and waiting[0].value.get("kind") == HANDOFF:
        request = waiting[0].value
        status, reason = RunStatus.NEEDS_PERSON, (
            f"step {request['step_id']} waits for a person: {request['asked']} "
            f"({request.get('url', '')})")
    elif not status and waiting:
        request = waiting[0].value
        steps = [s["step_id"] for w in waiting for s in w.value.get("steps", [])]
        status, reason = RunStatus.NEEDS_APPROVAL, (
            f"plan v{request['plan_version']} waits for review (steps {steps})"
            if request.get("kind") == PLAN_REVIEW else f"steps {steps} wait for approval")
    elif not status:
        status, reason = RunStatus.FAILED, "the run has not ended"
    return FinalState(status=status, final_answer=values.get("final_answer"),
                      results=values.get("results", []) if results is None else results,
                      reason=reason,
                      usage=values.get("usage") or Usage())


async def latest(saver: Any, thread_id: str) -> tuple[dict[str, Any], list[Any]]:
    """The state values of a thread's latest checkpoint and its pending interrupts."""
    saved = await saver.aget_tuple({"configurable": {"thread_id": thread_id,
                                                     "checkpoint_ns": ""}})
    if saved is None:
        return {}, []
    waiting = [item for _, channel, value in saved.pending_writes or () if channel == INTERRUPT
               for item in (value if isinstance(value, list | tuple) else [value])]
    return saved.checkpoint.get("channel_values", {}), waiting


async def saved_run(
    thread_id: str, checkpointer_url: str | None = None
) -> tuple[dict[str, Any], FinalState]:
    """A thread's saved state values and its final fields (raises `UnknownThread`), read
    from its latest checkpoint."""
    async with open_checkpointer(checkpointer_url) as saver:
        values, waiting = await latest(saver, thread_id)
    if not values:
        raise UnknownThread(f"no saved run has thread id {thread_id!r}")
    return values, final_state(values, waiting,
                               await ledger_results(values, thread_id, checkpointer_url))


async def ledger_results(values: dict[str, Any], thread_id: str,
                         checkpointer_url: str | None = None) -> list[StepResult] | None:
    """A run's results from its step ledger when its state does not hold them (it has not
    ended, or a retry of it has not), else None."""
    if values.get("results") or ("results" in values and values.get("status")):
        return None  # (a retry empties the list until it ends)
    async with open_store(checkpointer_url) as store:
        return await StepLedger(store, thread_id).results()


def saved_before_ledger(values: dict[str, Any]) -> bool:
    """True for a run saved by a version whose state kept every result (and no `tally`):
    it can be shown, not continued (its nodes counted positions in that list)."""
    return bool(values.get("results")) and "tally" not in values


def step_count(values: dict[str, Any]) -> int:
    """How many results a run has, from its state alone."""
    if "tally" in values:
        return values["tally"].results
    return len(values.get("results", []))


async def recent_runs(limit: int = 20, checkpointer_url: str | None = None
                      ) -> list[dict[str, Any]]:
    """The newest `limit` runs: thread id, task, status, age, steps and cost."""
    folder = duet_home() / "runs"
    paths = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    rows = []
    async with open_checkpointer(checkpointer_url) as saver:
        for path in paths[:limit]:
            values, waiting = await latest(saver, path.stem)
            status = values.get("status") or (
                final_state(values, waiting).status if waiting
                else "not ended" if values else "not started")
            usage = values.get("usage") or Usage()
            rows.append({"thread_id": path.stem, "task": json.loads(path.read_text())["task"],
                         "status": str(status), "age_seconds": round(time.time()
                                                                     - path.stat().st_mtime),
                         "steps": step_count(values),
                         "reasoning_calls": usage.reasoning_calls,
                         "cost_usd": usage.total_cost_usd})
    return rows


def save_settings(thread_id: str, task: str, context: Context, model: object) -> None:
    """Save a run's task, context and model name (never its CDP headers)."""
    path = settings_path(thread_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    model_spec = model if isinstance(model, str) else None
    settings = dataclasses.asdict(context)
    settings.pop("browser_cdp_headers")  # may hold credentials: resume reads them anew
    path.write_text(json.dumps({"task": task, "context": settings, "model": model_spec},
                               indent=1))


def load_settings(thread_id: str) -> dict[str, Any]:
    """A run's saved task and settings (raises `UnknownThread`)."""
    path = settings_path(thread_id)
    if not path.exists():
        raise UnknownThread(f"no saved run has thread id {thread_id!r} (looked in {path})")
    return json.loads(path.read_text())
