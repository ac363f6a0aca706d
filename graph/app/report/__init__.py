"""The run report: one HTML page (and its JSON) showing a run's plans, timeline, steps,
reasoning calls and approvals (`duet report THREAD`)."""

from __future__ import annotations

from pathlib import Path

from graph.app.report.data import report_data
from graph.app.report.render import render
from graph.checkpoints import run_folder


def report_path(thread_id: str) -> Path:
    """Where a run's report page is written."""
    return run_folder(thread_id) / "report.html"


async def write_report(thread_id: str, checkpointer_url: str | None = None) -> Path:
    """Write the run's report page; return its path (raises `UnknownThread`)."""
    page = render(await report_data(thread_id, checkpointer_url))
    path = report_path(thread_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["report_data", "report_path", "write_report"]
