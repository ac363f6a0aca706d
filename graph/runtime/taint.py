"""Writes steered by what the planner read: the plan-then-execute defence against injection.

The first plan is fixed before any tool output is read, so injected text cannot choose its
actions; values it passes on through `${step.output...}` references are data flowing into
actions chosen before the data was seen. A later plan (a replan) is written after reading
tool output, so a page can steer it. A step of such a plan that changes things, and whose
literal arguments carry a value found in that output but not in what the user gave (the
task, the plan variables, the first plan), needs a human even under `approval: auto`. A
step that uses a secret is held to more (`graph.runtime.secrets`): it is refused, and each
of its literal values counts whole too (a selector such as `#search`).

Values looked for: URLs and their origins, hosts, e-mail addresses, account numbers and
account-like identifiers (six characters or more, letters mixed with digits, hyphens or
underscores: `ACME-1002`, `INJ-visit-host`), and runs of three or more words. Matching is
verbatim (case and spacing aside): a value the model paraphrased or encoded, or a single
ordinary word, is not recognised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from graph.contracts import Plan, Step, StepResult
from graph.runtime.progress import REFERENCE
from tools.auth.references import REFERENCE as SECRET_REFERENCE

_URL = re.compile(r"(https?://[^\s\"'<>/)\]}]+)[^\s\"'<>)\]}]*", re.I)
_SHAPES = [
    re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    re.compile(r"\b(?:[a-z0-9-]+\.)+[a-z]{2,}\b", re.I),
    re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]{10,30}\b|\b\d(?:[ -]?\d){7,}\b"),
    re.compile(r"(?<![\w-])(?=[\w-]*[A-Za-z])(?=[\w-]*[\d_-])[\w-]{6,}(?![\w-])"),
]
WORDS = 3


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _candidates(text: str) -> Iterator[str]:
    """The values of `text` worth tracing: shaped ones, and every run of `WORDS` words."""
    for match in _URL.finditer(text):
        yield from (match.group(0), match.group(1))  # the URL, and its origin
    for shape in _SHAPES:
        yield from shape.findall(text)
    words = text.split()
    for at in range(len(words) - WORDS + 1):
        yield " ".join(words[at:at + WORDS])


def untrusted_text(results: Iterable[StepResult], summary: str) -> str:
    """What tools and pages said so far: outputs and error messages, and the summary of
    earlier ones (the model wrote it from them)."""
    parts = [summary]
    for result in results:
        parts.append(json.dumps(result.output, default=str, ensure_ascii=False))
        if result.error is not None:
            parts.append(result.error.message)
    return _normal("\n".join(parts))


def trusted_text(task: str, variables: dict[str, str], first_plan: Plan | None) -> str:
    """What the user gave: the task, the plan variables, and the plan made before any
    tool output was read."""
    parts = [task, *variables.values()]
    if first_plan is not None:
        parts.append(first_plan.model_dump_json())
    return _normal("\n".join(parts))


def carried_values(step: Step, untrusted: str, trusted: str, *,
                   whole: bool = False) -> list[str]:
    """Values in the step's literal arguments found in `untrusted` and not in `trusted`
    (references are left out: they pass data explicitly, or name a secret). With `whole`,
    each literal string counts as a value too, unless it is one plain word (`GET`)."""
    found: list[str] = []
    for text in _strings(step.args):
        literal = SECRET_REFERENCE.sub(" ", REFERENCE.sub(" ", text))
        wholes = [literal.strip()] if whole and not literal.strip().isalpha() else []
        for value in [*wholes, *_candidates(literal)]:
            normal = _normal(value)
            if normal and normal in untrusted and normal not in trusted and value not in found:
                found.append(value)
    return found


def escalations(plan: Plan, untrusted: str, trusted: str) -> dict[str, str]:
    """Why each step of `plan` needs a human (step id to reason): its literal arguments
    carry values from tool output. Whether the step changes things is the scheduler's
    call; a read-only step is never held for this."""
    reasons = {}
    for step in plan.steps:
        values = carried_values(step, untrusted, trusted)
        if values:
            shown = ", ".join(repr(v[:80]) for v in values[:3])
            reasons[step.id] = (f"planned after reading tool output, and its arguments carry "
                                f"{shown} from that output, not from the task")
    return reasons
