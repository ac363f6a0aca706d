"""Debian's Chromium, headless on loopback with a CDP port, behind the allowlist proxy."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

from tools import lifetime
from tools.errors import ToolUnavailableError

# Background services would try to reach Google and hang or spam a closed network.
QUIET_FLAGS = [
    "--headless=new", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--window-size=1280,900",
]


PROFILE_PREFIX = "duet-chromium-"


def chromium_path() -> str:
    """The Chromium binary: `$DUET_CHROMIUM`, else `chromium` on PATH."""
    path = os.environ.get("DUET_CHROMIUM") or shutil.which("chromium")
    if not path or not os.access(path, os.X_OK):
        raise ToolUnavailableError(
            "Chromium is not installed: run `bash scripts/setup` (it installs Debian's "
            "`chromium` package) or set DUET_CHROMIUM to a Chromium binary")
    return path


class Chromium:
    """One headless Chromium process with its own profile; every request goes via `proxy_url`.

    The process (with its zygotes and renderers, one process group) ends with the process
    that started it: on `close`, when this object is collected or the interpreter exits
    without `close`, and by the kernel (PR_SET_PDEATHSIG) when that process is killed; see
    `tools.lifetime`.
    """

    def __init__(self, proxy_url: str, downloads_dir: Path | None = None):
        self.proxy_url = proxy_url
        _remove_orphaned_profiles()
        self.profile = Path(tempfile.mkdtemp(prefix=PROFILE_PREFIX))
        self.downloads_dir = downloads_dir or self.profile / "downloads"
        self.process: subprocess.Popen[bytes] | None = None
        self.cdp_url = ""

    def start(self, timeout: float = 30.0) -> Chromium:
        """Launch and wait for the DevTools port; raises `ToolUnavailableError` if it fails."""
        # Downloads land in this session's own folder, never in the user's home.
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        preferences = self.profile / "Default" / "Preferences"
        preferences.parent.mkdir(parents=True, exist_ok=True)
        preferences.write_text(json.dumps({"download": {
            "default_directory": str(self.downloads_dir), "prompt_for_download": False}}))
        flags = [*QUIET_FLAGS, f"--user-data-dir={self.profile}",
                 "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                 f"--proxy-server={self.proxy_url}",
                 # Chromium skips proxies for loopback unless told not to: the allowlist
                 # must see loopback requests too.
                 "--proxy-bypass-list=<-loopback>"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium's own sandbox refuses to run as root
        self.process = lifetime.spawn([chromium_path(), *flags, "about:blank"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._finalizer = weakref.finalize(self, _stop, self.process, self.profile)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                # Unreachable: a browser that exits as it starts (killed, out of memory)
                # is waited for (dependency_wait_seconds) like one that dies later.
                raise ToolUnavailableError("Chromium did not start (no DevTools port)",
                                           retryable=True, unreachable=True)
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        self.cdp_url = f"http://127.0.0.1:{port}"
        return self

    def close(self) -> None:
        """Stop the process (its whole group) and delete the profile."""
        if self.process is None:
            shutil.rmtree(self.profile, ignore_errors=True)
        else:
            self._finalizer()  # runs `_stop` once, whoever comes first


def _stop(process: subprocess.Popen[bytes], profile: Path) -> None:
    """Chromium's ending, shared by `close` and the finalizer (which must not hold the
    `Chromium` it finalizes)."""
    lifetime.stop(process)
    shutil.rmtree(profile, ignore_errors=True)


def _remove_orphaned_profiles() -> None:
    """Delete the profiles of Chromiums that died with a killed program (whose finalizer
    never ran): those whose `SingletonLock` (Chromium's `host-pid` link, made as it starts)
    names a process of this host that no longer runs. A profile without the link yet, or of
    a live or foreign process, is left alone."""
    host = socket.gethostname()
    for profile in Path(tempfile.gettempdir()).glob(f"{PROFILE_PREFIX}*"):
        try:
            owner = os.readlink(profile / "SingletonLock")
        except OSError:
            continue
        owner_host, _, pid = owner.rpartition("-")
        if owner_host == host and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(profile, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: running
    # A zombie answers the signal too: dead, and not yet reaped (an init that reaps late).
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")