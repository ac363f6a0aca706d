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
from tools.auth.leaks import find_leaks

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


def scan(folders: Iterable[Path], texts: Iterable[str] = (),
         secrets: Iterable[str] = PLANTED_VALUES) -> list[str]:
    """Where any secret appears, plain or JSON-escaped: every file under `folders` (read as
    bytes, so SQLite checkpoints and journals count) and each of `texts`, searched by
    `tools.auth.leaks.find_leaks`. Empty when nothing leaked."""
    forms: dict[str, list[str]] = {}
    for secret in secrets:  # shown by its start only; two with the same start share a line
        forms.setdefault(f"{secret[:12]}...", []).extend([secret, json.dumps(secret)[1:-1]])
    outputs = {f"output {index}": text for index, text in enumerate(texts)}
    return [f"{leak.where}: {leak.secret}" for leak in find_leaks(forms, folders, outputs)]


def files_under(folders: Iterable[Path]) -> list[Path]:
    """The files `scan` reads: every regular file under `folders` (symlinks left out)."""
    return sorted(p for folder in folders for p in Path(folder).rglob("*")
                  if p.is_file() and not p.is_symlink())
