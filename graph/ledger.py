"""The effect journal: a step that changes things records an idempotency key before and
after it runs, so a resumed run checks a step that may have run instead of repeating it.

The journal lives in the graph's LangGraph store (the SQLite file or Postgres database of
the checkpoints when run through `run_thread`; the server's store under `langgraph dev`).
A graph compiled without a store keeps no journal.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from langgraph.store.base import BaseStore

from graph.contracts import StepError, StepResult
from graph.state import StepTask

NAMESPACE = ("duet", "effects")


def idempotency_key(thread_id: str, task: StepTask) -> str:
    """The same key for the same step of the same run, however often it is attempted.

    Edited arguments make a new key: an edited step is a different effect.
    """
    step = task["step"]
    blob = json.dumps([thread_id, task["plan_version"], step.id, step.tool, task["args"]],
                      sort_keys=True, default=str)
    return "duet-" + hashlib.sha256(blob.encode()).hexdigest()[:32]


class EffectJournal:
    """Journal entries of one thread: `started` before a step runs, `done` with its result."""

    def __init__(self, store: BaseStore, thread_id: str):
        self.store = store
        self.namespace = (*NAMESPACE, thread_id)

    async def entry(self, key: str) -> dict[str, Any] | None:
        """The entry recorded under `key`, or None if the step never started."""
        item = await self.store.aget(self.namespace, key)
        return item.value if item else None

    async def started(self, key: str, task: StepTask) -> None:
        """Record that the step is about to run (before any effect can happen)."""
        await self.store.aput(self.namespace, key, {
            "state": "started", "step_id": task["step"].id, "tool": task["step"].tool,
            "plan_version": task["plan_version"]}, index=False)

    async def done(self, key: str, result: StepResult) -> None:
        """Record the step's result; a later attempt returns it instead of running again."""
        await self.store.aput(self.namespace, key, {
            "state": "done", "step_id": result.step_id, "tool": result.tool,
            "plan_version": result.plan_version, "result": result.model_dump(mode="json")},
            index=False)

    async def entries(self) -> list[dict[str, Any]]:
        """Every entry of the thread (to check or inspect a run)."""
        items = await self.store.asearch(self.namespace, limit=10_000)
        return [{"key": item.key, **item.value} for item in items]


def uncertain_result(base: dict[str, Any]) -> StepResult:
    """The result of a step that started before a crash and whose tool takes no key."""
    return StepResult(**base, status="error", error=StepError(
        type="EffectUncertain",
        message="this step started before the run stopped and may have taken effect; its "
                "tool takes no idempotency key, so it is not repeated blindly: check its "
                "effect (read it back) before doing it again"))
