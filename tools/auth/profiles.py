"""Kept browser profiles: a named session's cookies and local storage (Playwright's storage
state), one file per session name under `DUET_HOME/profiles`, reused by later runs and by
every executor that shares the folder.

A profile holds live sessions of sites, as good as a password while they last: each file
is written atomically with mode 0600 (its folder 0700), under a lock per profile, so two
runs that keep the same session never leave a torn file; readers need no lock. What is
shown of a profile (`summary`, `describe`) names domains, cookie names and ages, never a
value.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.errors import ConfigError

log = logging.getLogger("duet.profiles")

# A profile is named after its session: a file name of its own, never a path.
PROFILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
FORMAT = 1  # the version of the file's layout
# A save holds its profile's lock for milliseconds; a lock held longer than this is someone
# else's stuck process, and the save gives up rather than wait on it.
LOCK_SECONDS = 10.0


class ProfileError(ConfigError, ValueError):
    """A profile named wrongly, or not there: one line saying which and what exists."""


def check_name(name: str) -> str:
    """`name` when a profile may be called so (letters, digits, `_`, `.`, `-`, not starting
    with `.` or `-`); `ProfileError` otherwise."""
    if not PROFILE_NAME.fullmatch(name):
        raise ProfileError(f"{name!r} cannot name a profile: use letters, digits, _, . and -, "
                           "starting with a letter, a digit or _")
    return name


@dataclass(frozen=True)
class ProfileSummary:
    """What may be shown of a profile: its name, when it was saved, the domains it holds
    cookies or local storage for, and how many of each (never a value)."""

    name: str
    saved_at: datetime
    domains: tuple[str, ...]
    cookies: int
    origins: int

    def age_seconds(self, now: datetime | None = None) -> float:
        """Seconds since it was saved."""
        return ((now or datetime.now(UTC)) - self.saved_at).total_seconds()


class Profiles:
    """The profiles in `folder`: `load` a session's storage state, `save` it, list, describe
    and delete them."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, name: str) -> Path:
        """The file of profile `name` (checked: a name, never a path)."""
        return self.folder / f"{check_name(name)}.json"

    def load(self, name: str) -> dict[str, Any] | None:
        """The storage state kept for session `name`, or None when there is none (a file
        that cannot be read is said in a warning and ignored: the session starts empty and
        logs in again)."""
        document = self._read(name)
        return document["storage_state"] if document else None

    def save(self, name: str, state: dict[str, Any]) -> None:
        """Keep `state` (Playwright's storage state) as profile `name`: written to a
        temporary file of mode 0600 beside it, then renamed over it, under the profile's
        lock (blocking: call it off the event loop)."""
        path = self.path(name)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        document = {"format": FORMAT, "session": name,
                    "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "storage_state": state}
        with self._locked(name):
            fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.folder)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:  # mkstemp: mode 0600
                    json.dump(document, file)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise

    def names(self) -> list[str]:
        """The names of the profiles kept, sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(path.stem for path in self.folder.glob("*.json")
                      if PROFILE_NAME.fullmatch(path.stem))

    def summary(self, name: str) -> ProfileSummary:
        """What may be shown of profile `name`; `ProfileError` when there is none."""
        document = self._read(name)
        if document is None:
            raise self._unknown(name)
        state = document["storage_state"]
        cookies, origins = state.get("cookies", []), state.get("origins", [])
        domains = {cookie.get("domain", "").lstrip(".") for cookie in cookies}
        domains |= {_host_of_origin(origin.get("origin", "")) for origin in origins}
        return ProfileSummary(name, datetime.fromisoformat(document["saved_at"]),
                              tuple(sorted(domains - {""})), len(cookies), len(origins))

    def describe(self, name: str) -> dict[str, Any]:
        """Profile `name` in detail, without a value: each cookie's domain, name, path and
        expiry (None: ends with the browser), each origin's local storage keys."""
        document = self._read(name)
        if document is None:
            raise self._unknown(name)
        state = document["storage_state"]
        return {
            "name": name, "saved_at": document["saved_at"],
            "cookies": [{"domain": c.get("domain"), "name": c.get("name"), "path": c.get("path"),
                         "expires": _expiry(c.get("expires"))}
                        for c in state.get("cookies", [])],
            "local_storage": [{"origin": o.get("origin"),
                               "keys": [item.get("name") for item in o.get("localStorage", [])]}
                              for o in state.get("origins", [])]}

    def delete(self, name: str) -> None:
        """Delete profile `name` (under its lock, so no save is torn); `ProfileError` when
        there is none."""
        path = self.path(name)
        if not path.exists():
            raise self._unknown(name)
        with self._locked(name):
            path.unlink(missing_ok=True)
        (self.folder / f".{name}.lock").unlink(missing_ok=True)

    def _read(self, name: str) -> dict[str, Any] | None:
        path = self.path(name)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("the browser profile %s cannot be read (%s): ignored", path,
                        type(exc).__name__)
            return None
        if not (isinstance(document, dict) and document.get("format") == FORMAT
                and isinstance(document.get("storage_state"), dict)):
            log.warning("the browser profile %s is not a profile of this version: ignored", path)
            return None
        return document

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """The profile's lock (an advisory lock on a file of its own, which a rename of the
        profile leaves in place), held for the block; `ProfileError` when another process
        holds it past `LOCK_SECONDS`."""
        lock = os.open(self.folder / f".{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_SECONDS
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ProfileError(f"the browser profile {name!r} stayed locked for "
                                           f"{LOCK_SECONDS:g}s by another process") from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(lock)  # releases the lock

    def _unknown(self, name: str) -> ProfileError:
        kept = ", ".join(self.names()) or "none"
        return ProfileError(f"no profile {name!r} in {self.folder} (profiles: {kept})")


def _host_of_origin(origin: str) -> str:
    """`127.0.0.1:8000` of `http://127.0.0.1:8000`."""
    return origin.split("://", 1)[-1].rstrip("/")


def _expiry(expires: Any) -> str | None:
    """A cookie's expiry as UTC ISO time, or None for a cookie that ends with the browser."""
    if not isinstance(expires, int | float) or expires < 0:
        return None
    return datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
