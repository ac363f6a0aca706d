"""Secrets by name: their specs, the store that resolves them, and the values it hands out."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NoReturn
from urllib.parse import quote, quote_plus, urlsplit

import pyotp
from pydantic import BaseModel, ConfigDict, field_validator

from tools.auth.errors import SecretNotAllowed, SecretUnavailable, UnknownSecret
from tools.auth.references import NAME
from tools.auth.sources import Source, SourceProblem, parse_source
from tools.sandbox import SandboxPolicy, is_loopback

Kind = Literal["password", "token", "totp"]
OnReveal = Callable[[Iterable[str]], None]
# Where a secret may go without a network host: every tool of an MCP server (`mcp:<server>`)
# or one own tool (`tool:<name>`), named so in its hosts; the allowlist does not apply to them.
TOOL_TARGET = re.compile(r"(?:mcp|tool):[\w.-]+")


def ignore_forms(forms: Iterable[str]) -> None:
    """The default `on_reveal`: tell no one."""


class SecretSpec(BaseModel):
    """A secret by name: where its value is read, what it is, and the only hosts it may be
    sent to (`host` or `host:port`, matched as the sandbox's `allowed_hosts`, or a tool
    target: `mcp:<server>`, `tool:<name>`). Holds no value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    kind: Kind
    hosts: list[str]
    description: str | None = None

    @field_validator("name")
    @classmethod
    def _referable_name(cls, name: str) -> str:
        if not NAME.fullmatch(name):
            raise ValueError("a name is letters, digits, _ and -, not starting with a digit "
                             "or -, as `${secret.NAME}` reads it")
        return name

    @field_validator("source")
    @classmethod
    def _readable_source(cls, source: str) -> str:
        parse_source(source)
        return source

    @field_validator("hosts")
    @classmethod
    def _host_entries(cls, hosts: list[str]) -> list[str]:
        if not hosts:
            raise ValueError("name at least one host: a secret goes nowhere else")
        for entry in hosts:
            _check_host_entry(entry)
        return hosts


def _check_host_entry(entry: str) -> None:
    """`ValueError` for an entry the allowlist's rule would match no URL with: a typo, a URL,
    a wildcard, or a host of this machine without its port."""
    if TOOL_TARGET.fullmatch(entry):
        return
    if "*" in entry:
        raise ValueError(f"{entry!r}: wildcards are not supported, name each host")
    if hosts_allow((entry,), f"https://{entry}/"):
        return
    if is_loopback(entry):
        raise ValueError(f"{entry!r}: this machine's hosts need their port ({entry}:PORT)")
    raise ValueError(f"{entry!r} is not a host or host:port (an IPv6 address in brackets), "
                     "mcp:SERVER or tool:NAME")


def hosts_allow(hosts: tuple[str, ...], url: str) -> bool:
    """The sandbox's rule for `allowed_hosts`; a URL it cannot parse (a bad port) is refused."""
    try:
        return SandboxPolicy(allowed_hosts=hosts).allows(url)
    except ValueError:
        return False


def target_allowed(hosts: tuple[str, ...], target: str) -> bool:
    """Whether a secret of `hosts` may go to `target`: a URL on one of them (the sandbox's
    rule), or a tool target (`mcp:<server>`, `tool:<name>`) they name."""
    if TOOL_TARGET.fullmatch(target):
        return target in hosts
    return hosts_allow(hosts, target)


def check_target(name: str, hosts: tuple[str, ...], target: str) -> None:
    """`SecretNotAllowed`, naming the host only, unless secret `name` of `hosts` may go to
    `target` (a URL as planned, before its references are substituted, or a tool target)."""
    if not target_allowed(hosts, target):
        raise SecretNotAllowed(name, _host_of(target), hosts)


def encoded_forms(text: str) -> list[str]:
    """The forms `text` takes in a request or a record, longest first: plain, URL-encoded
    (`quote`, also of `/`, and `quote_plus`), JSON-escaped, base64 (standard and URL-safe,
    with and without padding). A redactor cuts them all."""
    forms = {text, quote(text), quote(text, safe=""), quote_plus(text),
             json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(text.encode()).decode()
        forms |= {encoded, encoded.rstrip("=")}
    return _longest_first(forms)


def _longest_first(forms: set[str]) -> list[str]:
    """Longest first, so a form inside a longer one cannot leave the rest of it behind."""
    return sorted(forms, key=lambda form: (-len(form), form))


def _totp_seed(stored: str) -> str:
    """The base32 seed of a stored TOTP value (authenticators show it in groups of four)."""
    return "".join(stored.split())


class SecretValue:
    """A resolved secret, for one call: `reveal()` gives the text to send (a TOTP's current
    code, never its seed). Its repr and str name it only; it cannot be pickled, so it cannot
    reach a checkpoint."""

    __slots__ = ("name", "kind", "hosts", "_stored", "_on_reveal")

    def __init__(self, name: str, kind: Kind, hosts: Iterable[str], stored: str,
                 on_reveal: OnReveal = ignore_forms):
        self.name, self.kind, self.hosts = name, kind, tuple(hosts)
        self._stored, self._on_reveal = stored, on_reveal

    def reveal(self) -> str:
        """The text to send; `on_reveal` is given its forms first."""
        shown = self._current()
        self._on_reveal(self._forms(shown))
        return shown

    def forms(self) -> list[str]:
        """Every string a redactor must cut: each encoded form of the value (of a TOTP: of
        its seed, as stored and as used, and of its current code)."""
        return self._forms(self._current())

    def leak_forms(self, since: float, until: float) -> list[str]:
        """Every string that shows this secret in a record made from `since` to `until`
        (epoch seconds): `forms()`, and for a TOTP every code it gave in that time (one step
        either side, as a site accepts them). What `tools.auth.leaks` searches for."""
        texts = {self._stored}
        if self.kind == "totp":
            totp = pyotp.TOTP(_totp_seed(self._stored))
            step = totp.interval
            texts |= {_totp_seed(self._stored),
                      *(totp.at(moment) for moment in range(int(since) - step,
                                                            int(until) + 2 * step, step))}
        return _longest_first({form for text in texts for form in encoded_forms(text)})

    def allows(self, url: str) -> bool:
        """True when `url` is http(s) to one of the secret's hosts, or a tool target
        (`mcp:<server>`, `tool:<name>`) they name."""
        return target_allowed(self.hosts, url)

    def check(self, url: str) -> None:
        """`SecretNotAllowed`, naming the host only, unless the secret may go to `url` (the
        URL as planned, before its references are substituted, or a tool target)."""
        check_target(self.name, self.hosts, url)

    def _current(self) -> str:
        if self.kind == "totp":
            return pyotp.TOTP(_totp_seed(self._stored)).now()
        return self._stored

    def _forms(self, shown: str) -> list[str]:
        texts = {self._stored, shown}
        if self.kind == "totp":
            texts.add(_totp_seed(self._stored))
        return _longest_first({form for text in texts for form in encoded_forms(text)})

    def __repr__(self) -> str:
        return f"SecretValue(name={self.name!r}, kind={self.kind!r}, hosts={list(self.hosts)})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{self!r} is not saved anywhere: resolve it again where it is used")

    def __copy__(self) -> SecretValue:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretValue:
        return self


def _host_of(url: str) -> str:
    """The host (and port) of `url`, or a tool target as it is; never a URL's user,
    password, path or query, where a value may already be."""
    if TOOL_TARGET.fullmatch(url):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "an invalid URL"
    host = parts.hostname or "a URL without a host"
    try:
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:  # no number where the port goes: the host is enough
        return host


@dataclass(frozen=True)
class SecretStatus:
    """Whether a secret resolves now and, when it does not, why (never its value)."""

    name: str
    kind: Kind
    source: str
    hosts: tuple[str, ...]
    problem: str | None = None

    @property
    def available(self) -> bool:
        """True when the secret resolves now."""
        return self.problem is None

    def describe(self) -> str:
        """One line: `crm (password from env:CRM_PASSWORD, for crm.example.com): ok`."""
        state = "ok" if self.problem is None else f"unavailable: {self.problem}"
        return (f"{self.name} ({self.kind} from {self.source}, for {', '.join(self.hosts)}): "
                f"{state}")


class SecretStore:
    """The secrets a run may use, by name. Values are read at `resolve`, each time (a
    rotated secret is seen at once), and kept nowhere; `on_reveal` (the redactor's
    `also_redact`) is given a value's forms before the value is first handed out."""

    def __init__(self, specs: Iterable[SecretSpec] = (), *, on_reveal: OnReveal = ignore_forms):
        self._specs: dict[str, SecretSpec] = {}
        self._sources: dict[str, Source] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"secret {spec.name!r} is defined twice")
            self._specs[spec.name] = spec
            self._sources[spec.name] = parse_source(spec.source)
        self._on_reveal = on_reveal
        self._announced: set[str] = set()

    def spec(self, name: str) -> SecretSpec:
        """The spec of secret `name`; `UnknownSecret` when there is none."""
        if name not in self._specs:
            raise UnknownSecret(name, self._specs)
        return self._specs[name]

    def catalog(self) -> list[dict[str, Any]]:
        """What the planner may know of each secret: name, kind, hosts, description."""
        return [{"name": spec.name, "kind": spec.kind, "hosts": list(spec.hosts),
                 **({"description": spec.description} if spec.description else {})}
                for spec in self._specs.values()]

    def status(self) -> list[SecretStatus]:
        """Each secret, read now, and why it is unavailable if it is (blocks: reads every
        source, AWS included)."""
        return [SecretStatus(spec.name, spec.kind, spec.source, tuple(spec.hosts),
                             self._problem(spec)) for spec in self._specs.values()]

    async def resolve(self, name: str) -> SecretValue:
        """The value of secret `name`, read off the event loop; `UnknownSecret`, or
        `SecretUnavailable` saying what to set."""
        spec = self.spec(name)
        stored = await asyncio.to_thread(self._read, spec)
        return SecretValue(spec.name, spec.kind, spec.hosts, stored, self._announce)

    def announce(self, text: str) -> None:
        """Give `on_reveal` every form of `text`, a value made of secrets (HTTP Basic's
        `user:password`), before it is sent."""
        self._announce(encoded_forms(text))

    def _problem(self, spec: SecretSpec) -> str | None:
        try:
            self._read(spec)
        except SecretUnavailable as exc:
            return exc.reason
        return None

    def _read(self, spec: SecretSpec) -> str:
        """The stored value (a TOTP's seed, checked); `SecretUnavailable` saying why not."""
        try:
            stored = self._sources[spec.name].read()
        except SourceProblem as exc:
            raise SecretUnavailable(spec.name, str(exc)) from None
        if spec.kind == "totp":
            try:
                pyotp.TOTP(_totp_seed(stored))  # checks the seed
            except binascii.Error:
                raise SecretUnavailable(spec.name, f"{spec.source} holds no base32 TOTP "
                                                   "seed") from None
            except ValueError:
                bits = pyotp.OTP.min_secret_length_bits
                raise SecretUnavailable(spec.name, f"{spec.source} holds a TOTP seed under "
                                                   f"{bits} bits, which pyotp refuses") from None
        return stored

    def _announce(self, forms: Iterable[str]) -> None:
        """Give `on_reveal` the forms it was not given yet (a TOTP's code is new each 30 s)."""
        new = [form for form in forms if form not in self._announced]
        if new:
            self._on_reveal(new)
            self._announced.update(new)
