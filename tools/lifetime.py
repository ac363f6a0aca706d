"""Process lifetimes: every process we start ends with the process that started it.

Three means, each covering a way out the others miss (docs/reliability.md, "Nothing left
behind"):

- `tethered(argv)` prefixes a command with a tiny wrapper (`tools/pdeathsig.py`, run by
  the same Python with `-I -S`) that sets PR_SET_PDEATHSIG(SIGKILL) and then execs the
  command. The kernel keeps the setting across exec and sends the signal when the parent
  *thread* ends, however it ends (SIGKILL and a crash included). The wrapper exits at once
  when its parent already died between fork and prctl.
- Because the signal follows the spawning thread, `spawn` forks from one daemon thread that
  lives as long as this process (a worker thread of a pool would take the child with it).
- `spawn` puts the child in a process group of its own, so `stop` ends its whole tree with
  one signal; a clean exit (or a forgotten owner) stops it through the owner's finalizer
  (`weakref.finalize`, which also runs at interpreter exit).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any

WRAPPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pdeathsig.py")


def tethered(argv: list[str]) -> list[str]:
    """`argv` run through the wrapper: killed (SIGKILL) when the calling thread ends. On a
    system without prctl (not Linux), `argv` unchanged."""
    if not sys.platform.startswith("linux"):
        return list(argv)
    return [sys.executable, "-I", "-S", WRAPPER, str(os.getpid()), *argv]


_requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future[subprocess.Popen]]] = (
    queue.SimpleQueue())
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _serve_spawns() -> None:
    while True:
        argv, options, done = _requests.get()
        try:
            done.set_result(subprocess.Popen(argv, **options))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
            done.set_exception(exc)


def spawn(argv: list[str], **popen: Any) -> subprocess.Popen:
    """`subprocess.Popen(tethered(argv), process_group=0, **popen)`, forked by this
    process's spawner thread (blocking: call it off the event loop). The child's pid is its
    process group's id."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(target=_serve_spawns, name="duet-spawner", daemon=True)
            _spawner.start()
    done: Future[subprocess.Popen] = Future()
    _requests.put((tethered(argv), {"process_group": 0, **popen}, done))
    return done.result()


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """End `process` and every process of its group: SIGTERM, then SIGKILL after `grace`
    seconds (at once with 0); the group is killed even when its leader has already gone."""
    if process.poll() is None and grace > 0:
        _signal_group(process.pid, signal.SIGTERM)
        _signal_group(process.pid, signal.SIGCONT)  # a stopped process acts on it only so
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(process.pid, signal.SIGKILL)  # stragglers of the tree, if any
    process.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone (its id may be reused only once every member has ended)
