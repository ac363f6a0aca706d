"""Prompt texts, one file per reasoning call, loaded by name.

A file opens with a Jinja comment listing its variables, holds the system text, then a
line `=== user ===`, then the user text. Rendering is strict: a missing variable raises.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from jinja2 import Environment, StrictUndefined, Template
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

USER_MARKER = "=== user ==="

_env = Environment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


@cache
def _template(name: str) -> tuple[Template, Template]:
    text = files("prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    system, marker, user = text.partition(USER_MARKER)
    if not marker:
        raise ValueError(f"prompt {name!r} has no {USER_MARKER!r} line")
    return _env.from_string(system.strip()), _env.from_string(user.strip())


def load_prompt(name: str, **variables: object) -> list[BaseMessage]:
    """Render prompt `name` (plan, observe, summarize, finalize) as system and user messages."""
    system, user = _template(name)
    return [SystemMessage(system.render(**variables)), HumanMessage(user.render(**variables))]
