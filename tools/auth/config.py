"""The auth config: the secrets a run may use by name, how the executor logs in to each site,
the HTTP auth of each API host, and which browser sessions are kept as profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from tools.auth.errors import AuthConfigError
from tools.auth.logins import HttpAuth, LoginRecipe
from tools.auth.profiles import check_name
from tools.auth.references import secret_names
from tools.auth.secrets import OnReveal, SecretSpec, SecretStore, ignore_forms
from tools.auth.sources import parse_document


class AuthConfig(BaseModel):
    """`secrets:` maps each name to its spec (`source`, `kind`, `hosts`, `description`).
    `logins:` maps a site's name to its `LoginRecipe`; `http_auth:` a host to its
    `HttpAuth`; `profiles:` lists the named browser sessions kept as profiles (their
    cookies and local storage) from run to run. Every secret these name is one of
    `secrets:`; a TOTP step's is of kind `totp`.
    """

    model_config = ConfigDict(extra="forbid")

    secrets: dict[str, SecretSpec] = {}
    logins: dict[str, LoginRecipe] = {}
    http_auth: dict[str, HttpAuth] = {}
    profiles: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        """A secret's and a login's name, and an HTTP auth's host, is its key."""
        if not isinstance(data, dict):
            return data
        keyed = {"secrets": "name", "logins": "name", "http_auth": "host"}
        return {**data, **{section: {key: {field: key, **entry} if isinstance(entry, dict)
                                     else entry for key, entry in data[section].items()}
                           for section, field in keyed.items()
                           if isinstance(data.get(section), dict)}}

    @field_validator("profiles")
    @classmethod
    def _profile_names(cls, names: list[str]) -> list[str]:
        """A kept session's name is its profile's file name."""
        return [check_name(name) for name in names]

    @model_validator(mode="after")
    def _names_and_references(self) -> AuthConfig:
        for key, spec in self.secrets.items():
            if spec.name != key:
                raise ValueError(f"secret {key!r}: its name is its key, so it needs no name:")
        uses = [(f"logins.{key}", secret_names(recipe.fields)) for key, recipe
                in self.logins.items()]
        uses += [(f"logins.{key}.totp", {recipe.totp.secret}) for key, recipe
                 in self.logins.items() if recipe.totp and recipe.totp.secret]
        uses += [(f"http_auth.{key}", auth.secrets() | secret_names(auth.model_dump()))
                 for key, auth in self.http_auth.items()]
        for where, names in uses:
            if unknown := sorted(names - set(self.secrets)):
                raise ValueError(f"{where}: unknown secret {unknown[0]!r} (defined: "
                                 f"{', '.join(sorted(self.secrets)) or 'none'})")
        for key, recipe in self.logins.items():
            if (recipe.totp and recipe.totp.secret
                    and self.secrets[recipe.totp.secret].kind != "totp"):
                raise ValueError(f"logins.{key}.totp: secret {recipe.totp.secret!r} is not "
                                 "of kind totp")
        return self

    @classmethod
    def load(cls, source: str | Path) -> AuthConfig:
        """The config in a YAML or JSON file (`.json`), or in JSON text (starting with
        `{`); `AuthConfigError` in one line naming the file, the secret and the problem."""
        if isinstance(source, str) and source.lstrip().startswith("{"):
            origin, text, as_json = "(JSON text)", source, True
        else:
            path = Path(source).expanduser()
            origin, as_json = str(path), path.suffix == ".json"
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise AuthConfigError(f"cannot read the auth config {origin}: "
                                      f"{type(exc).__name__}") from None
        try:
            document = parse_document(text, as_json=as_json)
        except ValueError as exc:
            raise AuthConfigError(f"the auth config {origin} is {exc}") from None
        try:
            return cls.model_validate({} if document is None else document)
        except ValidationError as exc:
            problems = "; ".join(_problem(error) for error in exc.errors())
            raise AuthConfigError(f"auth config {origin}: {problems}") from None

    def store(self, on_reveal: OnReveal = ignore_forms) -> SecretStore:
        """A store over this config's secrets (`on_reveal`: see `SecretStore`)."""
        return SecretStore(self.secrets.values(), on_reveal=on_reveal)


def _problem(error: ErrorDetails) -> str:
    """One problem, by where it is and what it is; never pydantic's `input_value`, which
    would quote a value written in the wrong place."""
    place = [str(part) for part in error["loc"]]
    in_secret = len(place) >= 2 and place[0] == "secrets"
    if in_secret:
        place = [f"secret {place[1]!r}", *place[2:]]
    if error["type"] == "extra_forbidden":
        what = "is not a field" + (" (a secret names its source, never holds its value)"
                                   if in_secret else "")
    elif error["type"] == "missing":
        what = "is missing"
    else:
        what = error["msg"].removeprefix("Value error, ")
    return f"{': '.join(place)}: {what}" if place else what
