"""A finished run's final plan as a plan file (`duet export`), to rerun it without the model.

The file is the offline planner's format (`graph.reasoning.offline`): YAML rendered by
Jinja. The values that make this run this run become variables: each value of the run's
`plan_variables`, each literal argument value that also occurs in its task, and each URL of
its task that an argument uses. A variable is named after its argument (`customer_id`,
`url`...; `_2`, `_3` when two differ), stands as `{{ name }}` wherever its value occurs in
an argument (as a whole word: `3` in `/customers/3`, not in `v3`), and the file's header
gives each the value it had as its default, so a rerun with no `--var` repeats the run.
Plan references (`${s1.output...}`) and secret references (`${secret.NAME}`) stay as they
are; a value with a quote, a backslash or a line break stays literal (it cannot be given on
a `--var` line). The plan and the task are redacted as traces are.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from graph.app.threads import load_settings, saved_run, settings_path
from graph.checkpoints import run_folder
from graph.contracts import Plan
from graph.reasoning.offline import default_line, escape_template
from graph.redaction import redact
from tools.errors import ConfigError

# A `${...}` reference (a step's output, a secret): never part of a variable.
_REFERENCE = re.compile(r"\$\{[^}]*\}")
_URL = re.compile(r"https?://[^\s<>\"'`]+")
# What a variable's value may not hold: it is written inside double quotes, or on a line.
_UNSAFE = re.compile(r"[\"\\\x00-\x1f\x7f]|\{[{%#]|\$\{")
_JINJA_WORDS = frozenset({"and", "or", "not", "in", "is", "if", "else", "true", "false",
                          "none", "True", "False", "None", "loop", "range"})


class NotExportable(ConfigError):
    """The run has not ended, or ended without a plan: there is no final plan to export."""


@dataclass(frozen=True)
class ExportedPlan:
    """A run's final plan as a plan file: its `text` (YAML) and its `variables`, each with
    the value the run had (the file's defaults)."""

    thread_id: str
    task: str
    text: str
    variables: dict[str, str]
    allowed_hosts: tuple[str, ...] = ()  # the run's, which its rerun needs too
    approval: str = "ask"

    def write(self, path: Path | None = None) -> Path:
        """Write the file to `path` (default: `plan.yaml` in the run's folder); return it."""
        path = path or run_folder(self.thread_id) / "plan.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text, encoding="utf-8")
        return path

    def rerun_command(self, path: Path) -> list[str]:
        """The `duet run` command that reruns the file at `path` as the run ran (its task,
        hosts and approval policy), with no reasoning call."""
        hosts = [part for host in self.allowed_hosts for part in ("--allow-host", host)]
        approval = ["--approve", self.approval] if self.approval != "ask" else []
        return ["duet", "run", self.task, "--plan-file", str(path), *hosts, *approval]


async def export_plan(thread_id: str, checkpointer_url: str | None = None) -> ExportedPlan:
    """The final plan of the ended run `thread_id` as a plan file (see the module's
    docstring). Raises `UnknownThread` for no such run, `NotExportable` for one that has
    not ended or had no plan."""
    values, final = await saved_run(thread_id, checkpointer_url)
    plan: Plan | None = values.get("plan")
    if not values.get("status"):
        raise NotExportable(f"thread {thread_id!r} has not ended ({final.reason or 'it waits'}):"
                            f" `duet resume {thread_id}` finishes it first")
    if plan is None:
        raise NotExportable(f"thread {thread_id!r} ended {values['status']} without a plan: "
                            "there is nothing to export")
    # A run started by a LangGraph client has no saved settings here.
    saved = load_settings(thread_id)["context"] if settings_path(thread_id).exists() else {}
    plan = Plan.model_validate(redact(plan.model_dump(mode="json")))
    task = redact(values.get("task") or "")
    body, variables = plan_template(plan, task, redact(saved.get("plan_variables") or {}))
    header = [f"# nova-duet plan: the final plan of run {thread_id} ({values['status']}), "
              "written by `duet export`.",
              "# Rerun it without the model: duet run TASK --plan-file THIS_FILE "
              "[--var NAME=VALUE ...]",
              "# The run's task:", *(f"#   {line}" for line in task.splitlines())]
    if variables:
        header.append("# Its variables, each with the value the run had (give another with "
                      "--var NAME=VALUE):")
        header += [default_line(name, value) for name, value in variables.items()]
    text = escape_template("\n".join(header)) + "\n" + body
    return ExportedPlan(thread_id=thread_id, task=task, text=text, variables=variables,
                        allowed_hosts=tuple(saved.get("allowed_hosts") or ()),
                        approval=saved.get("approval") or "ask")


def plan_template(plan: Plan, task: str, known: dict[str, str]
                  ) -> tuple[str, dict[str, str]]:
    """The plan as YAML with `{{ name }}` wherever a variable's value occurs in an argument
    (a string that holds one is double-quoted; a number that is one stays a number), and
    the variables it uses, name to value (see the module's docstring). Where two values
    start at the same place, a `known` one (the run's `plan_variables`) wins, then the
    longer."""
    candidates = _candidates(plan, task, known)
    data = plan.model_dump(mode="json", exclude_defaults=True)
    if not candidates:
        return escape_template(_dump(data)), {}
    pattern = re.compile("|".join(_word(value).pattern for _, value in candidates))
    # Placeholders that YAML writes as they are; Jinja's `{{ }}` replace them once dumped.
    token = f"duetvar{secrets.token_hex(8)}"
    marks = {value: f"{token}_{i}_" for i, (_, value) in enumerate(candidates)}

    def templated(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: templated(item) for key, item in value.items()}
        if isinstance(value, list):
            return [templated(item) for item in value]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return value
        if not isinstance(value, str):
            return _Plain(marks[str(value)]) if str(value) in marks else value
        parts, at = [], 0
        for reference in [*_REFERENCE.finditer(value), None]:
            end = reference.start() if reference else len(value)
            parts.append(pattern.sub(lambda found: marks[found.group(0)], value[at:end]))
            parts.append(reference.group(0) if reference else "")
            at = reference.end() if reference else end
        text = "".join(parts)
        return _Quoted(text) if text != value else value

    for step in data["steps"]:
        if "args" in step:
            step["args"] = templated(step["args"])
    text = escape_template(_dump(data))
    used = {name: value for name, value in candidates if marks[value] in text}
    for name, value in used.items():
        text = text.replace(marks[value], "{{ " + name + " }}")
    return text, used


def _candidates(plan: Plan, task: str, known: dict[str, str]) -> list[tuple[str, str]]:
    """The values that may become variables, each with its name, in the order they are
    tried: `known` values the arguments use, literal argument values that occur in `task`,
    URLs of `task` the arguments use; longer first within each."""
    leaves = [(key, value) for step in plan.steps for key, value in _leaves(step.args)]
    texts = [_REFERENCE.sub(" ", str(value)) for _, value in leaves]
    found: list[tuple[int, str, str]] = []  # (kind, name, value)

    def add(kind: int, name: str, value: str) -> None:
        if value and not _UNSAFE.search(value) and all(v != value for _, _, v in found):
            taken = {n for _, n, _ in found}
            base = _identifier(name)
            name = next(n for n in (base, *(f"{base}_{i}" for i in range(2, 10_000)))
                        if n not in taken)
            found.append((kind, name, value))

    for name, value in known.items():
        if value and any(_word(value).search(text) for text in texts):
            add(0, name, value)
    for key, leaf in leaves:
        if str(leaf) and _word(str(leaf)).search(task):
            add(1, key, str(leaf))
    for found_url in _URL.findall(task):
        url = found_url.rstrip(".,;:!?)]}")
        user = next((key for (key, _), text in zip(leaves, texts, strict=True)
                     if _word(url).search(text)), None)
        if user is not None:
            add(2, user, url)
    found.sort(key=lambda item: (item[0], -len(item[2])))
    return [(name, value) for _, name, value in found]


class _Quoted(str):
    """A string that holds a variable: written double-quoted, so what renders into it stays
    a string."""


class _Plain(str):
    """A number that is a variable: written plain, so what renders into it reads as a number."""


class _Dumper(yaml.SafeDumper):
    """YAML as a plan file is written: `_Quoted` and `_Plain` in their styles."""


_Dumper.add_representer(_Quoted, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", str(value), style='"'))
_Dumper.add_representer(_Plain, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", str(value)))


def _dump(data: dict[str, Any]) -> str:
    # No line folding: a folded line could split a placeholder.
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     width=2**30)


def _leaves(value: Any, key: str = "value") -> Iterator[tuple[str, str | int | float]]:
    """Every string or number in an argument value, with the name of its argument."""
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _leaves(item, str(name))
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, key)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        yield key, value


def _word(value: str) -> re.Pattern[str]:
    """`value` where it stands as a whole: no letter, digit or `_` glued to an end that is one."""
    head = r"(?<!\w)" if re.match(r"\w", value[:1]) else ""
    tail = r"(?!\w)" if re.match(r"\w", value[-1:]) else ""
    return re.compile(head + re.escape(value) + tail)


def _identifier(name: str) -> str:
    """A Jinja variable name made from an argument's name."""
    name = re.sub(r"\W+", "_", name).strip("_") or "value"
    if name[0].isdigit():
        name = f"v_{name}"
    return f"{name}_value" if name in _JINJA_WORDS else name
