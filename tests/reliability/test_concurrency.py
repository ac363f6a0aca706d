"""Runs at once on one home never lose a run: concurrent `duet run` processes on one
`DUET_HOME` (fresh, then in use), and concurrent runs in one process on one SQLite file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reliability.concurrency import WRITES, notes_written, run_in_process, run_rounds

# `DUET_RELIABILITY=full` runs the acceptance size (`python -m reliability --full` prints it).
ROUNDS = 20 if os.environ.get("DUET_RELIABILITY") == "full" else 2


@pytest.mark.timeout(1800)
def test_concurrent_processes_on_one_home_all_complete_each_write_once(site, tmp_path):
    rounds = run_rounds(ROUNDS, 8, site, tmp_path / "crm.sqlite", tmp_path / "home")
    assert {i: r.problems for i, r in enumerate(rounds) if r.problems} == {}
    assert all(s == "completed" for r in rounds for s in r.statuses.values())
    assert sum(len(r.statuses) for r in rounds) == 8 * ROUNDS
    assert notes_written(tmp_path / "crm.sqlite", "r0-0") == {
        f"r0-0 note {n}": 1 for n in range(WRITES)}


@pytest.mark.timeout(600)
async def test_concurrent_runs_in_one_process_share_one_sqlite_file(site, tmp_path: Path):
    url = str(tmp_path / "embedded" / "checkpoints.sqlite")
    assert await run_in_process(8, site, tmp_path / "crm.sqlite", url) == []
    assert len(notes_written(tmp_path / "crm.sqlite", "p7")) == WRITES
