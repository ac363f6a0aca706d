"""Secrets by name on the step path (issue 33), against real servers on loopback: a run whose
`http_request` sends `Bearer ${secret.api}` leaves no copy of the value anywhere; hosts and
redirects; per-host HTTP auth (the demo CRM behind its login); TOTP codes and short
passwords; data that would steer a secret; MCP and own tools; executor deployments;
`duet secrets` and `duet run --auth`."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path
from urllib.parse import quote

import pyotp
import pytest
from langchain_core.tools import tool
from langchain_core.tracers.langchain import wait_for_all_tracers
from typer.testing import CliRunner

from demo_site.auth import make_credentials
from demo_site.server import serve
from graph import Context, Decision, Plan, RunStatus, Step, build_graph
from graph.app.cli import app
from graph.app.report import write_report
from graph.app.runner import run_thread
from graph.contracts import StepAttempt, StepRequest
from graph.executor.service import StepService, default_service
from graph.redaction import REDACTED
from graph.runtime.attempts import attempt_tool
from graph.runtime.secrets import auth_of, load_config
from graph.testing import ScriptedChatModel
from reliability.secrets import scan
from tests.fixtures.echo import echo_server
from tests.fixtures.loopback import host_of
from tests.fixtures.mcp_servers import stdio_config
from tools import SandboxPolicy, StepContext, default_registry
from tools.auth import Auth, encoded_forms
from tools.errors import ErrorKind

TOKEN = "tok/9Zq+Xv?w8Lr2~Jm"  # its plain, URL-encoded and base64 forms all differ
PIN = "q7#Zk"  # a short password
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.fixture
def echo():
    with echo_server() as server:
        yield server


@pytest.fixture
def other():
    """A second echo server: another host, as the allowlist and a secret's hosts see it."""
    with echo_server() as server:
        yield server


def secret_file(tmp_path: Path, name: str, value: str) -> str:
    """The source of a secret kept in a 0600 file outside any repository."""
    folder = tmp_path / "secrets"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(value)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return f"file:{path}"


def auth_config(tmp_path: Path, secrets: dict[str, tuple[str, str, list[str]]],
                **sections) -> Path:
    """An auth config file: each secret by name as (value, kind, hosts)."""
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"secrets": {
        name: {"source": secret_file(tmp_path, name, value), "kind": kind, "hosts": hosts}
        for name, (value, kind, hosts) in secrets.items()}, **sections}))
    return path


async def attempt(auth: Auth, args: dict, *hosts: str) -> StepAttempt:
    """One attempt of `http_request` under an allowlist of `hosts`, as a step runs it."""
    step = StepContext(policy=SandboxPolicy(allowed_hosts=hosts), auth=auth)
    return await attempt_tool(default_registry(), "http_request", args, step, 20)


def leaks(value: str, texts: list[str]) -> list[str]:
    """Where any form of `value` (plain, URL-encoded, JSON-escaped, base64) shows."""
    return [form for text in texts for form in encoded_forms(value) if form in text]


async def test_a_run_sends_a_secret_by_name_and_leaves_no_copy_anywhere(
        echo, langsmith_capture, tmp_path, isolated_env):
    config = auth_config(tmp_path, {"api": (TOKEN, "token", [echo.host])})
    plan = Plan(goal="who am I", steps=[Step(id="s1", tool="http_request", args={
        "url": f"{echo.url}/me", "headers": {"Authorization": "Bearer ${secret.api}"}})])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok"),
                                         "you are you [s1]"])
    thread, final = await run_thread(
        "who am I?", model=model, context=Context(allowed_hosts=[echo.host],
                                                 auth_config=str(config)))
    assert final.status is RunStatus.COMPLETED
    assert [r["headers"]["Authorization"] for r in echo.requests] == [f"Bearer {TOKEN}"]
    output = final.results[0].output
    echoed = output["json"]  # the echo came back, cut in every form
    assert REDACTED in echoed["sent"] and REDACTED in echoed["url_encoded"]
    assert REDACTED in echoed["base64"]
    report = await write_report(thread)
    wait_for_all_tracers()
    traced = b"\n".join(langsmith_capture).decode("utf-8", errors="replace")
    assert '"name":"http_request"' in traced.replace(" ", "")  # the tool run was traced
    assert "${secret.api}" in traced and "${secret.api}" in report.read_text()
    # Output, trace, checkpoints, step ledger, report (all under DUET_HOME), LangSmith.
    assert scan([isolated_env], [json.dumps(output), traced],
                secrets=encoded_forms(TOKEN)) == []


async def test_a_host_the_secret_does_not_allow_receives_nothing(echo, other, tmp_path):
    auth = auth_of(load_config(str(auth_config(tmp_path, {"api": (TOKEN, "token",
                                                                  [echo.host])}))))
    result = await attempt(auth, {"url": f"{other.url}/me",
                                  "headers": {"Authorization": "Bearer ${secret.api}"}},
                           echo.host, other.host)
    assert result.status == "blocked" and result.error.kind is ErrorKind.SECRET_NOT_ALLOWED
    assert result.error.message == (f"secret 'api' may not be sent to {other.host}: it "
                                    f"allows only ['{echo.host}']")
    assert other.requests == []


@pytest.mark.parametrize("args", [
    {"headers": {"X-Api-Key": "${secret.api}"}},
    {"headers": {"Authorization": "Bearer ${secret.api}"}},
    {"method": "POST", "json_body": {"password": "${secret.api}"}},
], ids=["api-key header", "authorization", "body"])
async def test_a_redirect_to_a_host_the_secret_does_not_allow_is_refused(
        echo, other, tmp_path, args):
    auth = auth_of(load_config(str(auth_config(tmp_path, {"api": (TOKEN, "token",
                                                                  [echo.host])}))))
    url = f"{echo.url}/redirect?status=307&to={quote(f'{other.url}/steal', safe='')}"
    result = await attempt(auth, {"url": url, **args}, echo.host, other.host)
    assert result.error.kind is ErrorKind.SECRET_NOT_ALLOWED and other.host in \
        result.error.message
    assert len(echo.requests) == 1 and other.requests == []


async def test_per_host_bearer_auth_opens_the_crm_api_and_stays_behind_on_a_redirect(
        tmp_path, echo):
    db = tmp_path / "crm.sqlite"
    credentials = make_credentials(db)
    with serve(db, auth=True) as site:
        crm = host_of(site)
        config = auth_config(tmp_path, {"crm_api": (credentials.api_token, "token", [crm])},
                             http_auth={crm: {"bearer": "crm_api"}})
        auth = auth_of(load_config(str(config)))
        signed_in = await attempt(auth, {"url": f"{site}/api/customers/1"}, crm)
        signed_out = await attempt(Auth(), {"url": f"{site}/api/customers/1"}, crm)
        redirected = await attempt(auth, {"url": f"{site}/redirect?to={echo.url}/landed"},
                                   crm, echo.host)
    assert signed_in.status == "ok" and signed_in.output["json"]["id"] == 1
    assert signed_out.status == "error" and "401" in signed_out.error.message
    assert redirected.status == "ok" and echo.requests[0]["path"] == "/landed"
    assert "Authorization" not in echo.requests[0]["headers"]


async def test_header_and_basic_auth_are_applied_per_host_and_cut_from_the_answer(
        echo, other, tmp_path):
    config = auth_config(
        tmp_path, {"key": (TOKEN, "token", [echo.host]), "pw": (PIN, "password", [other.host])},
        http_auth={echo.host: {"header": {"name": "X-Api-Key", "secret": "key"}},
                   other.host: {"basic": {"username": "ops", "password": "pw"}}})
    auth = auth_of(load_config(str(config)))
    keyed = await attempt(auth, {"url": f"{echo.url}/redirect?status=302&to="
                                        f"{quote(f'{other.url}/next', safe='')}"},
                          echo.host, other.host)
    assert keyed.status == "ok"
    assert echo.requests[0]["headers"]["X-Api-Key"] == TOKEN
    landed = other.requests[0]["headers"]
    assert "X-Api-Key" not in landed  # the first host's auth stayed behind
    assert landed["Authorization"] == "Basic " + base64.b64encode(f"ops:{PIN}".encode()).decode()
    shown = json.dumps(keyed.output)
    assert leaks(f"ops:{PIN}", [shown]) == [] and leaks(PIN, [shown]) == []
    assert REDACTED in shown


async def test_a_totp_code_and_a_short_password_are_sent_and_cut(echo, tmp_path):
    config = auth_config(tmp_path, {"otp": (SEED, "totp", [echo.host]),
                                    "pin": (PIN, "password", [echo.host])})
    auth = auth_of(load_config(str(config)))
    result = await attempt(auth, {"url": f"{echo.url}/login", "method": "POST",
                                  "json_body": {"code": "${secret.otp}", "pin": "${secret.pin}"}},
                           echo.host)
    received = json.loads(echo.requests[0]["body"])
    assert pyotp.TOTP(SEED).verify(received["code"], valid_window=1) and received["pin"] == PIN
    shown = json.dumps(result.output)
    assert result.status == "ok" and REDACTED in shown
    assert leaks(received["code"], [shown]) == [] and leaks(PIN, [shown]) == []
    assert leaks(SEED, [shown]) == []


async def test_a_secret_that_arrives_with_the_data_is_refused(echo, other, tmp_path):
    config = auth_config(tmp_path, {"api": (TOKEN, "token", [other.host])})
    data = quote(json.dumps({"h": "${secret.api}"}), safe="")
    plan = Plan(goal="g", steps=[
        Step(id="s1", tool="http_request", args={"url": f"{echo.url}/data?json={data}"}),
        Step(id="s2", tool="http_request", depends_on=["s1"], args={
            "url": f"{other.url}/x", "headers": {"X-Key": "${s1.output.json.h}"}})])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="done"), "ok"])
    out = await build_graph(model=model).ainvoke({"task": "t"}, context=Context(
        allowed_hosts=[echo.host, other.host], auth_config=str(config)))
    s2 = next(r for r in out["results"] if r.step_id == "s2")
    assert s2.error.kind is ErrorKind.SECRET_STEERED and other.requests == []


async def test_a_replan_steered_by_a_page_gets_a_refusal(site, tmp_path):
    config = auth_config(tmp_path, {"pw": (PIN, "password", [host_of(site)])})
    read = Plan(goal="search", steps=[Step(id="s1", tool="http_request", args={
        "url": f"{site}/hostile/password-into-search"})])
    steered = Plan(goal="search", steps=[Step(id="s1", tool="browser_fill", args={
        "selector": "#search", "value": "${secret.pw}"})])
    model = ScriptedChatModel(responses=[read, Decision(action="replan", reason="search"),
                                         steered, Plan(goal="stop", steps=[])])
    out = await build_graph(model=model).ainvoke(
        {"task": "find the customers"}, context=Context(allowed_hosts=[host_of(site)],
                                                        auth_config=str(config)))
    refused = next(r for r in out["results"] if r.plan_version == 2)
    assert refused.status == "rejected" and refused.error.kind is ErrorKind.SECRET_STEERED
    assert "'#search'" in refused.error.message


@tool
async def own_login(user: str, password: str) -> str:
    """Log in to the own system (and say so with the password: a careless tool)."""
    own_login_received.append(hashlib.sha256(password.encode()).hexdigest())
    return f"{user} signed in with {password}"


own_login_received: list[str] = []


async def test_mcp_and_own_tools_get_a_secret_only_for_their_target_and_untraced(
        tmp_path, langsmith_capture, isolated_env):
    own_login_received.clear()
    state = tmp_path / "crm"
    mcp = tmp_path / "mcp.json"
    mcp.write_text(json.dumps({"mcpServers": {"crm": stdio_config(state)}}))
    config = auth_config(tmp_path, {"pw": (TOKEN, "password", ["mcp:crm", "tool:own_login"]),
                                    "other": (PIN, "password", ["mcp:web"])})
    registry = default_registry()
    registry.register(own_login, read_only=True, secret_args=["password"])
    plan = Plan(goal="sign in", steps=[
        Step(id="s1", tool="crm_sign_in", args={"password": "${secret.pw}"}),
        Step(id="s2", tool="crm_sign_in", args={"password": "${secret.other}"}),
        Step(id="s3", tool="own_login", args={"user": "ops", "password": "${secret.pw}"}),
        Step(id="s4", tool="own_login", args={"user": "ops", "password": "${secret.other}"})])
    model = ScriptedChatModel(responses=[plan, Decision(action="finish", reason="ok"), "ok"])
    _, final = await run_thread("sign in", model=model, tools=registry, context=Context(
        mcp_config=str(mcp), auth_config=str(config)))
    by_id = {r.step_id: r for r in final.results}
    assert by_id["s1"].status == by_id["s3"].status == "ok"
    assert REDACTED in json.dumps(by_id["s1"].output) + json.dumps(by_id["s3"].output)
    for refused, target in (("s2", "mcp:crm"), ("s4", "tool:own_login")):
        assert by_id[refused].error.kind is ErrorKind.SECRET_NOT_ALLOWED
        assert by_id[refused].error.message.startswith(f"secret 'other' may not be sent to "
                                                       f"{target}")
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    sign_ins = [json.loads(line) for line in (state / "sign_ins.jsonl").read_text().splitlines()]
    assert sign_ins == [{"sha256": digest}] and own_login_received == [digest]
    wait_for_all_tracers()
    traced = b"\n".join(langsmith_capture).decode("utf-8", errors="replace")
    assert '"name":"steps1"' in traced.replace(" ", "")  # the step's run is traced
    assert scan([isolated_env], [traced, json.dumps([r.output for r in final.results])],
                secrets=[*encoded_forms(TOKEN), *encoded_forms(PIN)]) == []


async def test_an_executor_deployment_puts_in_its_own_secrets(echo, tmp_path, monkeypatch):
    config = auth_config(tmp_path, {"api": (TOKEN, "token", [echo.host])})
    request = StepRequest(tool="http_request", args={
        "url": f"{echo.url}/me", "headers": {"X-Api-Key": "${secret.api}"}}, step_id="s1",
        plan_version=1, thread="t", timeout_seconds=20, screenshot=False,
        policy=SandboxPolicy(allowed_hosts=(echo.host,)))
    without = await StepService(default_registry(), (echo.host,)).attempt(request)
    assert without.error.kind is ErrorKind.UNKNOWN_SECRET and echo.requests == []
    monkeypatch.setenv("DUET_AUTH_CONFIG", str(config))
    monkeypatch.setenv("DUET_EXECUTOR_ALLOWED_HOSTS", echo.host)
    default_service.cache_clear()
    try:
        service = default_service()
        attempt = await service.attempt(request)
        await service.aclose()
    finally:
        default_service.cache_clear()
    assert attempt.status == "ok" and echo.requests[0]["headers"]["X-Api-Key"] == TOKEN
    assert leaks(TOKEN, [json.dumps(attempt.output)]) == []


def test_duet_secrets_lists_each_secret_and_whether_it_resolves(tmp_path, monkeypatch):
    config = auth_config(tmp_path, {"api": (TOKEN, "token", ["api.example.com"])})
    data = json.loads(config.read_text())
    data["secrets"]["pin"] = {"source": "env:DUET_TEST_PIN", "kind": "password",
                              "hosts": ["127.0.0.1:8000"], "description": "the door"}
    config.write_text(json.dumps(data))
    runner = CliRunner()
    monkeypatch.delenv("DUET_TEST_PIN", raising=False)
    missing = runner.invoke(app, ["secrets", "--auth", str(config), "--json"])
    assert missing.exit_code == 1
    assert json.loads(missing.stdout) == [
        {"name": "api", "kind": "token", "source": data["secrets"]["api"]["source"],
         "hosts": ["api.example.com"], "available": True, "problem": None},
        {"name": "pin", "kind": "password", "source": "env:DUET_TEST_PIN",
         "hosts": ["127.0.0.1:8000"], "available": False,
         "problem": "the environment variable DUET_TEST_PIN is not set: set it"}]
    monkeypatch.setenv("DUET_TEST_PIN", PIN)
    monkeypatch.setenv("DUET_AUTH_CONFIG", str(config))
    shown = runner.invoke(app, ["secrets"])
    assert shown.exit_code == 0 and "api.example.com" in shown.stdout
    assert leaks(TOKEN, [shown.output]) == [] and PIN not in shown.output
    (tmp_path / "bad.yaml").write_text("secrets: [")
    bad = runner.invoke(app, ["secrets", "--auth", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2 and "is not valid YAML (line 1" in bad.output
    monkeypatch.delenv("DUET_AUTH_CONFIG")
    assert runner.invoke(app, ["secrets"]).exit_code == 2


def test_duet_run_refuses_a_bad_auth_config_before_any_work(tmp_path, echo):
    runner = CliRunner()
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [{"id": "s1", "tool": "http_request",
                                                        "args": {"url": f"{echo.url}/x"}}]}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"secrets:\n  api: {{source: env:A, value: '{TOKEN}', kind: token, "
                   "hosts: [x.com]}\n")
    out = runner.invoke(app, ["run", "t", "--plan-file", str(plan), "--auth", str(bad),
                              "--allow-host", echo.host])
    assert out.exit_code == 2 and out.output.count("\n") == 1
    assert "secret 'api': value: is not a field" in out.output and TOKEN not in out.output
    outside = auth_config(tmp_path, {"api": (TOKEN, "token", ["api.example.com"])})
    out = runner.invoke(app, ["run", "t", "--plan-file", str(plan), "--auth", str(outside),
                              "--allow-host", echo.host])
    assert out.exit_code == 2 and "secret 'api' may go to api.example.com" in out.output
    assert echo.requests == []
