"""What a run report shows, gathered from the run's saved state, step ledger and trace.

Plain JSON (`duet report THREAD --json`): the task and how the run ended, every plan
version as a dependency graph, every step with its times, arguments, output and screenshot,
every reasoning call, the plan reviews, approvals and hand-offs to a person, and the
critical path. Nothing here
is trusted: tool output is capped here and escaped where it is rendered
(`graph.app.report.render`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from graph.app.threads import UnknownThread, load_settings, read_trace, saved_run, trace_path
from graph.checkpoints import run_folder
from graph.contracts import FinalState, StepResult
from graph.events import (
    ApprovalAnswered,
    Event,
    HandOffAnswered,
    HandOffRequested,
    NodeUpdate,
    PlanReviewAnswered,
    ReasoningCall,
    Resumed,
    RunFinished,
    RunRetried,
    RunStarted,
    ToolSourceBack,
    ToolSourceUnavailable,
    ToolSourceWaiting,
)
from tools.errors import ErrorKind
from tools.step import StepFiles

OUTPUT_CHARS = 2_000  # of a step's output shown in the report
ANSWER_CITATION = re.compile(r"\[([A-Za-z0-9_.-]+)\]")


def step_anchor(plan_version: int, step_id: str) -> str:
    """The id of a step's section in the report page."""
    return f"step-v{plan_version}-{step_id}"


async def report_data(thread_id: str, checkpointer_url: str | None = None) -> dict[str, Any]:
    """Everything the report shows, as JSON (raises `UnknownThread`)."""
    values, final = await saved_run(thread_id, checkpointer_url)
    events = read_trace(trace_path(thread_id))
    plans = _plans(events, values)
    planned = {(version, step["id"]): step for version, plan in plans.items()
               for step in plan["steps"]}
    steps = [_step(thread_id, result, planned.get((result.plan_version, result.step_id), {}))
             for result in final.results]
    _name_attempts(steps)
    _mark_critical(steps)
    # A trace written before cache tokens were recorded has none: they count as 0.
    reasoning = [e.model_dump(include={"kind", "started", "ended", "input_tokens",
                                       "cache_read_tokens", "cache_write_tokens",
                                       "output_tokens", "cost_usd", "ok"})
                 for e in events if isinstance(e, ReasoningCall)]
    times = [t for s in steps for t in (s["started"], s["ended"])]
    times += [t for r in reasoning for t in (r["started"], r["ended"])]
    times += [e.t for e in events
              if isinstance(e, RunStarted | Resumed | RunRetried | RunFinished) and e.t]
    try:
        settings = load_settings(thread_id)["context"]
    except UnknownThread:  # a run saved elsewhere (a server) has no settings file here
        settings = {}
    return {
        "thread_id": thread_id, "task": values.get("task", ""),
        "status": final.status.value, "reason": final.reason,
        "answer": final.final_answer, "citations": _citations(final, steps),
        "approval_policy": settings.get("approval"),
        "review_plan": bool(settings.get("review_plan")),
        "totals": {"wall_s": round(max(times) - min(times), 3) if times else 0.0,
                   "reasoning_calls": final.usage.reasoning_calls,
                   "input_tokens": final.usage.input_tokens,
                   "cache_read_tokens": final.usage.cache_read_tokens,
                   "cache_write_tokens": final.usage.cache_write_tokens,
                   "output_tokens": final.usage.output_tokens,
                   "model_cost_usd": final.usage.estimated_cost_usd,
                   "nova_act_seconds": final.usage.nova_act_seconds,
                   "nova_act_cost_usd": final.usage.nova_act_cost_usd,
                   "nova_act_unpriced_seconds": final.usage.nova_act_unpriced_seconds,
                   "cost_usd": final.usage.total_cost_usd, "steps": len(steps)},
        "started": min(times) if times else None,
        "plans": [{"version": version, **plan} for version, plan in sorted(plans.items())],
        "steps": steps, "reasoning": reasoning, "approvals": _approvals(events, steps),
        "reviews": [{"at": e.t, "plan_version": e.plan_version, "action": e.action,
                     "by": e.by, "reason": e.reason, "edited_version": e.edited_version}
                    for e in events if isinstance(e, PlanReviewAnswered)],
        "retries": [{"retry": e.retry, "after": e.after, "at": e.t, "again": e.again,
                     "reason": e.reason} for e in events if isinstance(e, RunRetried)],
        "source_waits": _source_waits(events),
        "hand_offs": _hand_offs(events),
    }


def _hand_offs(events: list[Event]) -> list[dict[str, Any]]:
    """Each time a step handed its page to a person: what was needed and asked, the page,
    its masked screenshot, and the answer (`value`, never the value itself; `done`;
    `refuse`) with who gave it, or none while the run still waits."""
    shown: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, HandOffRequested) and event.error is None:
            shown.append({"at": event.t, "step_id": event.step_id, "need": event.need,
                          "asked": event.asked, "url": event.url,
                          "screenshot": event.screenshot, "answer": None, "by": ""})
        elif isinstance(event, HandOffAnswered):
            asked = [h for h in shown if h["step_id"] == event.step_id and h["answer"] is None]
            if asked:
                asked[-1] |= {"answer": event.action, "by": event.by}
    return shown


def _source_waits(events: list[Event]) -> list[dict[str, Any]]:
    """Each wait for a tool source (an MCP server) that could not be reached as the run (or
    a resume of it) started: its reason, how long, and whether it then `started` or was
    `left out` (None: the trace ends before the wait does)."""
    waits: list[dict[str, Any]] = []
    waiting: dict[str, dict[str, Any]] = {}
    for event in events:
        if isinstance(event, ToolSourceWaiting):
            waiting[event.source] = {"source": event.source, "reason": event.reason,
                                     "at": event.t, "seconds": None, "ended": None}
            waits.append(waiting[event.source])
        elif (isinstance(event, ToolSourceBack | ToolSourceUnavailable)
              and event.source in waiting):
            wait = waiting.pop(event.source)
            wait["seconds"] = round((event.t or 0) - wait["at"], 1)
            wait["ended"] = "started" if isinstance(event, ToolSourceBack) else "left out"
    return waits


def _name_attempts(steps: list[dict[str, Any]]) -> None:
    """A step run again by a retry has a result per attempt: the newest keeps the step's
    anchor (what citations and the plan's graph link to), each earlier one gets its own."""
    total = Counter(step["anchor"] for step in steps)  # results come oldest first
    seen: Counter[str] = Counter()
    for step in steps:
        anchor = step["anchor"]
        seen[anchor] += 1
        if seen[anchor] < total[anchor]:
            step["anchor"] = f"{anchor}-attempt{seen[anchor]}"


def _plans(events: list[Event], values: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Every plan version the trace recorded (the saved plan when there is no trace)."""
    plans = {e.plan_version or 0: {"goal": e.goal or "", "steps": e.plan}
             for e in events if isinstance(e, NodeUpdate) and e.plan}
    plan = values.get("plan")
    if plan is not None and values.get("plan_version") not in plans:
        plans[values["plan_version"]] = {"goal": plan.goal, "steps": [
            {"id": s.id, "tool": s.tool, "depends_on": s.depends_on, "args": s.args}
            for s in plan.steps]}
    return plans


def _step(thread_id: str, result: StepResult, planned: dict[str, Any]) -> dict[str, Any]:
    """One step's section: its result, with the arguments and dependencies it was planned
    with (empty when the trace did not record its plan)."""
    started = result.started_at.timestamp()
    output = json.dumps(result.output, ensure_ascii=False, indent=1, default=str)
    files = StepFiles(run_folder(thread_id), f"v{result.plan_version}-{result.step_id}")
    return {
        "anchor": step_anchor(result.plan_version, result.step_id),
        "step_id": result.step_id, "plan_version": result.plan_version, "tool": result.tool,
        "args": planned.get("args"), "depends_on": planned.get("depends_on", []),
        "status": result.status, "attempts": result.attempts,
        "error": result.error.model_dump() if result.error else None,
        "escalated": result.escalated, "waited": result.waited,
        "started": round(started, 3), "ended": round(started + result.duration_ms / 1000, 3),
        "duration_ms": round(result.duration_ms, 1),
        "nova_act_seconds": result.nova_act_seconds,
        "nova_act_cost_usd": result.nova_act_cost_usd,
        "output": output if len(output) <= OUTPUT_CHARS else
        output[:OUTPUT_CHARS] + f"\n... [{len(output) - OUTPUT_CHARS} more characters]",
        "screenshot": str(files.screenshot) if files.screenshot.is_file() else None,
        "nova_act_logs": [str(p) for p in _nova_act_logs(files, result)],
        "critical": False,
    }


def _nova_act_logs(files: StepFiles, result: StepResult) -> list[Path]:
    """Nova Act's own HTML run logs written while the step ran."""
    folder = files.nova_act_logs
    if not folder.is_dir():
        return []
    start = result.started_at.timestamp()
    end = start + result.duration_ms / 1000 + 1
    return sorted(p for p in folder.rglob("*.html") if start <= p.stat().st_mtime <= end)


def _mark_critical(steps: list[dict[str, Any]]) -> None:
    """Mark each plan version's critical path: from the step that ended last, back through
    the dependency that ended last, to a step that waited for none."""
    for version in {s["plan_version"] for s in steps}:
        mine = {s["step_id"]: s for s in steps if s["plan_version"] == version}
        step: dict[str, Any] | None = max(mine.values(), key=lambda s: s["ended"])
        while step is not None:
            step["critical"] = True
            deps = [mine[d] for d in step["depends_on"] if d in mine]
            step = max(deps, key=lambda s: s["ended"]) if deps else None


def _citations(final: FinalState, steps: list[dict[str, Any]]) -> dict[str, str]:
    """Each step id the answer cites, and the anchor of its newest result."""
    anchors = {s["step_id"]: s["anchor"] for s in steps}  # later versions win
    return {cited: anchors[cited] for cited in ANSWER_CITATION.findall(final.final_answer or "")
            if cited in anchors}


def _approvals(events: list[Event], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Who decided what, when and why: answers to approval requests (a rejection's reason,
    when given), and the policy's refusals."""
    decided = []
    for event in events:
        if isinstance(event, ApprovalAnswered):
            for answer in event.answers:
                decided += [{"at": event.t, "by": event.by, "step_id": step_id,
                             "answer": verdict if isinstance(verdict, str) else
                             "reject" if "reject" in verdict else "edit",
                             "reason": "" if isinstance(verdict, str) else
                             verdict.get("reject", "")}
                            for step_id, verdict in answer.items()]
    decided += [{"at": s["ended"], "by": "the approval policy", "step_id": s["step_id"],
                 "answer": "reject", "reason": ""} for s in steps
                if s["error"] and ErrorKind.of(s["error"]["type"]) is ErrorKind.NOT_APPROVED
                and not any(d["step_id"] == s["step_id"] for d in decided)]
    return sorted(decided, key=lambda d: d["at"])
