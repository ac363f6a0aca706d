"""Run a suite: every task, agent and trial on a fresh instance of the suite's environment
and its own thread, in parallel up to `concurrency`; score each run with the checkers; sum
up per agent and per category; write the results as JSON and Markdown.
(`graph.app.eval.evaluate` runs a suite locally or as LangSmith experiments; this module
does not know LangSmith.)

A run's instance is started from the task's fixtures (`Environment.start`) and stopped
after the run; the state checker compares its snapshot after the run with the one before,
and counts the writes it received (`graph.app.eval.environment`). An instance with an auth
config (`auth_config`) gives the run its secrets by name, and every file the run left is
then searched for them (`graph.app.eval.secrets`). Nothing here knows which system that is.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graph.app.eval.agents import AgentSettings, Outcome, Run, run_nova_duet, run_react
from graph.app.eval.checkers import run_checkers, state_changes
from graph.app.eval.secrets import check_secrets, resolve_secrets
from graph.app.eval.suite import EvalTask, Suite
from graph.app.threads import trace_path
from graph.checkpoints import run_folder


@dataclass
class Row:
    """One run of one task by one agent (one trial): the `--json` task row."""

    task: str
    category: str
    agent: str
    trial: int
    passed: bool
    checks: dict[str, dict[str, Any]]
    status: str
    steps: int
    calls: int
    tokens_in: int
    tokens_out: int
    cost_usd: float  # the model's tokens and Nova Act's time (`Usage.total_cost_usd`)
    wall_s: float
    report: str | None
    thread: str | None = None
    answer: str = field(default="", repr=False)
    tokens_cached: int = 0  # of tokens_in, those read from the prompt cache
    error: str | None = None


@dataclass
class Job:
    """What to run: a task, by an agent, as which trial."""

    task: EvalTask
    agent: str
    trial: int


def outputs_of(outcome: Outcome, changes: dict[str, Any]) -> dict[str, Any]:
    """A run's outputs as the checkers (and a LangSmith experiment) read them."""
    return {"status": outcome.status, "reason": outcome.reason, "answer": outcome.answer,
            "steps": outcome.steps, "tools": outcome.tools, "errors": outcome.errors,
            "changes": changes,
            "calls": outcome.usage.reasoning_calls, "cost_usd": outcome.usage.total_cost_usd}


async def run_job(job: Job, suite: Suite, settings: AgentSettings) -> tuple[Row, dict[str, Any]]:
    """Run one job on its own instance of the suite's environment; return its row and its
    outputs."""
    environment = suite.env
    name = f"{job.task.id}-{job.agent}-{job.trial}"
    folder = settings.out_dir / "sites" / name
    folder.mkdir(parents=True, exist_ok=True)
    clock, since = time.perf_counter(), time.time()
    instance = await environment.start(job.task.fixtures, folder)
    transcript = settings.out_dir / "transcripts" / f"{name}.json"
    try:
        secrets = await resolve_secrets(getattr(instance, "auth_config", None))
        before = await instance.snapshot()
        run = Run(job.task, instance, mcp_config(instance.mcp_servers, settings, folder))
        text = job.task.text(suite.preamble, instance.variables)
        if job.agent == "react":
            outcome = await run_react(run, text, settings, transcript)
        else:
            outcome = await run_nova_duet(run, text, settings, checkpointer_url(folder))
    finally:
        await instance.stop()
    wall = time.perf_counter() - clock
    changes = state_changes(before, await instance.snapshot(), environment.tables,
                            await instance.writes())
    outputs = outputs_of(outcome, changes)
    checks = {r["key"]: {"score": bool(r["score"]), "comment": r["comment"]}
              for r in run_checkers(outputs, job.task.checkers.model_dump(mode="json"))}
    if secrets:  # every file the run left, and what it said
        thread = outcome.thread or ""
        checks["secrets"] = check_secrets(
            secrets, since, time.time(),
            [folder, transcript, *([run_folder(thread), trace_path(thread)] if thread else [])],
            {"the run's outputs": json.dumps(outputs, default=str)})
    usage = outcome.usage
    row = Row(task=job.task.id, category=job.task.category, agent=job.agent, trial=job.trial,
              passed=all(c["score"] for c in checks.values()), checks=checks,
              status=outcome.status, steps=outcome.steps, calls=usage.reasoning_calls,
              tokens_in=usage.input_tokens, tokens_out=usage.output_tokens,
              cost_usd=usage.total_cost_usd, wall_s=round(wall, 3), report=outcome.report,
              thread=outcome.thread, answer=outcome.answer,
              tokens_cached=usage.cache_read_tokens)
    return row, outputs


async def attempt_job(job: Job, suite: Suite, settings: AgentSettings
                      ) -> tuple[Row, dict[str, Any]]:
    """`run_job`, with a run that raises (a bad fixture, a site that did not start, a bug)
    made a failed row that carries its error: one run's fault must not lose the others'."""
    clock = time.perf_counter()
    try:
        return await run_job(job, suite, settings)
    except Exception as exc:  # noqa: BLE001 - any fault of one run is that run's result
        error = f"{type(exc).__name__}: {exc}"
        return Row(task=job.task.id, category=job.task.category, agent=job.agent,
                   trial=job.trial, passed=False,
                   checks={"run": {"score": False, "comment": f"the run raised {error}"}},
                   status="error", steps=0, calls=0, tokens_in=0, tokens_out=0, cost_usd=0.0,
                   wall_s=round(time.perf_counter() - clock, 3), report=None,
                   error=error), {"status": "error", "reason": error}


def mcp_config(servers: dict[str, dict[str, Any]], settings: AgentSettings,
               folder: Path) -> str | None:
    """The MCP config of a run: the instance's servers and those of the caller's
    `mcp_config` (`--mcp`) as one file in the run's folder; the caller's file as it is
    when the instance has none."""
    mine = settings.context.get("mcp_config")
    if not servers:
        return mine
    from tools.mcp import MCPConfigError

    joined = dict(servers)
    if mine:
        try:
            theirs = json.loads(Path(mine).read_text(encoding="utf-8"))["mcpServers"]
        except (OSError, ValueError, KeyError) as exc:
            raise MCPConfigError(f"cannot read the MCP config {mine!r}: {exc}") from None
        if clash := sorted(joined.keys() & theirs.keys()):
            raise MCPConfigError(f"the MCP config {mine!r} names the environment's own "
                                 f"servers {clash}")
        joined |= theirs
    path = folder / "mcp.json"
    path.touch(mode=0o600)  # the caller's servers' env and headers may hold secrets
    path.write_text(json.dumps({"mcpServers": joined}, indent=1), encoding="utf-8")
    return str(path)


def check_model(settings: AgentSettings) -> None:
    """Raise `ConfigurationError` (what `duet run` says) when the model cannot be used, so a
    real-model eval stops before any work."""
    if settings.model is None:
        return
    from graph.context import Context
    from graph.reasoning import resolve_reasoner

    resolve_reasoner(Context(**settings.context), settings.model)  # the model and its prices


def checkpointer_url(folder: Path) -> str:
    """Where a run keeps its checkpoints and step ledger: `$DUET_CHECKPOINTER` when set,
    else SQLite files in the run's own folder. Not one SQLite file for all: runs at once in
    one process on one file end `failed` now and then with `database is locked` (the
    store's read-then-write transactions cannot wait for each other)."""
    return os.environ.get("DUET_CHECKPOINTER") or str(folder / "checkpoints.sqlite")


async def prepare_storage() -> None:
    """With a shared `$DUET_CHECKPOINTER`, create its tables once before runs start at the
    same time: on a new database, concurrent first set-ups race on the store's migrations."""
    from graph.checkpoints import open_checkpointer, open_store

    if url := os.environ.get("DUET_CHECKPOINTER"):
        async with open_checkpointer(url), open_store(url):
            pass


async def run_suite(
    suite: Suite, tasks: list[EvalTask], agents: list[str], settings: AgentSettings, *,
    trials: int = 1, concurrency: int = 4,
    on_start: Callable[[Job], None] = lambda job: None,
    on_row: Callable[[Row], None] = lambda row: None,
) -> list[Row]:
    """Run every task with every agent `trials` times, `concurrency` at a time; rows come
    back in task, agent, trial order. Raises `ConfigurationError` before any work."""
    check_model(settings)
    await prepare_storage()
    jobs = [Job(task, agent, trial) for task in tasks for agent in agents
            for trial in range(1, trials + 1)]
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(job: Job) -> Row:
        async with slots:
            on_start(job)
            row, _ = await attempt_job(job, suite, settings)
            on_row(row)
            return row

    async with shared_tools(settings):
        return list(await asyncio.gather(*(one(job) for job in jobs)))


@asynccontextmanager
async def shared_tools(settings: AgentSettings) -> AsyncIterator[None]:
    """One registry (one browser pool) for every run of the block, closed at its end (each
    run's browser slots are its own: `max_browser_sessions`)."""
    from tools import default_registry

    settings.tools = default_registry()
    try:
        yield
    finally:
        await settings.tools.aclose()
        settings.tools = None


def _pass_hat_k(passes: list[bool], k: int) -> float:
    """tau-bench's pass^k of one task: the chance that k trials drawn from its n all pass."""
    n, c = len(passes), sum(passes)
    return math.comb(c, k) / math.comb(n, k) if n >= k else 0.0


def _totals(rows: list[Row], k: int) -> dict[str, Any]:
    by_task: dict[str, list[bool]] = {}
    for row in rows:
        by_task.setdefault(row.task, []).append(row.passed)
    runs = len(rows) or 1
    return {
        "tasks": len(by_task), "runs": len(rows),
        "pass@1": round(sum(sum(p) / len(p) for p in by_task.values()) / (len(by_task) or 1), 3),
        f"pass^{k}": round(sum(_pass_hat_k(p, k) for p in by_task.values())
                           / (len(by_task) or 1), 3),
        "calls": round(sum(r.calls for r in rows) / runs, 2),
        "tokens_in": round(sum(r.tokens_in for r in rows) / runs, 1),
        "tokens_cached": round(sum(r.tokens_cached for r in rows) / runs, 1),
        "tokens_out": round(sum(r.tokens_out for r in rows) / runs, 1),
        "cost_usd": round(sum(r.cost_usd for r in rows) / runs, 6),
        "wall_s": round(sum(r.wall_s for r in rows) / runs, 2),
    }


def summarize(rows: list[Row], *, suite: Suite, trials: int, model: str | None,
              wall_s: float) -> dict[str, Any]:
    """Totals per agent and per agent and category (means per run for calls, tokens,
    cost and wall time), and what was run."""
    agents = sorted({r.agent for r in rows})
    return {
        "suite": suite.name, "model": model or "reference plans", "trials": trials,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"), "wall_s": round(wall_s, 2),
        "agents": {agent: _totals([r for r in rows if r.agent == agent], trials)
                   for agent in agents},
        "categories": {agent: {category: _totals([r for r in rows if r.agent == agent
                                                  and r.category == category], trials)
                               for category in sorted({r.category for r in rows
                                                       if r.agent == agent})}
                       for agent in agents},
    }


def lowest_pass(summary: dict[str, Any]) -> float:
    """The lowest pass@1 of any agent (what `--min-pass` is compared with)."""
    return min((totals["pass@1"] for totals in summary["agents"].values()), default=0.0)


COLUMNS = ("tasks", "runs", "pass@1", "pass^k", "calls", "tokens_in", "tokens_cached",
           "tokens_out", "cost_usd", "wall_s")


def table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The summary as table rows: per agent its categories, then `all`."""
    k = summary["trials"]
    out = []
    for agent, totals in summary["agents"].items():
        for category, cat in [*summary["categories"][agent].items(), ("all", totals)]:
            out.append([agent, category, *(_cell(cat[f"pass^{k}" if c == "pass^k" else c], c)
                                           for c in COLUMNS)])
    return out


def _cell(value: Any, column: str) -> str:
    if column == "cost_usd":
        return f"{value:.5f}"
    if column in ("pass@1", "pass^k"):
        return f"{value:.2f}"
    return str(value)


HEADERS = {"tokens_in": "tok in", "tokens_cached": "tok cached", "tokens_out": "tok out",
           "cost_usd": "cost $", "wall_s": "wall s"}


def headers(trials: int) -> list[str]:
    """The table's column names (short, so the table fits a terminal)."""
    return ["agent", "category", *(f"pass^{trials}" if c == "pass^k" else HEADERS.get(c, c)
                                   for c in COLUMNS)]


def markdown(summary: dict[str, Any], rows: list[Row]) -> str:
    """The results as Markdown: the summary table, then one line per run with its checks
    and a link to its report."""
    head = headers(summary["trials"])
    lines = [f"# duet eval: {summary['suite']} ({summary['model']}, {summary['trials']} "
             f"trial(s), {summary['wall_s']} s)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(summary)]
    lines += ["", "| task | agent | trial | passed | status | failed checks | calls | report |",
              "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        failed = "; ".join(f"{key}: {c['comment']}" for key, c in row.checks.items()
                           if not c["score"]).replace("|", "\\|")
        link = f"[report]({Path(row.report).as_uri()})" if row.report else ""
        lines.append(f"| {row.task} | {row.agent} | {row.trial} | "
                     f"{'yes' if row.passed else 'no'} | {row.status} | {failed[:300]} | "
                     f"{row.calls} | {link} |")
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, summary: dict[str, Any], rows: list[Row]) -> tuple[Path, Path]:
    """Write `results.json` ({"summary", "tasks"}) and `results.md` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data, page = out_dir / "results.json", out_dir / "results.md"
    data.write_text(json.dumps(as_json(summary, rows), indent=1), encoding="utf-8")
    page.write_text(markdown(summary, rows), encoding="utf-8")
    return data, page


def as_json(summary: dict[str, Any], rows: list[Row]) -> dict[str, Any]:
    """The `--json` object: the summary and one row per task, agent and trial."""
    return {"summary": summary, "tasks": [asdict(row) for row in rows]}
