"""Runs at once on one home: rounds of concurrent `duet run` processes on one `DUET_HOME`
(the first on a fresh home), and many runs at once in one process on one SQLite
checkpointer and store. Each run is a 30-step plan with 10 writes to the demo site.

Checked: every run `completed` with every step ok, each write landed exactly once (counted in
the demo site's database), and `duet ls` lists every run.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reliability.crash import duet_process

WRITES, READS = 10, 20
# Ten notes, each read back by two GETs that wait for it: three layers of steps, so several
# of them of each run are in flight together (and the runs' checkpoints interleave).
PLAN = """
goal: write ten notes and read the customers around them
steps:
{% for n in range(10) %}
  - id: note{{ n }}
    tool: http_request
    side_effects: true
    args: {url: "{{ site }}/api/notes", method: POST,
           json_body: {customer_id: {{ n % 6 + 1 }}, text: "{{ run }} note {{ n }}"}}
  - id: read{{ n }}
    tool: http_request
    depends_on: [note{{ n }}]
    args: {url: "{{ site }}/api/customers/{{ n % 6 + 1 }}"}
  - id: notes{{ n }}
    tool: http_request
    depends_on: [read{{ n }}]
    args: {url: "{{ site }}/api/notes?customer_id={{ n % 6 + 1 }}"}
{% endfor %}
"""
STEPS = WRITES + READS


@dataclass
class Round:
    """One round of concurrent runs and what was found after it."""

    index: int
    runs: int
    seconds: float = 0.0
    statuses: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every run completed, every step ok, each write once, all listed."""
        return not self.problems



def notes_written(crm_db: Path, run: str) -> dict[str, int]:
    """How often each of `run`'s notes is in the demo site's database."""
    with sqlite3.connect(crm_db, timeout=30) as db:
        rows = db.execute("SELECT text, COUNT(*) FROM notes WHERE text LIKE ? GROUP BY text",
                          (f"{run} note %",)).fetchall()
    return dict(rows)


def check_run(run: str, final: dict[str, Any], crm_db: Path) -> list[str]:
    """What is wrong with a run's final object and its writes (nothing when it held)."""
    problems = []
    if final.get("status") != "completed":
        problems.append(f"{run} ended {final.get('status')}: {final.get('reason', '')[:300]}")
    results = final.get("results", [])
    bad = [r["step_id"] for r in results if r.get("status") != "ok"]
    if len(results) != STEPS or bad:
        problems.append(f"{run} has {len(results)} results, not ok: {bad}")
    notes = notes_written(crm_db, run)
    expected = {f"{run} note {n}" for n in range(WRITES)}
    if set(notes) != expected or any(count != 1 for count in notes.values()):
        problems.append(f"{run} writes: {len(notes)} notes, counts {sorted(notes.values())}")
    return problems


def run_round(index: int, runs: int, site: str, crm_db: Path, home: Path) -> Round:
    """Start `runs` `duet run` processes at once on `home`, wait for all, check each."""
    found = Round(index, runs)
    plan = home.parent / "concurrency-plan.yaml"
    plan.write_text(PLAN)
    names = [f"r{index}-{n}" for n in range(runs)]
    outs = {name: home.parent / f"{name}.out" for name in names}
    started = time.perf_counter()
    procs = {}
    for name in names:
        with outs[name].open("w") as out:
            procs[name] = duet_process(
                "run", f"concurrent run {name}", "--plan-file", str(plan),
                "--var", f"site={site}", "--var", f"run={name}", "--thread", name,
                "--approve", "auto", "--allow-host", urlsplit(site).netloc, "--json",
                home=home, stdout=out, stderr=subprocess.PIPE)
    for name, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            found.problems.append(f"{name} did not end within 300 s")
        text = outs[name].read_text()
        try:
            final = json.loads(text[text.index("{"):]) if "{" in text else {}
        except ValueError:
            final = {}
        found.statuses[name] = final.get("status", f"no result (exit {proc.returncode})")
        if not final:
            found.problems.append(f"{name}: no result, exit {proc.returncode}: "
                                  f"{err.decode(errors='replace')[-400:]}")
            continue
        found.problems += check_run(name, final, crm_db)
    found.seconds = time.perf_counter() - started
    return found


def listed_runs(home: Path) -> set[str]:
    """The thread ids `duet ls --json` lists on `home`."""
    proc = duet_process("ls", "--limit", "100000", "--json", home=home, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"duet ls failed: {err.decode(errors='replace')[-400:]}")
    return {row["thread_id"] for row in json.loads(out)}


def run_rounds(rounds: int, runs: int, site: str, crm_db: Path, home: Path) -> list[Round]:
    """`rounds` rounds of `runs` processes on one home (fresh at the first), then `duet ls`."""
    done = [run_round(i, runs, site, crm_db, home) for i in range(rounds)]
    listed = listed_runs(home)
    for found in done:
        missing = sorted(set(found.statuses) - listed)
        if missing:
            found.problems.append(f"duet ls does not list {missing}")
    return done


async def run_in_process(runs: int, site: str, crm_db: Path, url: str,
                         prefix: str = "p") -> list[str]:
    """`runs` runs at once in this process through `run_thread`, each opening the SQLite
    checkpointer and store at `url` as an embedding app would; what went wrong (or nothing)."""
    from graph.app.runner import run_thread
    from graph.context import Context

    plan = Path(url).parent / "concurrency-plan.yaml"
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_text(PLAN)
    host = urlsplit(site).netloc

    async def one(name: str) -> list[str]:
        context = Context(plan_file=str(plan), plan_variables={"site": site, "run": name},
                          allowed_hosts=[host], approval="auto")
        _, final = await run_thread(f"concurrent run {name}", thread_id=name, context=context,
                                    checkpointer_url=url)
        return check_run(name, final.model_dump(mode="json"), crm_db)

    found = await asyncio.gather(*(one(f"{prefix}{n}") for n in range(runs)))
    return [problem for problems in found for problem in problems]
