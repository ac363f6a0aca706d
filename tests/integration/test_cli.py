"""The `duet` command as a user runs it: real processes, real SQLite checkpoints."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graph.app.threads import read_trace
from graph.builder import graph
from graph.events import Event, StepStarted
from tests.fixtures.loopback import host_of

DUET = [sys.executable, "-m", "graph.app.cli"]
ROOT = Path(__file__).resolve().parents[2]


def duet(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*DUET, *args], capture_output=True, text=True, timeout=timeout,
                          env=os.environ.copy(), cwd=ROOT)


def read_plan(tmp_path: Path, url: str) -> Path:
    """A plan file of one step that reads `url`."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "s1", "tool": "http_request", "args": {"url": url}}]}))
    return plan


def test_schema_prints_the_contracts():
    out = duet("schema")
    assert out.returncode == 0
    assert {"Plan", "StepResult", "Decision"} <= json.loads(out.stdout).keys()


def test_run_without_credentials_fails_before_work_with_what_to_set():
    out = duet("run", "count invoices", "--json")
    assert out.returncode == 2
    assert "AWS_ACCESS_KEY_ID" in out.stderr and "--plan-file" in out.stderr
    assert "Traceback" not in out.stderr


def test_demo_completes_against_the_local_site(isolated_env):
    out = duet("demo", "--json")
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout)
    assert final["status"] == "completed"
    results = {r["step_id"]: r for r in final["results"]}
    assert set(results) == {"s1", "note1", "note2", "note3", "mark1", "mark2", "mark3",
                            "verify", "open_page", "read_page", "open_customer", "type_note",
                            "add_note"}
    assert results["verify"]["output"]["json"] == []
    # The browser step read the page a person would see: three reminded invoices.
    rows = results["read_page"]["output"]["rows"]
    assert [(r["ID"], r["Status"]) for r in rows] == [
        ("1002", "reminded"), ("1005", "reminded"), ("1007", "reminded")]
    assert "[verify]" in final["final_answer"]
    # The price of the escalation rule is nil here: under `auto`, nothing asked a human.
    events = read_trace(isolated_env / "traces" / f"{final['thread_id']}.jsonl")
    assert not any(e.event == "approval_requested" for e in events)
    assert not any(r["escalated"] for r in final["results"])
    shown = duet("show", final["thread_id"], "--json")
    assert json.loads(shown.stdout)["status"] == "completed"


def test_run_with_a_failing_step_exits_nonzero(tmp_path, site):
    plan = read_plan(tmp_path, f"{site}/api/customers/999")
    out = duet("run", "read customer 999", "--plan-file", str(plan), "--json",
               "--allow-host", host_of(site))
    assert out.returncode == 1
    final = json.loads(out.stdout)
    assert final["status"] == "failed" and final["results"][0]["status"] == "error"


def test_readme_diagram_matches_the_compiled_graph():
    readme = (ROOT / "README.md").read_text()
    diagram = graph.get_graph().draw_mermaid().strip()
    assert f"```mermaid\n{diagram}\n```" in readme, "regenerate the README diagram"


KILL_PLAN = """
goal: write three notes, wait, then write one more
steps:
{% for n in range(3) %}
  - id: note{{ n }}
    tool: http_request
    args: {url: "{{ site }}/api/notes", method: POST,
           json_body: {customer_id: 1, text: "note {{ n }}"}}
{% endfor %}
  - id: wait
    tool: http_request
    depends_on: [note0, note1, note2]
    args: {url: "{{ site }}/slow?seconds=3"}
  - id: last
    tool: http_request
    depends_on: [wait]
    args: {url: "{{ site }}/api/notes", method: POST, json_body: {customer_id: 1, text: "last"}}
"""


def _trace_events(home: Path, thread: str) -> list[Event]:
    return read_trace(home / "traces" / f"{thread}.jsonl")


@pytest.mark.timeout(180)
def test_killed_run_resumes_without_redoing_completed_steps(tmp_path, site, isolated_env):
    plan = tmp_path / "plan.yaml"
    plan.write_text(KILL_PLAN)
    proc = subprocess.Popen(
        [*DUET, "run", "notes then wait", "--plan-file", str(plan), "--var", f"site={site}",
         "--allow-host", host_of(site),
         "--thread", "kill-me", "--approve", "auto", "--json"], cwd=ROOT, env=os.environ.copy(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(e.event == "step_started" and getattr(e, "step_id", None) == "wait"
                  for e in _trace_events(isolated_env, "kill-me")):
        assert time.monotonic() < deadline and proc.poll() is None, "the run never reached wait"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    out = duet("resume", "kill-me", "--json")
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout)
    assert final["status"] == "completed"
    db = sqlite3.connect(tmp_path / "crm.sqlite")
    texts = sorted(row[0] for row in db.execute("SELECT text FROM notes"))
    assert texts == ["last", "note 0", "note 1", "note 2"], "each write happened exactly once"
    started = [e.step_id for e in _trace_events(isolated_env, "kill-me")
               if isinstance(e, StepStarted)]
    assert sorted(s for s in started if s.startswith("note")) == ["note0", "note1", "note2"]
    assert started.count("wait") == 2  # the step in flight at the kill ran again


def test_doctor_reports_what_is_there_and_what_is_missing():
    out = duet("doctor")
    assert out.returncode == 0, out.stdout
    assert "✓ browser" in out.stdout and "✓ demo site" in out.stdout
    assert "! Nova Act: Nova Act needs credentials" in out.stdout
    assert "! Nova 2 Lite (Bedrock)" in out.stdout
    # Deny by default, and the doctor says so and what to set.
    assert "✓ allowlist: executors may reach no host" in out.stdout
    assert "--allow-host HOST[:PORT]" in out.stdout


def test_doctor_fails_without_a_browser(monkeypatch, tmp_path):
    monkeypatch.setenv("DUET_CHROMIUM", str(tmp_path / "no-chromium"))
    out = duet("doctor")
    assert out.returncode == 1 and "✗ browser" in out.stdout


def test_a_trace_that_cannot_be_written_does_not_stop_the_run(tmp_path, site, isolated_env):
    (isolated_env / "traces" / "no-trace.jsonl").mkdir(parents=True)  # open() will fail
    plan = read_plan(tmp_path, f"{site}/api/customers/2")
    out = duet("run", "read", "--plan-file", str(plan), "--thread", "no-trace", "--json",
               "--allow-host", host_of(site))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "completed"
    assert "cannot write the trace" in out.stderr


def test_ls_and_show_read_a_real_thread_without_building_the_graph(tmp_path, site):
    plan = read_plan(tmp_path, f"{site}/api/customers/3")
    out = duet("run", "read customer 3", "--plan-file", str(plan), "--thread", "ls-1", "--json",
               "--allow-host", host_of(site))
    assert out.returncode == 0, out.stderr
    rows = json.loads(duet("ls", "--json").stdout)
    assert [(r["thread_id"], r["status"], r["steps"], r["task"]) for r in rows] == [
        ("ls-1", "completed", 1, "read customer 3")]
    assert duet("ls").stdout.count("ls-1") == 1
    shown = json.loads(duet("show", "ls-1", "--json").stdout)
    assert shown["status"] == "completed" and shown["results"][0]["output"]["json"]["id"] == 3
    assert duet("show", "no-such-thread").returncode == 2
    # The light commands answer without LangGraph's graph runtime, the Bedrock model or the
    # executors (reading a checkpoint needs LangGraph's serializer, no more). Of `tools`
    # (whose names load on first use) only what the contracts use: its errors, sandbox and
    # hand-offs (models only).
    probe = ("import sys; from graph.app.cli import app\n"
             "for args in (['ls'], ['show', 'ls-1'], ['schema']):\n"
             "    try: app(args)\n"
             "    except SystemExit: pass\n"
             "heavy = [m for m in ('langgraph.graph', 'langgraph.pregel', 'langchain_aws',\n"
             "                     'playwright') if m in sys.modules]\n"
             "heavy += [m for m in sys.modules if m.startswith('tools.')\n"
             "          and m not in ('tools.errors', 'tools.sandbox', 'tools.people')]\n"
             "print('HEAVY', heavy)")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT, env=os.environ.copy(), timeout=60)
    assert "HEAVY []" in loaded.stdout, loaded.stdout[-500:] + loaded.stderr[-2000:]


def test_set_changes_any_setting_and_resume_keeps_it(tmp_path, site):
    plan = tmp_path / "three.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": f"s{i}", "tool": "http_request", "args": {"url": f"{site}/api/customers/{i}"}}
        for i in (1, 2, 3)]}))
    out = duet("run", "read three", "--plan-file", str(plan), "--allow-host", host_of(site),
               "--set", "max_steps=2", "--set", "max_retries=0", "--thread", "capped", "--json")
    final = json.loads(out.stdout)
    assert out.returncode == 1 and final["status"] == "budget_exhausted"
    assert "step budget spent" in final["reason"]
    settings = json.loads((Path(os.environ["DUET_HOME"]) / "runs" / "capped.json").read_text())
    assert settings["context"]["max_steps"] == 2 and settings["context"]["max_retries"] == 0
    resumed = duet("resume", "capped", "--json")
    assert json.loads(resumed.stdout)["status"] == "budget_exhausted"  # still capped at 2


@pytest.mark.parametrize(("setting", "said"), [
    ("max_stepz=5", "no such setting"), ("max_steps=many", "valid integer"),
    ("approval=sometimes", "'ask', 'auto' or 'deny'"), ("max_steps", "NAME=VALUE")])
def test_set_refuses_a_bad_name_or_value_before_any_work(setting, said):
    out = duet("run", "anything", "--plan-file", "/nonexistent.json", "--set", setting)
    assert out.returncode == 2 and said in out.stderr
    assert "Traceback" not in out.stderr
