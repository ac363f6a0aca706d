"""How results reach a prompt: fenced as untrusted data, capped, and counted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from graph.contracts import Plan, StepResult

FENCE_TAG = "untrusted_tool_output"
RESULT_OUTPUT_CHARS = 1_500
CHARS_PER_TOKEN = 4


# A block `fence` wrote, as it stands in a prompt (a forged closing tag was escaped).
FENCED_BLOCK = re.compile(f"<{FENCE_TAG}>\n(.*?)\n</{FENCE_TAG}>", re.S)


def estimate_tokens(text: str) -> int:
    """A cheap, conservative token estimate (about four characters a token)."""
    return len(text) // CHARS_PER_TOKEN + 1


def fence(text: str) -> str:
    """Wrap tool output so a prompt shows it as data; a forged closing tag cannot escape."""
    safe = text.replace(f"</{FENCE_TAG}", f"<\\/{FENCE_TAG}").replace(
        f"<{FENCE_TAG}", f"<\\{FENCE_TAG}"
    )
    return f"<{FENCE_TAG}>\n{safe}\n</{FENCE_TAG}>"


def render_result(result: StepResult, max_chars: int = RESULT_OUTPUT_CHARS) -> str:
    """One result as a prompt sees it: a header line (and what the person who rejected it
    said), then the fenced, capped output or error."""
    header = f"[{result.step_id}] {result.tool} -> {result.status}"
    if result.attempts > 1:
        header += f" after {result.attempts} attempts"
    if result.error is not None:
        body = f"{result.error.type}: {result.error.message}"
    else:
        body = json.dumps(result.output, default=str, ensure_ascii=False)
    if len(body) > max_chars:
        body = body[:max_chars] + f"... [{len(body) - max_chars} more characters cut]"
    if result.rejected_because:
        # A person's words, not a tool's: outside the fence, so the planner may act on them.
        said = " ".join(result.rejected_because.split())
        header += f"\nThe person who rejected it said: {said}"
    return f"{header}\n{fence(body)}"


def render_plan(plan: Plan) -> str:
    """A plan as a prompt sees it: the goal, then one compact JSON line per step."""
    lines = [f"goal: {plan.goal}"]
    lines += [step.model_dump_json(exclude_defaults=True) for step in plan.steps]
    return "\n".join(lines)


def render_results(results: Iterable[StepResult]) -> str:
    """Several results, one block each."""
    return "\n".join(render_result(result) for result in results)
