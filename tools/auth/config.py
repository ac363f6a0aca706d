"""The auth config: the secrets a run may use by name (later its logins too), in YAML or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import ErrorDetails

from tools.auth.errors import AuthConfigError
from tools.auth.references import secret_names
from tools.auth.secrets import OnReveal, SecretSpec, SecretStore, ignore_forms
from tools.auth.sources import parse_document


class AuthConfig(BaseModel):
    """`secrets:` maps each name to its spec (`source`, `kind`, `hosts`, `description`).

    `logins:` and `http_auth:` are kept as they are written, one mapping per entry, until
    their own models replace `dict[str, Any]` here; what they are checked for already is
    that every `${secret.NAME}` in them names a secret of this file.
    """

    model_config = ConfigDict(extra="forbid")

    secrets: dict[str, SecretSpec] = {}
    logins: dict[str, dict[str, Any]] = {}
    http_auth: dict[str, dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        """A secret's name is its key in `secrets:`."""
        if isinstance(data, dict) and isinstance(data.get("secrets"), dict):
            secrets = {name: {"name": name, **entry} if isinstance(entry, dict) else entry
                       for name, entry in data["secrets"].items()}
            return {**data, "secrets": secrets}
        return data

    @model_validator(mode="after")
    def _names_and_references(self) -> AuthConfig:
        for key, spec in self.secrets.items():
            if spec.name != key:
                raise ValueError(f"secret {key!r}: its name is its key, so it needs no name:")
        for section in ("logins", "http_auth"):
            for key, entry in getattr(self, section).items():
                if unknown := sorted(secret_names(entry) - set(self.secrets)):
                    raise ValueError(f"{section}.{key}: unknown secret {unknown[0]!r} (defined: "
                                     f"{', '.join(sorted(self.secrets)) or 'none'})")
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
