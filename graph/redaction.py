"""Secrets never leave a run: credentials are cut from tool output, errors, traces and logs.

Two nets: the exact values of this process's secret environment variables (whatever their
format) and of the secrets handed out by name (`tools.auth`: every form of each), and the
shapes of well-known credentials that a page or an API response may show (AWS key ids and
secret-key assignments, bearer tokens, private keys, common API-key forms).
A full scanner such as detect-secrets flags high-entropy strings too, which would also cut
ids and hashes that plans refer to; these few exact rules are enough for what we handle.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"
_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSW|CREDENTIAL|AUTH|HEADERS", re.IGNORECASE)
_MIN_SECRET_CHARS = 8
_MIN_FORM_CHARS = 4  # a form of a secret handed out by name: a TOTP code has 6, a PIN 4
_known_secrets: set[str] = set()  # values given by `also_redact`
_SHAPES = [
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    re.compile(r"\b(?:sk|pk|rk)[-_](?:live[-_]|test[-_])?[A-Za-z0-9]{20,}\b"),
    re.compile(r"\b(?:ghp|gho|ghs|github_pat|xox[abprs]|lsv2_[a-z]{2})_?[A-Za-z0-9_-]{20,}\b"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{12,}"),
]
# `name = value` where the name says it is a secret: only the value is cut. A value with no
# letter (`"max_tokens": 100000000`) is a number, not a credential.
_ASSIGNMENT = re.compile(
    r"(?i)(\b[\w-]*(?:secret|passw(?:or)?d|api[_-]?key|access[_-]?key|token)[\w-]*\b"
    r"[\"']?\s*[:=]\s*[\"']?)(?=[^\s\"'<>,;&]*[a-z])([^\s\"'<>,;&]{8,})")


def also_redact(values: Any) -> None:
    """Cut these values too, from now on in this process: secrets that are not in the
    environment (the `env` and `headers` of an MCP server's config, say)."""
    _known_secrets.update(v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_CHARS)
    env_secrets.forget()  # the next redaction sorts them in among the environment's


class _ShortNumbers:
    """Forms of secrets handed out by name that are numbers under `_MIN_SECRET_CHARS` digits
    (a TOTP code, a PIN), cut only where no other digit touches them (the hex digits of a
    URL-encoded character before one aside): a code is cut from `code=123456` and
    `%22123456%22`, not from an order number that happens to hold its digits."""

    def __init__(self) -> None:
        self.numbers: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, numbers: set[str]) -> None:
        """Cut `numbers` too, from now on."""
        if numbers <= self.numbers:
            return
        self.numbers |= numbers
        alternatives = "|".join(sorted(self.numbers, key=len, reverse=True))
        self.pattern = re.compile(f"(?:(?<![0-9])|(?<=%[0-9A-Fa-f]{{2}}))"
                                  f"(?:{alternatives})(?![0-9])")

    def cut(self, text: str) -> str:
        """`text` with each of the numbers replaced by `[REDACTED]`."""
        return self.pattern.sub(REDACTED, text) if self.pattern else text


_short_numbers = _ShortNumbers()


def redact_secret_forms(forms: Iterable[str]) -> None:
    """Cut these forms of a secret handed out by name from now on in this process (the
    `on_reveal` of a run's secrets, `tools.auth`), down to `_MIN_FORM_CHARS` characters:
    unlike an environment variable's value, each is known to be a secret however short. A
    short number is cut where no other digit touches it (`_ShortNumbers`); anything else
    wherever it shows."""
    given = {form for form in forms if len(form) >= _MIN_FORM_CHARS}
    numbers = {form for form in given if form.isdigit() and len(form) < _MIN_SECRET_CHARS}
    _known_secrets.update(given - numbers)
    env_secrets.forget()  # the next redaction sorts them in among the environment's
    _short_numbers.add(numbers)


def _env_secrets() -> set[str]:
    """The secret values in this process's environment (a scan of it)."""
    values: set[str] = set()
    for name, value in os.environ.items():
        if not _SECRET_NAME.search(name) or len(value) < _MIN_SECRET_CHARS:
            continue
        values.add(value)
        try:  # a JSON map of headers holds one secret per value
            parsed = json.loads(value)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            values.update(v for v in parsed.values()
                          if isinstance(v, str) and len(v) >= _MIN_SECRET_CHARS)
    return values


class _EnvSecrets:
    """Every secret value to cut, longest first (so a value inside a longer one cannot
    leave the rest of the longer one behind): the environment's, scanned again only when
    the environment changed, and those given by `also_redact`.

    Redaction runs on every tool output, trace event and log line, and scanning the
    environment (decoding each variable, matching its name, parsing JSON) cost more than
    the redaction itself. A change is seen by comparing the environment's own mapping with
    a copy taken at the last scan: one comparison of two dicts of bytes, done in C.
    """

    def __init__(self) -> None:
        self._seen: dict[bytes, bytes] | None = None
        self._values: list[str] = []
        self.scans = 0  # how often the environment was scanned (a test counts them)

    def forget(self) -> None:
        """Make the next call scan and sort again (`also_redact` gave new values)."""
        self._seen = None

    def __call__(self) -> list[str]:
        # The bytes behind `os.environ` (a private attribute: one comparison, done in C).
        current = os.environ._data  # type: ignore[attr-defined]
        if current != self._seen:
            # The copy first: a change made during the scan shows at the next call.
            self._seen = dict(current)
            self._values = sorted(_env_secrets() | _known_secrets, key=len, reverse=True)
            self.scans += 1
        return self._values


env_secrets = _EnvSecrets()


def redact_text(text: str) -> str:
    """`text` with every secret value and credential shape replaced by `[REDACTED]`."""
    for value in env_secrets():
        if value in text:
            text = text.replace(value, REDACTED)
    text = _short_numbers.cut(text)
    for shape in _SHAPES:
        text = shape.sub(REDACTED, text)
    return _ASSIGNMENT.sub(lambda m: m.group(1) + REDACTED, text)


def redact(value: Any) -> Any:
    """A JSON-like value with every string in it (keys included) redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact(k): redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's final message (install on handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message, redact it, and keep the record."""
        record.msg, record.args = redact_text(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
