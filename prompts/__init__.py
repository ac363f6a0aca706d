"""Prompt texts, one file per reasoning call, loaded by name.

A file opens with a Jinja comment listing its variables, holds the system text, then a
line `=== user ===`, then the user text. Rendering is strict: a missing variable raises.

A line `=== cache point ===` ends a stable prefix: the text before it is the same in every
call of a run (the system text and tool catalogue, a decision's plan). Asked to, the loader
puts a Bedrock cache point there, when the text since the start or the last cache point is
long enough for the model to cache it; otherwise the line just goes.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from jinja2 import Environment, StrictUndefined, Template
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

USER_MARKER = "=== user ==="
CACHE_MARKER = "=== cache point ==="
# The block `ChatBedrockConverse.create_cache_point()` makes; langchain-aws passes it to
# Converse as is, in `system` and in a message's content.
CACHE_POINT = {"cachePoint": {"type": "default"}}
MAX_CACHE_POINTS = 4  # Bedrock's limit per request

_env = Environment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)


@cache
def _template(name: str) -> tuple[Template, Template]:
    text = files("prompts").joinpath(f"{name}.md").read_text(encoding="utf-8")
    system, marker, user = text.partition(USER_MARKER)
    if not marker:
        raise ValueError(f"prompt {name!r} has no {USER_MARKER!r} line")
    return _env.from_string(system.strip()), _env.from_string(user.strip())


def _segments(text: str) -> list[str]:
    """The rendered text's parts between cache-point lines, each stripped."""
    return [part.strip() for part in text.split(CACHE_MARKER)]


def load_prompt(name: str, cache_min_tokens: int | None = None,
                **variables: object) -> list[BaseMessage]:
    """Render prompt `name` (plan, observe, summarize, finalize...) as system and user
    messages. With `cache_min_tokens` (the model's minimum prefix per cache point), each
    cache-point line whose stretch of text reaches it becomes a cache point block."""
    from graph.rendering import estimate_tokens  # the graph's one token estimate

    system, user = _template(name)
    sections = [_segments(system.render(**variables)), _segments(user.render(**variables))]
    if cache_min_tokens is None:
        return [SystemMessage("\n\n".join(p for p in sections[0] if p)),
                HumanMessage("\n\n".join(p for p in sections[1] if p))]
    contents: list[list[Any]] = [[], []]
    pending, points = 0, 0  # tokens since the last cache point, cache points placed
    for content, parts in zip(contents, sections, strict=True):
        for at, part in enumerate(parts):
            if part:
                content.append({"type": "text", "text": part})
                pending += estimate_tokens(part)
            closes_stretch = at < len(parts) - 1
            if closes_stretch and pending >= cache_min_tokens and points < MAX_CACHE_POINTS:
                content.append(CACHE_POINT)
                pending, points = 0, points + 1
    return [SystemMessage(_plain(contents[0])), HumanMessage(_plain(contents[1]))]


def _plain(content: list[Any]) -> str | list[Any]:
    """Blocks without a cache point as the one string they were before."""
    if any("cachePoint" in block for block in content):
        return content
    return "\n\n".join(block["text"] for block in content)
