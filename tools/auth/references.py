"""References to secrets in plan arguments: `${secret.NAME}` anywhere inside a string value."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from tools.auth.errors import UnknownSecret

# Anything between the braces is a name, so a misspelt one (`${secret.my key}`) fails as an
# unknown secret rather than reach a tool as literal text.
REFERENCE = re.compile(r"\$\{secret\.([^}]*)\}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")  # what a secret may be called


def secret_names(value: Any) -> set[str]:
    """The names every `${secret.NAME}` in a JSON value refers to (object keys are names of
    fields, never read)."""
    names: set[str] = set()

    def collect(text: str) -> str:
        names.update(REFERENCE.findall(text))
        return text

    _map_strings(value, collect)
    return names


def substitute(value: Any, resolved: Mapping[str, str]) -> Any:
    """A copy of a JSON value with each `${secret.NAME}` replaced by `resolved[NAME]`;
    `UnknownSecret` for a name `resolved` lacks."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in resolved:
            raise UnknownSecret(name, list(resolved))
        return resolved[name]

    return _map_strings(value, lambda text: REFERENCE.sub(replace, text))


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """A copy of a JSON value with `change` applied to every string in it but object keys."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, Mapping):
        return {key: _map_strings(item, change) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_map_strings(item, change) for item in value]
    return value
