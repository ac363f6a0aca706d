"""`duet eval --compare OLD NEW`: what changed between two evals, task by task.

Each side is a results folder (its `results.json`) or a results JSON file. Per task and
agent: its passes over its trials on each side, and whether it went from pass to fail,
fail to pass, or changed share (`2/3 -> 1/3`); per agent and per category the deltas of
pass@1, pass^k, calls, tokens, cost and wall time. A task that passes fewer of its trials
than before is a regression, and any regression makes the command exit 1, so a prompt or
model change can be gated in CI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.errors import ConfigError

METRICS = ("pass@1", "pass^k", "calls", "tokens_in", "tokens_cached", "tokens_out", "cost_usd",
           "wall_s")


class CompareError(ConfigError, ValueError):
    """A side that is not a results folder or file."""


def load_results(path: str | Path) -> dict[str, Any]:
    """The `{"summary", "tasks"}` object of a results folder or JSON file."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CompareError(f"cannot read the results {str(file)!r}: {exc}") from None
    if not isinstance(data, dict) or "summary" not in data or "tasks" not in data:
        raise CompareError(f"{str(file)!r} is not a duet eval results file "
                           "(no summary and tasks)")
    return data


@dataclass
class TaskChange:
    """One task by one agent on both sides: passes and trials (None: not on that side)."""

    task: str
    agent: str
    category: str
    old: tuple[int, int] | None
    new: tuple[int, int] | None

    @property
    def change(self) -> str:
        """`pass -> fail`, `fail -> pass`, `1/3 -> 2/3`, `added`, `removed` or `same`."""
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        old, new = self.old[0] / self.old[1], self.new[0] / self.new[1]
        if old == new:
            return "same"
        if old == 1 and new == 0:
            return "pass -> fail"
        if old == 0 and new == 1:
            return "fail -> pass"
        return f"{self.old[0]}/{self.old[1]} -> {self.new[0]}/{self.new[1]}"

    @property
    def regression(self) -> bool:
        """True when the task passes a smaller share of its trials than before."""
        return (self.old is not None and self.new is not None
                and self.new[0] / self.new[1] < self.old[0] / self.old[1])


@dataclass
class Comparison:
    """Two evals side by side: the task changes and the metric deltas (old, new)."""

    old: dict[str, Any]
    new: dict[str, Any]
    tasks: list[TaskChange] = field(default_factory=list)
    # (agent, category or "all") -> metric -> (old, new)
    totals: dict[tuple[str, str], dict[str, tuple[float | None, float | None]]] = field(
        default_factory=dict)

    @property
    def regressions(self) -> list[TaskChange]:
        """The tasks that pass a smaller share of their trials than before."""
        return [t for t in self.tasks if t.regression]


def _passes(data: dict[str, Any]) -> dict[tuple[str, str], tuple[str, tuple[int, int]]]:
    runs: dict[tuple[str, str], list[bool]] = {}
    categories = {}
    for row in data["tasks"]:
        key = (row["task"], row["agent"])
        runs.setdefault(key, []).append(bool(row["passed"]))
        categories[key] = row.get("category", "")
    return {key: (categories[key], (sum(p), len(p))) for key, p in runs.items()}


def _metrics(totals: dict[str, Any], trials: int) -> dict[str, float | None]:
    return {m: totals.get(f"pass^{trials}" if m == "pass^k" else m) for m in METRICS}


def compare(old: dict[str, Any], new: dict[str, Any]) -> Comparison:
    """Compare two results objects (`load_results`)."""
    out = Comparison(old, new)
    before, after = _passes(old), _passes(new)
    order = list(before) + [key for key in after if key not in before]
    for key in order:
        category = (after.get(key) or before[key])[0]
        out.tasks.append(TaskChange(key[0], key[1], category,
                                    before[key][1] if key in before else None,
                                    after[key][1] if key in after else None))
    sides = []
    for data in (old, new):
        summary, trials = data["summary"], data["summary"].get("trials", 1)
        flat = {(agent, "all"): _metrics(t, trials) for agent, t in summary["agents"].items()}
        for agent, categories in summary.get("categories", {}).items():
            flat |= {(agent, c): _metrics(t, trials) for c, t in categories.items()}
        sides.append(flat)
    for key in list(sides[0]) + [k for k in sides[1] if k not in sides[0]]:
        a, b = sides[0].get(key, {}), sides[1].get(key, {})
        out.totals[key] = {m: (a.get(m), b.get(m)) for m in METRICS}
    return out


def _delta(old: float | None, new: float | None) -> str:
    if old is None or new is None:
        return "n/a"
    return f"{old:g} → {new:g} ({new - old:+.4g})"


def markdown(comparison: Comparison, old_name: str, new_name: str) -> str:
    """The comparison as Markdown: the regressions, every changed task, the deltas."""
    old_s, new_s = comparison.old["summary"], comparison.new["summary"]
    lines = [f"# duet eval --compare: {old_name} → {new_name}", "",
             f"old: {old_s.get('suite')}, {old_s.get('model')}, {old_s.get('trials')} "
             f"trial(s); new: {new_s.get('suite')}, {new_s.get('model')}, "
             f"{new_s.get('trials')} trial(s) (pass^k: k = the side's trials)", ""]
    regressions = comparison.regressions
    lines.append(f"**{len(regressions)} regression(s)**" + (
        ": " + ", ".join(f"{t.task} ({t.agent}, {t.change})" for t in regressions)
        if regressions else ""))
    lines += ["", "| task | agent | category | old | new | change |", "|---|---|---|---|---|---|"]
    for t in comparison.tasks:
        if t.change == "same":
            continue
        old = f"{t.old[0]}/{t.old[1]}" if t.old else "-"
        new = f"{t.new[0]}/{t.new[1]}" if t.new else "-"
        mark = " **regression**" if t.regression else ""
        lines.append(f"| {t.task} | {t.agent} | {t.category} | {old} | {new} | "
                     f"{t.change}{mark} |")
    same = sum(t.change == "same" for t in comparison.tasks)
    lines += ["", f"{same} task(s) unchanged.", "",
              "| agent | category | " + " | ".join(METRICS) + " |",
              "|---|---|" + "---|" * len(METRICS)]
    for (agent, category), values in comparison.totals.items():
        lines.append(f"| {agent} | {category} | "
                     + " | ".join(_delta(*values[m]) for m in METRICS) + " |")
    return "\n".join(lines) + "\n"
