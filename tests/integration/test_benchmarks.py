"""The benchmark command at its smoke size: every figure is produced (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_smoke_produces_every_figure(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((tmp_path / "smoke.json").read_text())
    assert {"parallel_speedup", "reasoning_cost", "uneven_dags", "first_tool_call",
            "context_growth", "long_runs", "remote_execution", "real_http", "fixed_cost",
            "startup", "memory",
            "machine", "settings"} <= results.keys()
    speed = results["parallel_speedup"]
    assert [r["k"] for r in speed] == [1, 4]
    # Ratios against baselines measured in the same run, not absolute times.
    assert all(r["speedup_vs_react"] > 0 and r["wall_over_critical_path"] > 0 for r in speed)
    # Structural facts, not timings: plan and join whatever k is, ReAct k+1 calls.
    assert [r["reasoning_calls"] for r in speed] == [2, 2]
    assert [r["react_calls"] for r in speed] == [2, 5]
    assert all(r["ours_over_critical_path"] > 0 for r in results["uneven_dags"])
    # Steps start from the streamed plan: the last one can only start once it is whole.
    first = results["first_tool_call"]
    assert 0 < first["steps_started_before_plan_ended"] < first["steps"]
    growth = results["context_growth"]["series"]
    assert len(growth["summarization_on"]) > 40
    # Figure 4 on both checkpointers, each with its bare loop; figure 6 at both run sizes.
    long = results["long_runs"]
    assert {(r["backend"], r["workload"]) for r in long} == {
        (backend, workload) for backend in ("sqlite", "postgres")
        for workload in ("chained plan", "a plan per step", "bare LangGraph loop")}
    assert all(r["kib_per_step"] > 0 and r["ms_per_step"] > 0 for r in long)
    assert [r["steps"] for r in results["memory"] if r.get("steps")] == [10, 40]
    # Figure 9 ran the same plan in-process and on one and two executor servers.
    remote = results["remote_execution"]
    assert [r["how"] for r in remote["rows"]] == [
        "in-process", "1 executor server", "2 executor servers"]
    assert remote["remote_ms_per_step"] > 0 and remote["in_process_ms_per_step"] > 0
    # Figure 10: the real tool and both baselines sent the same requests, on both shapes.
    http = results["real_http"]
    assert [(r["k"], r["shape"]) for r in http] == [(20, "fan-out"), (20, "uneven DAG")]
    assert all(r[f"{who}_tool_phase_s"] >= r["critical_path_s"] * 0.9
               for r in http for who in ("bare", "ours", "react"))
    assert "Goals:" in out.stdout and "| k | wall |" in out.stdout
    assert results["fixed_cost"]["ours_ms"] > 0 and results["fixed_cost"]["react_ms"] > 0
    # Figure 11 ran in real Chromium, and the queue of more tasks than slots finished, each
    # task's completion time within the wall time of all of them.
    browser = results["browser_sessions"]
    assert [r["k"] for r in browser["rows"]] == [2] and all(r["ratio"] > 0 for r in browser["rows"])
    [queue] = browser["queues"]
    assert queue["status"] == "completed" and queue["statuses"] == ["ok"]
    assert 0 < queue["ours_p50_s"] <= queue["ours_p95_s"] <= queue["ours_wall_s"] * 1.001
    assert 0 < queue["bare_p50_s"] <= queue["bare_p95_s"] <= queue["bare_wall_s"]
    # Figure 12: both contenders, caching off, cold and warm; the warm run read the cache.
    cached = {(r["agent"], r["caching"]): r for r in results["prompt_caching"]["rows"]}
    assert len(cached) == 6 and cached[("nova-duet", "on, warm")]["cache_read_tokens"] > 0
    # Figure 13: the three arms of the logged-in task, the warm profile without a login.
    logins = {r["arm"]: r["login_requests"] for r in results["browser_logins"]["rows"]}
    assert logins == {"fresh": [2, 2], "warm": [0, 0], "bare": [2, 2]}


@pytest.mark.browser
def test_the_login_figure_alone_runs_its_three_arms_and_saves_its_table(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "browser_logins",
                          "--smoke", "--save", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    saved = json.loads((tmp_path / "smoke-browser_logins.json").read_text())
    figure = saved["browser_logins"]
    assert saved["size"] == "smoke" and saved["machine"]["cores"]
    rows = {r["arm"]: r for r in figure["rows"]}
    # Every task read the status behind the login (the figure raises otherwise); the CRM's
    # login log: the password and the code for each fresh login, nothing for the warm one.
    assert figure["read"] == "open" and figure["repeats"] == 2
    assert {arm: r["login_requests"] for arm, r in rows.items()} == {
        "fresh": [2, 2], "warm": [0, 0], "bare": [2, 2]}
    assert rows["bare"]["over_bare"] == 1.0
    assert all(0 < r["median_s"] <= r["p90_s"] and len(r["walls_s"]) == 2
               for r in rows.values())
    assert len(figure["load_average"]) == 2
    table = (tmp_path / "smoke-browser_logins.md").read_text()
    assert "| nova-duet, warm profile |" in table
    goals = table.split("Goals:", 1)[1].strip().splitlines()
    assert len(goals) == 2 and all(g.startswith(("- met: ", "- MISSED: ")) for g in goals)


def test_the_docs_show_the_committed_full_run_and_the_readme_its_verdicts():
    table = (ROOT / "benchmarks/results/full.md").read_text().strip()
    docs = (ROOT / "docs/benchmarks.md").read_text()
    assert table in docs
    # A figure run alone since (`--only ... --save`), until a full run has it.
    assert (ROOT / "benchmarks/results/full-browser_logins.md").read_text().strip() in docs
    verdicts = table.split("Goals:", 1)[1].strip().splitlines()
    readme = (ROOT / "README.md").read_text()
    assert verdicts and all(line in readme for line in verdicts)
    for chart in ("parallel_speedup", "reasoning_tokens", "uneven_dags", "context_growth",
                  "overhead"):
        assert (ROOT / f"benchmarks/results/{chart}.png").stat().st_size > 1000
