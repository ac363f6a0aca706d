"""Where a secret's value was left: every file under some folders, and some texts, searched
for every form of each secret (`SecretValue.leak_forms`: plain, URL-encoded, JSON-escaped,
base64; a TOTP's seed and the codes it gave). `duet eval` runs it on each run's files.

A form that is a short number (a TOTP code, a PIN) counts only where no other digit
touches it, as the redactor cuts it (`graph.redaction`): a checkpoint is full of numbers,
and a code inside a longer one is not a copy of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SHORT_NUMBER = 8  # a number of fewer digits is matched as a whole number only


@dataclass(frozen=True)
class Leak:
    """A secret (by name, never its value) found in a file or a text (`where`)."""

    secret: str
    where: str

    def describe(self) -> str:
        """One line: `secret 'crm_password' found in /path/to/file`."""
        return f"secret {self.secret!r} found in {self.where}"


def _pattern(form: str) -> re.Pattern[bytes]:
    escaped = re.escape(form.encode())
    if form.isdigit() and len(form) < SHORT_NUMBER:
        return re.compile(rb"(?<![0-9])" + escaped + rb"(?![0-9])")
    return re.compile(escaped)


def _files(place: Path) -> list[Path]:
    """`place` itself when it is a file, else every file under it (symlinks left out)."""
    if place.is_file():
        return [place]
    return sorted(p for p in place.rglob("*") if p.is_file() and not p.is_symlink())


def find_leaks(forms: Mapping[str, Iterable[str]], places: Iterable[Path] = (),
               texts: Mapping[str, str] | None = None) -> list[Leak]:
    """Each secret of `forms` (name -> every form of its value) found in one of `places`
    (a file, or every file under a folder; read as bytes, so SQLite files and images count;
    a place that does not exist holds nothing) or in one of `texts` (label -> text), once
    per secret and place. Empty: nothing leaked."""
    patterns = {name: [_pattern(form) for form in set(found) if form]
                for name, found in forms.items()}
    found_in: list[tuple[str, bytes]] = [(str(path), path.read_bytes())
                                         for place in places for path in _files(Path(place))]
    found_in += [(label, text.encode()) for label, text in (texts or {}).items()]
    return [Leak(name, where) for where, data in found_in
            for name, compiled in patterns.items()
            if any(pattern.search(data) for pattern in compiled)]
