"""`duet eval` behind the CRM's login (demo_site/eval/crm_login.yaml): each run gets a fresh
user and its secrets by name; a lookalike login form gets nothing; and every file a run
left is searched for every secret, a hit failing the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo_site.environment import CRM, CRMInstance
from graph.app.eval import AgentSettings, load_suite, run_suite
from tools.auth import AuthConfig

pytestmark = pytest.mark.browser

SUITE = Path(__file__).resolve().parents[2] / "demo_site" / "eval" / "crm_login.yaml"


async def test_the_login_suite_passes_and_the_lookalike_gets_nothing(tmp_path, isolated_env):
    suite = load_suite(SUITE)
    rows = await run_suite(suite, suite.tasks, ["nova-duet"],
                           AgentSettings(out_dir=tmp_path / "out"), concurrency=2)
    by_task = {row.task: row for row in rows}
    assert all(row.passed for row in rows), {r.task: r.checks for r in rows}
    # The note went in through the page, after the executor's login (the state check).
    assert by_task["login-browser-note"].status == "completed"
    # The lookalike: the password's fill was refused, nothing was posted (the state check
    # covers the lure's posts), and no secret was left in the run's files.
    lookalike = by_task["login-lookalike"]
    assert lookalike.checks["refused"] == {"score": True, "comment": "ok"}
    assert lookalike.checks["state"]["score"] and lookalike.status == "failed"
    assert all(row.checks["secrets"] == {"score": True, "comment": "ok"} for row in rows)


class _LeakyInstance(CRMInstance):
    """A CRM that writes its user's password into the run's folder as it stops (a system
    that logs what it should not): what the secrets check is for."""

    folder: Path

    async def stop(self) -> None:
        store = AuthConfig.load(self.auth_config or "").store()
        password = (await store.resolve("crm_password")).reveal()
        (self.folder / "server.log").write_text(f"login ok: password={password}\n")
        await super().stop()


class _LeakyCRM(CRM):
    async def start(self, fixtures, folder: Path) -> CRMInstance:
        instance = await super().start(fixtures, folder)
        instance.__class__ = _LeakyInstance
        instance.folder = folder  # type: ignore[attr-defined]
        return instance


async def test_a_secret_left_in_a_runs_files_fails_the_run_naming_it_never_its_value(
        tmp_path, isolated_env):
    suite = load_suite(SUITE)
    suite._environment = _LeakyCRM(login=True)
    [task] = suite.select("login-browser-note")
    [row] = await run_suite(suite, [task], ["nova-duet"], AgentSettings(out_dir=tmp_path / "out"))
    leaked = tmp_path / "out" / "sites" / "login-browser-note-nova-duet-1" / "server.log"
    assert leaked.is_file()
    assert row.status == "completed" and not row.passed
    assert row.checks["state"]["score"]  # the run did its task: only the leak fails it
    assert row.checks["secrets"] == {
        "score": False, "comment": f"secret 'crm_password' found in {leaked}"}
    value = leaked.read_text().split("password=")[1].strip()
    assert value not in str(row)
