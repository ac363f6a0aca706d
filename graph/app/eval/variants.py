"""Broken variants of a task's reference plan, to show that its checkers are not vacuous:
each variant is a plan that does the task wrong, and must fail at least one checker.

Kinds, made from the reference plan itself:
- `drop`: a write left out; `double`: a write done twice (a second step);
- `wrong_value`: a write with another value (a status, a note's text);
- `other_record`: a write, or for a task that only reads its read, aimed at another record;
- `wrong_filter`: for a task that only reads, its first filtered read with another value of
  a filter (`?status=open` for `?status=overdue`, another customer), one variant per value
  that the suite's plans give that filter: a task whose answer also comes from a wrong
  read (the same count for two statuses) does not discriminate;
- `stray_write`: an extra write to a record the task does not name (the suite's probe);
- `same_value_write`: an extra write that leaves its record as it was (the suite's probe);
- `approve`: for a task whose writes must be refused, the same plan with them approved.

The new kinds change plans, steps and arguments only; what is a record of the system
comes from the suite (`probes`, and the values its plans use), so they apply to any
environment's suite.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import yaml
from jinja2 import Environment, StrictUndefined

from graph.app.eval.suite import EvalTask, Suite

KINDS = ("drop", "double", "wrong_value", "other_record", "wrong_filter", "stray_write",
         "same_value_write", "approve")
STATUSES = ["open", "paid", "overdue", "reminded"]
WRITE_TOOLS = {"browser_click", "browser_fill", "browser_act"}


@dataclass
class Variant:
    """A broken version of a task: its plan (as data) and approval settings."""

    kind: str
    task: EvalTask
    plan: dict[str, Any]
    approval: str
    decide: str
    detail: str = ""

    @property
    def name(self) -> str:
        """The kind, and what it changed when a kind makes several (`wrong_filter:status=open`)."""
        return f"{self.kind}:{self.detail}" if self.detail else self.kind

    def as_task(self, folder: Path) -> EvalTask:
        """The task with this variant's plan (written to `folder`) and approval settings,
        its id `TASK~NAME`."""
        folder.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^\w.-]+", "_", self.name)
        path = folder / f"{self.task.id}-{slug}.yaml"
        path.write_text(yaml.safe_dump(self.plan, sort_keys=False), encoding="utf-8")
        return self.task.model_copy(update={"id": f"{self.task.id}~{self.name}", "plan": path,
                                            "approval": self.approval,
                                            "decide": self.decide})


def plan_data(path: Path) -> dict[str, Any]:
    """A plan file's data with its template expanded and `{{ site }}` kept for later."""
    text = Environment(undefined=StrictUndefined).from_string(
        path.read_text(encoding="utf-8")).render(site="{{ site }}")
    return yaml.safe_load(text)


def is_write(step: dict[str, Any]) -> bool:
    """True for a step that changes things."""
    args = step.get("args") or {}
    return (bool(step.get("side_effects")) or step.get("tool") in WRITE_TOOLS
            or (step.get("tool") == "http_request"
                and str(args.get("method", "GET")).upper() != "GET"))


def _refused(task: EvalTask) -> bool:
    return task.approval == "deny" or (task.approval == "ask" and task.decide == "reject")


def variants(task: EvalTask, suite: Suite) -> list[Variant]:
    """Every broken variant of `task` (of `suite`) that applies, in `KINDS` order."""
    plan = plan_data(task.plan)
    steps = plan["steps"]
    writes = [i for i, step in enumerate(steps) if is_write(step)]
    if writes and _refused(task):
        # Its writes never run, so a changed write changes nothing: what breaks such a
        # task is letting them run.
        return [Variant("approve", task, plan, "auto", "approve")]
    made: dict[str, dict[str, Any]] = {}
    filtered: list[Variant] = []
    if writes:
        first = writes[0]
        made["drop"] = _with_steps(plan, [s for i, s in enumerate(steps) if i != first],
                                   dropped=steps[first]["id"])
        twin = {**copy.deepcopy(steps[first]), "id": f"{steps[first]['id']}_again"}
        made["double"] = _with_steps(plan, [*steps, twin])
        if (wrong := _changed(steps[first], _wrong_value)) is not None:
            made["wrong_value"] = _with_steps(plan, _replace(steps, first, wrong))
        if (other := _changed(steps[first], _other_record)) is not None:
            made["other_record"] = _with_steps(plan, _replace(steps, first, other))
    else:
        reads = [i for i, step in enumerate(steps) if _has_record(step)]
        if reads and (other := _changed(steps[reads[0]], _other_record)) is not None:
            made["other_record"] = _with_steps(plan, _replace(steps, reads[0], other))
        domains = filter_values(suite)
        for index, step in enumerate(steps):
            if changes := list(_other_filters(step, domains)):
                filtered = [Variant("wrong_filter", task, _with_steps(
                    plan, _replace(steps, index, new)), task.approval, task.decide, detail)
                    for detail, new in changes]
                break
    for kind, probe in (("stray_write", suite.probes.stray_write),
                        ("same_value_write", suite.probes.same_value_write)):
        if probe:
            made[kind] = _with_steps(plan, [*steps, copy.deepcopy(probe)])
    out = []
    for kind in KINDS:
        if kind == "wrong_filter":
            out += filtered
        elif kind in made:
            out.append(Variant(kind, task, made[kind], task.approval, task.decide))
    return out


def _filters(step: dict[str, Any]) -> dict[str, Any]:
    """A read's filters: the query of an HTTP request's URL, or the plain arguments of
    another tool's call (an MCP tool's `status`, ...). A browser step's arguments say where
    to look on a page, not which records: they are no filters."""
    args = step.get("args") or {}
    if step.get("tool") == "http_request":
        return dict(parse_qsl(str(args.get("url", "")).partition("?")[2]))
    if str(step.get("tool", "")).startswith("browser_") or is_write(step):
        return {}
    return {k: v for k, v in args.items() if isinstance(v, str | int) and not isinstance(
        v, bool)}


def filter_values(suite: Suite) -> dict[str, list[str]]:
    """Every value each filter takes in the suite's reference plans, as text, sorted: the
    other values a `wrong_filter` variant tries."""
    values: dict[str, set[str]] = {}
    for task in suite.tasks:
        for step in plan_data(task.plan).get("steps", []):
            for key, value in _filters(step).items():
                values.setdefault(key, set()).add(str(value))
    return {key: sorted(found) for key, found in values.items()}


def _other_filters(step: dict[str, Any], domains: dict[str, list[str]]
                   ) -> list[tuple[str, dict[str, Any]]]:
    """The step with each filter set to each other value the suite uses for it."""
    out = []
    for key, value in _filters(step).items():
        for other in domains.get(key, []):
            if other == str(value):
                continue
            new = copy.deepcopy(step)
            if step.get("tool") == "http_request":
                url = str(new["args"]["url"])
                base, _, query = url.partition("?")
                pairs = [(k, other if k == key else v) for k, v in parse_qsl(query)]
                new["args"]["url"] = f"{base}?{urlencode(pairs)}"
            else:
                new["args"][key] = int(other) if isinstance(value, int) and other.isdigit() \
                    else other
            out.append((f"{key}={other}", new))
    return out


def _with_steps(plan: dict[str, Any], steps: list[dict[str, Any]],
                dropped: str | None = None) -> dict[str, Any]:
    out = copy.deepcopy({**plan, "steps": steps})
    if dropped:
        for step in out["steps"]:
            if dropped in step.get("depends_on", []):
                step["depends_on"] = [d for d in step["depends_on"] if d != dropped]
    return out


def _replace(steps: list[dict[str, Any]], index: int, step: dict[str, Any]) -> list[dict]:
    return [step if i == index else s for i, s in enumerate(steps)]


def _changed(step: dict[str, Any], change: Any) -> dict[str, Any] | None:
    """A copy of `step` with `change` applied to its arguments, or None if nothing changed."""
    new = copy.deepcopy(step)
    change(new["args"])
    return new if new["args"] != step["args"] else None


def _wrong_value(args: dict[str, Any]) -> None:
    body = args.get("json_body")
    if isinstance(body, dict) and "status" in body:
        body["status"] = STATUSES[(STATUSES.index(body["status"]) + 1) % len(STATUSES)]
    elif isinstance(body, dict) and "text" in body:
        body["text"] = "A note about something else"
    elif "value" in args:
        args["value"] = "something else"


_LAST_ID = re.compile(r"(\d+)(?!.*\d)")
_INDEX = re.compile(r"(\.json\.)(\d+)(\.)")


def _has_record(step: dict[str, Any]) -> bool:
    url = str((step.get("args") or {}).get("url", ""))
    return bool(_LAST_ID.search(url.split("}}", 1)[-1]) or "status=" in url)


def _other_record(args: dict[str, Any]) -> None:
    body = args.get("json_body")
    if isinstance(body, dict) and "customer_id" in body:
        body["customer_id"] = _other(body["customer_id"])
        return
    url = str(args.get("url", ""))
    head, sep, tail = url.partition("}}")
    if not sep:
        head, tail = "", url
    if _INDEX.search(tail):
        tail = _INDEX.sub(lambda m: f"{m[1]}{int(m[2]) + 1}{m[3]}", tail, count=1)
    elif _LAST_ID.search(tail):
        tail = _LAST_ID.sub(lambda m: str(_other(int(m[1]))), tail, count=1)
    elif "status=" in tail:
        tail = re.sub(r"status=(\w+)", lambda m: "status=" + STATUSES[
            (STATUSES.index(m[1]) + 1) % len(STATUSES)] if m[1] in STATUSES else "status=paid",
            tail)
    args["url"] = head + sep + tail


def _other(record: Any) -> Any:
    """Another record's id: the next of the default seed's customers (1-6) or invoices
    (1001-1008), or the next id; a `${...}` reference points at the next item."""
    if isinstance(record, str):
        return _INDEX.sub(lambda m: f"{m[1]}{int(m[2]) + 1}{m[3]}", record, count=1)
    if 1 <= record <= 6:
        return record % 6 + 1
    if 1001 <= record <= 1008:
        return 1001 + (record - 1000) % 8
    return record + 1
