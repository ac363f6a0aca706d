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

What a variant changes comes from the suite's environment (`Environment.variations`): the
values of an argument such as `status`, the arguments that pick a record, the seeded id
ranges, the stray and same-value writes. The kinds change plans, steps and arguments
only, so they apply to any environment's suite.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import yaml
from jinja2 import Environment, Undefined

from graph.app.eval.environment import Variations
from graph.app.eval.suite import EvalTask

KINDS = ("drop", "double", "wrong_value", "other_record", "wrong_filter", "stray_write",
         "same_value_write", "approve")
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


class _Kept(Undefined):
    """A plan variable left as it was written (`{{ site }}`), for the run to fill in."""

    def __str__(self) -> str:
        return "{{ " + str(self._undefined_name) + " }}"


def plan_data(path: Path) -> dict[str, Any]:
    """A plan file's data with its template expanded and its variables (`{{ site }}`...)
    kept for the run."""
    text = Environment(undefined=_Kept).from_string(path.read_text(encoding="utf-8")).render()
    return yaml.safe_load(text)


def is_write(step: dict[str, Any]) -> bool:
    """True for a step that changes things."""
    args = step.get("args") or {}
    return (bool(step.get("side_effects")) or step.get("tool") in WRITE_TOOLS
            or (step.get("tool") == "http_request"
                and str(args.get("method", "GET")).upper() != "GET"))


def _refused(task: EvalTask) -> bool:
    return task.approval == "deny" or (task.approval == "ask" and task.decide == "reject")


def variants(task: EvalTask, variations: Variations) -> list[Variant]:
    """Every broken variant that applies to `task` (of a suite whose environment has these
    `variations`), in `KINDS` order."""
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
        if (wrong := _changed(steps[first], _wrong_value, variations)) is not None:
            made["wrong_value"] = _with_steps(plan, _replace(steps, first, wrong))
        if (other := _changed(steps[first], _other_record, variations)) is not None:
            made["other_record"] = _with_steps(plan, _replace(steps, first, other))
    else:
        reads = [i for i, step in enumerate(steps) if _has_record(step, variations)]
        if reads and (other := _changed(steps[reads[0]], _other_record,
                                        variations)) is not None:
            made["other_record"] = _with_steps(plan, _replace(steps, reads[0], other))
        for index, step in enumerate(steps):
            if changes := _other_filters(step, variations):
                filtered = [Variant("wrong_filter", task, _with_steps(
                    plan, _replace(steps, index, new)), task.approval, task.decide, detail)
                    for detail, new in changes]
                break
    for kind, probe in (("stray_write", variations.stray_write),
                        ("same_value_write", variations.same_value_write)):
        if probe is not None:
            made[kind] = _with_steps(plan, [*steps, copy.deepcopy(dict(probe))])
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


def _alternatives(key: str, value: Any, variations: Variations) -> list[Any]:
    """The other values of a filter: the environment's values of that argument, or for an
    argument that picks a record the other ids of its seeded range."""
    if key in variations.values:
        return [v for v in variations.values[key] if str(v) != str(value)]
    if key in variations.record_args and str(value).isdigit():
        number = int(value)
        for low, high in variations.id_ranges:
            if low <= number <= high:
                return [i for i in range(low, high + 1) if i != number]
    return []


def _other_filters(step: dict[str, Any], variations: Variations
                   ) -> list[tuple[str, dict[str, Any]]]:
    """The step with each filter set to each other value it can take."""
    out = []
    for key, value in _filters(step).items():
        for other in _alternatives(key, value, variations):
            new = copy.deepcopy(step)
            if step.get("tool") == "http_request":
                base, _, query = str(new["args"]["url"]).partition("?")
                pairs = [(k, str(other) if k == key else v) for k, v in parse_qsl(query)]
                new["args"]["url"] = f"{base}?{urlencode(pairs)}"
            else:
                new["args"][key] = other
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


def _changed(step: dict[str, Any], change: Any, variations: Variations
             ) -> dict[str, Any] | None:
    """A copy of `step` with `change` applied to its arguments, or None if nothing changed."""
    new = copy.deepcopy(step)
    change(new["args"], variations)
    return new if new["args"] != step["args"] else None


def _fields(args: dict[str, Any]) -> dict[str, Any]:
    """Where a call's values are: an HTTP call's JSON body, else the arguments themselves
    (a tool call's, an MCP tool's)."""
    body = args.get("json_body")
    return body if isinstance(body, dict) else args


def _next(values: tuple[Any, ...], value: Any) -> Any:
    return values[(values.index(value) + 1) % len(values)] if value in values else values[0]


def _wrong_value(args: dict[str, Any], variations: Variations) -> None:
    fields = _fields(args)
    for name, values in variations.values.items():
        if name in fields and values:
            fields[name] = _next(values, fields[name])
            return
    if "text" in fields:
        fields["text"] = "A note about something else"
    elif "value" in args:
        args["value"] = "something else"


_LAST_ID = re.compile(r"(\d+)(?!.*\d)")
_INDEX = re.compile(r"(\.json\.)(\d+)(\.)")


def _has_record(step: dict[str, Any], variations: Variations) -> bool:
    args = step.get("args") or {}
    url = str(args.get("url", ""))
    return (bool(_LAST_ID.search(url.split("}}", 1)[-1]) or "status=" in url)
            or any(name in _fields(args) for name in variations.record_args))


def _other_record(args: dict[str, Any], variations: Variations) -> None:
    fields = _fields(args)
    for name in variations.record_args:
        if name in fields:
            fields[name] = _other(fields[name], variations)
            return
    statuses = variations.values.get("status", ())
    url = str(args.get("url", ""))
    head, sep, tail = url.partition("}}")
    if not sep:
        head, tail = "", url
    if _INDEX.search(tail):
        tail = _INDEX.sub(lambda m: f"{m[1]}{int(m[2]) + 1}{m[3]}", tail, count=1)
    elif _LAST_ID.search(tail):
        tail = _LAST_ID.sub(lambda m: str(_other(int(m[1]), variations)), tail, count=1)
    elif "status=" in tail and statuses:
        tail = re.sub(r"status=(\w+)", lambda m: f"status={_next(statuses, m[1])}", tail)
    args["url"] = head + sep + tail


def _other(record: Any, variations: Variations) -> Any:
    """Another record's id: the next in its seeded id range (`Variations.id_ranges`,
    round), or the next id; a `${...}` reference points at the next item."""
    if isinstance(record, str):
        return _INDEX.sub(lambda m: f"{m[1]}{int(m[2]) + 1}{m[3]}", record, count=1)
    for low, high in variations.id_ranges:
        if low <= record <= high:
            return low + (record - low + 1) % (high - low + 1)
    return record + 1
