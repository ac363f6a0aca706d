"""Offline planner mode: the plan comes from a JSON or YAML file (or its text), the answer
from a template.

No model is called and no token is spent; nothing switches to this mode by itself (the
run context's `plan_file` or `plan_text` selects it). A plan file is a Jinja template:
`{{ name }}` takes the value given by `--var NAME=VALUE` (`plan_variables`), else the
default the file's header comment declares, one line each: `# default NAME = "VALUE"` (a
JSON string). `duet export` writes such defaults, so a rerun with no `--var` repeats the run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from jinja2 import Environment, StrictUndefined, TemplateError
from pydantic import ValidationError

from graph.contracts import Decision, Plan, StepResult, Usage
from graph.reasoning.protocol import ConfigurationError, ReasoningError, Reply, StepStream

if TYPE_CHECKING:
    from graph.context import Context

# A variable's default in a plan file's header comment (its leading `#` lines), as
# `default_line` writes it: `# default NAME = "VALUE"`.
_DEFAULT = re.compile(r"# default ([A-Za-z_]\w*)\s*=\s*(.*)")
_JINJA_OPENER = re.compile(r"\{[{%#]")


class PlanFileError(ConfigurationError):
    """A plan file that cannot run: not YAML or JSON, not a plan, or a step that is wrong.
    Its message is one line naming the file (`source`), the step and the problem."""

    def __init__(self, source: str, problem: str, step: str | None = None):
        where = f"step {step!r}: " if step else ""
        super().__init__(f"{source}: {where}{problem}")
        self.source, self.step, self.problem = source, step, problem


class PlanFileReasoner:
    """Offline planner mode: the plan comes from a JSON or YAML file, the answer from a template.

    It makes no model call and costs no tokens. It cannot replan: after a failed step it
    finishes, naming the step and its error, and the run ends `failed`.
    `text` is the file's content given instead of its `path` (`plan_text`: what a client of
    a LangGraph server sends, the server not seeing the client's files).
    """

    def __init__(self, path: str | Path | None, variables: dict[str, str] | None = None, *,
                 text: str | None = None):
        self.path = Path(path) if path is not None else None
        self.text = text
        self.variables = variables or {}
        self.source = "plan_text" if self.path is None else f"plan file {str(self.path)!r}"

    @classmethod
    def of(cls, context: Context) -> PlanFileReasoner | None:
        """The run's offline planner: its `plan_text` or `plan_file` with its
        `plan_variables`; None when it has neither (a model plans)."""
        if context.plan_text and context.plan_file:
            raise ConfigurationError("give the plan as plan_file or as plan_text, not both")
        if context.plan_text:
            return cls(None, context.plan_variables, text=context.plan_text)
        if context.plan_file:
            return cls(context.plan_file, context.plan_variables)
        return None

    def load_plan(self) -> Plan:
        """Read, render (Jinja `{{ name }}` from `variables`, else the header's defaults)
        and validate the plan.

        Raises `PlanFileError` (one line: the file, the step and the problem).
        """
        if self.path is None:
            text = self.text or ""
        else:
            try:
                text = self.path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PlanFileError(self.source, f"cannot read it: {exc.strerror or exc}"
                                    ) from None
        try:
            values = {**header_defaults(text), **self.variables}
            rendered = Environment(undefined=StrictUndefined).from_string(text).render(values)
        except ValueError as exc:
            raise PlanFileError(self.source, str(exc)) from None
        except TemplateError as exc:
            missing = re.match(r"'(\w+)' is undefined", str(exc.message))
            raise PlanFileError(self.source, f"{exc.message}: give it with --var "
                                f"{missing.group(1)}=VALUE" if missing else str(exc)) from None
        as_json = (self.path.suffix == ".json" if self.path is not None
                   else rendered.lstrip().startswith("{"))
        try:
            data = json.loads(rendered) if as_json else yaml.safe_load(rendered)
        except (ValueError, yaml.YAMLError) as exc:
            raise PlanFileError(self.source, _syntax_problem(exc)) from None
        if not isinstance(data, dict):
            raise PlanFileError(self.source, "not a plan: a plan is a mapping with `goal` and "
                                             "`steps`")
        try:
            return Plan.model_validate(data)
        except ValidationError as exc:
            step, problem = _validation_problem(exc, data)
            raise PlanFileError(self.source, problem, step) from None

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
        """Finish on any failure (naming each failed step and its error: see
        `replay_stopped`) or at the end of the plan, continue otherwise."""
        failed = [r for r in results if r.status != "ok"]
        if failed:
            return Reply(Decision(action="finish", reason=replay_stopped(failed)), Usage())
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


def replay_stopped(failed: list[StepResult]) -> str:
    """Why a replayed plan stopped: each step that did not succeed, its tool and what it
    met (its error: a page without the element, a 404...), in one line."""
    parts = []
    for result in failed:
        error = result.error
        message = error.message if error else ""
        message = message if len(message) <= 240 else message[:240] + "..."
        met = f"{error.type}: {message}" if error else "no error recorded"
        parts.append(f"step {result.step_id!r} ({result.tool}) ended {result.status}: {met}")
    return "the replay stopped at " + "; ".join(parts)


def default_line(name: str, value: str) -> str:
    """The header comment line that gives variable `name` the default `value`."""
    # `{` escaped in the JSON string: the line holds no Jinja delimiter to render.
    return f"# default {name} = " + json.dumps(value, ensure_ascii=False).replace("{", "\\u007b")


def header_defaults(text: str) -> dict[str, str]:
    """The variable defaults a plan file's header comment declares (`default_line`), read
    from its leading `#` lines. Raises `ValueError` for one whose value is not a JSON string."""
    defaults = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            break
        if (found := _DEFAULT.fullmatch(line)) is None:
            continue
        name, raw = found.groups()
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, str):
            raise ValueError(f"default {name}: the value must be a JSON string in double "
                             f"quotes, not {raw!r}")
        defaults[name] = value
    return defaults


def escape_template(text: str) -> str:
    """`text` as literal text of a plan file: each Jinja opening delimiter in it (`{{`,
    `{%`, `{#`) written as an expression that renders to it."""
    return _JINJA_OPENER.sub(lambda found: "{{ '" + found.group(0) + "' }}", text)


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
