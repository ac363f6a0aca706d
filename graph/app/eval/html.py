"""`results.html`: an eval's results as one self-contained page, like the run report: no
script, no network, the style inlined under a Content-Security-Policy that forbids every
load but that style block.

It shows the table per agent and category, then one row per run with its checks (the
failed ones first, in red) and a link to the run's report page or transcript. Answers and
check comments come from runs over untrusted data, so the template escapes every value.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from graph.app.eval.runner import Row, headers, table_rows

TEMPLATE = "results.html"

_env = Environment(loader=FileSystemLoader(Path(__file__).parent),
                   autoescape=select_autoescape(default=True, default_for_string=True))


def render_page(summary: dict[str, Any], rows: list[Row], out_dir: Path) -> str:
    """The page for an eval's summary and rows; links are relative to `out_dir` when the
    report lies inside it (the folder can be moved), `file:` URIs otherwise."""
    runs = [{"row": row, "checks": _checks(row), "link": _link(row.report, out_dir)}
            for row in rows]
    return _env.get_template(TEMPLATE).render(
        summary=summary, headers=headers(summary["trials"]), table=table_rows(summary),
        runs=runs, nonce=secrets.token_urlsafe(16))


def _checks(row: Row) -> list[dict[str, Any]]:
    """The run's checks, failed ones first (each in the order the checkers ran)."""
    checks = [{"key": key, "passed": bool(c["score"]), "comment": c["comment"]}
              for key, c in row.checks.items()]
    return sorted(checks, key=lambda c: c["passed"])


def _link(report: str | None, out_dir: Path) -> str | None:
    if not report:
        return None
    path = Path(report).resolve()
    try:
        return Path(os.path.relpath(path, out_dir.resolve())).as_posix() \
            if path.is_relative_to(out_dir.resolve()) else path.as_uri()
    except ValueError:
        return path.as_uri()


def write_page(out_dir: Path, summary: dict[str, Any], rows: list[Row]) -> Path:
    """Write `results.html` into `out_dir`; return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "results.html"
    page.write_text(render_page(summary, rows, out_dir), encoding="utf-8")
    return page
