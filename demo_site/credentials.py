"""The demo CRM's login given to a run by name: its user's secrets in a private file, and the
auth config that names them (`duet demo` and the eval's CRM behind its login).

`demo_login(db_path)` makes fresh credentials for the CRM's database and writes them to a
0600 file in a private temporary folder (mode 0700, outside `DUET_HOME` and any
repository), or takes an existing file of them; `DemoLogin.auth_config(site)` is the run's
auth config: the password, the TOTP seed and the API token, each for the site's host only,
the login recipe (password, then the TOTP code), bearer auth for the JSON API, and the
browser session `crm` kept as a profile. When the block ends, the folder is removed and the
user is forgotten by the CRM (`AuthStore.forget_user`): the credentials die with the demo.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from demo_site.auth import AuthStore, DemoCredentials, make_credentials
from tools.auth.sources import FileSource, SourceProblem
from tools.errors import ConfigError

SESSION = "crm"  # the browser session of the demo's plans, kept as a profile
# The key of each secret in the credentials file, by the secret's name in the auth config.
SECRET_KEYS = {"crm_password": "password", "crm_otp": "totp_seed", "crm_api": "api_token"}


class CredentialsFileError(ConfigError, ValueError):
    """A credentials file that cannot be used (`duet demo --credentials`): missing, open to
    others, in a repository, or without a key; says which, never a value."""


@dataclass(frozen=True)
class DemoLogin:
    """Where the demo user's secrets are (`secrets_file`), and the user's name (no secret)."""

    secrets_file: Path
    username: str

    def auth_config(self, site: str, *, keep_session: bool = True) -> dict[str, Any]:
        """The auth config of a run against the CRM at `site` (`http://host:port`);
        `keep_session`: the browser session `crm` is kept as a profile."""
        host = urlsplit(site).netloc
        kinds = {"crm_password": "password", "crm_otp": "totp", "crm_api": "token"}
        said = {"crm_password": "the demo CRM user's password",
                "crm_otp": "the demo CRM user's TOTP seed (the code is typed)",
                "crm_api": "the demo CRM's API token"}
        return {
            "secrets": {name: {"source": f"file:{self.secrets_file}#{key}",
                               "kind": kinds[name], "hosts": [host], "description": said[name]}
                        for name, key in SECRET_KEYS.items()},
            "logins": {"crm": {
                "hosts": [host], "login_url": f"{site}/login", "page": {"url": "/login*"},
                "fields": {"#username": self.username, "#password": "${secret.crm_password}"},
                "submit": "button[type=submit]",
                "totp": {"field": "#code", "secret": "crm_otp",
                         "submit": "button[type=submit]", "page": {"url": "/login/mfa*"}},
                "check": {"not_url": "/login*"}}},
            "http_auth": {host: {"bearer": "crm_api"}},
            "profiles": [SESSION] if keep_session else []}


def read_credentials(path: Path) -> DemoCredentials:
    """The credentials in `path` (a JSON or YAML mapping: username, password, totp_seed,
    api_token), read as the auth config's file source reads them: only from a 0600 file
    outside every git work tree. `CredentialsFileError` saying what is wrong."""
    values = {}
    for key in ("username", *SECRET_KEYS.values()):
        try:
            values[key] = FileSource(path, key).read()
        except SourceProblem as exc:
            raise CredentialsFileError(f"--credentials: {exc}") from None
    return DemoCredentials(**values)


def write_credentials(credentials: DemoCredentials, folder: Path) -> Path:
    """Write `credentials` to `folder/secrets.json`, created with mode 0600."""
    path = folder / "secrets.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"username": credentials.username,
                   **{key: getattr(credentials, key) for key in SECRET_KEYS.values()}}, out)
    return path


@contextmanager
def demo_login(db_path: str | Path, credentials_file: Path | None = None
               ) -> Iterator[DemoLogin]:
    """The CRM in `db_path` gets its user (fresh credentials in a private file, or those of
    `credentials_file`, used where it is) for the block; then the private folder is removed
    and the CRM forgets the user. Enter it before serving the CRM with `auth=True`."""
    store = AuthStore(db_path)
    folder = None
    try:
        if credentials_file is not None:
            path = credentials_file.expanduser().resolve()
            credentials = read_credentials(path)
            store.replace_user(credentials)
        else:
            credentials = make_credentials(db_path)
            folder = Path(tempfile.mkdtemp(prefix="duet-demo-secrets-"))  # mode 0700
            path = write_credentials(credentials, folder)
        yield DemoLogin(path, credentials.username)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        store.forget_user()
