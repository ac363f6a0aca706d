"""The step ledger: every step's result, written once to the graph's store as soon as the
step ends, so a run resumed after a kill replays finished steps instead of running them
again (even when the kill came before the next checkpoint).

It is also where a run's results are kept: the checkpointed state holds only what routing
and prompts need (see `graph.state`), so a checkpoint's size does not grow with the run.
Steps that never ran (rejected, not approved, cancelled) are recorded here too.

A step that changes things also records `started` before it runs: on resume such a step is
sent again with the same idempotency key when its tool takes one, and reported as uncertain
(never repeated blindly) when it does not.

The ledger lives in the graph's LangGraph store (a SQLite file beside the checkpoints', or
their Postgres database, when run through `run_thread`; the server's store under
`langgraph dev`). A graph compiled without a store keeps none: a kill then loses the steps
finished since the last checkpoint, and they run again on resume.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from langgraph.store.base import BaseStore

from graph.contracts import StepError, StepResult
from graph.state import StepTask

# The effect journal's namespace, kept so that a run journaled before the ledger existed
# still finds its entries on Postgres (on SQLite the store has its own file since then).
NAMESPACE = ("duet", "effects")


def step_key(thread_id: str, task: StepTask) -> str:
    """The same key for the same step of the same run, however often it is attempted; also
    the idempotency key a tool sends with its effect. Edited arguments make a new key: an
    edited step is a different effect."""
    step = task["step"]
    blob = json.dumps([thread_id, task["plan_version"], step.id, step.tool, task["args"]],
                      sort_keys=True, default=str)
    return "duet-" + hashlib.sha256(blob.encode()).hexdigest()[:32]


class LedgerUnavailable(Exception):
    """The ledger's store failed. Like a failed checkpoint write, this stops the run
    (resumable), rather than letting a step run without its record."""


class StepLedger:
    """Ledger entries of one thread: `started` (steps that change things), then `done`."""

    def __init__(self, store: BaseStore, thread_id: str):
        self.store = store
        self.namespace = (*NAMESPACE, thread_id)

    async def entry(self, key: str) -> dict[str, Any] | None:
        """The entry recorded under `key`, or None if the step never started."""
        try:
            item = await self.store.aget(self.namespace, key)
        except Exception as exc:
            raise LedgerUnavailable(f"reading the step ledger failed: {exc!r}") from exc
        return item.value if item else None

    async def started(self, key: str, task: StepTask) -> None:
        """Record that a step that changes things is about to run (before any effect)."""
        await self._put(key, {
            "state": "started", "step_id": task["step"].id, "tool": task["step"].tool,
            "plan_version": task["plan_version"], "side_effects": True})

    async def done(self, key: str, result: StepResult, side_effects: bool) -> None:
        """Record the step's result; a later attempt returns it instead of running again."""
        await self._put(key, {
            "state": "done", "step_id": result.step_id, "tool": result.tool,
            "plan_version": result.plan_version, "side_effects": side_effects,
            "result": result.model_dump(mode="json")})

    async def unrun(self, result: StepResult) -> None:
        """Record the result of a step that did not run: rejected, not approved, cancelled."""
        key = f"{result.status}-v{result.plan_version}-{result.step_id}"
        await self._put(key, {
            "state": "done", "step_id": result.step_id, "tool": result.tool,
            "plan_version": result.plan_version, "side_effects": False,
            "result": result.model_dump(mode="json")})

    async def set_aside(self, plan_version: int, step_ids: set[str], retry: int
                        ) -> list[dict[str, Any]]:
        """Before retry `retry` of the run: move the entries of the steps `step_ids` of
        `plan_version` that did not succeed (done with another status, or only started) from
        their step keys to `retry<n>-<key>`, so the retry runs those steps again (an entry
        under the step key would be replayed, or reported uncertain) with the same
        idempotency key. Their results stay among `results()`: the run's history keeps the
        failed attempts. Returns the entries moved. Moving again is harmless (a retry
        resumed after a kill does it again)."""
        moved = []
        try:
            for entry in await self.entries():
                key = entry.pop("key")
                if (not key.startswith("duet-") or entry.get("plan_version") != plan_version
                        or entry.get("step_id") not in step_ids
                        or (entry["state"] == "done" and entry["result"]["status"] == "ok")):
                    continue
                await self.store.aput(self.namespace, f"retry{retry}-{key}", entry,
                                      index=False)
                await self.store.adelete(self.namespace, key)
                moved.append(entry)
        except Exception as exc:
            raise LedgerUnavailable(f"setting failed steps aside failed: {exc!r}") from exc
        return moved

    async def _put(self, key: str, value: dict[str, Any]) -> None:
        try:
            await self.store.aput(self.namespace, key, value, index=False)
        except Exception as exc:
            raise LedgerUnavailable(f"writing the step ledger failed: {exc!r}") from exc

    async def entries(self, *, side_effects_only: bool = False) -> list[dict[str, Any]]:
        """Every entry of the thread (to check or inspect a run); optionally only those of
        steps that change things (the effect journal)."""
        items = await self.store.asearch(self.namespace, limit=100_000)
        entries = [{"key": item.key, **item.value} for item in items]
        return [e for e in entries if e.get("side_effects")] if side_effects_only else entries

    async def results(self) -> list[StepResult]:
        """Every recorded result of the thread, in the order the steps ended."""
        try:
            entries = await self.entries()
        except Exception as exc:
            raise LedgerUnavailable(f"reading the step ledger failed: {exc!r}") from exc
        results = [StepResult.model_validate(e["result"]) for e in entries
                   if e["state"] == "done"]
        return sorted(results, key=lambda r: (r.started_at.timestamp() + r.duration_ms / 1000,
                                              r.plan_version))


def uncertain_result(base: dict[str, Any]) -> StepResult:
    """The result of a step that started before a crash and whose tool takes no key."""
    return StepResult(**base, status="error", error=StepError(
        type="EffectUncertain",
        message="this step started before the run stopped and may have taken effect; its "
                "tool takes no idempotency key, so it is not repeated blindly: check its "
                "effect (read it back) before doing it again"))
