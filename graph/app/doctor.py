"""`duet doctor`: what this machine has and lacks for each mode, and how to fix it."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from graph.checkpoints import default_checkpointer_url
from graph.context import DEFAULT_MODEL, Context
from graph.reasoning import ConfigurationError, require_aws_credentials
from tools.chromium import Chromium, chromium_path
from tools.errors import ToolUnavailableError
from tools.nova_act import nova_act_unavailable
from tools.proxy import AllowlistProxy
from tools.sandbox import SandboxPolicy


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, whether it is usable, and what to do if not."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def check_browser() -> Check:
    """Chromium is installed and starts headless with a CDP port."""
    try:
        path = chromium_path()
        proxy = AllowlistProxy(SandboxPolicy()).start()
        try:
            browser = Chromium(proxy.url).start()
            browser.close()
        finally:
            proxy.close()
    except ToolUnavailableError as exc:
        return Check("browser", False, str(exc))
    return Check("browser", True, f"{path} starts headless with a CDP port")


def check_demo_site() -> Check:
    """The bundled CRM starts on loopback and answers."""
    from demo_site import serve

    with tempfile.TemporaryDirectory() as folder, serve(Path(folder) / "crm.sqlite") as url:
        healthy = httpx.get(f"{url}/health", timeout=10).json() == {"status": "ok"}
    return Check("demo site", healthy, "starts on 127.0.0.1 and answers /health")


def check_bedrock(context: Context) -> Check:
    """AWS credentials for Nova 2 Lite on Bedrock (optional: the offline planner needs none)."""
    try:
        require_aws_credentials(DEFAULT_MODEL)
    except ConfigurationError as exc:
        return Check("Nova 2 Lite (Bedrock)", False, str(exc), required=False)
    return Check("Nova 2 Lite (Bedrock)", True,
                 f"credentials found; region {context.region}", required=False)


def check_nova_act() -> Check:
    """Credentials for the Nova Act executor (optional: the offline executor needs none)."""
    reason = nova_act_unavailable()
    return Check("Nova Act", reason is None, reason or "credentials found", required=False)


def check_allowlist(context: Context) -> Check:
    """Which hosts the executors may reach by default (nothing, unless you allow some)."""
    hosts = context.allowed_hosts
    detail = (f"executors may reach {hosts}" if hosts else
              "executors may reach no host: allow one with `duet run --allow-host HOST[:PORT]` "
              "or `allowed_hosts` in the run context (this machine only with a port)")
    return Check("allowlist", True, detail)


def check_executor(context: Context) -> Check:
    """Each executor deployment answers on its step route (with `DUET_EXECUTOR_HEADERS`) and
    serves the executor graph (when one is set)."""
    if not context.executor_url:
        return Check("executor", True, "steps run in this process (set DUET_EXECUTOR_URL to "
                     "run them on executor deployments)", required=False)
    from graph.contracts import EXECUTOR_GRAPH_ID, EXECUTOR_INFO_PATH
    from graph.runtime.remote import executor_headers, executor_urls

    try:
        headers = executor_headers()
    except ValueError as exc:
        return Check("executor", False, str(exc))
    found, problems = [], []
    for url in executor_urls(context.executor_url):
        try:
            answer = httpx.get(url + EXECUTOR_INFO_PATH, headers=headers, timeout=10)
        except httpx.HTTPError as exc:
            problems.append(f"{url} cannot be reached ({type(exc).__name__})")
            continue
        info = _json_object(answer) if answer.status_code == 200 else {}
        if answer.status_code in (401, 403):
            problems.append(f"{url} refused the request ({answer.status_code}): set its token "
                            "in DUET_EXECUTOR_HEADERS")
        elif info.get("graph_id") != EXECUTOR_GRAPH_ID:
            problems.append(f"{url} serves no executor step route ({answer.status_code}): "
                            "its langgraph.json needs http.app ./graph/executor/app.py:app")
        else:
            found.append(f"{url} ({len(info.get('tools', []))} tools, may reach "
                         f"{info.get('allowed_hosts') or 'no host'})")
    detail = "; ".join(problems) or f"step routes at {', '.join(found)}"
    return Check("executor", not problems, detail)


def _json_object(response: httpx.Response) -> dict:
    """A response's JSON object, or {} when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def check_secrets(context: Context) -> Check:
    """The run's auth config (`$DUET_AUTH_CONFIG`) reads, and each of its secrets resolves
    now (as `duet secrets` says; never a value)."""
    from tools.auth import AuthConfig, AuthConfigError

    if not context.auth_config:
        return Check("secrets", True, "no auth config (set DUET_AUTH_CONFIG, or pass --auth, "
                     "for plans that use secrets by name)", required=False)
    try:
        statuses = AuthConfig.load(context.auth_config).store().status()
    except AuthConfigError as exc:
        return Check("secrets", False, str(exc))
    problems = [status.describe() for status in statuses if not status.available]
    detail = "; ".join(problems) or (f"{len(statuses)} secret(s) resolve: "
                                     f"{', '.join(status.name for status in statuses)}")
    return Check("secrets", not problems, detail)


def check_checkpoints() -> Check:
    """Where runs are saved."""
    return Check("checkpoints", True, default_checkpointer_url())


def run_checks() -> list[Check]:
    """Every check, required ones first."""
    context = Context()
    return [check_browser(), check_demo_site(), check_checkpoints(), check_allowlist(context),
            check_executor(context), check_secrets(context), check_bedrock(context),
            check_nova_act()]
