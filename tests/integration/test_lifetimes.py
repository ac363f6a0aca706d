"""Nothing left behind: the processes a run starts (Chromium with its zygotes and renderers,
Playwright's driver, MCP stdio servers) end with the program that started them, whether it
returns without closing anything, exits without running a finalizer, or is SIGKILLed in the
middle of a browser step. Each test marks its program's environment with a value of its own
and looks processes up by it, so other programs' browsers on this machine do not count."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from graph.app.threads import read_trace
from graph.events import StepStarted
from tests.fixtures.loopback import host_of
from tests.fixtures.mcp_servers import stdio_config
from tests.fixtures.processes import ROOT, command_line, descendants, marked, still_running
from tools import lifetime
from tools.chromium import Chromium

pytestmark = pytest.mark.browser

# Browser steps through `build_graph().ainvoke`, no registry closed; then the program ends
# the way argv[2] says: `return` (the interpreter's exit runs finalizers) or `os._exit`
# (none run: only the kernel's PR_SET_PDEATHSIG is left). Before it ends it prints how many
# Chromium processes it has, so the test knows there was something to leave behind.
PROGRAM = """
import asyncio, os, sys
from graph import Context, Decision, Plan, Step, build_graph
from graph.testing import ScriptedChatModel
from tests.fixtures.processes import command_line, descendants

site, ending = sys.argv[1], sys.argv[2]
plan = Plan(goal="g", steps=[
    Step(id="open", tool="browser_goto", args={"url": site + "/customers/1", "session": "s"}),
    Step(id="read", tool="browser_read", depends_on=["open"],
         args={"selector": "h1", "session": "s"})])
model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok"), "ok"])
out = asyncio.run(build_graph(model=model).ainvoke(
    {"task": "read customer 1"},
    context=Context(allowed_hosts=[site.split("//")[1]], step_screenshots=False),
    config={"configurable": {"thread_id": "lifetime"}}))
chromium = [p for p in descendants(os.getpid()) if "chromium" in command_line(p)]
print(out["status"], len(chromium), flush=True)
if ending == "os._exit":
    os._exit(0)
"""


def _marker() -> tuple[str, str]:
    value = uuid.uuid4().hex
    return "DUET_TEST_MARK", value


def _left(marker: str) -> list[str]:
    """What still runs with `marker`, after a few seconds' grace for the kernel and for
    Chromium's children to notice."""
    return [command_line(pid)[:160] for pid in still_running(lambda: marked(marker), 10)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ending", ["return", "os._exit"])
def test_a_program_that_closes_nothing_leaves_no_browser(site, ending):
    name, value = _marker()
    out = subprocess.run([sys.executable, "-c", PROGRAM, site, ending], cwd=ROOT,
                         env={**os.environ, name: value}, capture_output=True, text=True,
                         timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    status, chromium = out.stdout.split()
    assert status == "completed"
    assert int(chromium) >= 3, "the browser steps ran in a Chromium of several processes"
    assert _left(f"{name}={value}") == []


MCP_THEN_SLOW_PAGE = {"goal": "g", "steps": [
    {"id": "who", "tool": "crm_whoami", "args": {}},
    {"id": "slow", "tool": "browser_goto", "depends_on": ["who"],
     "args": {"url": "{{ site }}/slow?seconds=60"}}]}


@pytest.mark.timeout(120)
def test_duet_run_sigkilled_mid_browser_step_leaves_nothing(tmp_path, site):
    """The run's Chromium (every process of it), Playwright's driver and its MCP stdio
    server all end when `duet run` is SIGKILLed while a browser step waits on a page; the
    next Chromium started deletes the killed one's profile."""
    name, value = _marker()
    marker = f"{name}={value}"
    config = tmp_path / "mcp.json"
    state = tmp_path / "crm-state"
    state.mkdir()
    # The MCP SDK gives a stdio server only the environment its config names.
    config.write_text(json.dumps({"mcpServers": {"crm": stdio_config(state, **{name: value})}}))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(MCP_THEN_SLOW_PAGE))
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "graph.app.cli", "run", "slow page", "--plan-file", str(plan),
         "--var", f"site={site}", "--mcp", str(config), "--allow-host", host_of(site),
         "--approve", "auto", "--thread", "killed", "--json"],
        cwd=ROOT, env={**os.environ, "DUET_HOME": str(home), name: value},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        everything = {"chromium", "playwright/driver/node", "tests.fixtures.mcp_servers"}
        while True:
            started = [e.step_id for e in read_trace(home / "traces" / "killed.jsonl")
                       if isinstance(e, StepStarted)]
            running = {command_line(pid) for pid in descendants(proc.pid)}
            kinds = {kind for c in running for kind in everything if kind in c}
            if "slow" in started and kinds == everything:
                break
            assert time.monotonic() < deadline and proc.poll() is None, (started, kinds)
            time.sleep(0.1)
        time.sleep(1)  # the page load is under way
        assert len(marked(marker)) >= 5, "Chromium's processes, the driver and the server"
        [profile] = {arg.split("=", 1)[1] for c in running for arg in c.split()
                     if arg.startswith("--user-data-dir=")}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert _left(marker) == []
    # The profile outlived its Chromium (no finalizer ran); the next Chromium deletes it.
    assert Path(profile).is_dir()
    Chromium("http://127.0.0.1:9").close()  # its profile is made, never used, and deleted
    assert not Path(profile).exists()


@pytest.mark.timeout(30)
def test_a_child_dies_with_the_thread_that_spawned_it_so_spawn_uses_one_that_stays():
    """Why `lifetime.spawn` forks from a thread of its own: PR_SET_PDEATHSIG follows the
    spawning thread, so a child tethered from a short-lived thread dies with that thread."""
    import threading

    children: list[subprocess.Popen] = []

    def spawn_and_end() -> None:
        children.append(child := subprocess.Popen(lifetime.tethered(["sleep", "30"])))
        while not command_line(child.pid).startswith("sleep"):
            time.sleep(0.01)  # the wrapper has set the signal and exec'd: now end the thread

    thread = threading.Thread(target=spawn_and_end)
    thread.start()
    thread.join()
    assert children[0].wait(timeout=10) == -signal.SIGKILL
    kept = lifetime.spawn(["sleep", "30"])
    try:
        time.sleep(0.5)
        assert kept.poll() is None and os.getpgid(kept.pid) == kept.pid
    finally:
        lifetime.stop(kept)
    assert kept.returncode == -signal.SIGTERM


@pytest.mark.timeout(30)
def test_the_wrapper_runs_nothing_for_a_parent_that_is_already_gone(tmp_path):
    """The window between fork and prctl: a wrapper whose parent is not the one named
    exits without running the command."""
    touched = tmp_path / "ran"
    out = subprocess.run([sys.executable, "-I", "-S", lifetime.WRAPPER, "1",
                          "touch", str(touched)], timeout=20)
    assert out.returncode == 1 and not touched.exists()


LEAKY_TEST = """
import subprocess

def test_forgets_its_processes():
    subprocess.Popen(["sleep", "117"])                             # a child, left running
    subprocess.run(["sh", "-c", "sleep 118 &"], check=True)         # an orphan, parented to init
"""


@pytest.mark.timeout(60)
def test_the_session_end_check_fails_a_suite_that_leaves_processes(tmp_path):
    """The check of tests/conftest.py, on a suite of one test that leaves a child and an
    orphan: the run fails naming both (found by descent and by the session's marker), and
    neither is left running."""
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST)
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q",
                          "-p", "no:cacheprovider", "-o", "addopts=", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=50)
    assert out.returncode == pytest.ExitCode.TESTS_FAILED, out.stdout[-2000:]
    assert "1 passed" in out.stdout
    assert "the test suite left 2 process(es) running (now killed)" in out.stdout
    named = re.findall(r"^  (\d+): (sleep 11[78])$", out.stdout, re.MULTILINE)
    assert sorted(command for _, command in named) == ["sleep 117", "sleep 118"]
    assert still_running(lambda: [int(pid) for pid, command in named
                                  if command_line(int(pid)) == command], 5) == []
