"""The task file format of `duet eval`: a suite of tasks, each with fixtures, a task text,
a reference plan and its checkers (YAML; `demo_site/eval/crm.yaml` is the example).

A suite file names its `environment` (`module:attribute`, the system its tasks run
against: `graph.app.eval.environment`; the demo CRM by default), holds a `preamble` (said
before every task: where the system is and how to use it; `{site}` and the environment's
other variables are filled in), optional `defaults` (merged into every task's `limits`),
and `tasks`. Loading checks the whole file against these models, that every reference plan
exists, every task's fixtures against the environment's tables, and every `{name}` of the
preamble and the tasks against its variables, so a typo fails before any run.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from graph.app.eval.checkers import fact_pattern
from graph.app.eval.environment import (
    Environment,
    EnvironmentConfigError,
    fixture_problem,
    load_environment,
)
from tools.errors import ConfigError

Fact = str | int | float | dict[str, list[str | int | float]]


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt checker must not pass by checking nothing."""

    model_config = ConfigDict(extra="forbid")


class TableChanges(Strict):
    """The expected changes to one table: rows changed (by id: column -> new value) and
    rows added (each a column -> value map; a value `{contains: [...]}` matches text that
    holds every piece). Anything else that changed fails the check."""

    changed: dict[str, dict[str, Any]] = Field(default_factory=dict)
    added: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _ids_as_text(cls, data: Any) -> Any:
        # YAML reads `1002:` as an int; ids are compared as text (JSON keys are).
        if isinstance(data, dict) and isinstance(data.get("changed"), dict):
            data = {**data, "changed": {str(k): v for k, v in data["changed"].items()}}
        return data


class AnswerCheck(Strict):
    """Facts the final answer must state, and facts it must not. A fact is a text or a
    number (matched as a whole word, case-insensitive; `300` also matches `300.0`), or
    `{any: [...]}`: one of several spellings."""

    must: list[Fact] = Field(default_factory=list)
    must_not: list[Fact] = Field(default_factory=list)


class LimitsCheck(Strict):
    """How the run must end: one of `status`, within `max_steps` tool calls and
    `max_cost_usd` (None: no bound)."""

    status: list[str] = Field(default_factory=lambda: ["completed"])
    max_steps: int | None = None
    max_cost_usd: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_status(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("status"), str):
            data = {**data, "status": [data["status"]]}
        return data


class Checkers(Strict):
    """The checks of one task. `state` maps a table to its expected changes (a table not
    named must not change); `tools` lists tools the run must have called (a trajectory
    superset, in any order); `refused`, error types one of which a call of the run must
    have been refused with (`SecretNotAllowed`)."""

    state: dict[str, TableChanges] = Field(default_factory=dict)
    answer: AnswerCheck = Field(default_factory=AnswerCheck)
    limits: LimitsCheck = Field(default_factory=LimitsCheck)
    tools: list[str] = Field(default_factory=list)
    refused: list[str] = Field(default_factory=list)


class EvalTask(Strict):
    """One task: its starting data (`fixtures`: rows added to the environment's default seed), the
    text, the approval policy and how the eval answers approvals (`decide`), the reference
    plan (a plan file, relative to the suite file) and the checkers. `context` overrides
    run settings (`max_steps`, `deadline_seconds`, ...)."""

    id: str
    category: str
    task: str
    fixtures: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    approval: Literal["ask", "auto", "deny"] = "auto"
    decide: Literal["approve", "reject"] = "reject"
    plan: Path
    checkers: Checkers = Field(default_factory=Checkers)
    context: dict[str, Any] = Field(default_factory=dict)

    def text(self, preamble: str, variables: dict[str, str]) -> str:
        """The task as the agent reads it: the preamble, then the task, with each of the
        instance's variables (`{site}`...) filled in."""
        text = f"{preamble.strip()}\n\n{self.task.strip()}"
        for name, value in variables.items():
            text = text.replace(f"{{{name}}}", value)
        return text.strip()


class Suite(Strict):
    """A loaded suite: its environment, and its tasks with reference plan paths made
    absolute."""

    name: str
    description: str = ""
    environment: str = "demo_site.environment:make"
    preamble: str = ""
    defaults: LimitsCheck | None = None
    tasks: list[EvalTask]
    path: Path | None = None
    _environment: Environment | None = PrivateAttr(default=None)

    @property
    def env(self) -> Environment:
        """The environment the suite names (loaded once; its module from the import path
        or the suite file's folder)."""
        if self._environment is None:
            try:
                self._environment = load_environment(
                    self.environment, self.path.parent if self.path else None)
            except EnvironmentConfigError as exc:
                raise SuiteError(str(exc)) from None
        return self._environment

    def select(self, pattern: str | None) -> list[EvalTask]:
        """The tasks whose id or category matches the glob `pattern` (all without one;
        comma-separated patterns match any)."""
        if not pattern:
            return list(self.tasks)
        globs = [p.strip() for p in pattern.split(",") if p.strip()]
        return [t for t in self.tasks
                if any(fnmatch.fnmatch(t.id, g) or fnmatch.fnmatch(t.category, g)
                       for g in globs)]


class SuiteError(ConfigError, ValueError):
    """A suite file that cannot be used, with what is wrong."""


DEFAULT_SUITE = Path(__file__).resolve().parents[3] / "demo_site" / "eval" / "crm.yaml"


def one_line(exc: ValidationError, data: dict[str, Any]) -> str:
    """The first validation problem as a person reads it: which task, which field, and
    what is allowed there (not pydantic's dump)."""
    error = exc.errors()[0]
    where = list(error["loc"])
    task = ""
    if len(where) >= 2 and where[0] == "tasks" and isinstance(where[1], int):
        tasks = data.get("tasks") or []
        entry = tasks[where[1]] if where[1] < len(tasks) else {}
        task = f"task {entry.get('id', '#' + str(where[1] + 1))!r}: " if isinstance(
            entry, dict) else f"task #{where[1] + 1}: "
        where = where[2:]
    field = ".".join(str(part) for part in where) or "(the suite)"
    kind, context = error["type"], error.get("ctx") or {}
    given = repr(error.get("input"))
    given = given if len(given) <= 80 else given[:77] + "..."
    if kind == "missing":
        said = "is required"
    elif kind == "extra_forbidden":
        said = "is not a known field"
    elif kind == "literal_error":
        said = f"is {given}; allowed: {context.get('expected')}"
    else:
        said = f"is {given}: {error['msg'].lower()}"
    more = len(exc.errors()) - 1
    return f"{task}{field} {said}" + (f" (and {more} more problem(s))" if more else "")


def echoed_facts(suite: Suite) -> list[str]:
    """Answer facts an answer can state by repeating its question: a `must` fact found in
    the preamble or the task always passes for an agent that echoes them, and a `must_not`
    one always fails. One line per fact, naming the task."""
    found = []
    for task in suite.tasks:
        said = f"{suite.preamble}\n{task.task}"
        for key in ("must", "must_not"):
            for fact in getattr(task.checkers.answer, key):
                options = fact["any"] if isinstance(fact, dict) else [fact]
                if echoed := [o for o in options if fact_pattern(o).search(said)]:
                    found.append(f"task {task.id!r}: answer.{key} fact {echoed[0]!r} is in "
                                 "the task or the preamble, so repeating them states it")
    return found


PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")


def unknown_placeholder(suite: Suite, environment: Environment) -> str | None:
    """The first `{name}` in the preamble or a task that `environment` does not provide,
    said as the problem (where it is, and what it provides), or None. `EvalTask.text` fills
    only the instance's variables: any other `{name}` would reach the agent as written."""
    texts = [("preamble", suite.preamble)] + [(f"task {t.id!r}", t.task) for t in suite.tasks]
    for where, text in texts:
        for name in PLACEHOLDER.findall(text):
            if name not in environment.variables:
                provided = ", ".join(f"{{{v}}}" for v in environment.variables) or "none"
                return (f"{where}: {{{name}}} is not a variable of environment "
                        f"{environment.name!r} (it provides: {provided})")
    return None


def load_suite(path: str | Path = DEFAULT_SUITE, *, strict: bool = False) -> Suite:
    """Read and check a suite file; raises `SuiteError` saying what is wrong. Answer facts
    the task or preamble already state (`echoed_facts`) are an error with `strict`; without
    it the caller warns about them (`echoed_facts(suite)`)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"cannot read the suite {str(path)!r}: {exc}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"the suite {str(path)!r} is not a mapping")
    defaults = data.get("defaults") or {}
    for task in data.get("tasks") or []:
        if isinstance(task, dict) and defaults:
            checkers = task.setdefault("checkers", {})
            checkers["limits"] = {**defaults, **(checkers.get("limits") or {})}
    try:
        suite = Suite.model_validate({**data, "path": path})
    except ValidationError as exc:
        raise SuiteError(f"{path.name}: {one_line(exc, data)}") from None
    ids = [t.id for t in suite.tasks]
    if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
        raise SuiteError(f"the suite {str(path)!r} repeats task ids {duplicates}")
    environment = suite.env  # an environment that does not load fails here, not mid-eval
    for task in suite.tasks:
        task.plan = (path.parent / task.plan).resolve()
        if not task.plan.is_file():
            raise SuiteError(f"task {task.id!r}: no reference plan at {task.plan}")
        if problem := fixture_problem(environment, task.fixtures):
            raise SuiteError(f"task {task.id!r}: {problem}")
    if problem := unknown_placeholder(suite, environment):
        raise SuiteError(f"{path.name}: {problem}")
    if strict and (echoed := echoed_facts(suite)):
        raise SuiteError(f"{path.name}: {echoed[0]}" + (
            f" (and {len(echoed) - 1} more)" if len(echoed) > 1 else ""))
    return suite
