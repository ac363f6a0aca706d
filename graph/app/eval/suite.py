"""The task file format of `duet eval`: a suite of tasks, each with fixtures, a task text,
a reference plan and its checkers (YAML; `demo_site/eval/crm.yaml` is the example).

A suite file names its `environment` (`module:attribute`, the system its tasks run
against: `graph.app.eval.environment`; the demo CRM by default), holds a `preamble` (said
before every task: where the system is and how to use it; `{site}` and the environment's
other variables are filled in), optional `defaults` (merged into every task's `limits`),
and `tasks`. Loading checks the whole file against these models, that every reference plan
exists, and every task's fixtures against the environment's tables, so a typo fails before
any run.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from graph.app.eval.environment import (
    Environment,
    EnvironmentConfigError,
    fixture_problem,
    load_environment,
)

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
    superset, in any order)."""

    state: dict[str, TableChanges] = Field(default_factory=dict)
    answer: AnswerCheck = Field(default_factory=AnswerCheck)
    limits: LimitsCheck = Field(default_factory=LimitsCheck)
    tools: list[str] = Field(default_factory=list)


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
        """The environment the suite names (loaded once)."""
        if self._environment is None:
            try:
                self._environment = load_environment(self.environment)
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


class SuiteError(ValueError):
    """A suite file that cannot be used, with what is wrong."""


DEFAULT_SUITE = Path(__file__).resolve().parents[3] / "demo_site" / "eval" / "crm.yaml"


def load_suite(path: str | Path = DEFAULT_SUITE) -> Suite:
    """Read and check a suite file; raises `SuiteError` saying what is wrong."""
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
        raise SuiteError(f"the suite {str(path)!r} is not valid: {exc}") from None
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
    return suite
