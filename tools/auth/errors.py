"""Typed errors of secrets and logins; none of their messages ever holds a secret's value."""

from __future__ import annotations

from collections.abc import Iterable

from tools.errors import BlockedError, ConfigError, ErrorKind, ToolError, ToolUnavailableError


class AuthConfigError(ConfigError, ValueError):
    """The auth config cannot be read or is wrong: one line naming the file, the secret and
    the problem."""


class UnknownSecret(ToolError):
    """A plan names a secret the config does not define."""

    kind = ErrorKind.UNKNOWN_SECRET

    def __init__(self, name: str, known: Iterable[str]):
        names = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown secret {name!r} (known: {names})")
        self.name = name


class SecretUnavailable(ToolUnavailableError):
    """A defined secret cannot be read now; `reason` says what to set or fix."""

    kind = ErrorKind.SECRET_UNAVAILABLE

    def __init__(self, name: str, reason: str):
        super().__init__(f"secret {name!r} is unavailable: {reason}")
        self.name, self.reason = name, reason


class SecretNotAllowed(BlockedError):
    """A secret was to be sent to a host (or a tool) it does not allow."""

    kind = ErrorKind.SECRET_NOT_ALLOWED

    def __init__(self, name: str, host: str, hosts: tuple[str, ...]):
        super().__init__(f"secret {name!r} may not be sent to {host}: it allows only "
                         f"{list(hosts)}")
        self.name, self.host = name, host


class LoginFailed(ToolError):
    """The executor followed a site's login recipe and its check did not hold (or its form
    was not there). Never retried, in the step or later in the run: accounts lock."""

    kind = ErrorKind.LOGIN_FAILED

    def __init__(self, login: str, reason: str):
        super().__init__(f"login {login!r} failed: {reason}; not tried again in this run "
                         "(accounts lock): fix the login or its secrets, then `duet retry`")
        self.login, self.reason = login, reason
