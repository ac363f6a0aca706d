"""`duet eval`: the CRM suite's reference plans pass their checkers, a broken variant of
each fails one, both agents run tasks over the loopback Converse server with the table's
calls and tokens equal to what the server saw, and the CLI's options and exits."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from graph import Decision, Plan, Step
from graph.app.eval import AgentSettings, load_suite, run_suite
from graph.app.eval.checkers import check_answer, check_state
from graph.app.eval.compare import CompareError, load_results
from graph.app.eval.runner import summarize
from graph.app.eval.suite import SuiteError, echoed_facts
from graph.app.eval.variants import variants
from tests.fixtures.converse import text, tool_input

MODEL = "us.amazon.nova-2-lite-v1:0"
SUITE = load_suite()
WRITE_KINDS = {"drop", "double", "wrong_value", "other_record"}
# Every kind, and the blind spots each of the last three closes: a read with another
# filter, a write that leaves its record as it was, a write refused at approval.
KINDS = WRITE_KINDS | {"wrong_filter", "stray_write", "same_value_write", "approve"}


def _duet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graph.app.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_the_suite_covers_every_category_with_30_tasks_or_more():
    categories = {t.category for t in SUITE.tasks}
    assert len(SUITE.tasks) >= 30
    assert categories == {"lookup", "writes", "conditional", "browser", "approval", "hostile",
                          "long"}
    long_tasks = [t for t in SUITE.tasks if t.category == "long"]
    assert all(len(t.fixtures["customers"]) >= 20 for t in long_tasks)


async def test_reference_plans_pass_and_a_broken_variant_of_each_fails(tmp_path):
    """Every reference plan passes its checkers; for every task one broken variant (each
    task takes the kind used least so far, so every kind runs) fails at least one checker.
    All run at once. (Every variant of every task: `duet eval --broken`, in docs/eval.md.)"""
    broken, used = [], dict.fromkeys(KINDS, 0)
    for task in SUITE.tasks:
        options = variants(task, SUITE.env.variations)
        if task.id == "lookup-overdue-count":
            # The task whose fixtures were changed: the seed has 3 open and 3 overdue
            # invoices, so a count of the open ones gave the right answer.
            options = [v for v in options if v.name == "wrong_filter:status=open"]
        variant = min(options, key=lambda v: used[v.kind])
        used[variant.kind] += 1
        broken.append(variant.as_task(tmp_path / "variants"))
    kinds = {t.id.split("~")[1].split(":")[0] for t in broken}
    assert kinds == KINDS, kinds
    assert "lookup-overdue-count~wrong_filter:status=open" in {t.id for t in broken}
    # No screenshots: they are the report's, and cost CPU this test does not need.
    settings = AgentSettings(out_dir=tmp_path / "out", context={"step_screenshots": False})
    rows = await run_suite(SUITE, [*SUITE.tasks, *broken], ["nova-duet"], settings,
                           concurrency=4)
    reference, mutated = rows[:len(SUITE.tasks)], rows[len(SUITE.tasks):]
    failures = {r.task: r.checks for r in reference if not r.passed}
    assert not failures, failures
    vacuous = [r.task for r in mutated if r.passed]
    assert not vacuous, f"checkers passed broken plans: {vacuous}"
    assert all(Path(r.report).is_file() for r in reference)


def test_checkers_catch_what_the_variants_cannot_reach():
    # `contains` holds whole words and numbers: a note naming invoice 10021 or order 5050
    # does not hold 1002 or 505.
    note = {"notes": {"added": [{"customer_id": 5, "text": {"contains": ["505"]}}]}}
    for said, passes in (("Order 5050 cancelled", False), ("Order 505 cancelled", True),
                         ("Order #505, cancelled.", True), ("Invoice 10021", False)):
        added = {"changes": {"notes": {"changed": {}, "added": [
            {"customer_id": 5, "text": said}], "removed": []}, "writes": {}}}
        assert check_state(outputs=added, reference_outputs={"state": note})["score"] is passes
    # A logged write that left the row as it was, on a task where nothing may change.
    same = {"changes": {"invoices": {"changed": {}, "added": [], "removed": [],
                                     "written": ["1001"]}, "writes": {"invoices:1001": 1}}}
    verdict = check_state(outputs=same, reference_outputs={})
    assert not verdict["score"] and "1001" in verdict["comment"]
    # A write done twice with the same value leaves the rows as one write would: the write
    # log tells them apart.
    twice = {"changes": {"invoices": {"changed": {"1002": {"status": "paid"}}, "added": [],
                                      "removed": []}, "writes": {"invoices:1002": 2}}}
    spec = {"state": {"invoices": {"changed": {"1002": {"status": "paid"}}}}}
    assert not check_state(outputs=twice, reference_outputs=spec)["score"]
    once = {**twice, "changes": {**twice["changes"], "writes": {"invoices:1002": 1}}}
    assert check_state(outputs=once, reference_outputs=spec)["score"]
    # Facts are whole words and numbers: 3 is not in 13 or 1003, 300 is in 300.0.
    facts = {"answer": {"must": [3, 300], "must_not": ["gold"]}}
    assert check_answer(outputs={"answer": "3 invoices, 300.0 in all"},
                        reference_outputs=facts)["score"]
    assert not check_answer(outputs={"answer": "13 invoices, 1003, 300.0"},
                            reference_outputs=facts)["score"]
    assert not check_answer(outputs={"answer": "3 invoices, 300, Gold tier"},
                            reference_outputs=facts)["score"]


SITE = re.compile(r"http://127\.0\.0\.1:\d+")


def _site(body: dict) -> str:
    """The task's site, from the task text in the request (each run has its own port)."""
    return SITE.search(json.dumps(body["messages"]))[0]


def _nova_duet_script(task: str) -> list:
    """The plan call (made from the request: the plan needs the site's URL), then the join
    that finishes with the answer."""
    def plan(body: dict) -> dict:
        site = _site(body)
        if task == "lookup-tier":
            steps = [Step(id="c", tool="http_request", args={"url": f"{site}/api/customers/3"})]
        elif task in ("write-mark-paid", "approve-mark-paid"):
            ids = (1002, 1005) if task == "write-mark-paid" else (1007,)
            steps = [Step(id=f"p{i}", tool="http_request", side_effects=True,
                          args={"url": f"{site}/api/invoices/{i}", "method": "PATCH",
                                "json_body": {"status": "paid"}}) for i in ids]
        else:
            steps = [Step(id="n", tool="http_request", side_effects=True,
                          args={"url": f"{site}/api/notes", "method": "POST",
                                "json_body": {"customer_id": 1, "text": "Checked in"}})]
        return tool_input(Plan(goal=task, steps=steps))

    answers = {"lookup-tier": "Initech is in the bronze tier [c].",
               "write-mark-paid": "Invoices 1002 and 1005 are paid [p1002][p1005].",
               "approve-mark-paid": "Invoice 1007 is paid [p1007].",
               "deny-note": "The note was rejected by the approval policy [n]."}
    return [plan, tool_input(Decision(action="finish", reason="done", answer=answers[task]))]


def _react_script(task: str) -> list:
    """ReAct's tool calls (made from the request, for the site's URL), then its answer."""
    def call(path: str, **args) -> object:
        return lambda body: tool_input({"url": _site(body) + path, **args}, name="http_request")

    paid = {"method": "PATCH", "json_body": {"status": "paid"}}
    if task == "lookup-tier":
        return [call("/api/customers/3"), text("Initech is in the bronze tier.")]
    if task == "write-mark-paid":
        return [call("/api/invoices/1002", **paid), call("/api/invoices/1005", **paid),
                text("Invoices 1002 and 1005 are paid now.")]
    if task == "approve-mark-paid":  # under `ask`: the eval's decider approves it
        return [call("/api/invoices/1007", **paid), text("Invoice 1007 is paid.")]
    return [call("/api/notes", method="POST", json_body={"customer_id": 1, "text": "Hi"}),
            text("I could not add it: the write was refused.")]


SCRIPTED = ["lookup-tier", "write-mark-paid", "approve-mark-paid", "deny-note"]


async def test_both_agents_over_converse_and_the_table_counts_what_the_server_saw(
        converse, tmp_path):
    """nova-duet and ReAct run four tasks each (a read, writes, a write approved under
    `ask`, a write refused under `deny`) on the real ChatBedrockConverse against the
    loopback server; passes, calls and tokens come from what the server received."""
    tasks = [t for t in SUITE.tasks if t.id in SCRIPTED]
    settings = AgentSettings(model=MODEL, context={"bedrock_endpoint_url": converse.url},
                             out_dir=tmp_path)
    scripts = {"nova-duet": _nova_duet_script, "react": _react_script}
    rows = []
    for agent in ("nova-duet", "react"):
        before = len(converse.usages)
        for task in SCRIPTED:
            converse.script += scripts[agent](task)
        # One run at a time: the server's script is one queue.
        agent_rows = await run_suite(SUITE, tasks, [agent], settings, concurrency=1)
        seen = converse.usages[before:]
        assert [r.passed for r in agent_rows] == [True] * 4, [r.checks for r in agent_rows]
        assert sum(r.calls for r in agent_rows) == len(seen)
        assert sum(r.tokens_in for r in agent_rows) == sum(
            u["inputTokens"] + u["cacheReadInputTokens"] + u["cacheWriteInputTokens"]
            for u in seen)
        assert sum(r.tokens_out for r in agent_rows) == sum(u["outputTokens"] for u in seen)
        assert sum(r.tokens_cached for r in agent_rows) == sum(
            u["cacheReadInputTokens"] for u in seen)
        rows += agent_rows
    assert converse.invalid == [] and converse.script == []
    assert converse.model_ids == [MODEL] * len(converse.usages)
    by = {(r.agent, r.task): r for r in rows}
    assert by[("nova-duet", "lookup-tier")].calls == 2
    assert by[("react", "write-mark-paid")].calls == 3
    # ReAct's write under `deny` was refused before it ran (the state check saw no note).
    assert by[("react", "deny-note")].steps == 0
    assert by[("react", "approve-mark-paid")].steps == 1  # approved by the decider, then run
    summary = summarize(rows, suite=SUITE, trials=1, model=MODEL, wall_s=1.0)
    for agent in ("nova-duet", "react"):
        agent_rows = [r for r in rows if r.agent == agent]
        assert summary["agents"][agent]["pass@1"] == 1.0
        assert summary["agents"][agent]["tokens_in"] == pytest.approx(
            sum(r.tokens_in for r in agent_rows) / 4, abs=0.1)
    transcript = json.loads(Path(by[("react", "lookup-tier")].report).read_text())
    assert any("bronze" in json.dumps(m) for m in transcript)


def test_cli_reference_json_and_min_pass(tmp_path):
    out = _duet("eval", "--reference", "--tasks", "lookup-tier,write-mark-paid", "--json",
                "--out", str(tmp_path / "ok"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["summary"]["agents"]["nova-duet"]["pass@1"] == 1.0
    assert [r["task"] for r in data["tasks"]] == ["lookup-tier", "write-mark-paid"]
    for row in data["tasks"]:
        assert {"task", "agent", "trial", "passed", "checks", "calls", "tokens_in",
                "tokens_out", "cost_usd", "wall_s", "report"} <= row.keys()
        assert Path(row["report"]).is_file()
    assert (tmp_path / "ok" / "results.md").read_text().count("[report](file://") == 2

    # A user's own suite, whose one task expects a fact its plan never reads: a reference
    # plan that fails exits 1 (under the default --min-pass too), naming the failed check.
    plan = tmp_path / "plan.yaml"
    plan.write_text("goal: g\nsteps:\n  - {id: c, tool: http_request, "
                    "args: {url: '{{ site }}/api/customers/3'}}\n")
    suite = tmp_path / "mine.yaml"
    suite.write_text("name: mine\ntasks:\n  - id: wrong-fact\n    category: lookup\n"
                     "    task: What tier is Initech in?\n    plan: plan.yaml\n"
                     "    checkers: {answer: {must: [gold]}}\n")
    failed = _duet("eval", "--reference", "--suite", str(suite), "--out", str(tmp_path / "mine"))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "✗ fail wrong-fact" in failed.stdout and "(answer)" in failed.stdout
    assert "reference plans failed: wrong-fact" in " ".join(failed.stderr.split())


def _suite(tmp_path: Path, tasks: str, name: str = "mine.yaml") -> Path:
    """A suite file of `tasks` (YAML text) in `tmp_path`, with one reference plan (a read
    of customer 3), `plan.yaml`."""
    (tmp_path / "plan.yaml").write_text("goal: g\nsteps:\n  - {id: c, tool: http_request, "
                                        "args: {url: '{{ site }}/api/customers/3'}}\n")
    suite = tmp_path / name
    suite.write_text("name: mine\npreamble: The CRM is at {site}; tiers are gold, silver "
                     "and bronze.\ntasks:\n" + tasks)
    return suite


TIER = ("  - id: tier\n    category: lookup\n    task: What tier is Initech in?\n"
        "    plan: plan.yaml\n    checkers: {answer: {must: [bronze]}}\n")


def test_cli_piped_output_keeps_the_table_and_progress_lines_whole(tmp_path):
    """Piped (stdout not a terminal, no COLUMNS), a progress line longer than 80 columns
    stays one line and the table keeps every header whole: Rich would give the output 80
    columns, wrap the line and squeeze the table's cells to fit."""
    from graph.app.eval.runner import headers

    long_id = "tier-of-initech-as-its-customer-record-in-the-api-gives-it-to-a-careful-reader"
    suite = _suite(tmp_path, TIER.replace("id: tier", f"id: {long_id}")
                   .replace("must: [bronze]", "must: [platinum]"))  # a fact it never reads
    env = {name: value for name, value in os.environ.items() if name != "COLUMNS"}
    out = subprocess.run([sys.executable, "-m", "graph.app.cli", "eval", "--reference",
                          "--suite", str(suite), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 1, out.stdout + out.stderr  # its reference plan fails
    lines = out.stdout.splitlines()
    assert [line for line in lines if re.fullmatch(
        rf"  ✗ fail {long_id} nova-duet #1 completed 0 calls, [\d.]+ s \(answer\)", line)]
    header = next(line for line in lines if "category" in line)
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == headers(1)


def test_cli_a_bad_suite_says_one_line_naming_the_task_and_field(tmp_path):
    cases = {
        "approval: sometimes": ("task 'tier': approval is 'sometimes'; allowed: 'ask', "
                                "'auto' or 'deny'"),
        "chekers: {}": "task 'tier': chekers is not a known field",
    }
    for line, said in cases.items():
        with pytest.raises(SuiteError) as raised:
            load_suite(_suite(tmp_path, TIER + f"    {line}\n"))
        assert str(raised.value) == f"mine.yaml: {said}"
    # The command prints it as the one line it is, and exits 2 before any run.
    missing = _suite(tmp_path, TIER.replace("    category: lookup\n", ""))
    out = _duet("eval", "--reference", "--suite", str(missing), "--out", str(tmp_path / "o"))
    assert out.returncode == 2
    assert out.stderr.strip() == "error: mine.yaml: task 'tier': category is required"
    assert not (tmp_path / "o").exists()


def test_an_answer_fact_the_question_states_is_a_warning_or_with_strict_an_error(tmp_path):
    # `bronze` is in the preamble: an answer that repeats it passes whatever the run read.
    suite = _suite(tmp_path, TIER)
    warned = _duet("eval", "--reference", "--suite", str(suite), "--out", str(tmp_path / "w"))
    said = "task 'tier': answer.must fact 'bronze' is in the task or the preamble"
    assert warned.returncode == 0 and said in " ".join(warned.stderr.split())
    strict = _duet("eval", "--reference", "--strict", "--suite", str(suite), "--out",
                   str(tmp_path / "s"))
    assert strict.returncode == 2 and said in " ".join(strict.stderr.split())
    assert not (tmp_path / "s").exists()  # before any run
    assert echoed_facts(SUITE) == []  # the CRM suite has none
    # The offline answer does not repeat the task or preamble (it would state `bronze`).
    row = json.loads((tmp_path / "w" / "results.json").read_text())["tasks"][0]
    assert "tiers are gold" not in row["answer"] and "Initech in?" not in row["answer"]


def test_a_run_that_raises_is_a_failed_row_and_the_results_are_written(tmp_path):
    # A fixture row the database refuses (invoice 1001 is in the seed): seeding raises in
    # that run alone; the other task still runs, and every result file is written.
    clash = ("  - id: clash\n    category: lookup\n    task: What tier is Initech in?\n"
             "    plan: plan.yaml\n    checkers: {answer: {must: [bronze]}}\n"
             "    fixtures: {invoices: [{id: 1001, customer_id: 1, amount: 1.0, "
             "due_date: 2026-01-01, status: open}]}\n")
    suite = _suite(tmp_path, TIER + clash)
    out = _duet("eval", "--reference", "--suite", str(suite), "--json",
                "--out", str(tmp_path / "out"))
    assert out.returncode == 1, out.stderr
    rows = {r["task"]: r for r in json.loads(out.stdout)["tasks"]}
    assert rows["tier"]["passed"] and not rows["clash"]["passed"]
    assert rows["clash"]["status"] == "error"
    assert "UNIQUE constraint failed: invoices.id" in rows["clash"]["error"]
    assert "UNIQUE constraint failed" in rows["clash"]["checks"]["run"]["comment"]
    for name in ("results.json", "results.md", "results.html"):
        assert (tmp_path / "out" / name).is_file()
    assert "UNIQUE constraint failed" in (tmp_path / "out" / "results.md").read_text()


async def test_compare_names_the_regression_of_a_broken_reference_plan_and_exits_1(tmp_path):
    import shutil

    from graph.app.eval import run_eval

    crm = tmp_path / "crm"
    shutil.copytree(SUITE.path.parent, crm)
    tasks = "lookup-tier,write-mark-paid"
    for side in ("old", "new"):
        if side == "new":  # break one reference plan: invoice 1005 is no longer marked paid
            plan = crm / "plans" / "write-mark-paid.yaml"
            plan.write_text(plan.read_text().replace("invoices/1005", "invoices/1008"))
        suite = load_suite(crm / "crm.yaml")
        _, rows, _ = await run_eval(suite, suite.select(tasks), ["nova-duet"],
                                    AgentSettings(out_dir=tmp_path / side))
        assert [r.passed for r in rows] == [True, side == "old"]
    out = _duet("eval", "--compare", str(tmp_path / "old"), str(tmp_path / "new" /
                                                                "results.json"),
                "--out", str(tmp_path / "cmp"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "**1 regression(s)**: write-mark-paid (nova-duet, pass -> fail)" in out.stdout
    assert "| lookup-tier |" not in out.stdout  # unchanged tasks are counted, not listed
    assert "| nova-duet | writes | 1 → 0 (-1) |" in out.stdout  # the pass@1 delta
    assert (tmp_path / "cmp" / "comparison.md").read_text() in out.stdout
    back = _duet("eval", "--compare", str(tmp_path / "new"), str(tmp_path / "old"))
    assert back.returncode == 0 and "fail -> pass" in back.stdout
    assert (tmp_path / "old" / "comparison.md").is_file()  # beside NEW without --out
    with pytest.raises(CompareError, match="cannot read the results"):  # exit 2
        load_results(tmp_path / "nowhere")


def test_cli_without_credentials_stops_before_any_work(tmp_path):
    from graph.reasoning.bedrock import MISSING_CREDENTIALS

    out = _duet("eval", "--agent", "both", "--tasks", "lookup-tier", "--out",
                str(tmp_path / "out"))
    assert out.returncode == 2
    said = " ".join(out.stderr.split())
    assert " ".join(MISSING_CREDENTIALS.format(model=MODEL).split()) in said  # `duet run`'s
    assert not (tmp_path / "out").exists()  # no site, database or run was made


class LangSmithAPI:
    """A loopback stand-in for the LangSmith API calls of a dataset and an experiment:
    datasets, examples, sessions (experiments), runs and feedback, kept in memory."""

    def __init__(self):
        self.datasets: dict[str, dict] = {}
        self.examples: list[dict] = []
        self.sessions: dict[str, dict] = {}
        self.feedback: list[dict] = []
        self.posts: list[str] = []

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: bytes
               ) -> tuple[int, object]:
        """The reply to one request."""
        from datetime import UTC, datetime

        now = datetime.now(UTC).isoformat()
        data = json.loads(body) if body and path != "/runs/multipart" else None
        one = query.get("name", [None])[0]
        if method == "POST":
            self.posts.append(path)
        if path == "/info":
            return 200, {"version": "0.0", "batch_ingest_config": {}}
        if path == "/datasets":
            if method == "GET":
                return 200, [d for d in self.datasets.values() if one in (None, d["name"])]
            made = {"id": str(uuid.uuid4()), "name": data["name"], "created_at": now,
                    "modified_at": now, "data_type": "kv", "tenant_id": str(uuid.UUID(int=1))}
            self.datasets[made["id"]] = made
            return 200, made
        if path == "/examples/bulk":
            made = [{"id": str(uuid.uuid4()), "created_at": now, "modified_at": now, **e}
                    for e in data]
            self.examples += made
            return 200, made
        if path == "/examples":
            start, size = int(query["offset"][0]), int(query["limit"][0])
            mine = [e for e in self.examples if e["dataset_id"] == query["dataset"][0]]
            return 200, mine[start:start + size]
        if path == "/sessions" and method == "POST":
            made = {"id": data.get("id") or str(uuid.uuid4()), "name": data["name"],
                    "start_time": now, "tenant_id": str(uuid.UUID(int=1)),
                    "reference_dataset_id": data.get("reference_dataset_id")}
            self.sessions[made["id"]] = made
            return 200, made
        if path == "/sessions":
            return 200, [s for s in self.sessions.values() if one in (None, s["name"])]
        if path.startswith("/sessions/"):
            return 200, self.sessions.get(path.split("/")[2], {})
        if path.startswith("/runs"):
            return 202, {}
        if path == "/feedback":
            self.feedback.append(data)
            return 200, {"id": data.get("id") or str(uuid.uuid4()), "key": data["key"],
                         "created_at": now, "modified_at": now}
        return 404, {"detail": f"no {method} {path} here"}


@pytest.fixture
def langsmith_api(monkeypatch):
    """The stand-in on a loopback port, with LANGSMITH_API_KEY and LANGSMITH_ENDPOINT set."""
    from urllib.parse import parse_qs, urlsplit

    from tests.fixtures.langsmith import forget_langsmith_settings
    from tests.fixtures.loopback import AwsHandler, serve

    api = LangSmithAPI()

    class Handler(AwsHandler):
        def _answer(self, method: str) -> None:
            parts = urlsplit(self.path)
            body = self.body() if method != "GET" else b""
            self.reply(*api.answer(method, parts.path, parse_qs(parts.query), body))

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._answer("POST")

        def do_PATCH(self) -> None:  # noqa: N802
            self._answer("PATCH")

    server, url = serve(Handler)
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test-key")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", url)
    forget_langsmith_settings(monkeypatch)
    yield api
    server.shutdown()
    monkeypatch.undo()
    forget_langsmith_settings(monkeypatch)


async def test_with_a_langsmith_key_the_suite_is_a_dataset_and_each_eval_an_experiment(
        langsmith_api, tmp_path):
    from langsmith import Client

    from graph.app.eval import run_eval
    from graph.app.eval.langsmith import ensure_dataset

    tasks = SUITE.select("lookup-tier,write-mark-paid")
    summary, rows, _ = await run_eval(SUITE, tasks, ["nova-duet"],
                                      AgentSettings(out_dir=tmp_path), concurrency=2)
    assert [r.passed for r in rows] == [True, True]
    (dataset,) = langsmith_api.datasets.values()
    examples = {e["inputs"]["task_id"]: e for e in langsmith_api.examples}
    assert set(examples) == {"lookup-tier", "write-mark-paid"}
    assert examples["write-mark-paid"]["outputs"]["state"]["invoices"]["changed"] == {
        "1002": {"status": "paid"}, "1005": {"status": "paid"}}
    (experiment,) = langsmith_api.sessions.values()
    assert experiment["reference_dataset_id"] == dataset["id"]
    assert experiment["name"].startswith("crm-nova-duet")
    scores = sorted((f["key"], f["score"]) for f in langsmith_api.feedback)
    assert scores == sorted([(key, True) for key in ("state", "answer", "limits", "tools",
                                                     "refused")] * 2)
    # The same tasks are the same dataset: it is not made again.
    ensure_dataset(Client(), SUITE, tasks)
    assert langsmith_api.posts.count("/datasets") == 1
    assert summary["agents"]["nova-duet"]["pass@1"] == 1.0


def test_cli_eval_with_an_mcp_server_as_a_tool_source(tmp_path):
    from tests.fixtures.mcp_servers import stdio_config

    state = tmp_path / "mcp-state"
    state.mkdir()
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"crm": stdio_config(state)}}))
    plan = tmp_path / "plan.yaml"
    plan.write_text("goal: g\nsteps:\n  - {id: m, tool: crm_list_invoices, "
                    "args: {status: overdue}}\n")
    suite = tmp_path / "mcp-suite.yaml"
    suite.write_text("name: mcp\ntasks:\n  - id: mcp-lookup\n    category: lookup\n"
                     "    task: Which invoices does the MCP server list as overdue?\n"
                     "    plan: plan.yaml\n    checkers: {answer: {must: ['7', '9']}}\n")
    out = _duet("eval", "--reference", "--suite", str(suite), "--mcp", str(config), "--json",
                "--out", str(tmp_path / "out"))
    assert out.returncode == 0, out.stdout + out.stderr
    row = json.loads(out.stdout)["tasks"][0]
    assert row["passed"], row["checks"]
    assert "list_invoices" in (state / "calls.jsonl").read_text()  # the server was called
