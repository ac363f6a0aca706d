"""The fault table: each case ends within its budget with its typed status and reason."""

from __future__ import annotations

import pytest

from reliability.faults import FAULTS, Env, run_fault


def test_the_table_covers_every_area_with_at_least_40_cases():
    assert len(FAULTS) >= 40
    assert {f.area for f in FAULTS} == {"tool", "model", "executor", "effects", "sandbox",
                                        "storage"}
    assert len({(f.area, f.name) for f in FAULTS}) == len(FAULTS)


@pytest.mark.parametrize("fault", FAULTS, ids=[f"{f.area}: {f.name}" for f in FAULTS])
async def test_fault_ends_with_its_status_and_breaks_nothing_else(fault, site, converse):
    env = Env(site, converse)
    try:
        outcome = await run_fault(fault, env)
    finally:
        await env.pool.aclose()
    assert outcome.status == fault.expect.value, outcome.reason
    assert outcome.passed, outcome.problems
