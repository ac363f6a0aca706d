"""A few cells of the fault matrix (`python -m reliability.matrix` runs them all), with short
bounds set so they fit in CI time: a target site killed mid-step, then `duet retry`; one
restarted within the wait bound."""

from __future__ import annotations

import pytest

from reliability.matrix import run_matrix

BOUND = 5  # seconds: every bound of these cells
SETTINGS = [f"dependency_wait_seconds={BOUND}", f"http_timeout_seconds={BOUND}",
            f"mcp_timeout_seconds={BOUND}"]


@pytest.mark.timeout(900)
def test_fault_matrix_cells_end_typed_retry_completes_and_nothing_is_left(tmp_path):
    cells = {(c.dependency, c.fault): c for c in run_matrix(tmp_path, [
        ("target HTTP site", "killed"), ("target HTTP site", "restarted")], settings=SETTINGS)}
    killed = cells["target HTTP site", "killed"]
    assert (killed.status, killed.retry) == ("failed", "completed"), killed
    assert killed.error == "TargetUnreachable", killed
    restarted = cells["target HTTP site", "restarted"]
    assert (restarted.status, restarted.retry) == ("completed", "-"), restarted
    for cell in cells.values():
        assert cell.writes == "2/2", cell
        assert cell.doubles == 0 and cell.left == 0, cell
