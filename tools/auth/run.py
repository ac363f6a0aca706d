"""A run's `Auth`: its secrets, login recipes, HTTP auth and kept profiles, in one object
that each step's `StepContext` carries to the executors (`step.auth`)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.auth.config import AuthConfig
from tools.auth.logins import HttpAuth, LoginRecipe
from tools.auth.references import secret_names, substitute
from tools.auth.secrets import OnReveal, SecretStore, check_target, hosts_allow, ignore_forms


def _unchanged(text: str) -> str:
    """The default `redact`: a run without the redactor cuts nothing."""
    return text


@dataclass(frozen=True)
class Auth:
    """What a run may log in with. `profiles_dir` is where kept browser profiles live
    (`DUET_HOME/profiles`); a session is kept only if its name is in `profiles`.
    `redact` cuts every form of every value handed out so far (the redactor's
    `redact_text`): a tool whose answer may echo a secret it sent passes the answer through
    it, so no record of the call (a LangSmith tool run included) holds the value."""

    secrets: SecretStore = field(default_factory=SecretStore)
    logins: tuple[LoginRecipe, ...] = ()
    http: tuple[HttpAuth, ...] = ()
    profiles: frozenset[str] = frozenset()
    profiles_dir: Path | None = None
    redact: Callable[[str], str] = _unchanged

    @classmethod
    def of(cls, config: AuthConfig, *, on_reveal: OnReveal = ignore_forms,
           redact: Callable[[str], str] = _unchanged, profiles_dir: Path | None = None) -> Auth:
        """The `Auth` of `config`; `on_reveal` hears every form of a value before it is
        handed out (the redactor's), and `redact` cuts them (see the class)."""
        return cls(config.store(on_reveal), tuple(config.logins.values()),
                   tuple(config.http_auth.values()), frozenset(config.profiles), profiles_dir,
                   redact)

    def catalog(self) -> list[dict[str, Any]]:
        """What the planner may know: each secret's name, kind and hosts; never a value."""
        return self.secrets.catalog()

    async def reveal(self, name: str, url: str) -> str:
        """The value of secret `name` for a call to `url` (or a tool target: `mcp:<server>`,
        `tool:<name>`), read now: `SecretNotAllowed` unless the secret allows `url`'s host;
        `UnknownSecret`, `SecretUnavailable`."""
        self.check({name}, url)  # refused before its source is read
        return (await self.secrets.resolve(name)).reveal()

    def check(self, names: set[str], url: str) -> None:
        """`SecretNotAllowed` unless each secret of `names` may go to `url` (a request that
        carries them is redirected there, say); `UnknownSecret`. Reads no value."""
        for name in sorted(names):
            check_target(name, tuple(self.secrets.spec(name).hosts), url)

    async def http_headers(self, url: str) -> dict[str, str]:
        """The headers of the HTTP auth of `url`'s host (`http_auth:`), values read now and
        checked against their secrets' hosts; empty for a host without one. HTTP Basic's
        `user:password` is told to `on_reveal` in every form before it is handed out."""
        auth = self.http_auth_for(url)
        if auth is None:
            return {}
        if auth.bearer:
            return {"Authorization": f"Bearer {await self.reveal(auth.bearer, url)}"}
        if auth.header:
            return {auth.header.name: await self.reveal(auth.header.secret, url)}
        assert auth.basic is not None
        user = await self.fill_in(auth.basic.username, url)
        pair = f"{user}:{await self.reveal(auth.basic.password, url)}"
        self.secrets.announce(pair)
        return {"Authorization": f"Basic {base64.b64encode(pair.encode()).decode()}"}

    async def fill_in(self, value: Any, url: str) -> Any:
        """A copy of `value` with each `${secret.NAME}` replaced by that secret's value for
        a call to `url` (each checked as `reveal` does)."""
        names = secret_names(value)
        if not names:
            return value
        return substitute(value, {name: await self.reveal(name, url) for name in names})

    def login_for(self, url: str) -> LoginRecipe | None:
        """The login recipe of the site `url` is on, or None."""
        return next((recipe for recipe in self.logins if hosts_allow(tuple(recipe.hosts), url)),
                    None)

    def http_auth_for(self, url: str) -> HttpAuth | None:
        """How requests to `url`'s host authenticate, or None."""
        return next((auth for auth in self.http if hosts_allow((auth.host,), url)), None)

    def keeps(self, session: str) -> bool:
        """Whether the named browser session `session` is kept as a profile."""
        return self.profiles_dir is not None and session in self.profiles


NO_AUTH = Auth()
