"""Test set-up: no network but loopback, no real AWS credentials, a private DUET_HOME, and
no process left behind when the session ends."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.converse import ConverseStub, start
from tests.fixtures.langsmith import langsmith_capture  # noqa: F401 - a fixture for every test
from tests.fixtures.otlp import otlp_receiver  # noqa: F401 - a fixture for every test
from tests.fixtures.processes import command_line, descendants, marked, still_running

# Every process the suite starts inherits this (unless a test gives it an environment of its
# own; those stay the suite's descendants): the session's end finds them by it even once
# they were orphaned, and no other program's processes on this machine count.
SESSION_MARKER = f"DUET_TEST_SESSION={os.getpid()}"
os.environ[SESSION_MARKER.split("=")[0]] = str(os.getpid())


def _left_by_the_suite() -> list[int]:
    own = os.getpid()
    return sorted({*descendants(own), *marked(SESSION_MARKER)} - {own})


@pytest.hookimpl(hookwrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Iterator[None]:
    """Fail the run if a process the suite started is still running once every fixture is
    torn down (a few seconds' grace for ones on their way out); kill what is found."""
    yield
    left = still_running(_left_by_the_suite, within=5)
    if not left:
        return
    lines = [f"  {pid}: {command_line(pid)[:200]}" for pid in left]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"the test suite left {len(left)} process(es) running (now killed):"
    if reporter is not None:
        reporter.write_line(message, red=True)
        for line in lines:
            reporter.write_line(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check(sock: socket.socket, address: object) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0] if isinstance(address, tuple) else str(address)
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConnectionRefusedError(f"tests may not reach {host}: loopback only")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(self, address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection that would leave the machine (pydantic-ai's ALLOW_MODEL_REQUESTS)."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private DUET_HOME and an AWS environment with no credentials anywhere."""
    home = tmp_path / "duet-home"
    monkeypatch.setenv("DUET_HOME", str(home))
    monkeypatch.delenv("DUET_CHECKPOINTER", raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "NOVA_ACT_API_KEY",
                 "LANGSMITH_API_KEY", "LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2",
                 "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


@pytest.fixture
def aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials: enough to sign a request to a loopback server, useless elsewhere."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def converse(aws_test_credentials: None):
    """A scripted Converse server on loopback; append answers to `.script`."""
    stub = ConverseStub()
    server = start(stub)
    yield stub
    server.shutdown()


@pytest.fixture
def site(tmp_path: Path):
    """The demo CRM on a free loopback port, with fresh data; yields its base URL."""
    from demo_site import serve

    with serve(tmp_path / "crm.sqlite") as url:
        yield url


NOVA_ACT_VERSION = "3.4.187.0"  # the seam below was read off this version


@pytest.fixture
def nova_act_service(monkeypatch: pytest.MonkeyPatch, aws_test_credentials: None):
    """A scripted Nova Act service on loopback, wired into the real SDK's IAM backend.

    The SDK fixes its endpoint in `StarburstClient._resolve_endpoints`: this fixture is the
    one place that redirects it, and fails loudly if the pinned version or the seam moved.
    """
    from importlib.metadata import version

    from nova_act.impl.backends.starburst.client import StarburstClient

    from tests.fixtures.nova_act_service import NovaActService
    from tests.fixtures.nova_act_service import start as start_service

    assert version("nova-act") == NOVA_ACT_VERSION, "re-check the Nova Act seam for this version"
    assert callable(getattr(StarburstClient, "_resolve_endpoints", None)), "the seam moved"
    service = NovaActService()
    server = start_service(service)

    def _resolve_endpoints(self: StarburstClient) -> None:
        self._api_url = service.url

    monkeypatch.setattr(StarburstClient, "_resolve_endpoints", _resolve_endpoints)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", service.url)
    monkeypatch.setenv("NOVA_ACT_WORKFLOW", "duet-tests")
    # Makes the SDK send the simplified DOM with element boxes, which scripts click on.
    monkeypatch.setenv("NOVA_ACT_REPLAYABLE", "1")
    yield service
    server.shutdown()


@pytest.fixture(scope="session")
def postgres_url():
    """A private PostgreSQL server for the session; skipped, saying why, if not installed."""
    from tests.fixtures.postgres import postgres_bin, running_postgres

    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed here (bash scripts/setup installs Debian's "
                    "postgresql package)")
    with running_postgres() as url:
        yield url
