"""Offline planner mode: the plan comes from a JSON or YAML file, the answer from a template.

No model is called and no token is spent; nothing switches to this mode by itself (the
run context's `plan_file` selects it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from jinja2 import Environment, StrictUndefined, TemplateError
from pydantic import ValidationError

from graph.contracts import Decision, Plan, StepResult, Usage
from graph.reasoning.protocol import ConfigurationError, ReasoningError, Reply, StepStream


class PlanFileError(ConfigurationError):
    """A plan file that cannot run: not YAML or JSON, not a plan, or a step that is wrong.
    Its message is one line naming the file, the step and the problem."""

    def __init__(self, path: Path, problem: str, step: str | None = None):
        where = f"step {step!r}: " if step else ""
        super().__init__(f"plan file {str(path)!r}: {where}{problem}")
        self.path, self.step, self.problem = path, step, problem


class PlanFileReasoner:
    """Offline planner mode: the plan comes from a JSON or YAML file, the answer from a template.

    It makes no model call and costs no tokens. It cannot replan: after a failed step it
    finishes, and the run reports the failure.
    """

    def __init__(self, path: str | Path, variables: dict[str, str] | None = None):
        self.path = Path(path)
        self.variables = variables or {}

    def load_plan(self) -> Plan:
        """Read, render (Jinja `{{ name }}` from `variables`) and validate the plan file.

        Raises `PlanFileError` (one line: the file, the step and the problem).
        """
        try:
            template = Environment(undefined=StrictUndefined).from_string(
                self.path.read_text(encoding="utf-8"))
            text = template.render(**self.variables)
        except OSError as exc:
            raise PlanFileError(self.path, f"cannot read it: {exc.strerror or exc}") from None
        except TemplateError as exc:
            missing = re.match(r"'(\w+)' is undefined", str(exc.message))
            raise PlanFileError(self.path, f"{exc.message}: give it with --var "
                                f"{missing.group(1)}=VALUE" if missing else str(exc)) from None
        try:
            data = json.loads(text) if self.path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise PlanFileError(self.path, _syntax_problem(exc)) from None
        if not isinstance(data, dict):
            raise PlanFileError(self.path, "not a plan: a plan is a mapping with `goal` and "
                                           "`steps`")
        try:
            return Plan.model_validate(data)
        except ValidationError as exc:
            step, problem = _validation_problem(exc, data)
            raise PlanFileError(self.path, problem, step) from None

    async def plan(
        self, *, task: str, tools: str, summary: str, results: list[StepResult],
        previous_plan: Plan | None, max_attempts: int, on_steps: StepStream | None = None,
        review_feedback: str = "",
    ) -> Reply[Plan]:
        """Return the file's plan (whole: it is not streamed); a second plan cannot be had
        offline, so neither can one after a rejected review."""
        if previous_plan is not None:
            raise ReasoningError("the offline planner runs one plan file and cannot replan")
        try:
            return Reply(self.load_plan(), Usage())
        except PlanFileError as exc:
            raise ReasoningError(str(exc)) from None

    async def observe(
        self, *, task: str, plan: Plan, summary: str, results: list[StepResult], trigger: str
    ) -> Reply[Decision]:
        """Finish on any failure or at the end of the plan, continue otherwise."""
        failed = [r.step_id for r in results if r.status != "ok"]
        if failed:
            return Reply(Decision(action="finish", reason=f"steps {failed} did not succeed"),
                         Usage())
        if "finished" in trigger:
            return Reply(Decision(action="finish", reason="every step succeeded"), Usage())
        return Reply(Decision(action="continue", reason="offline plans are followed as written"),
                     Usage())

    async def summarize(self, *, task: str, summary: str, results: list[StepResult]) -> Reply[str]:
        """Keep counts per status and the last step ids, not outputs."""
        counts: dict[str, int] = {}
        for result in results:
            counts[result.status] = counts.get(result.status, 0) + 1
        line = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        ids = ", ".join(r.step_id for r in results[-5:])
        return Reply(f"{summary}\nFolded {len(results)} results ({line}); last: {ids}.".strip(),
                     Usage())

    async def answer(
        self, *, task: str, status: str, reason: str, summary: str, results: list[StepResult]
    ) -> Reply[str]:
        """A templated report of every step, citing ids."""
        text = templated_answer(task=task, status=status, reason=reason, summary=summary,
                                results=results)
        return Reply(f"{text}\n(offline planner: no model was called)", Usage())


def _syntax_problem(exc: Exception) -> str:
    """A YAML or JSON syntax error in one line: what is wrong and where."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not YAML: {exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return f"not YAML: {str(exc).splitlines()[0]}"


def _validation_problem(exc: ValidationError, data: dict[str, object]) -> tuple[str | None, str]:
    """The first problem of a plan that does not validate, as (the step's id or None, what
    is wrong), saying how many more there are."""
    first = exc.errors()[0]
    loc, step = list(first["loc"]), None
    steps = data.get("steps")
    if loc[:1] == ["steps"] and len(loc) > 1 and isinstance(steps, list):
        index = loc[1]
        raw = steps[index] if isinstance(index, int) and index < len(steps) else None
        step = str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") else f"#{index}"
        loc = loc[2:]
    message = str(first["msg"]).removeprefix("Value error, ")
    field = ".".join(map(str, loc))
    more = exc.error_count() - 1
    return step, (f"{field}: " if field else "") + message + (
        f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def templated_answer(
    *, task: str, status: str, reason: str, summary: str, results: list[StepResult]
) -> str:
    """An answer written without a model: the status and one line per step, citing ids.

    It does not repeat the task (nor the preamble an eval puts before it): an answer that
    echoes the question would state every fact the question names, so a check for a fact
    would pass, or fail, whatever the run did. `task` stays in the signature the answer
    node calls every reasoner with."""
    del task
    lines = [f"Status: {status}" + (f" ({reason})" if reason else "")]
    if summary:
        lines.append(f"Earlier: {summary}")
    for result in results:
        detail = result.error.message if result.error else _brief(result.output)
        lines.append(f"- [{result.step_id}] {result.tool}: {result.status} - {detail}")
    return "\n".join(lines)


def _brief(output: object, limit: int = 160) -> str:
    """A short rendering of a result, without the envelope of the built-in executors or the
    one an MCP server puts around a list (a list as its count and first items)."""
    if isinstance(output, dict):
        if output.keys() == {"result"} and isinstance(output["result"], list):
            # MCP structured content is an object, so FastMCP sends a tool's list as
            # {"result": [...]}: as a dict it would be cut at `limit`, count and items lost.
            output = output["result"]
        else:
            for key in ("json", "rows", "text"):
                if key in output:
                    output = output[key]
                    break
    if isinstance(output, list):
        head = json.dumps(output[:2], default=str, ensure_ascii=False)
        return f"{len(output)} item(s): {head[:limit]}" + ("..." if len(head) > limit else "")
    text = json.dumps(output, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."
