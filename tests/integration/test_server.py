"""The graph served by `langgraph dev` (what LangGraph Studio talks to), driven by real clients."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from langgraph.pregel.remote import RemoteGraph
from langgraph_sdk import get_client

from tests.fixtures.langgraph_server import langgraph_server
from tests.fixtures.loopback import host_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`langgraph dev` on a free loopback port, serving langgraph.json's graphs."""
    with langgraph_server(tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


def _script(tmp_path: Path, site: str) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps([
        {"plan": {"goal": "note", "steps": [
            {"id": "read", "tool": "http_request", "args": {"url": f"{site}/api/customers/5"}},
            {"id": "note", "tool": "http_request", "depends_on": ["read"], "args": {
                "url": f"{site}/api/notes", "method": "POST",
                "json_body": {"customer_id": 5, "text": "served"}}}]}},
        {"decision": {"action": "finish", "reason": "noted"}},
        {"text": "Noted for Hooli [read][note]."},
    ]))
    return str(path)


async def test_studio_api_stream_interrupt_resume_history(server, site, tmp_path):
    client = get_client(url=server)
    assistants = await client.assistants.search(graph_id="nova-duet")
    assert assistants, "langgraph.json's graph is served"
    schemas = await client.assistants.get_schemas(assistants[0]["assistant_id"])
    assert "allowed_hosts" in json.dumps(schemas.get("context_schema"))

    thread = await client.threads.create()
    context = {"model": f"scripted:{_script(tmp_path, site)}", "approval": "ask",
               "allowed_hosts": [host_of(site)]}
    modes: dict[str, list] = {}
    async for part in client.runs.stream(
            thread["thread_id"], "nova-duet", input={"task": "Add a note for Hooli"},
            context=context, stream_mode=["updates", "custom", "messages-tuple"]):
        modes.setdefault(part.event.split("|")[0], []).append(part.data)
    assert "plan" in json.dumps(modes["updates"])
    assert {"event": "step_started", "step_id": "read", "tool": "http_request"} in modes["custom"]
    assert modes.get("messages"), "the reasoning model's output streams as messages"

    state = await client.threads.get_state(thread["thread_id"])
    assert state["next"] == ["approve"]
    interrupt = state["interrupts"][0] if state.get("interrupts") else (
        state["tasks"][0]["interrupts"][0])
    assert interrupt["value"]["steps"][0]["step_id"] == "note"

    result = await client.runs.wait(
        thread["thread_id"], "nova-duet", context=context,
        command={"resume": {interrupt["id"]: {"note": "approve"}}})
    assert result["status"] == "completed"
    assert result["final_answer"] == "Noted for Hooli [read][note]."
    notes = httpx.get(f"{site}/api/notes?customer_id=5").json()
    assert [n["text"] for n in notes] == ["served"]
    history = await client.threads.get_history(thread["thread_id"], limit=50)
    assert len(history) >= 5


async def test_remote_graph_runs_like_a_local_one(server, site, tmp_path):
    path = tmp_path / "script2.json"
    path.write_text(json.dumps([
        {"plan": {"goal": "read", "steps": [
            {"id": "r", "tool": "http_request", "args": {"url": f"{site}/api/customers/1"}}]}},
        {"decision": {"action": "finish", "reason": "read"}}, {"text": "Acme Corp [r]."}]))
    remote = RemoteGraph("nova-duet", url=server)
    out = await remote.ainvoke({"task": "Who is customer 1?"},
                               context={"model": f"scripted:{path}",
                                        "allowed_hosts": [host_of(site)]})
    assert out["status"] == "completed" and out["final_answer"] == "Acme Corp [r]."


async def test_a_served_run_that_spent_its_budget_continues_with_the_retry_input(
        server, site, tmp_path):
    path = tmp_path / "script3.json"
    path.write_text(json.dumps([
        {"plan": {"goal": "note", "steps": [
            {"id": "read", "tool": "http_request", "args": {"url": f"{site}/api/customers/2"}},
            {"id": "note", "tool": "http_request", "depends_on": ["read"], "args": {
                "url": f"{site}/api/notes", "method": "POST",
                "json_body": {"customer_id": 2, "text": "retried"}}}]}},
        {"text": "Read customer 2; the note was not written [read]."},
        {"decision": {"action": "finish", "reason": "noted", "answer": "Noted [read][note]."}},
    ]))
    client = get_client(url=server)
    thread = (await client.threads.create())["thread_id"]
    context = {"model": f"scripted:{path}", "approval": "auto",
               "allowed_hosts": [host_of(site)], "max_steps": 1}
    first = await client.runs.wait(thread, "nova-duet", input={"task": "Note customer 2"},
                                   context=context)
    assert first["status"] == "budget_exhausted" and "(1/1)" in first["reason"]

    final = await client.runs.wait(thread, "nova-duet", input={"retry": True},
                                   context={**context, "max_steps": 5})
    assert final["status"] == "completed", final
    assert final["final_answer"] == "Noted [read][note]."
    assert [(r["step_id"], r["status"]) for r in final["results"]] == [
        ("read", "ok"), ("note", "ok")]  # the read was not sent again
    notes = httpx.get(f"{site}/api/notes?customer_id=2").json()
    assert [n["text"] for n in notes] == ["retried"]
    state = await client.threads.get_state(thread)
    assert state["values"]["retries"] == 1


async def test_studio_api_reviews_a_plan_before_any_step_runs(server, site, tmp_path):
    """Under `review_plan` the served run pauses with the whole plan; the SDK answers it
    with `Command(resume=...)`: a bad answer is refused with the review still pending, a
    rejection's reason brings a new plan back for review, an approval runs it."""
    def plan(text: str) -> dict:
        return {"plan": {"goal": "note", "steps": [
            {"id": "read", "tool": "http_request", "args": {"url": f"{site}/api/customers/4"}},
            {"id": "note", "tool": "http_request", "depends_on": ["read"], "args": {
                "url": f"{site}/api/notes", "method": "POST",
                "json_body": {"customer_id": 4, "text": text}}}]}}

    path = tmp_path / "script4.json"
    path.write_text(json.dumps([plan("first"), plan("second"), {"decision": {
        "action": "finish", "reason": "noted", "answer": "Noted for Umbrella [note]."}}]))
    client = get_client(url=server)
    thread = (await client.threads.create())["thread_id"]
    context = {"model": f"scripted:{path}", "review_plan": True, "approval": "auto",
               "allowed_hosts": [host_of(site)]}

    async def answer(review: dict | None = None, value: object = None) -> dict:
        """Send `value` to the pending `review` (none: start the run); the review after."""
        if review is None:
            await client.runs.wait(thread, "nova-duet", input={"task": "Note Umbrella"},
                                   context=context)
        else:
            await client.runs.wait(thread, "nova-duet", context=context,
                                   command={"resume": {review["id"]: value}})
        state = await client.threads.get_state(thread)
        assert state["next"] == ["review"]
        return state["interrupts"][0] if state.get("interrupts") else (
            state["tasks"][0]["interrupts"][0])

    pending = await answer()
    review = pending["value"]
    assert review["kind"] == "plan_review" and review["plan_version"] == 1
    assert [(s["step_id"], s["writes"]) for s in review["steps"]] == [("read", False),
                                                                       ("note", True)]
    pending = await answer(pending, {"action": "reject"})
    assert "a rejection gives its reason" in pending["value"]["error"]
    pending = await answer(pending, {"action": "reject", "reason": "Write 'second'.",
                                     "by": "studio"})
    assert pending["value"]["plan_version"] == 2 and "error" not in pending["value"]
    assert httpx.get(f"{site}/api/notes?customer_id=4").json() == [], "nothing ran yet"

    result = await client.runs.wait(thread, "nova-duet", context=context,
                                    command={"resume": {pending["id"]: {"action": "approve"}}})
    assert result["status"] == "completed", result
    notes = httpx.get(f"{site}/api/notes?customer_id=4").json()
    assert [n["text"] for n in notes] == ["second"]


async def test_a_served_run_reads_its_auth_config_and_sends_a_secret_by_name(server, tmp_path):
    """Studio's path: the auth config is read off the server's event loop (which refuses a
    blocking read), and the secret goes in at the last moment, cut from what comes back."""
    from tests.fixtures.echo import echo_server

    token = "served-token-5b9e/+x?"
    (tmp_path / "api").write_text(token)
    (tmp_path / "api").chmod(0o600)
    with echo_server() as echo:
        config = tmp_path / "auth.json"
        config.write_text(json.dumps({"secrets": {"api": {
            "source": f"file:{tmp_path / 'api'}", "kind": "token", "hosts": [echo.host]}}}))
        path = tmp_path / "script4.json"
        path.write_text(json.dumps([
            {"plan": {"goal": "me", "steps": [{"id": "me", "tool": "http_request", "args": {
                "url": f"{echo.url}/me", "headers": {"X-Api-Key": "${secret.api}"}}}]}},
            {"decision": {"action": "finish", "reason": "read"}}, {"text": "You [me]."}]))
        out = await RemoteGraph("nova-duet", url=server).ainvoke(
            {"task": "Who am I?"}, context={"model": f"scripted:{path}", "auth_config": str(config),
                                            "allowed_hosts": [echo.host]})
    assert out["status"] == "completed", out["reason"]
    assert echo.requests[0]["headers"]["X-Api-Key"] == token
    assert token not in json.dumps(out) and "[REDACTED]" in json.dumps(out["results"])
