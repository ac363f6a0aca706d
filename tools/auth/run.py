"""A run's `Auth`: its secrets, login recipes, HTTP auth and kept profiles, in one object
that each step's `StepContext` carries to the executors (`step.auth`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.auth.config import AuthConfig
from tools.auth.logins import HttpAuth, LoginRecipe
from tools.auth.references import secret_names, substitute
from tools.auth.secrets import OnReveal, SecretStore, hosts_allow, ignore_forms


@dataclass(frozen=True)
class Auth:
    """What a run may log in with. `profiles_dir` is where kept browser profiles live
    (`DUET_HOME/profiles`); a session is kept only if its name is in `profiles`."""

    secrets: SecretStore = field(default_factory=SecretStore)
    logins: tuple[LoginRecipe, ...] = ()
    http: tuple[HttpAuth, ...] = ()
    profiles: frozenset[str] = frozenset()
    profiles_dir: Path | None = None

    @classmethod
    def of(cls, config: AuthConfig, *, on_reveal: OnReveal = ignore_forms,
           profiles_dir: Path | None = None) -> Auth:
        """The `Auth` of `config`; `on_reveal` hears every form of a value before it is
        handed out (the redactor's `also_redact`)."""
        return cls(config.store(on_reveal), tuple(config.logins.values()),
                   tuple(config.http_auth.values()), frozenset(config.profiles), profiles_dir)

    def catalog(self) -> list[dict[str, Any]]:
        """What the planner may know: each secret's name, kind and hosts; never a value."""
        return self.secrets.catalog()

    async def reveal(self, name: str, url: str) -> str:
        """The value of secret `name` for a call to `url`, read now: `SecretNotAllowed`
        unless the secret allows `url`'s host; `UnknownSecret`, `SecretUnavailable`."""
        value = await self.secrets.resolve(name)
        value.check(url)
        return value.reveal()

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
