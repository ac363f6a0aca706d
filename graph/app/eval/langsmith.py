"""The LangSmith path of `duet eval`: with `LANGSMITH_API_KEY` set, the selected tasks are
a LangSmith dataset and each agent's run of them is an experiment (`langsmith.aevaluate`)
whose evaluators are the eval's checkers, the same functions that score runs offline.

The dataset's name carries a hash of its tasks (`duet-eval-crm-1a2b3c4d`), so a changed
suite makes a new dataset instead of silently changing an old one's examples.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from graph.app.eval.agents import AgentSettings
from graph.app.eval.checkers import CHECKERS
from graph.app.eval.runner import (
    Job,
    Row,
    attempt_job,
    check_model,
    prepare_storage,
    shared_tools,
)
from graph.app.eval.suite import EvalTask, Suite


def langsmith_enabled() -> bool:
    """True when runs should go to LangSmith (an API key is set)."""
    return bool(os.environ.get("LANGSMITH_API_KEY"))


def example_of(task: EvalTask) -> dict[str, Any]:
    """One task as a LangSmith example: inputs (id, category, text) and reference outputs
    (its checkers)."""
    return {"inputs": {"task_id": task.id, "category": task.category, "task": task.task},
            "reference_outputs": task.checkers.model_dump(mode="json"),
            "metadata": {"category": task.category}}


def dataset_name(suite: Suite, tasks: list[EvalTask]) -> str:
    """The dataset's name: the suite's, and a hash of the selected tasks' examples."""
    digest = hashlib.sha256(json.dumps([example_of(t) for t in tasks], sort_keys=True)
                            .encode()).hexdigest()[:8]
    return f"duet-eval-{suite.name}-{digest}"


def ensure_dataset(client: Any, suite: Suite, tasks: list[EvalTask]) -> str:
    """Create the dataset of `tasks` unless it exists; return its name."""
    name = dataset_name(suite, tasks)
    if not client.has_dataset(dataset_name=name):
        dataset = client.create_dataset(name, description=suite.description or suite.name)
        client.create_examples(dataset_id=dataset.id, examples=[example_of(t) for t in tasks])
    return name


def _evaluator(check: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """A checker in the signature `langsmith.evaluate` reads by name."""
    def evaluate(outputs: dict[str, Any], reference_outputs: dict[str, Any]) -> dict[str, Any]:
        return check(outputs=outputs, reference_outputs=reference_outputs)

    evaluate.__name__ = check.__name__.removeprefix("check_")
    return evaluate


async def run_experiments(
    suite: Suite, tasks: list[EvalTask], agents: list[str], settings: AgentSettings, *,
    trials: int = 1, concurrency: int = 4,
    on_start: Callable[[Job], None] = lambda job: None,
    on_row: Callable[[Row], None] = lambda row: None,
) -> list[Row]:
    """One LangSmith experiment per agent over the dataset of `tasks` (`trials`
    repetitions); returns the same rows as a local run."""
    from langsmith import Client

    check_model(settings)
    await prepare_storage()
    client = Client()
    data = await asyncio.to_thread(ensure_dataset, client, suite, tasks)
    by_id = {task.id: task for task in tasks}
    rows: list[Row] = []
    try:
        async with shared_tools(settings):
            for agent in agents:
                await _experiment(agent, data, by_id, suite, settings, rows, trials=trials,
                                  concurrency=concurrency, on_start=on_start, on_row=on_row,
                                  client=client)
    finally:
        await asyncio.to_thread(client.flush)  # the runs' traces, sent in the background
    order = {(t.id, a): i for i, (t, a) in enumerate((t, a) for t in tasks for a in agents)}
    return sorted(rows, key=lambda r: (order[(r.task, r.agent)], r.trial))


async def _experiment(agent: str, data: str, by_id: dict[str, EvalTask], suite: Suite,
                      settings: AgentSettings, rows: list[Row], *, trials: int,
                      concurrency: int, on_start: Callable[[Job], None],
                      on_row: Callable[[Row], None], client: Any) -> None:
    """One agent's experiment; its rows are appended to `rows`."""
    from langsmith import aevaluate

    trial_of: dict[str, int] = {}

    async def target(inputs: dict[str, Any]) -> dict[str, Any]:
        task_id = inputs["task_id"]
        trial_of[task_id] = trial_of.get(task_id, 0) + 1
        job = Job(by_id[task_id], agent, trial_of[task_id])
        on_start(job)
        row, outputs = await attempt_job(job, suite, settings)
        rows.append(row)
        on_row(row)
        return outputs

    await aevaluate(
        target, data=data, evaluators=[_evaluator(check) for check in CHECKERS],
        experiment_prefix=f"{suite.name}-{agent}", num_repetitions=trials,
        max_concurrency=concurrency, client=client,
        metadata={"agent": agent, "model": settings.model or "reference plans",
                  "suite": suite.name})

