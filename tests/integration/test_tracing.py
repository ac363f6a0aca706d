"""LangSmith tracing: named runs with useful metadata, and no secret in any payload."""

from __future__ import annotations

import re

from langchain_core.tracers.langchain import wait_for_all_tracers

from graph import Context, Decision, Plan, Step, build_graph
from graph.testing import ScriptedChatModel
from tests.fixtures.langsmith import SECRETS, forget_langsmith_settings
from tests.fixtures.loopback import AwsHandler, host_of, serve


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
    forget_langsmith_settings(monkeypatch)
    model = ScriptedChatModel(responses=[Plan(goal="g", steps=[]), "nothing to do"])
    await build_graph(model=model).ainvoke({"task": "t"}, context=Context())
    wait_for_all_tracers()
    server.shutdown()
    assert payloads == []
