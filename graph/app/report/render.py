"""The run report as one self-contained HTML page: no network, no script, assets inlined.

The page is built from untrusted tool output, so the template escapes every value
(autoescape), screenshots are embedded as `data:` images, and a Content-Security-Policy
forbids every load but those images and the page's own style block.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from graph.app.report.data import ANSWER_CITATION

TEMPLATE = "report.html"
NODE_W, NODE_H, COLUMN, ROW = 150, 40, 190, 56  # dependency graph, in pixels
GANTT_W, BAR_H = 900, 22
LABEL_W = 170  # room for the row labels left of the timeline

_env = Environment(loader=FileSystemLoader(Path(__file__).parent),
                   autoescape=select_autoescape(default=True, default_for_string=True))


def render(data: dict[str, Any]) -> str:
    """The report page for `report_data`'s JSON."""
    nonce = secrets.token_urlsafe(16)
    return _env.get_template(TEMPLATE).render(
        data=data, nonce=nonce, graphs=[_graph(plan, data["steps"]) for plan in data["plans"]],
        gantt=_gantt(data), images={s["anchor"]: _data_uri(s["screenshot"])
                                    for s in data["steps"] if s["screenshot"]},
        when=_clock(data["started"]), answer=_answer_parts(data))


def _answer_parts(data: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The answer as text pieces; a cited step id comes with the anchor it links to."""
    parts: list[tuple[str, str | None]] = []
    pieces = ANSWER_CITATION.split(data["answer"] or "(no answer)")
    for index, piece in enumerate(pieces):  # odd pieces are the ids inside [...]
        if index % 2 == 0:
            parts.append((piece, None))
        elif piece in data["citations"]:
            parts.append((piece, data["citations"][piece]))
        else:
            parts.append((f"[{piece}]", None))
    return parts


def _graph(plan: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Boxes and arrows of one plan version: a column per dependency depth."""
    results = {s["step_id"]: s for s in steps if s["plan_version"] == plan["version"]}
    depth: dict[str, int] = {}
    for step in plan["steps"]:  # dependencies come first in a valid plan
        depth[step["id"]] = 1 + max((depth.get(d, 0) for d in step["depends_on"]), default=-1)
    rows: dict[int, int] = {}
    boxes = {}
    for step in plan["steps"]:
        column = depth[step["id"]]
        row = rows[column] = rows.get(column, -1) + 1
        result = results.get(step["id"])
        boxes[step["id"]] = {
            "id": step["id"], "tool": step["tool"], "x": 10 + column * COLUMN,
            "y": 10 + row * ROW, "status": result["status"] if result else "not run",
            "anchor": result["anchor"] if result else None,
            "critical": bool(result and result["critical"])}
    edges = [{"x1": boxes[d]["x"] + NODE_W, "y1": boxes[d]["y"] + NODE_H / 2,
              "x2": boxes[s["id"]]["x"], "y2": boxes[s["id"]]["y"] + NODE_H / 2}
             for s in plan["steps"] for d in s["depends_on"] if d in boxes]
    width = 20 + (max(depth.values(), default=0) + 1) * COLUMN
    height = 20 + (max(rows.values(), default=0) + 1) * ROW
    return {"version": plan["version"], "goal": plan["goal"], "boxes": list(boxes.values()),
            "edges": edges, "width": width, "height": height, "node_w": NODE_W,
            "node_h": NODE_H}


def _gantt(data: dict[str, Any]) -> dict[str, Any]:
    """Bars of steps and reasoning calls against wall-clock time, in start order."""
    bars = [{"label": f"{r['kind']} (model)", "kind": "reasoning", "status": "reasoning"
             if r["ok"] else "error", "started": r["started"], "ended": r["ended"],
             "anchor": None, "critical": False} for r in data["reasoning"]]
    bars += [{"label": f"v{s['plan_version']} {s['step_id']} {s['tool']}", "kind": "step",
              "status": s["status"], "started": s["started"], "ended": s["ended"],
              "anchor": s["anchor"], "critical": s["critical"]} for s in data["steps"]]
    bars.sort(key=lambda b: (b["started"], b["ended"]))
    if not bars:
        return {"bars": [], "width": GANTT_W + LABEL_W, "height": 40, "ticks": []}
    start = min(b["started"] for b in bars)
    span = max(max(b["ended"] for b in bars) - start, 1e-3)
    scale = GANTT_W / span
    for row, bar in enumerate(bars):
        bar |= {"x": LABEL_W + (bar["started"] - start) * scale, "y": 24 + row * (BAR_H + 4),
                "w": max((bar["ended"] - bar["started"]) * scale, 2.0),
                "seconds": bar["ended"] - bar["started"]}
    step = _tick(span)
    ticks = [{"x": LABEL_W + i * step * scale, "label": f"{i * step:g} s"}
             for i in range(int(span / step) + 1)]
    return {"bars": bars, "width": GANTT_W + LABEL_W + 40,
            "height": 34 + len(bars) * (BAR_H + 4), "ticks": ticks, "bar_h": BAR_H}


def _tick(span: float) -> float:
    """A round tick interval giving at most about ten ticks over `span` seconds."""
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600):
        if span / step <= 10:
            return step
    return 1800


def _data_uri(path: str) -> str | None:
    """A PNG screenshot as a `data:` URI, so the page needs no file beside it."""
    try:
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
    except OSError:
        return None


def _clock(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
