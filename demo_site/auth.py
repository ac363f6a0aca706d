"""The CRM's login data: one user (password and TOTP), an API token, sessions, the login log.

Everything lives in the CRM's SQLite file, so a test reaches it through `AuthStore(db_path)`
whether the site runs in a thread or in a process of its own. Secrets are stored as the
login needs them: the password as a salted scrypt hash, the API token and session ids as
SHA-256 (random values, so no salt is needed), the TOTP seed as is (the site must compute
codes from it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyotp

from demo_site.db import SqliteFile

SESSION_SECONDS = 1800  # a session's lifetime unless the app is given another

AUTH_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, salt BLOB NOT NULL, password_hash BLOB NOT NULL,
    totp_seed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS api_tokens (token_hash TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY, stage TEXT NOT NULL, csrf TEXT NOT NULL,
    next TEXT NOT NULL DEFAULT '/', expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS login_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, stage TEXT NOT NULL, outcome TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
CREATE TABLE IF NOT EXISTS lure_posts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, page TEXT NOT NULL, fields TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
"""

# A session is waiting for the password, waiting for the code, or signed in.
Stage = Literal["password", "mfa", "in"]


@dataclass(frozen=True)
class DemoCredentials:
    """The one user's sign-in values and the API token; `repr` shows none of the secrets."""

    username: str
    password: str = field(repr=False)
    totp_seed: str = field(repr=False)
    api_token: str = field(repr=False)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)


class AuthStore(SqliteFile):
    """The login's tables in one CRM database file."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        with self.connect() as db:
            db.executescript(AUTH_SCHEMA)

    def has_user(self) -> bool:
        """True once `make_credentials` has made the user."""
        return bool(self.rows("SELECT 1 FROM users"))

    def replace_user(self, credentials: DemoCredentials) -> None:
        """Make `credentials` the only user and API token; every session ends."""
        salt = secrets.token_bytes(16)
        with self.connect() as db:
            for table in ("users", "api_tokens", "sessions"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
            db.execute("INSERT INTO users VALUES (?, ?, ?, ?)",
                       (credentials.username, salt, _scrypt(credentials.password, salt),
                        credentials.totp_seed))
            db.execute("INSERT INTO api_tokens VALUES (?)", (_digest(credentials.api_token),))

    def forget_user(self) -> None:
        """Remove the user, the API token and every session, their bytes overwritten
        (SQLite's `secure_delete`): the TOTP seed, which the site must keep as is, leaves
        no copy in the file. The login log and the lure posts stay."""
        with self.connect() as db:
            db.execute("PRAGMA secure_delete = ON")
            for table in ("users", "api_tokens", "sessions"):
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names

    def password_ok(self, username: str, password: str) -> bool:
        """True when `username` and `password` are the user's."""
        users = self.rows("SELECT * FROM users")
        if not users:
            return False
        user = users[0]
        # The hash is computed even for a wrong name, so timing does not tell names apart.
        right_hash = hmac.compare_digest(_scrypt(password, user["salt"]), user["password_hash"])
        return hmac.compare_digest(username.encode(), user["username"].encode()) and right_hash

    def code_ok(self, code: str) -> bool:
        """True when `code` is the user's TOTP code now (or one step before or after, for a
        clock or a typist a little behind)."""
        users = self.rows("SELECT totp_seed FROM users")
        return bool(users) and pyotp.TOTP(users[0]["totp_seed"]).verify(code.strip(),
                                                                          valid_window=1)

    def token_ok(self, token: str) -> bool:
        """True when `token` is the API token."""
        return bool(token) and bool(
            self.rows("SELECT 1 FROM api_tokens WHERE token_hash = ?", _digest(token)))

    def open_session(self, stage: Stage, seconds: int, next_path: str = "/") -> tuple[str, str]:
        """A new session at `stage` that lasts `seconds`; returns its id and CSRF token."""
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.connect() as db:
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                       (_digest(session_id), stage, csrf, next_path, time.time() + seconds))
        return session_id, csrf

    def session(self, session_id: str | None) -> dict[str, Any] | None:
        """The live session `session_id` names (stage, csrf, next), or None."""
        if not session_id:
            return None
        found = self.rows("SELECT stage, csrf, next FROM sessions "
                          "WHERE id_hash = ? AND expires_at > ?", _digest(session_id),
                          time.time())
        return found[0] if found else None

    def close_session(self, session_id: str) -> None:
        """End a session (its next stage gets a new id, so an id seen before sign-in is
        worth nothing after it)."""
        with self.connect() as db:
            db.execute("DELETE FROM sessions WHERE id_hash = ?", (_digest(session_id),))

    def expire_sessions(self) -> None:
        """End every session now: what a test calls to see an expired session."""
        with self.connect() as db:
            db.execute("UPDATE sessions SET expires_at = 0")

    def log_attempt(self, stage: Literal["password", "mfa"], outcome: str) -> None:
        """Record one POST of the login form or of the code form."""
        with self.connect() as db:
            db.execute("INSERT INTO login_attempts (stage, outcome) VALUES (?, ?)",
                       (stage, outcome))

    def login_attempts(self) -> list[dict[str, Any]]:
        """Every login POST so far, oldest first: id, stage, outcome, at (UTC)."""
        return self.rows("SELECT * FROM login_attempts ORDER BY id")

    def record_lure_post(self, page: str, fields: list[tuple[str, str]]) -> None:
        """Record what was posted to a lure page (`demo_site.hostile.LURES`)."""
        with self.connect() as db:
            db.execute("INSERT INTO lure_posts (page, fields) VALUES (?, ?)",
                       (page, json.dumps(fields)))

    def lure_posts(self) -> list[dict[str, Any]]:
        """Every POST to a lure page, oldest first: id, page, fields ([name, value] pairs),
        at (UTC)."""
        return [{**row, "fields": json.loads(row["fields"])}
                for row in self.rows("SELECT * FROM lure_posts ORDER BY id")]


def make_credentials(db_path: str | Path) -> DemoCredentials:
    """New random credentials for the CRM in `db_path`, replacing any before (and ending
    their sessions). Call it before serving with `auth=True`; never log what it returns."""
    credentials = DemoCredentials(
        username=f"demo-{secrets.token_hex(3)}", password=secrets.token_urlsafe(18),
        totp_seed=pyotp.random_base32(), api_token=f"crm_{secrets.token_urlsafe(32)}")
    AuthStore(db_path).replace_user(credentials)
    return credentials
