"""What a step costs: no per-step HTTP client or SSL context, no per-call scan of the
environment. Counted, not timed (the benchmarks measure time)."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from graph import Context, Decision, Plan, Step, build_graph
from graph.redaction import also_redact, env_secrets, redact_text
from graph.testing import ScriptedChatModel
from tools import default_registry
from tools.http import clients

STEPS = 20


async def _run_http_plan(site: str) -> dict:
    plan = Plan(goal="read the customers", steps=[
        Step(id=f"s{i}", tool="http_request", args={"url": f"{site}/api/customers/{i % 6 + 1}"})
        for i in range(STEPS)])
    model = ScriptedChatModel(responses=[
        plan, Decision(action="finish", reason="done", answer="read them [s0]")])
    registry = default_registry()
    graph = build_graph(model=model, tools=registry)
    try:
        return await graph.ainvoke({"task": "read"}, context=Context(
            allowed_hosts=[urlsplit(site).netloc]))
    finally:
        await registry.aclose()


async def test_steps_share_one_client_and_one_ssl_context(site, monkeypatch):
    loaded: list[object] = []
    real_load = ssl.SSLContext.load_verify_locations

    def counting_load(self, *args, **kwargs):
        loaded.append(args)
        return real_load(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting_load)
    made = clients.created
    out = await _run_http_plan(site)
    assert out["status"] == "completed"
    assert [r.status for r in out["results"]] == ["ok"] * STEPS
    assert clients.created - made == 1  # one client for the run's event loop
    assert len(loaded) <= 1  # its SSL context's CA bundle, loaded once if at all
    # The registry closed it with itself; the next run makes one again.
    await _run_http_plan(site)
    assert clients.created - made == 2


async def test_the_environment_is_scanned_once_until_it_changes(site, monkeypatch):
    redact_text("warm up")
    scans = env_secrets.scans
    out = await _run_http_plan(site)
    assert out["status"] == "completed"
    for _ in range(100):
        redact_text("nothing secret here")
    assert env_secrets.scans == scans  # every step redacted its output without a scan
    # A secret set now is still cut: the change is seen and the environment scanned again.
    monkeypatch.setenv("SHIPPING_API_TOKEN", "tok-1234567890abcdef")
    assert redact_text("sent tok-1234567890abcdef") == "sent [REDACTED]"
    assert env_secrets.scans == scans + 1
    monkeypatch.delenv("SHIPPING_API_TOKEN")
    assert redact_text("sent tok-1234567890abcdef") == "sent tok-1234567890abcdef"


def test_a_secret_inside_a_longer_one_leaves_nothing_of_either(monkeypatch):
    # The environment's values and those of an MCP config are cut longest first, as one list.
    monkeypatch.setenv("SHIPPING_API_TOKEN", "qx7plantedkv-rest9876")
    also_redact(["qx7plantedkv"])
    assert redact_text("a qx7plantedkv-rest9876 b qx7plantedkv") == "a [REDACTED] b [REDACTED]"
