"""SIGKILL at random points of runs that write to the demo site; each resume writes once."""

from __future__ import annotations

import os

import pytest

from reliability.crash import NOTES, run_trials

# `DUET_RELIABILITY=full` runs the heavier count.
TRIALS = 100 if os.environ.get("DUET_RELIABILITY") == "full" else 30


@pytest.mark.timeout(1800)
def test_killed_runs_resume_and_every_write_happens_exactly_once(site, tmp_path):
    trials = run_trials(TRIALS, site, tmp_path / "crm.sqlite", tmp_path / "crash")
    failed = {t.index: t.problems for t in trials if not t.passed}
    assert not failed
    assert all(t.status == "completed" for t in trials)
    assert all(sorted(t.notes.values()) == [1] * NOTES for t in trials)
    assert all(t.journal == {"done": NOTES + 1} for t in trials)
    killed = sum(t.killed for t in trials)
    assert killed >= TRIALS // 2, f"only {killed} trials were killed mid-run"
    print(f"{TRIALS} trials, {killed} killed mid-run, all resumed exactly once")
