"""The sandbox every executor runs under: which hosts it may reach and how much it may read.

Each step's `StepContext` (`tools.step`) carries its run's policy; without one a tool gets
`DENY_ALL`, which allows no host at all, so a tool called by hand cannot reach the network
by accident.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from tools.errors import BlockedError


@dataclass(frozen=True)
class SandboxPolicy:
    """Limits for one run: where executors may go, how much they may read, how long a
    browser agent may work.

    `allowed_hosts` entries are `host` (any port) or `host:port`; a loopback host (this
    machine: `localhost`, 127.0.0.0/8, ::1) only as `host:port`, since every local service
    (a database's admin port, a LangGraph server's own API) listens there. Empty: nothing.
    `max_browser_sessions` is how many browser steps of the run may run at once (the others
    wait for a slot, and say so). These defaults are the run settings' (`graph.context`).
    """

    allowed_hosts: tuple[str, ...] = ()
    max_response_bytes: int = 256_000
    browser_max_steps: int = 30
    browser_timeout_seconds: int = 240
    max_browser_sessions: int = 4
    denied_hint: str = ""  # said when a URL is refused: what else limits the allowlist

    def allows(self, url: str) -> bool:
        """True when `url` is http(s) and its host (and port, if the entry names one) is allowed."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # not a URL at all (a port out of range, a broken IPv6 host)
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        host = parts.hostname.lower()
        for entry in self.allowed_hosts:
            entry_host, _, entry_port = entry.lower().rpartition(":")
            if not entry_host or not entry_port.isdigit():
                entry_host, entry_port = entry.lower(), ""
            if entry_host.strip("[]") != host or (not entry_port and is_loopback(host)):
                continue
            if not entry_port or int(entry_port) == port:
                return True
        return False

    def check(self, url: str) -> None:
        """Raise `BlockedError`, saying what to set, unless `url` is allowed."""
        if self.allows(url):
            return
        try:
            parts = urlsplit(url)
            host, port = parts.hostname or url, parts.port
        except ValueError:
            raise BlockedError(f"{url!r} is not a URL the sandbox can allow") from None
        wanted = f"{host}:{port}" if port else host
        hint = (" (this machine's hosts need their port)" if parts.hostname
                and is_loopback(parts.hostname) else "")
        if self.denied_hint:
            raise BlockedError(f"{url!r} is outside the allowlist {list(self.allowed_hosts)}: "
                               f"{self.denied_hint}")
        raise BlockedError(
            f"{url!r} is outside the allowlist {list(self.allowed_hosts)}; to allow it, add "
            f"{wanted!r} with `duet run --allow-host {wanted}` or to `allowed_hosts` in the "
            f"run context{hint}")


def is_loopback(host: str) -> bool:
    """True for a name or address of this machine (`localhost`, 127.0.0.0/8, ::1, 0.0.0.0)."""
    host = host.lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


DENY_ALL = SandboxPolicy()
