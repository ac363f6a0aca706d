"""Crash and resume, exactly once: kill the `duet` process with SIGKILL at a random point of a
run that writes to the demo site's database, resume it, and check every write happened once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from graph.app.threads import read_trace
from graph.events import Event

ROOT = Path(__file__).resolve().parents[1]
NOTES = 6
# Three waves of two notes, a short wait between waves, then a status change: the kill
# lands before, during or after a write, or between a write and its checkpoint.
PLAN = """
goal: write six notes in three waves, then mark an invoice
steps:
{% for n in range(6) %}
  - id: note{{ n }}
    tool: http_request
    side_effects: true
    {% if n >= 2 %}depends_on: [wait{{ n // 2 - 1 }}]{% endif %}
    args: {url: "{{ site }}/api/notes", method: POST,
           json_body: {customer_id: 3, text: "{{ trial }} note {{ n }}"}}
{% endfor %}
{% for w in range(2) %}
  - id: wait{{ w }}
    tool: http_request
    depends_on: [note{{ 2 * w }}, note{{ 2 * w + 1 }}]
    args: {url: "{{ site }}/slow?seconds=0.3"}
{% endfor %}
  - id: mark
    tool: http_request
    side_effects: true
    depends_on: [note4, note5]
    args: {url: "{{ site }}/api/invoices/1003", method: PATCH, json_body: {status: reminded}}
"""
STEP_IDS = sorted([f"note{n}" for n in range(NOTES)] + ["wait0", "wait1", "mark"])


@dataclass
class Trial:
    """One kill-and-resume trial and what was found after it."""

    index: int
    kill_after: float
    killed: bool = False
    status: str = ""
    notes: dict[str, int] = field(default_factory=dict)
    journal: dict[str, int] = field(default_factory=dict)
    step_starts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """The run completed, each write once, checkpoints and journal consistent."""
        return not self.problems


def duet_process(*args: str, home: Path, **popen: Any) -> subprocess.Popen:
    """`duet ARGS` in a process of its own on `home`'s default SQLite files (what the
    harness reads back), whatever `DUET_CHECKPOINTER` says."""
    env = {**os.environ, "DUET_HOME": str(home)}
    env.pop("DUET_CHECKPOINTER", None)
    return subprocess.Popen([sys.executable, "-m", "graph.app.cli", *args], cwd=ROOT, env=env,
                            **popen)


def _events(home: Path, thread: str) -> list[Event]:
    return read_trace(home / "traces" / f"{thread}.jsonl")


def run_trial(index: int, site: str, crm_db: Path, workdir: Path, seed: int) -> Trial:
    """Run, kill after a random delay, resume, and check (in this thread; see `run_trials`)."""
    rng = random.Random(seed * 1_000 + index)
    # A run lasts about a second now: most kills land mid-run, some after it ended.
    trial = Trial(index, kill_after=round(rng.uniform(0.0, 1.2), 3))
    home, thread = workdir / f"trial-{index}", f"trial-{index}"
    home.mkdir(parents=True, exist_ok=True)
    plan = home / "plan.yaml"
    plan.write_text(PLAN)
    with (home / "run.out").open("w") as out:
        proc = duet_process("run", "write the notes", "--plan-file", str(plan),
                            "--var", f"site={site}", "--var", f"trial={thread}",
                            "--thread", thread, "--approve", "auto",
                            "--allow-host", urlsplit(site).netloc,
                            "--json", home=home, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not any(e.event == "run_started" for e in _events(home, thread)):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        time.sleep(trial.kill_after)
        trial.killed = proc.poll() is None
        if trial.killed:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    with (home / "resume.out").open("w") as out:
        resumed = duet_process("resume", thread, "--json", home=home, stdout=out,
                               stderr=subprocess.STDOUT)
        resumed.wait(timeout=120)
    lines = (home / "resume.out").read_text()
    final = json.loads(lines[lines.index("{"):]) if "{" in lines else {}
    trial.status = final.get("status", f"no result (exit {resumed.returncode})")
    _check(trial, final, crm_db, home, thread)
    return trial


def _check(trial: Trial, final: dict[str, Any], crm_db: Path, home: Path, thread: str) -> None:
    if trial.status != "completed":
        trial.problems.append(f"the resumed run ended {trial.status}")
    with sqlite3.connect(crm_db, timeout=30) as db:
        rows = db.execute("SELECT text, COUNT(*) FROM notes WHERE text LIKE ? GROUP BY text",
                          (f"{thread} note %",)).fetchall()
    trial.notes = dict(rows)
    expected = {f"{thread} note {n}" for n in range(NOTES)}
    if set(trial.notes) != expected or any(count != 1 for count in trial.notes.values()):
        trial.problems.append(f"writes: {trial.notes}")
    ids = sorted(r["step_id"] for r in final.get("results", []))
    if ids != STEP_IDS:
        trial.problems.append(f"final results {ids}")
    trial.journal, history_problems = asyncio.run(_journal_and_history(home, thread))
    if trial.journal != {"done": NOTES + 1}:
        trial.problems.append(f"journal {trial.journal}")
    trial.problems += history_problems
    trial.step_starts = sum(e.event == "step_started" for e in _events(home, thread))


async def _journal_and_history(home: Path, thread: str) -> tuple[dict[str, int], list[str]]:
    """Journal entry states, and whether the checkpoint chain is one unbroken line."""
    from graph.builder import build_graph
    from graph.checkpoints import open_checkpointer, open_store
    from graph.runtime.ledger import StepLedger

    url = str(home / "checkpoints.sqlite")
    async with open_store(url) as store:
        entries = await StepLedger(store, thread).entries(side_effects_only=True)
    states: dict[str, int] = {}
    for entry in entries:
        states[entry["state"]] = states.get(entry["state"], 0) + 1
    problems = []
    async with open_checkpointer(url) as saver:
        graph = build_graph(checkpointer=saver)
        history = [s async for s in graph.aget_state_history(
            {"configurable": {"thread_id": thread}})]
    for newer, older in zip(history, history[1:], strict=False):
        parent = (newer.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        if parent != older.config["configurable"]["checkpoint_id"]:
            problems.append("the checkpoint chain is broken")
        if newer.metadata["step"] <= older.metadata["step"]:
            problems.append("checkpoint steps do not increase")
    results = history[0].values.get("results", []) if history else []
    if len({r.step_id for r in results}) != len(results):
        problems.append("a step has two results in the final checkpoint")
    return states, problems


def run_trials(count: int, site: str, crm_db: Path, workdir: Path, seed: int = 7,
               parallel: int = 2) -> list[Trial]:
    """`count` trials, `parallel` at a time (each is two processes, mostly waiting)."""
    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda i: run_trial(i, site, crm_db, workdir, seed), range(count)))
