"""`duet eval`: how well an agent does a suite of real tasks, scored by checkers.

`suite` (the YAML task format), `checkers` (state, answer, limits, tools: evaluators of
the openevals / LangSmith shape), `agents` (this graph and a ReAct baseline on the same
model, tools, sandbox and approval policy), `runner` (trials, concurrency, tables,
results), `langsmith` (the suite as a dataset, each eval an experiment), `evaluate`
(either of those, then the results), `compare` (two evals, task by task), `html` (the
results page), `console` (where `duet eval` prints: piped, its lines keep their width).
"""

from graph.app.eval.agents import AGENTS, AgentSettings, Outcome
from graph.app.eval.checkers import (
    CHECKERS,
    check_answer,
    check_limits,
    check_state,
    check_tools,
    run_checkers,
)
from graph.app.eval.evaluate import run_eval
from graph.app.eval.runner import Job, Row, run_job, run_suite
from graph.app.eval.suite import DEFAULT_SUITE, EvalTask, Suite, SuiteError, load_suite

__all__ = [
    "AGENTS", "CHECKERS", "DEFAULT_SUITE", "AgentSettings", "EvalTask", "Job", "Outcome", "Row",
    "Suite", "SuiteError", "check_answer", "check_limits", "check_state", "check_tools",
    "load_suite", "run_checkers", "run_eval", "run_job", "run_suite",
]
