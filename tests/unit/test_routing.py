"""Routers and the decision trigger: pure functions of state and context."""

from __future__ import annotations

from langgraph.runtime import Runtime

from graph.context import Context
from graph.contracts import Decision, Plan, RunStatus, Step, StepResult
from graph.routing import (
    route_after_act,
    route_after_observe,
    route_after_plan,
    route_after_retry,
    route_after_review,
    route_after_summarize,
    route_start,
)
from graph.runtime.progress import decision_trigger, resolve_args

RUNTIME = Runtime(context=Context())
PLAN = Plan(goal="g", steps=[Step(id="a", tool="t"), Step(id="b", tool="t", depends_on=["a"]),
                             Step(id="c", tool="t", depends_on=["b"], needs_judgment=True)])


def ok(step_id: str, output=None) -> StepResult:
    return StepResult(step_id=step_id, status="ok", output=output)


def task(step_id: str, approved: bool = True) -> dict:
    return {"step": Step(id=step_id, tool="t"), "args": {}, "plan_version": 1, "problem": None,
            "approved": approved}


def test_a_status_always_routes_to_finalize():
    # Even beside a replan decision: a plan node that failed must not be asked again.
    state = {"status": RunStatus.BUDGET_EXHAUSTED, "pending_steps": [task("a")],
             "decision": Decision(action="replan", reason="r")}
    assert route_after_plan(state, RUNTIME) == "finalize"
    assert route_after_act(state) == "finalize"
    assert route_after_observe(state, RUNTIME) == "finalize"
    assert route_after_summarize(state) == "finalize"


def test_after_steps_a_held_step_goes_to_approve_unless_something_must_be_decided():
    running = {"plan": PLAN, "plan_version": 1, "plan_results": {"a": ok("a")},
               "unseen": ["a"]}
    assert route_after_act({**running, "pending_steps": [task("b", approved=False)]}) == (
        "approve")
    assert route_after_plan({**running, "pending_steps": [task("b", approved=False)]},
                            RUNTIME) == "approve"
    failed = {**running, "plan_results": {"a": StepResult(step_id="a", status="error")}}
    assert route_after_act({**failed, "pending_steps": [task("b", approved=False)]}) == (
        "observe")
    assert route_after_act({**running, "pending_steps": []}) == "observe"


def test_a_decision_routes_to_act_plan_or_the_answer():
    assert route_after_observe({"decision": Decision(action="continue", reason="r")},
                               RUNTIME) == "act"
    replan = {"decision": Decision(action="replan", reason="r")}
    assert route_after_plan(replan, RUNTIME) == "plan"
    assert route_after_observe(replan, RUNTIME) == "plan"
    answered = {"status": RunStatus.COMPLETED,
                "decision": Decision(action="finish", reason="r", answer="done [a]")}
    assert route_after_observe(answered, RUNTIME) == "finalize"


def test_large_history_routes_to_summarize_first():
    big = [StepResult(step_id=f"s{i}", status="ok", output="x" * 4000) for i in range(20)]
    state = {"recent": big, "decision": Decision(action="continue", reason="r")}
    small = Runtime(context=Context(summarize_threshold_tokens=1000, keep_recent_results=2))
    assert route_after_observe(state, small) == "summarize"
    assert route_after_observe({**state, "recent": big[18:]}, small) != "summarize"


def test_decision_trigger_fires_only_when_there_is_something_to_decide():
    assert decision_trigger(PLAN, [ok("a")], {"a": ok("a")}) is None
    failed = StepResult(step_id="a", status="error")
    assert "did not succeed" in decision_trigger(PLAN, [failed], {"a": failed})
    done = {"a": ok("a"), "b": ok("b")}
    assert decision_trigger(PLAN, [ok("b")], done) is None
    done["c"] = ok("c")
    assert decision_trigger(PLAN, [ok("c")], done) == "the plan finished"
    plan = Plan(goal="g", steps=[*PLAN.steps, Step(id="d", tool="t", depends_on=["c"])])
    assert "judgment" in decision_trigger(plan, [ok("c")], done)


def test_references_resolve_typed_or_into_text():
    done = {"a": ok("a", {"json": [{"id": 7}]})}
    assert resolve_args({"n": "${a.output.json.0.id}"}, done) == {"n": 7}
    assert resolve_args({"u": "/x/${a.output.json.0.id}/y"}, done) == {"u": "/x/7/y"}


def test_the_retry_input_starts_at_retry_which_continues_the_plan_or_plans_again():
    assert route_start({"task": "t"}) == "plan"
    assert route_start({"task": "t", "retry": True}) == "retry"
    assert route_start({"task": "t", "retry": False, "status": RunStatus.FAILED}) == "plan"
    assert route_after_retry({"plan": PLAN, "status": None}) == "act"
    assert route_after_retry({"plan": None, "status": None}) == "plan"
    # A run that was not one to retry keeps its status: nothing more runs.
    assert route_after_retry({"plan": PLAN, "status": RunStatus.COMPLETED}) == "__end__"


def test_a_plan_under_review_goes_to_review_which_runs_it_or_asks_for_a_new_one():
    waiting = {"plan": PLAN, "plan_version": 1, "awaiting_review": True, "pending_steps": []}
    assert route_after_plan(waiting, RUNTIME) == "review"
    assert route_after_plan({**waiting, "status": RunStatus.BUDGET_EXHAUSTED},
                            RUNTIME) == "finalize"
    assert route_after_retry({**waiting, "status": None}) == "review", (
        "a retry input never runs a plan that waits for review")
    reviewed = {**waiting, "awaiting_review": False}
    assert route_after_review(reviewed) == "act"
    assert route_after_review({**reviewed, "review_feedback": "use the other list"}) == "plan"
    assert route_after_review({**reviewed, "status": RunStatus.FAILED}) == "finalize"
