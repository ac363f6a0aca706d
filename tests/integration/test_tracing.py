"""LangSmith tracing: named runs with useful metadata, and no secret in any payload."""

from __future__ import annotations

import re

import pytest
import zstandard
from langchain_core.tracers.langchain import wait_for_all_tracers

from graph import Context, Decision, Plan, Step, build_graph
from graph.testing import ScriptedChatModel
from tests.fixtures.loopback import AwsHandler, host_of, serve

SECRETS = {"AWS_SECRET_ACCESS_KEY": "aws-secret-do-not-leak-1234567890",
           "NOVA_ACT_API_KEY": "nova-act-key-do-not-leak-0987654321",
           "LANGSMITH_API_KEY": "lsv2-key-do-not-leak-5555555555"}


def _forget_langsmith_settings(monkeypatch) -> None:
    """LangSmith caches its environment and client per process; tests change both."""
    import langsmith.run_trees
    import langsmith.utils

    langsmith.utils.get_env_var.cache_clear()
    langsmith.utils.get_tracer_project.cache_clear()
    monkeypatch.setattr(langsmith.run_trees, "_CLIENT", None)


@pytest.fixture
def langsmith_capture(monkeypatch):
    """A loopback server standing in for the LangSmith API; collects every payload."""
    payloads: list[bytes] = []

    class Handler(AwsHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.reply(404, {"detail": "not here"})

        def do_POST(self) -> None:  # noqa: N802
            body = self.body()
            if self.headers.get("Content-Encoding") == "zstd":
                body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
            payloads.append(body)
            self.reply(202, {})

        do_PATCH = do_POST  # noqa: N815

    server, url = serve(Handler)
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", url)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTDONOTLEAK")
    _forget_langsmith_settings(monkeypatch)
    yield payloads
    server.shutdown()
    monkeypatch.undo()
    _forget_langsmith_settings(monkeypatch)


async def test_a_run_posts_a_tree_of_named_runs_without_secrets(langsmith_capture, site):
    # s1 runs in `plan` (steps start as the plan arrives); after the judgment, s2 in `act`.
    plan = Plan(goal="g", steps=[
        Step(id="s1", tool="http_request", args={"url": f"{site}/api/customers/1"},
             needs_judgment=True),
        Step(id="s2", tool="http_request", args={"url": f"{site}/api/customers/2"},
             depends_on=["s1"])])
    model = ScriptedChatModel(responses=[plan, Decision(action="continue", reason="go on"),
                                         Decision(action="finish", reason="ok"), "Acme [s1]"])
    out = await build_graph(model=model).ainvoke(
        {"task": "who is customer 1?"}, {"configurable": {"thread_id": "traced-1"}},
        context=Context(allowed_hosts=[host_of(site)]))
    assert out["final_answer"] == "Acme [s1]"
    wait_for_all_tracers()
    text = b"\n".join(langsmith_capture).decode("utf-8", errors="replace")
    names = set(re.findall(r'"name":\s*"([^"]+)"', text))
    assert {"nova-duet", "plan", "act", "observe", "finalize", "step s1", "step s2",
            "http_request", "ScriptedChatModel"} <= names, names
    assert '"step_id":"s1"' in text.replace(" ", "") and '"tool":"http_request"' in text.replace(
        " ", "")
    assert "traced-1" in text  # the thread id travels with the runs
    assert '"status":"ok"' in text.replace(" ", "")  # the step's typed result is its output
    assert "estimated_cost_usd" in text and "input_tokens" in text
    for secret in [*SECRETS.values(), "AKIATESTDONOTLEAK"]:
        assert secret not in text, "a credential reached a trace payload"


async def test_tracing_is_off_unless_turned_on(monkeypatch, site):
    payloads: list[bytes] = []

    class Handler(AwsHandler):
        def do_POST(self) -> None:  # noqa: N802
            payloads.append(self.body())
            self.reply(202, {})

    server, url = serve(Handler)
    monkeypatch.setenv("LANGSMITH_ENDPOINT", url)
    _forget_langsmith_settings(monkeypatch)
    model = ScriptedChatModel(responses=[Plan(goal="g", steps=[]), "nothing to do"])
    await build_graph(model=model).ainvoke({"task": "t"}, context=Context())
    wait_for_all_tracers()
    server.shutdown()
    assert payloads == []
