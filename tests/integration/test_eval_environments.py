"""`duet eval` on systems other than the CRM: a suite names its environment; the ticket
tracker (an MCP server in its own process) passes its suite by reference and fails a broken
variant of each task; an environment whose tools come from a registry factory runs behind
the same runner; the ReAct baseline gets an environment's MCP tools; and fixtures naming a
table or column the environment lacks, a `{placeholder}` it does not provide, or an
environment that raises as it loads, stop the suite at load with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graph.app.eval import AgentSettings, SuiteError, load_suite, run_suite
from graph.app.eval.variants import KINDS, variants
from tests.fixtures.converse import text, tool_input

ROOT = Path(__file__).resolve().parents[2]
TICKETS = load_suite(ROOT / "demo_site" / "eval" / "tickets.yaml")
MODEL = "us.amazon.nova-2-lite-v1:0"


def _servers_of_this_process() -> list[int]:
    """Pids of ticket tracker servers started by this process that still run."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(stat[1]) == os.getpid() and b"demo_site.tickets.server" in command:
            found.append(int(entry.name))
    return found


def test_the_tickets_suite_is_its_own_system():
    assert TICKETS.env.name == "tickets" and len(TICKETS.tasks) >= 8
    assert {t.category for t in TICKETS.tasks} == {"lookup", "writes", "conditional",
                                                     "approval", "hostile"}
    assert set(TICKETS.env.tables) == {"agents", "tickets", "comments"}


async def test_tickets_reference_plans_pass_and_a_broken_variant_of_each_fails(tmp_path):
    """The tracker's reference plans pass every checker; one broken variant per task (a kind
    not yet picked, where the task has one) fails one. Each run has its own server process,
    stopped after it. (Every variant of every task, 28, fails as well: docs/eval.md.)"""
    broken: list = []
    for index, task in enumerate(TICKETS.tasks):
        options = variants(task, TICKETS.env.variations)
        used = {t.id.split("~")[1] for t in broken}
        variant = next((v for v in options if v.kind not in used), options[index % len(options)])
        broken.append(variant.as_task(tmp_path / "variants").model_copy(
            update={"id": f"{task.id}~{variant.kind}"}))
    kinds = {t.id.split("~")[1] for t in broken}
    assert kinds == set(KINDS)  # every broken kind, as on the CRM suite
    rows = await run_suite(TICKETS, [*TICKETS.tasks, *broken], ["nova-duet"],
                           AgentSettings(out_dir=tmp_path / "out"), concurrency=5)
    reference, mutated = rows[:len(TICKETS.tasks)], rows[len(TICKETS.tasks):]
    assert not {r.task: r.checks for r in reference if not r.passed}
    assert not [r.task for r in mutated if r.passed], "checkers passed broken plans"
    by = {r.task: r for r in rows}
    # The writes came over MCP to the tracker, which logged them: a write done twice is
    # seen in its log although the row looks as after one.
    double = next(r for r in mutated if r.task.endswith("~double"))
    assert "more than once" in double.checks["state"]["comment"]
    assert by["t-write-close"].steps == 1
    assert _servers_of_this_process() == []


async def test_an_environment_with_registry_tools_runs_behind_the_same_runner(tmp_path):
    """The memo book's tools come from its registry factory: the plan calls them, the state
    check reads its snapshot and write log, its registry is closed after each run."""
    plan = tmp_path / "set.yaml"
    plan.write_text("goal: g\nsteps:\n  - {id: s, tool: memo_set, side_effects: true, "
                    "args: {key: lunch, text: noodles}}\n")
    twice = tmp_path / "twice.yaml"
    twice.write_text(plan.read_text() + "  - {id: t, tool: memo_set, side_effects: true, "
                                        "args: {key: lunch, text: noodles}}\n")
    suite = tmp_path / "memo.yaml"
    suite.write_text(
        "name: memo\nenvironment: tests.fixtures.memo_environment:Memo\n"
        "preamble: Memos are in {book}.\ntasks:\n"
        "  - {id: set, category: writes, task: Note noodles for lunch., plan: set.yaml,\n"
        "     fixtures: {memos: [{key: dinner, text: soup}]},\n"
        "     checkers: {state: {memos: {changed: {}, added: [{key: lunch, text: noodles}]}}}}\n"
        "  - {id: twice, category: writes, task: Note noodles for lunch., plan: twice.yaml,\n"
        "     checkers: {state: {memos: {added: [{key: lunch, text: noodles}]}}}}\n")
    loaded = load_suite(suite)
    rows = await run_suite(loaded, loaded.tasks, ["nova-duet"],
                           AgentSettings(out_dir=tmp_path / "out"))
    assert [r.passed for r in rows] == [True, False], [r.checks for r in rows]
    assert "memos:lunch" in rows[1].checks["state"]["comment"]
    assert rows[0].steps == 1


async def test_a_write_to_a_row_the_task_does_not_change_fails_whatever_its_key_type(
        tmp_path):
    """The memo book gives numeric keys as numbers, in its snapshot and in its write log (as
    a database's integer keys come): a plan that also sets memo 2 to the text it had is
    caught by its write, as with text keys."""
    one = "goal: g\nsteps:\n  - {id: a, tool: memo_set, side_effects: true, " \
          "args: {key: 1, text: noodles}}\n"
    (tmp_path / "one.yaml").write_text(one)
    (tmp_path / "two.yaml").write_text(one + "  - {id: b, tool: memo_set, side_effects: true, "
                                             "args: {key: 2, text: tea}}\n")
    suite = tmp_path / "memo.yaml"
    task = ("{{id: {0}, category: writes, task: Note noodles under 1., plan: {0}.yaml,\n"
            "     fixtures: {{memos: [{{key: 1, text: soup}}, {{key: 2, text: tea}}]}},\n"
            "     checkers: {{state: {{memos: {{changed: {{1: {{text: noodles}}}}}}}}}}}}\n")
    suite.write_text("name: memo\nenvironment: tests.fixtures.memo_environment:Memo\n"
                     "tasks:\n  - " + task.format("one") + "  - " + task.format("two"))
    loaded = load_suite(suite)
    rows = await run_suite(loaded, loaded.tasks, ["nova-duet"],
                           AgentSettings(out_dir=tmp_path / "out"))
    assert [r.passed for r in rows] == [True, False], [r.checks for r in rows]
    assert rows[1].checks["state"]["comment"] == (
        "memos: rows written that the task does not change ['2']")


async def test_react_gets_the_environments_mcp_tools(converse, tmp_path):
    """ReAct, on the real ChatBedrockConverse against the loopback server, calls the
    tracker's MCP tool (the environment's, not the built-in ones) and passes the task."""
    task = TICKETS.select("t-write-close")
    converse.script += [
        tool_input({"ticket": 101, "status": "closed"}, name="tickets_set_status"),
        text("Ticket 101 is closed now.")]
    settings = AgentSettings(model=MODEL, context={"bedrock_endpoint_url": converse.url},
                             out_dir=tmp_path)
    (row,) = await run_suite(TICKETS, task, ["react"], settings)
    assert row.passed, row.checks
    assert row.steps == 1 and row.calls == 2
    assert converse.script == [] and converse.invalid == []
    listed = json.dumps(converse.requests[0]["toolConfig"])
    assert "tickets_set_status" in listed and "tickets_list_tickets" in listed


def test_a_runs_mcp_config_joins_the_environments_servers_and_the_callers(tmp_path):
    from graph.app.eval.runner import mcp_config
    from tools.mcp import MCPConfigError, read_config

    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"mcpServers": {"files": {"url": "http://127.0.0.1:9/mcp"}}}))
    settings = AgentSettings(context={"mcp_config": str(mine)})
    own = {"tickets": {"transport": "http", "url": "http://127.0.0.1:8/mcp"}}
    assert mcp_config({}, settings, tmp_path) == str(mine)  # none of its own: the caller's
    joined = mcp_config(own, settings, tmp_path)
    assert sorted(c.name for c in read_config(joined)) == ["files", "tickets"]
    assert Path(joined).stat().st_mode & 0o077 == 0  # the caller's env and headers: private
    with pytest.raises(MCPConfigError, match=r"names the environment's own servers \['files'\]"):
        mcp_config({"files": own["tickets"]}, settings, tmp_path / "clash")


@pytest.mark.parametrize(("fixtures", "said"), [
    ("{ticket: [{id: 1}]}", "task 'bad': fixtures: no table 'ticket' in environment "
                            "'tickets' (tables: agents, tickets, comments)"),
    ("{tickets: [{id: 1, colour: red}]}", "task 'bad': fixtures: table 'tickets' has no "
                                          "column 'colour' (columns: id, title, requester, "
                                          "assignee, status, priority)"),
])
def test_fixtures_the_environment_cannot_take_fail_the_suite_at_load(tmp_path, fixtures, said):
    (tmp_path / "p.yaml").write_text("goal: g\nsteps: []\n")
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nenvironment: demo_site.tickets.environment:make\ntasks:\n"
                     "  - {id: ok, category: c, task: t, plan: p.yaml}\n"
                     f"  - {{id: bad, category: c, task: t, plan: p.yaml, fixtures: {fixtures}}}\n")
    with pytest.raises(SuiteError) as raised:
        load_suite(suite)
    assert str(raised.value) == said


def test_cli_bad_fixtures_or_environment_exit_2_with_one_line(tmp_path):
    (tmp_path / "p.yaml").write_text("goal: g\nsteps: []\n")
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ntasks:\n  - {id: t1, category: c, task: t, plan: p.yaml, "
                     "fixtures: {invoices: [{id: 1, colour: red}]}}\n")
    out = subprocess.run([sys.executable, "-m", "graph.app.cli", "eval", "--reference",
                          "--suite", str(suite), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == ("error: task 't1': fixtures: table 'invoices' has no column "
                                  "'colour' (columns: id, customer_id, amount, due_date, "
                                  "status)")
    assert not (tmp_path / "out").exists()
    suite.write_text("name: s\nenvironment: mypkg.nowhere:make\ntasks: []\n")
    with pytest.raises(SuiteError, match="environment 'mypkg.nowhere:make': cannot import"):
        load_suite(suite)


@pytest.mark.parametrize(("texts", "said"), [
    ("preamble: Memos are in {book}, at {site}.\n", "preamble: {site} is not a variable of "
     "environment 'memo' (it provides: {book})"),
    ("preamble: Memos are in {book}.\n", None),
])
def test_a_placeholder_the_environment_does_not_provide_fails_the_suite_at_load(
        tmp_path, texts, said):
    """The memo book provides `{book}` only: a `{site}` in the preamble, or in a task, would
    reach the agent as it is written."""
    (tmp_path / "p.yaml").write_text("goal: g\nsteps: []\n")
    suite = tmp_path / "memo.yaml"
    suite.write_text("name: memo\nenvironment: tests.fixtures.memo_environment:Memo\n"
                     f"{texts}tasks:\n  - {{id: t1, category: c, task: Read it., plan: p.yaml}}\n"
                     "  - {id: t2, category: c, task: 'Open {site}/memos.', plan: p.yaml}\n")
    with pytest.raises(SuiteError) as raised:
        load_suite(suite)
    assert str(raised.value) == "memo.yaml: " + (said or (
        "task 't2': {site} is not a variable of environment 'memo' (it provides: {book})"))


def test_cli_a_preamble_placeholder_the_environment_lacks_exits_2_with_one_line(tmp_path):
    (tmp_path / "p.yaml").write_text("goal: g\nsteps: []\n")
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\npreamble: The CRM is at {site_url}.\ntasks:\n"
                     "  - {id: t1, category: c, task: t, plan: p.yaml}\n")
    out = subprocess.run([sys.executable, "-m", "graph.app.cli", "eval", "--reference",
                          "--suite", str(suite), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == ("error: s.yaml: preamble: {site_url} is not a variable of "
                                  "environment 'crm' (it provides: {site})")
    assert not (tmp_path / "out").exists()


def test_cli_an_environment_module_beside_the_suite_file_is_found(tmp_path):
    """`duet` (the installed command, whose import path has not the working directory) run
    from elsewhere imports `environment: memo_beside:make` from the suite file's folder."""
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "memo_beside.py").write_text(
        "from tests.fixtures.memo_environment import Memo\n\n\n"
        "def make():\n    return Memo()\n")
    (folder / "p.yaml").write_text("goal: g\nsteps:\n  - {id: s, tool: memo_set, "
                                   "side_effects: true, args: {key: lunch, text: noodles}}\n")
    (folder / "s.yaml").write_text(
        "name: s\nenvironment: memo_beside:make\ntasks:\n"
        "  - {id: t1, category: c, task: Note noodles for lunch., plan: p.yaml,\n"
        "     checkers: {state: {memos: {added: [{key: lunch, text: noodles}]}}}}\n")
    duet = Path(sys.executable).parent / "duet"
    out = subprocess.run([str(duet), "eval", "--reference", "--suite", "suite/s.yaml", "--json",
                          "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["tasks"][0]["passed"]


@pytest.mark.parametrize(("module", "said"), [
    ("def make():\n    raise RuntimeError('no database at /srv/crm.sqlite\\n(a second line)')\n",
     "make() raised RuntimeError: no database at /srv/crm.sqlite"),
    ("1 / 0\n", "cannot import {name}: ZeroDivisionError: division by zero"),
    ("def make(:\n", "cannot import {name}: SyntaxError: invalid syntax ({name}.py, line 1)"),
])
def test_cli_an_environment_that_raises_as_it_loads_exits_2_with_one_line(tmp_path, module,
                                                                          said):
    """Making the environment, or importing its module, raises: the eval stops before any
    run with one line naming the environment and what it raised, not a traceback."""
    name = f"env_{tmp_path.name.replace('-', '_')}"  # one module name per test
    (tmp_path / f"{name}.py").write_text(module)
    (tmp_path / "p.yaml").write_text("goal: g\nsteps: []\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\nenvironment: {name}:make\ntasks:\n"
                     "  - {id: t1, category: c, task: t, plan: p.yaml}\n")
    out = subprocess.run([sys.executable, "-m", "graph.app.cli", "eval", "--reference",
                          "--suite", str(suite), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == f"error: environment '{name}:make': " + said.format(name=name)
    assert not (tmp_path / "out").exists()
