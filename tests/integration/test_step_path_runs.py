"""The step path's behaviour as a user meets it: a deadline ends a run within its bound,
an invalid plan file is refused before anything is sent, and `duet retry` reads a fixed
plan file again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from graph.app.runner import retry_thread, run_thread
from graph.app.threads import read_trace
from graph.context import Context
from graph.contracts import RunStatus
from graph.events import StepStarted
from tests.fixtures.loopback import AwsHandler, host_of, serve

DUET = [sys.executable, "-m", "graph.app.cli"]
ROOT = Path(__file__).resolve().parents[2]


class _Counted(AwsHandler):
    """Answers every GET with 200 after `?seconds=`, counting requests by path."""

    seen: Counter[str] = Counter()

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        path, _, query = self.path.partition("?")
        type(self).seen[path] += 1
        if query.startswith("seconds="):
            time.sleep(float(query.removeprefix("seconds=")))
        self.reply(200, {"path": path})


@pytest.fixture
def counted():
    _Counted.seen = Counter()
    server, url = serve(_Counted)
    yield url, _Counted.seen
    server.shutdown()


def plan_file(tmp_path: Path, steps: list[dict], name: str = "plan.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"goal": "g", "steps": steps}))
    return path


async def test_a_deadline_ends_the_run_within_it_and_retry_finishes_without_the_done_step(
        tmp_path, counted, isolated_env):
    url, seen = counted
    plan = plan_file(tmp_path, [
        {"id": "fast", "tool": "http_request", "args": {"url": f"{url}/fast"}},
        {"id": "slow", "tool": "http_request", "args": {"url": f"{url}/slow?seconds=12"}}])
    context = Context(plan_file=str(plan), allowed_hosts=[host_of(url)], deadline_seconds=4)
    started = time.monotonic()
    thread, final = await run_thread("g", thread_id="deadline", context=context)
    elapsed = time.monotonic() - started
    assert final.status == RunStatus.BUDGET_EXHAUSTED and "deadline of 4s" in final.reason
    assert elapsed < 9, elapsed
    results = {r.step_id: r for r in final.results}
    assert results["fast"].status == "ok" and results["slow"].status == "cancelled"

    _, again = await retry_thread(thread, settings={"deadline_seconds": 60})
    assert again.status == RunStatus.COMPLETED, again.reason
    started_steps = [e.step_id for e in read_trace(isolated_env / "traces" / "deadline.jsonl")
                     if isinstance(e, StepStarted)]
    assert started_steps.count("fast") == 1 and seen["/fast"] == 1


INVALID = {
    "not-yaml.yaml": ("goal: g\nsteps: [\n- x: : y\n", "not YAML"),
    "not-json.json": ('{"goal": "g", "steps": [}', "not JSON"),
    "bad-field.json": (None, "step 'a': bogus: Extra inputs are not permitted"),
    "cycle.json": (None, "dependency cycle: a -> b -> a"),
    "unknown-dep.json": (None, "step 'a' depends on unknown step ids ['zz']"),
    "unknown-tool.json": (None, "step 'b': no tool named 'send_fax'"),
    "bad-args.json": (None, "step 'b': bad arguments for 'http_request'"),
}


def _steps(name: str, url: str) -> list[dict]:
    read = {"id": "a", "tool": "http_request", "args": {"url": f"{url}/read"}}
    return {
        "bad-field.json": [{**read, "bogus": 1}],
        "cycle.json": [{**read, "depends_on": ["b"]},
                       {"id": "b", "tool": "http_request", "args": {"url": f"{url}/x"},
                        "depends_on": ["a"]}],
        "unknown-dep.json": [{**read, "depends_on": ["zz"]}],
        "unknown-tool.json": [read, {"id": "b", "tool": "send_fax", "args": {"to": "x"}}],
        "bad-args.json": [read, {"id": "b", "tool": "http_request", "args": {"link": url}}],
    }[name]


def duet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DUET, *args], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy(), cwd=ROOT)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_an_invalid_plan_file_exits_2_with_one_line_and_sends_nothing(name, tmp_path, counted,
                                                                      isolated_env):
    url, seen = counted
    text, said = INVALID[name]
    path = tmp_path / name
    path.write_text(text if text is not None else json.dumps(
        {"goal": "g", "steps": _steps(name, url)}))
    command = ["run", "g", "--plan-file", str(path), "--allow-host", host_of(url),
               "--approve", "auto"]
    out = duet(*command)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: plan file {str(path)!r}: "), lines
    assert said in lines[0]
    as_json = duet(*command, "--json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["type"] == "PlanFileError"
    assert not seen and not list((isolated_env / "traces").glob("*"))

    # Fixed, the same command completes.
    path.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "a", "tool": "http_request", "args": {"url": f"{url}/read"}}]}))
    fixed = duet(*command)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert seen["/read"] == 1


async def test_retry_of_a_plan_file_run_reads_the_fixed_file_and_keeps_what_succeeded(
        tmp_path, counted, isolated_env):
    url, seen = counted
    first = {"id": "first", "tool": "http_request", "args": {"url": f"{url}/first"}}
    broken = {"id": "second", "tool": "http_request", "depends_on": ["first"],
              "args": {"url": "http://127.0.0.1:9/wrong"}}
    plan = plan_file(tmp_path, [first, broken])
    context = Context(plan_file=str(plan), allowed_hosts=[host_of(url), "127.0.0.1:9"],
                      dependency_wait_seconds=0)
    thread, final = await run_thread("g", thread_id="fix-me", context=context)
    assert final.status == RunStatus.FAILED

    plan_file(tmp_path, [first, {**broken, "args": {"url": f"{url}/second"}}])
    _, again = await retry_thread(thread)
    assert again.status == RunStatus.COMPLETED, again.reason
    assert "storage" not in again.reason
    assert seen["/first"] == 1 and seen["/second"] == 1
