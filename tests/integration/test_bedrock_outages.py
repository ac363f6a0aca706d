"""Bedrock down or stalled: the real ChatBedrockConverse (botocore) against a loopback
Converse server that is not there yet, never comes, or accepts and never answers."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from demo_site.server import free_port
from graph import Context, Decision, Plan, RunStatus, Step, build_graph
from tests.fixtures import converse as fixture
from tests.fixtures.converse import ConverseStub, text, tool_input
from tests.fixtures.loopback import host_of

MODEL = "us.amazon.nova-2-lite-v1:0"
ROOT = Path(__file__).resolve().parents[2]


def _plan(site: str) -> Plan:
    return Plan(goal="read", steps=[
        Step(id="s1", tool="http_request", args={"url": f"{site}/api/invoices"})])


def _serve_on(port: int, stub: ConverseStub, monkeypatch) -> ThreadingHTTPServer:
    """The Converse stub on a given port (a server coming back at its address)."""
    def bind(handler: type) -> tuple[ThreadingHTTPServer, str]:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server, f"http://127.0.0.1:{port}"

    monkeypatch.setattr(fixture, "serve", bind)
    return fixture.start(stub)


async def test_a_bedrock_that_comes_back_within_the_wait_is_waited_for(
        aws_test_credentials, site, monkeypatch):
    port = free_port()
    stub = ConverseStub(script=[tool_input(_plan(site)),
                                tool_input(Decision(action="finish", reason="done")),
                                text("done [s1]")])
    started = time.monotonic()
    run = asyncio.ensure_future(build_graph().ainvoke({"task": "read"}, context=Context(
        model=MODEL, bedrock_endpoint_url=f"http://127.0.0.1:{port}",
        allowed_hosts=[host_of(site)], dependency_wait_seconds=30)))
    await asyncio.sleep(2.0)  # refused until now (botocore's own retries gave up by then)
    assert not run.done()
    server = _serve_on(port, stub, monkeypatch)
    try:
        out = await asyncio.wait_for(run, 60)
    finally:
        server.shutdown()
    assert out["status"] == RunStatus.COMPLETED, out["reason"]
    assert time.monotonic() - started >= 2.0
    assert len(stub.requests) == 3  # the plan asked once it answered, not before


async def test_a_bedrock_that_stays_down_ends_the_run_typed_after_the_wait(
        aws_test_credentials):
    port = free_port()
    started = time.monotonic()
    out = await build_graph().ainvoke({"task": "read"}, context=Context(
        model=MODEL, bedrock_endpoint_url=f"http://127.0.0.1:{port}",
        dependency_wait_seconds=2))
    took = time.monotonic() - started
    assert out["status"] == RunStatus.FAILED
    assert "could not be reached" in out["reason"], out["reason"]
    assert "dependency_wait_seconds=2" in out["reason"]
    # One wait: the final answer is written without asking the model again.
    assert "written without the model: the reasoning model could not be reached" in (
        out["final_answer"])
    assert 2 <= took < 2 * 2, took


def test_a_stalled_bedrock_ends_the_run_within_the_model_timeout_one_stderr_line(tmp_path):
    """A server that accepts and never answers: `duet run` exits typed within one
    model_timeout_seconds plus a margin, counted from the first connection
    (the process waits for botocore's thread, so its reads must end within that bound
    too), with at most one stderr line."""
    accepted: list[float] = []
    held: list[socket.socket] = []

    def accept(server: socket.socket) -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            held.append(connection)  # open, never answered

    with socket.socket() as stalled:
        stalled.bind(("127.0.0.1", 0))
        stalled.listen(64)
        threading.Thread(target=accept, args=(stalled,), daemon=True).start()
        url = f"http://127.0.0.1:{stalled.getsockname()[1]}"
        env = {**os.environ, "DUET_HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}
        env.pop("AWS_PROFILE", None)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "graph.app.cli", "run", "read", "--model", MODEL,
             "--set", f"bedrock_endpoint_url={url}", "--set", "model_timeout_seconds=6",
             "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - accepted[0]
        for connection in held:
            connection.close()
    assert '"status": "failed"' in done.stdout, done.stdout + done.stderr
    assert "did not answer within 6s" in done.stdout
    # The plan call only: the final answer is not asked of a model that did not answer
    # (before: a second call of 6 s; before that, botocore's reads of 120 s each held it).
    assert took < 6 + 5, took
    assert "written without the model: the reasoning model did not answer" in done.stdout
    assert started < accepted[0]
    assert len([line for line in done.stderr.splitlines() if line.strip()]) <= 1, done.stderr
