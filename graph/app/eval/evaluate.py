"""`duet eval` end to end: run the suite (as LangSmith experiments when `LANGSMITH_API_KEY`
is set, locally otherwise: the same runs and checkers), sum up, write the results.

It sits above `runner` and `langsmith` so that they depend one way: `langsmith` uses the
runner's jobs and rows, and the runner knows nothing of LangSmith.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graph.app.eval.agents import AgentSettings
from graph.app.eval.html import write_page
from graph.app.eval.langsmith import langsmith_enabled, run_experiments
from graph.app.eval.runner import Job, Row, run_suite, summarize, write_results
from graph.app.eval.suite import EvalTask, Suite


async def run_eval(
    suite: Suite, tasks: list[EvalTask], agents: list[str], settings: AgentSettings, *,
    trials: int = 1, concurrency: int = 4,
    on_start: Callable[[Job], None] = lambda job: None,
    on_row: Callable[[Row], None] = lambda row: None,
) -> tuple[dict[str, Any], list[Row], tuple[Path, Path, Path]]:
    """Run, sum up and write `results.json`, `results.md` and `results.html`; return the
    summary, the rows and those three paths. A run that raises is a failed row
    (`runner.attempt_job`), so the results are written whatever a run did."""
    clock = time.perf_counter()
    run = run_experiments if langsmith_enabled() else run_suite
    rows = await run(suite, tasks, agents, settings, trials=trials, concurrency=concurrency,
                     on_start=on_start, on_row=on_row)
    summary = summarize(rows, suite=suite, trials=trials, model=settings.model,
                        wall_s=time.perf_counter() - clock)
    data, page = write_results(settings.out_dir, summary, rows)
    return summary, rows, (data, page, write_page(settings.out_dir, summary, rows))
