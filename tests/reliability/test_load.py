"""50 threads at once on one SQLite checkpointer and on Postgres."""

from __future__ import annotations

import pytest

from reliability.load import run_load

THREADS = 50


@pytest.mark.timeout(600)
async def test_fifty_threads_on_sqlite_keep_their_state_apart(tmp_path):
    result = await run_load(str(tmp_path / "load.sqlite"), "sqlite", THREADS)
    assert result.problems == []
    assert result.checkpoints > 0 and result.checkpoints % THREADS == 0
    print(f"sqlite: {result.runs_per_second:.1f} runs/s, {result.speedup:.2f}x one at a time")


@pytest.mark.timeout(600)
async def test_fifty_threads_on_postgres_keep_their_state_apart(postgres_url):
    result = await run_load(postgres_url, "postgres", THREADS)
    assert result.problems == []
    assert result.checkpoints > 0 and result.checkpoints % THREADS == 0
    print(f"postgres: {result.runs_per_second:.1f} runs/s, {result.speedup:.2f}x one at a time")
