"""The fault matrix: each external dependency x {killed mid-step, stalled, refusing, restarted
within the wait bound}. Each cell is one `duet run` in its own process, against real servers
in theirs (the demo CRM, the FastMCP fixture over stdio and streamable HTTP, Debian's
Chromium, `langgraph dev`, PostgreSQL, the loopback Converse server); the fault is a signal to
the dependency's processes while a slow step is in flight:

- killed: SIGKILL, and it stays down until the run ends;
- stalled: SIGSTOP (the kernel still accepts connections; nothing answers);
- refusing: down (or failing to start) from the run's start;
- restarted: SIGKILL, then started again `RESTART_AFTER` seconds later (the product restarts
  what it spawns itself: MCP stdio servers, Chromium).

Measured per cell, from what the code does (nothing here expects an outcome): seconds from
the fault to the run's typed ending, its status and error type, its stderr lines; after the
dependency is restored, whether `duet retry THREAD` completes it; the writes counted at the
target (landed / expected, and doubles); processes the run left behind (found by a marker in
their environment). `python -m reliability.matrix` prints the table.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from demo_site.server import free_port
from tests.fixtures.postgres import _as_postgres, postgres_bin
from tests.fixtures.processes import command_line, descendants, marked, still_running

ROOT = Path(__file__).resolve().parents[1]
FAULTS = ("killed", "stalled", "refusing", "restarted")
RESTART_AFTER = 3.0  # seconds down: well inside the default dependency_wait_seconds (30)
# A run still going this long after the fault (a retry: after its start) is stopped: "no
# ending". Past the longest default bound (`model_timeout_seconds`, 180 s) by a minute.
CELL_BOUND = 240.0
SLOW = 4  # seconds the in-flight step takes; the fault lands 1 s into it
MODEL = "us.amazon.nova-2-lite-v1:0"


@dataclass
class Cell:
    """One dependency x fault, and what was measured."""

    dependency: str
    fault: str
    status: str = "not run"
    seconds: float | None = None  # from the fault (or the start, when refusing) to the end
    error: str = ""  # the first failed step's error type, or the reason
    stderr_lines: int = 0
    retry: str = ""  # the status `duet retry` ended with, "-" when the run completed
    writes: str = ""  # landed / expected at the target
    doubles: int = 0
    left: int = 0  # processes of the run still alive after it (and its retry) ended
    note: str = ""

    def row(self) -> str:
        """The cell as a table row."""
        seconds = "-" if self.seconds is None else f"{self.seconds:.1f}"
        return (f"| {self.dependency} | {self.fault} | {self.status} | {seconds} | "
                f"{self.error[:60]} | {self.stderr_lines} | {self.retry} | {self.writes} | "
                f"{self.doubles} | {self.left} | {self.note} |")


HEADER = ("| dependency | fault | status | s to end | error | stderr lines | retry | "
          "writes | doubles | left | note |\n|---|---|---|---|---|---|---|---|---|---|---|")


class Server:
    """A dependency in a process of its own (its group), on a fixed loopback port, so it can
    be killed, stopped, and started again at the same address."""

    def __init__(self, name: str, command: Callable[[int], list[str]], ready: str,
                 log: Path, env: dict[str, str] | None = None, boot: float = 60.0):
        self.name, self.command, self.ready, self.log = name, command, ready, log
        self.env, self.boot, self.port = env or {}, boot, free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        """Start it (again) and wait until it answers."""
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                self.command(self.port), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                env={**_clean_env(), **self.env}, start_new_session=True)
        deadline = time.monotonic() + self.boot
        while True:
            try:
                httpx.get(self.url + self.ready, timeout=2)
                return
            except httpx.HTTPError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start: "
                                       f"{self.log.read_text()[-800:]}") from None
                time.sleep(0.1)

    def pids(self) -> list[int]:
        """Its processes (the one started and everything under it)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return [self.process.pid, *descendants(self.process.pid)]

    def down(self) -> None:
        """SIGKILL every process of it."""
        _signal(self.pids(), signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stall(self) -> None:
        """SIGSTOP every process of it."""
        _signal(self.pids(), signal.SIGSTOP)


class Dependency:
    """What a cell varies: the dependency's processes, the plan's in-flight step that
    uses it, the run's arguments, and the writes counted at the target."""

    name = ""
    why_not: str | None = None  # set when this machine cannot produce the cell

    def __init__(self, work: Path, site: Server, crm_db: Path):
        self.work, self.site, self.crm_db = work, site, crm_db

    def slow_step(self) -> dict[str, Any]:
        """The step in flight when the fault lands (it reads: it may be retried freely)."""
        return {"id": "slow", "tool": "http_request",
                "args": {"url": f"{self.site.url}/slow?seconds={SLOW}"}}

    def extra_writes(self, thread: str) -> list[dict[str, Any]]:
        """Writes of this dependency's own, after the slow step."""
        return []

    def warm_up(self) -> list[dict[str, Any]]:
        """Steps before the slow one that bring the dependency up, so that the fault lands
        on the step, not on the dependency's start."""
        return []

    def args(self, thread: str) -> list[str]:
        """`duet run` arguments this dependency needs."""
        return []

    def env(self) -> dict[str, str]:
        """Environment of the `duet` process."""
        return {}

    def begin(self) -> None:
        """At the cell's start: note what the target holds already."""

    def start(self) -> None:
        """Before the cell: make it healthy."""

    def refuse(self) -> None:
        """Before the run: make it refuse (down, or failing to start)."""
        self.kill()

    def kill(self) -> None:
        """SIGKILL it."""

    def stall(self) -> None:
        """SIGSTOP it."""

    def restore(self) -> None:
        """After the fault: make it healthy again (the same address)."""

    def target_writes(self, thread: str) -> tuple[dict[str, int], int]:
        """Writes counted at the target (identity -> count) and how many are expected."""
        return {}, 0

    def close(self) -> None:
        """After the cell: stop what it started."""


class _OwnServer:
    """A dependency that is one `Server` of its own (`self.server`): up before the cell,
    SIGKILLed, SIGSTOPped, and started again on the same port."""

    server: Server

    def start(self) -> None:
        if not self.server.pids():
            self.server.up()

    def kill(self) -> None:
        self.server.down()

    def stall(self) -> None:
        self.server.stall()

    def restore(self) -> None:
        self.server.down()
        self.server.up()

    def close(self) -> None:
        self.server.down()


class _TargetSite(Dependency):
    name = "target HTTP site"

    def kill(self) -> None:
        self.site.down()

    def stall(self) -> None:
        self.site.stall()

    def restore(self) -> None:
        self.site.down()  # a stalled one is killed first
        self.site.up()


class _MCP(Dependency):
    """The FastMCP fixture CRM; its writes are its `effects.jsonl`."""

    def __init__(self, work: Path, site: Server, crm_db: Path):
        super().__init__(work, site, crm_db)
        self.state = work / "mcp-state"
        self.config = work / "mcp.json"
        self.seen = 0  # effects recorded before this cell (one server serves every cell)

    def _effects(self) -> list[dict[str, Any]]:
        path = self.state / "effects.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if (
            path.exists()) else []

    def begin(self) -> None:
        self.seen = len(self._effects())

    def slow_step(self) -> dict[str, Any]:
        return {"id": "slow", "tool": "crm_wait_for_kill", "args": {"seconds": SLOW}}

    def extra_writes(self, thread: str) -> list[dict[str, Any]]:
        return [{"id": "remind", "tool": "crm_send_reminder", "depends_on": ["slow"],
                 "side_effects": True, "args": {"invoice": 7, "text": thread}}]

    def args(self, thread: str) -> list[str]:
        return ["--mcp", str(self.config)]

    def target_writes(self, thread: str) -> tuple[dict[str, int], int]:
        counts: dict[str, int] = {}
        for row in self._effects()[self.seen:]:
            key = f"{row['tool']} {row.get('invoice')}"
            counts[key] = counts.get(key, 0) + 1
        return counts, 1


class _MCPHttp(_OwnServer, _MCP):
    name = "MCP server (HTTP)"

    def __init__(self, work: Path, site: Server, crm_db: Path):
        super().__init__(work, site, crm_db)
        self.server = Server(self.name, lambda port: [
            sys.executable, "-m", "tests.fixtures.mcp_servers", "http", str(self.state),
            str(port)], "/mcp", work / "mcp-http.log")
        self.config.write_text(json.dumps(
            {"mcpServers": {"crm": {"url": f"{self.server.url}/mcp"}}}))

    def args(self, thread: str) -> list[str]:
        return [*super().args(thread), "--allow-host", f"127.0.0.1:{self.server.port}"]


class _MCPStdio(_MCP):
    name = "MCP server (stdio)"

    def start(self) -> None:
        self._configure([sys.executable, "-m", "tests.fixtures.mcp_servers", "stdio",
                         str(self.state)])

    def _configure(self, argv: list[str]) -> None:
        self.config.write_text(json.dumps({"mcpServers": {"crm": {
            "command": argv[0], "args": argv[1:], "cwd": str(ROOT), "env": {}}}}))

    def refuse(self) -> None:
        self._configure([sys.executable, "-c", "raise SystemExit(3)"])  # it cannot start

    def _pid(self) -> list[int]:
        pid = self.state / "pid"  # written by wait_for_kill, the in-flight step
        return [int(pid.read_text())] if pid.exists() else []

    def kill(self) -> None:
        _signal(self._pid(), signal.SIGKILL)

    def stall(self) -> None:
        _signal(self._pid(), signal.SIGSTOP)

    def restore(self) -> None:
        self.start()  # the product starts the server itself


class _BrowserSteps(Dependency):
    """A browser's cells: a page opened first (so the fault lands on the step, not on the
    browser's start), then the slow page."""

    def slow_step(self) -> dict[str, Any]:
        return {"id": "slow", "tool": "browser_goto",
                "args": {"url": f"{self.site.url}/slow?seconds={SLOW}"}}

    def warm_up(self) -> list[dict[str, Any]]:
        return [{"id": "warm", "tool": "browser_goto", "args": {"url": f"{self.site.url}/health"}}]


class _Chromium(_BrowserSteps):
    """The Chromium the product starts (the shared one of the pool)."""

    name = "Chromium"

    def __init__(self, work: Path, site: Server, crm_db: Path):
        super().__init__(work, site, crm_db)
        self.broken = False
        self.marker = ""

    def env(self) -> dict[str, str]:
        return {"DUET_CHROMIUM": "/bin/false"} if self.broken else {}

    def start(self) -> None:
        self.broken = False

    def refuse(self) -> None:
        self.broken = True  # a browser that exits at once: it cannot start

    def _chromium(self) -> list[int]:
        """The run's Chromium processes: by their executable, not their command line (the
        run's own wrappers name Chromium in theirs)."""
        found = []
        for pid in marked(self.marker):
            try:
                if os.path.basename(os.readlink(f"/proc/{pid}/exe")) == "chromium":
                    found.append(pid)
            except OSError:
                continue
        return found

    def kill(self) -> None:
        _signal([p for p in self._chromium() if "--type=" not in command_line(p)],
                signal.SIGKILL)

    def stall(self) -> None:
        _signal(self._chromium(), signal.SIGSTOP)

    def restore(self) -> None:
        self.broken = False


class _RemoteBrowser(_OwnServer, _BrowserSteps):
    """A browser the run reaches over CDP (`browser_cdp_url`): Debian's Chromium started
    here in a process of its own, as a remote one would run elsewhere."""

    name = "remote CDP browser"

    def __init__(self, work: Path, site: Server, crm_db: Path):
        super().__init__(work, site, crm_db)
        from tools.chromium import QUIET_FLAGS, chromium_path

        profile = work / "remote-profile"
        self.server = Server(self.name, lambda port: [
            chromium_path(), *QUIET_FLAGS, f"--user-data-dir={profile}",
            "--remote-debugging-address=127.0.0.1", f"--remote-debugging-port={port}",
            *(["--no-sandbox"] if os.geteuid() == 0 else []), "about:blank"],
            "/json/version", work / "remote-browser.log")

    def args(self, thread: str) -> list[str]:
        return ["--set", f"browser_cdp_url={self.server.url}"]


class _Executor(_OwnServer, Dependency):
    name = "executor deployment"

    def __init__(self, work: Path, site: Server, crm_db: Path):
        super().__init__(work, site, crm_db)
        langgraph = str(Path(sys.executable).parent / "langgraph")
        self.server = Server(self.name, lambda port: [
            langgraph, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
            "--no-reload"], "/ok", work / "langgraph.log", env={
                "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false",
                "DUET_EXECUTOR_ALLOWED_HOSTS": f"127.0.0.1:{site.port}",
                "DUET_HOME": str(work / "executor-home")}, boot=120)

    def args(self, thread: str) -> list[str]:
        return ["--executor-url", self.server.url]


class _Database(Dependency):
    """The checkpointer's database: PostgreSQL (a server that can be killed and stalled)."""

    name = "checkpointer database (Postgres)"

    def __init__(self, work: Path, site: Server, crm_db: Path):
        super().__init__(work, site, crm_db)
        self.bin = postgres_bin()
        if self.bin is None:
            self.why_not = "PostgreSQL is not installed (bash scripts/setup installs it)"
            return
        # Its own folder under /tmp: the server's user must reach it (the work folder is 0700).
        self.folder = Path(tempfile.mkdtemp(prefix="duet-matrix-pg-"))
        if os.geteuid() == 0:
            os.chown(self.folder, *_postgres_ids())
        self.data, self.port = str(self.folder / "data"), free_port()
        subprocess.run(_as_postgres(f"{self.bin}/initdb", "-D", self.data, "-U", "duet", "-A",
                                    "trust", "--no-sync"), check=True, capture_output=True)

    def env(self) -> dict[str, str]:
        return {"DUET_CHECKPOINTER": f"postgresql://duet@127.0.0.1:{self.port}/postgres"}

    def start(self) -> None:
        if not self._pids():
            subprocess.run(_as_postgres(
                f"{self.bin}/pg_ctl", "-D", self.data, "-w", "-l", str(self.folder / "log"),
                "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                      "-c fsync=off", "start"), check=True, capture_output=True)

    def _pids(self) -> list[int]:
        pidfile = Path(self.data) / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [pid, *descendants(pid)] if Path(f"/proc/{pid}").exists() else []

    def kill(self) -> None:
        pids = self._pids()
        _signal(pids, signal.SIGKILL)
        still_running(lambda: [p for p in pids if Path(f"/proc/{p}").exists()], within=10)

    def stall(self) -> None:
        _signal(self._pids(), signal.SIGSTOP)

    def restore(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class _Bedrock(_OwnServer, Dependency):
    """Bedrock: the loopback Converse server in a process of its own, planning the cell's
    plan for the run whose thread id the task names."""

    name = "Bedrock (Converse)"

    def __init__(self, work: Path, site: Server, crm_db: Path):
        super().__init__(work, site, crm_db)
        self.server = Server(self.name, lambda port: [
            sys.executable, "-m", "reliability.matrix", "converse", str(port)], "/",
            work / "converse.log")

    def args(self, thread: str) -> list[str]:
        return ["--model", MODEL, "--set", f"bedrock_endpoint_url={self.server.url}"]


DEPENDENCIES: tuple[type[Dependency], ...] = (
    _TargetSite, _MCPHttp, _MCPStdio, _Chromium, _RemoteBrowser, _Executor, _Database,
    _Bedrock)


def plan_for(dependency: Dependency, thread: str) -> dict[str, Any]:
    """A note written before the slow step, the slow step, a note (and the dependency's
    own write) after it, then a read."""
    site = dependency.site.url

    def note(n: int, after: list[str]) -> dict[str, Any]:
        return {"id": f"note{n}", "tool": "http_request", "side_effects": True,
                "depends_on": after, "args": {"url": f"{site}/api/notes", "method": "POST",
                                              "json_body": {"customer_id": 3,
                                                            "text": f"{thread} note {n}"}}}

    warm = dependency.warm_up()
    return {"goal": f"matrix cell {thread}", "steps": [
        note(1, []), *warm,
        {**dependency.slow_step(), "depends_on": ["note1", *(step["id"] for step in warm)]},
        note(2, ["slow"]),
        *dependency.extra_writes(thread),
        {"id": "read", "tool": "http_request", "depends_on": ["note2"],
         "args": {"url": f"{site}/api/notes?customer_id=3"}}]}


def run_cell(dependency: Dependency, fault: str, home: Path,
             settings: list[str] = ()) -> Cell:
    """Run one cell end to end; what it measured."""
    cell = Cell(dependency.name, fault)
    if dependency.why_not:
        cell.note = f"not run: {dependency.why_not}"
        return cell
    thread = f"m{uuid.uuid4().hex[:8]}"
    marker = f"DUET_MATRIX_CELL={thread}"
    if isinstance(dependency, _Chromium):
        dependency.marker = marker
    dependency.start()
    dependency.begin()
    if fault == "refusing":
        dependency.refuse()
    plan = home / f"{thread}.json"
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_text(json.dumps(plan_for(dependency, thread)))
    plan_args = [] if isinstance(dependency, _Bedrock) else ["--plan-file", str(plan)]
    env = {**_clean_env(), "DUET_HOME": str(home), marker.split("=")[0]: thread}
    command = [sys.executable, "-m", "graph.app.cli", "run",
               f"matrix run {thread} against {dependency.site.url}",
               *plan_args, "--thread", thread, "--approve", "auto", "--json",
               "--allow-host", f"127.0.0.1:{dependency.site.port}",
               *dependency.args(thread), *[a for s in settings for a in ("--set", s)]]
    started = time.monotonic()
    run = subprocess.Popen(command, cwd=ROOT, env={**env, **dependency.env()},
                           stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    fault_at = started
    try:
        if fault != "refusing":
            if not _wait_for_slow_step(home, thread, run):
                cell.note = "the slow step never started: fault not injected"
            else:
                time.sleep(1.0)
                fault_at = time.monotonic()
                if fault == "stalled":
                    dependency.stall()
                else:
                    dependency.kill()
                    if fault == "restarted":
                        time.sleep(RESTART_AFTER)
                        dependency.restore()
        final, stderr = _finish(run, fault_at + CELL_BOUND)
        cell.seconds = time.monotonic() - fault_at
        _read_final(cell, final, stderr)
        if fault == "restarted" and isinstance(dependency, _Chromium | _MCPStdio):
            cell.note = (cell.note + " product restarts it itself").strip()
        if fault != "restarted":
            dependency.restore()
        else:
            dependency.start()
        cell.retry = "-" if cell.status == "completed" else _retry(thread, env, dependency)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        left = still_running(lambda: marked(marker), within=5)
        cell.left = len(left)
        _signal(left, signal.SIGKILL)
    counts, extra = dependency.target_writes(thread)
    counts.update(notes_of(dependency.crm_db, thread))
    expected = 2 + extra
    cell.writes = f"{sum(1 for c in counts.values() if c)}/{expected}"
    cell.doubles = sum(count - 1 for count in counts.values() if count > 1)
    return cell


def _wait_for_slow_step(home: Path, thread: str, run: subprocess.Popen) -> bool:
    from graph.app.threads import read_trace

    deadline = time.monotonic() + CELL_BOUND
    while time.monotonic() < deadline and run.poll() is None:
        if any(e.event == "step_started" and getattr(e, "step_id", None) == "slow"
               for e in read_trace(home / "traces" / f"{thread}.jsonl")):
            return True
        time.sleep(0.05)
    return False


def _finish(run: subprocess.Popen, deadline: float) -> tuple[dict[str, Any], str]:
    try:
        out, err = run.communicate(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        run.kill()
        out, err = run.communicate()
        return {"status": f"no ending within {CELL_BOUND:.0f} s"}, err
    try:
        return json.loads(out[out.index("{"):]), err
    except ValueError:
        return {"status": f"no result (exit {run.returncode})"}, err


def _read_final(cell: Cell, final: dict[str, Any], stderr: str) -> None:
    cell.status = final.get("status", "?")
    cell.stderr_lines = sum(1 for line in stderr.splitlines() if line.strip())
    if final.get("status") is None and isinstance(final.get("error"), dict):
        # Stopped before any work (`duet run --json` says why, typed): no run state.
        cell.status, cell.error = "not started (exit 2)", final["error"]["type"]
        return
    failed = [r for r in final.get("results", []) if r.get("status") != "ok" and r.get("error")]
    if failed:
        cell.error = failed[0]["error"].get("type", "")
    elif cell.status != "completed":
        cell.error = final.get("reason") or (stderr.strip().splitlines() or [""])[-1]


def _retry(thread: str, env: dict[str, str], dependency: Dependency) -> str:
    """`duet retry THREAD` once the dependency is healthy again: the status it ends with."""
    retry_env = {**env, **dependency.env()}
    try:
        done = subprocess.run([sys.executable, "-m", "graph.app.cli", "retry", thread,
                               "--json"], cwd=ROOT, env=retry_env, capture_output=True,
                              text=True, timeout=CELL_BOUND)
    except subprocess.TimeoutExpired:
        return f"no ending within {CELL_BOUND:.0f} s"
    try:
        return json.loads(done.stdout[done.stdout.index("{"):]).get("status", "?")
    except ValueError:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return f"no result: {last[0][:80]}"


def notes_of(crm_db: Path, thread: str) -> dict[str, int]:
    """The cell's notes in the demo site's database, with how often each landed."""
    with sqlite3.connect(crm_db, timeout=30) as db:
        return dict(db.execute("SELECT text, COUNT(*) FROM notes WHERE text LIKE ? "
                               "GROUP BY text", (f"{thread} note %",)).fetchall())


def run_matrix(work: Path, cells: list[tuple[str, str]] | None = None,
               settings: list[str] = (), on_cell: Callable[[Cell], None] = lambda c: None
               ) -> list[Cell]:
    """Every cell (or those named, as (dependency name, fault)), one after another."""
    work.mkdir(parents=True, exist_ok=True)
    crm_db = work / "crm.sqlite"
    site = Server("target HTTP site", lambda port: [
        sys.executable, "-m", "demo_site.server", "--db", str(crm_db), "--port", str(port)],
        "/health", work / "site.log")
    site.up()
    found = []
    try:
        for kind in DEPENDENCIES:
            wanted = [f for f in FAULTS if cells is None or (kind.name, f) in cells]
            if not wanted:
                continue
            folder = work / _slug(kind.name)
            folder.mkdir(parents=True, exist_ok=True)
            dependency = kind(folder, site, crm_db)
            try:
                for fault in wanted:
                    try:
                        cell = run_cell(dependency, fault, work / "home", settings)
                    except Exception as exc:  # noqa: BLE001 - a harness failure is a row
                        cell = Cell(kind.name, fault, note=f"not run: harness error {exc!r}"[:200])
                    if not site.pids():
                        site.up()  # the target cells leave it as they found it
                    found.append(cell)
                    on_cell(cell)
            finally:
                dependency.close()
    finally:
        site.down()
    return found


def _slug(name: str) -> str:
    return re.sub(r"[^a-z]+", "-", name.lower()).strip("-")


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DUET_CHECKPOINTER", None)
    return env


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


def _serve_converse(port: int) -> None:
    """The Converse stub on `port`, planning each cell's plan (the site from the prompt)."""
    import threading
    from http.server import ThreadingHTTPServer

    from tests.fixtures import converse

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        prompt = json.dumps(body.get("messages", [])) + json.dumps(body.get("system", []))
        thread = re.search(r"matrix run (m[0-9a-f]{8})", prompt).group(1)
        if "You are the planner" in prompt:
            site = re.search(r"127\.0\.0\.1:(\d+)", prompt)
            plan = plan_for(_Planned(int(site.group(1)) if site else 0), thread)
            return converse.tool_input(plan)
        if "You supervise the execution" in prompt:
            return converse.tool_input({"action": "finish", "reason": "done"})
        return converse.text(f"{thread}: done")

    def bind(handler: type) -> tuple[ThreadingHTTPServer, str]:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{port}"

    converse.serve = bind  # the fixture binds a free port; a restart needs the same one
    converse.start(converse.ConverseStub(script=[respond] * 100_000))
    threading.Event().wait()


class _Planned(Dependency):
    """The Bedrock cell's plan, as the stub plans it (the site is the allowed host)."""

    def __init__(self, port: int):
        self.site = Server("site", lambda p: [], "/", Path(os.devnull))
        self.site.port = port


def main() -> None:
    """`python -m reliability.matrix [NAME...] [--set KEY=VALUE...]`: print the table (of
    the dependencies whose names start with a NAME, in that order; all by default), each
    run with the settings given (as `duet run --set`)."""
    if sys.argv[1:2] == ["converse"]:  # the Bedrock cells' server: `converse PORT`
        _serve_converse(int(sys.argv[2]))
        return
    words, settings, names = iter(sys.argv[1:]), [], []
    for word in words:
        if word == "--set":
            settings.append(next(words))
        else:
            names.append(word)
    names = names or [kind.name for kind in DEPENDENCIES]
    kinds = [kind for name in names for kind in DEPENDENCIES if kind.name.startswith(name)]
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing-secret",
                      AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    work = Path(tempfile.mkdtemp(prefix="duet-matrix-"))
    sys.stdout.write(HEADER + "\n")
    sys.stdout.flush()
    cells = []
    for kind in kinds:
        cells += run_matrix(work / _slug(kind.name), [(kind.name, f) for f in FAULTS],
                            settings, on_cell=lambda cell: sys.stdout.write(cell.row() + "\n"))
    sys.stdout.write(f"\n{sum(c.status != 'not run' for c in cells)}/{len(cells)} cells run "
                     f"(work folder {work})\n")


if __name__ == "__main__":
    main()
