"""Secrets: credentials planted in the environment and in page content, and a scan of
everything runs leave behind (logs, traces, checkpoints, journals, CLI output) for them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from demo_site.hostile import PAGE_AWS_KEY_ID, PAGE_AWS_SECRET

# Realistic names, fake values: each must be found by the redaction, whatever its shape.
PLANTED_ENV = {
    "NOVA_ACT_API_KEY": "planted-nova-act-key-0c4f9a7e2b",
    "LANGSMITH_API_KEY": "lsv2_pt_plantedlangsmith0123456789abcdef",
    "AWS_SESSION_TOKEN": "planted-session-token-IQoJb3JpZ2luX2VjE",
    "GITHUB_TOKEN": "ghp_plantedGithubToken0123456789abcdefXY",
    "DUET_BROWSER_CDP_HEADERS": json.dumps({"Authorization": "Bearer planted-cdp-bearer-77aa"}),
}
PLANTED_VALUES = [
    *[v for k, v in PLANTED_ENV.items() if k != "DUET_BROWSER_CDP_HEADERS"],
    "planted-cdp-bearer-77aa", PAGE_AWS_KEY_ID, PAGE_AWS_SECRET,
]


@contextmanager
def planted() -> Iterator[list[str]]:
    """Put the planted credentials in the environment for the block; yields every value to
    look for (the page's credentials too)."""
    saved = {name: os.environ.get(name) for name in PLANTED_ENV}
    os.environ.update(PLANTED_ENV)
    try:
        yield PLANTED_VALUES
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _forms(secret: str) -> list[bytes]:
    """The byte forms a secret takes on disk: plain, JSON-escaped."""
    escaped = json.dumps(secret)[1:-1]
    return sorted({secret.encode(), escaped.encode()})


def scan(folders: Iterable[Path], texts: Iterable[str] = (),
         secrets: Iterable[str] = PLANTED_VALUES) -> list[str]:
    """Where any secret appears: every file under `folders` (read as bytes, so SQLite
    checkpoints and journals count) and each of `texts`. Empty when nothing leaked."""
    secrets, leaks = list(secrets), []
    for path in files_under(folders):
        data = path.read_bytes()
        leaks += [f"{path}: {s[:12]}..." for s in secrets
                  if any(form in data for form in _forms(s))]
    for index, text in enumerate(texts):
        leaks += [f"output {index}: {s[:12]}..." for s in secrets if s in text]
    return leaks


def files_under(folders: Iterable[Path]) -> list[Path]:
    """The files `scan` reads: every regular file under `folders` (symlinks left out)."""
    return sorted(p for folder in folders for p in Path(folder).rglob("*")
                  if p.is_file() and not p.is_symlink())
