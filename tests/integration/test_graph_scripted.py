"""The whole graph with a scripted reasoning model and real tools."""

from __future__ import annotations

import asyncio

from langchain_core.tools import tool

from graph import Context, Decision, Plan, RunStatus, Step, build_graph
from graph.testing import ScriptedChatModel
from tools import ToolError, ToolRegistry, default_registry

calls: list[str] = []


@tool
async def wait(label: str, seconds: float = 0.3) -> str:
    """Sleep `seconds`, then return `label`."""
    calls.append(label)
    await asyncio.sleep(seconds)
    return label


@tool
async def flaky(label: str) -> str:
    """Fail with a retryable error the first time for each label."""
    calls.append(label)
    if calls.count(label) == 1:
        raise ToolError("temporarily down", retryable=True)
    return label


@tool
async def broken(label: str) -> str:
    """Always fail."""
    raise ValueError(f"cannot do {label}")


def registry() -> ToolRegistry:
    calls.clear()
    return ToolRegistry([wait, flaky, broken], read_only=True)


def step(id: str, tool: str = "wait", deps: list[str] | None = None, **args) -> Step:
    return Step(id=id, tool=tool, args={"label": id, **args}, depends_on=deps or [])


def finish(reason: str = "done") -> Decision:
    return Decision(action="finish", reason=reason)


async def run(model, task: str = "t", tools=None, **context):
    graph = build_graph(model=model, tools=tools or registry())
    return await graph.ainvoke({"task": task}, context=Context(**context))


async def test_happy_path_runs_the_plan_and_cites_steps():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step("s1"), step("s2", deps=["s1"], label="${s1.output}-2")]),
        finish(), "Done: s1 then s2 [s1][s2]."])
    out = await run(model)
    assert out["status"] == RunStatus.COMPLETED
    assert [r.output for r in out["results"]] == ["s1", "s1-2"]
    assert out["final_answer"] == "Done: s1 then s2 [s1][s2]."
    # Routine progress (s1 -> s2) asked the model nothing: plan, one decision, the answer.
    assert len(model.prompts) == 3


async def test_independent_steps_run_concurrently():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step(f"s{i}", seconds=0.5) for i in range(4)]), finish(), "ok"])
    out = await run(model)
    assert out["status"] == RunStatus.COMPLETED
    windows = [(r.started_at.timestamp(), r.started_at.timestamp() + r.duration_ms / 1000)
               for r in out["results"]]
    latest_start = max(start for start, _ in windows)
    earliest_end = min(end for _, end in windows)
    assert latest_start < earliest_end, "every step overlapped every other one"


async def test_retryable_errors_are_retried_and_others_are_not():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step("a", "flaky"), step("b", "broken")]), finish("b failed"), "x"])
    out = await run(model)
    by_id = {r.step_id: r for r in out["results"]}
    assert by_id["a"].status == "ok" and by_id["a"].attempts == 2
    assert by_id["b"].status == "error" and by_id["b"].attempts == 1
    assert by_id["b"].error.type == "ValueError" and not by_id["b"].error.retryable
    assert out["status"] == RunStatus.FAILED


async def test_replan_after_an_error_recovers():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step("s1", "broken")]),
        Decision(action="replan", reason="s1 failed; use wait"),
        Plan(goal="g", steps=[step("s1b")]),
        finish(), "recovered [s1b]"])
    out = await run(model)
    assert out["status"] == RunStatus.COMPLETED
    assert [(r.step_id, r.status, r.plan_version) for r in out["results"]] == [
        ("s1", "error", 1), ("s1b", "ok", 2)]
    replan_prompt = model.prompts[2][1].content
    assert "cannot do s1" in replan_prompt and "previous plan" in replan_prompt


async def test_unknown_tool_never_runs_and_the_planner_sees_why():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step("s1"), step("s2", "delete_everything", label="x")]),
        Plan(goal="g", steps=[step("s1")]), finish(), "ok"])
    out = await run(model)
    assert out["status"] == RunStatus.COMPLETED
    rejected = [r for r in out["results"] if r.status == "rejected"]
    assert [(r.step_id, r.error.type) for r in rejected] == [("s2", "UnknownTool")]
    # Nothing of the invalid plan ran, not even its valid step: s1 ran once, in plan 2.
    assert calls == ["s1"]
    assert "delete_everything" in model.prompts[1][1].content


async def test_bad_arguments_are_rejected_before_running():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[Step(id="s1", tool="wait", args={"label": 5, "color": "red"})]),
        Plan(goal="g", steps=[step("s1")]), finish(), "ok"])
    out = await run(model)
    first = out["results"][0]
    assert first.status == "rejected" and first.error.type == "InvalidArguments"
    assert "color" in first.error.message and "label" in first.error.message
    assert calls == ["s1"]


async def test_malformed_model_output_is_retried_then_fails():
    model = ScriptedChatModel(responses=[
        "not json at all",
        {"name": "Plan", "args": {"goal": "g", "steps": [{"id": "a", "tool": "wait"}],
                                  "extra": 1}},
        {"name": "Plan", "args": {"goal": "g", "steps": "wrong type"}},
    ])
    out = await run(model)
    assert out["status"] == RunStatus.FAILED
    assert "no valid plan after 3 attempts" in out["reason"]
    assert "Your previous answer was not a valid plan" in model.prompts[1][1].content
    assert out["results"] == [] and calls == []


async def test_unknown_dependency_id_is_a_validation_error():
    model = ScriptedChatModel(responses=[
        {"name": "Plan", "args": {"goal": "g", "steps": [
            {"id": "a", "tool": "wait", "args": {"label": "a"}, "depends_on": ["zz"]}]}},
        Plan(goal="g", steps=[step("a")]), finish(), "ok"])
    out = await run(model)
    assert out["status"] == RunStatus.COMPLETED
    assert "unknown step ids ['zz']" in model.prompts[1][1].content


async def test_a_planner_that_repeats_its_plan_ends_loop_detected():
    same = Plan(goal="g", steps=[step("s1", "broken")])
    replan = Decision(action="replan", reason="try again")
    model = ScriptedChatModel(responses=[same, replan, same, "partial answer"])
    out = await run(model, max_replans=10)
    assert out["status"] == RunStatus.LOOP_DETECTED
    assert "repeated an earlier plan" in out["reason"]
    assert out["final_answer"] == "partial answer"


async def test_replans_without_progress_end_loop_detected():
    replan = Decision(action="replan", reason="again")
    plans = [Plan(goal="g", steps=[step(f"s{i}", "broken", label=str(i))]) for i in range(10)]
    script = [plans[0]] + [x for p in plans[1:] for x in (replan, p)]
    model = ScriptedChatModel(responses=[*script[:7], "gave up"])
    out = await run(model, max_replans=10, max_stalled_replans=2)
    assert out["status"] == RunStatus.LOOP_DETECTED
    assert "without a new successful step" in out["reason"]


async def test_replan_budget():
    replan = Decision(action="replan", reason="again")
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step("a", "broken")]), replan,
        Plan(goal="g", steps=[step("b", "broken")]), replan, "stopped"])
    out = await run(model, max_replans=1, max_stalled_replans=5)
    assert out["status"] == RunStatus.BUDGET_EXHAUSTED
    assert "replan budget" in out["reason"]
    assert out["final_answer"] == "stopped"


async def test_a_100_step_plan_with_a_retry_or_a_fix_completes_under_the_defaults():
    steps = [step(f"s{i}", seconds=0) for i in range(100)]
    retried = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[*steps[:-1], step("s99", "flaky")]), finish(), "done [s0]"])
    out = await run(retried)
    assert out["status"] == RunStatus.COMPLETED, out["reason"]
    assert sum(r.attempts for r in out["results"]) == 101
    fixed = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[*steps[:-1], step("s99", "broken")]),
        Decision(action="replan", reason="s99 failed; use wait"),
        Plan(goal="g", steps=[step("s99b", seconds=0)]), finish(), "done [s99b]"])
    out = await run(fixed)
    assert out["status"] == RunStatus.COMPLETED, out["reason"]
    assert len(out["results"]) == 101


async def test_a_runaway_plan_still_ends_on_the_default_step_budget():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step(f"s{i}", seconds=0) for i in range(400)]), "partial"])
    out = await run(model)
    assert out["status"] == RunStatus.BUDGET_EXHAUSTED and "step budget" in out["reason"]
    assert len(out["results"]) == Context().max_steps


async def test_step_budget_stops_before_running_more_steps():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step(f"s{i}", seconds=0.01) for i in range(6)]), "partial"])
    out = await run(model, max_steps=4)
    assert out["status"] == RunStatus.BUDGET_EXHAUSTED
    assert len(out["results"]) == 4 and "step budget" in out["reason"]


async def test_tool_call_budget_counts_retries():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step("a", "flaky"), step("b", "flaky", deps=["a"])]), "partial"])
    out = await run(model, max_tool_calls=2)
    assert out["status"] == RunStatus.BUDGET_EXHAUSTED
    assert "tool-call budget" in out["reason"]
    assert [r.step_id for r in out["results"]] == ["a"]


async def test_deadline_stops_the_run():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step("a", seconds=0.3), step("b", deps=["a"])]), "late"])
    out = await run(model, deadline_seconds=0.2)
    assert out["status"] == RunStatus.BUDGET_EXHAUSTED
    assert "deadline" in out["reason"]
    assert [r.step_id for r in out["results"]] == ["a"]


async def test_token_budget_stops_and_answers_without_the_model():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step("a"), step("b", deps=["a"])])])
    out = await run(model, token_budget=50)
    assert out["status"] == RunStatus.BUDGET_EXHAUSTED
    assert "token budget" in out["reason"]
    assert "written without the model" in out["final_answer"]
    # The plan itself spent the budget: no step starts that no reasoning could judge.
    assert out["results"] == [] and calls == []
    assert len(model.prompts) == 1


async def test_step_timeout_is_a_typed_result():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[step("slow", seconds=5)]), finish("timed out"), "slow"])
    out = await run(model, step_timeout_seconds=0.2, max_retries=0)
    result = out["results"][0]
    assert result.status == "timeout" and result.error.type == "StepTimeout"
    assert out["status"] == RunStatus.FAILED


async def test_judgment_steps_ask_the_model_and_routine_steps_do_not():
    model = ScriptedChatModel(responses=[
        Plan(goal="g", steps=[
            step("s1"), Step(id="s2", tool="wait", args={"label": "s2"}, depends_on=["s1"],
                             needs_judgment=True),
            step("s3", deps=["s2"]), step("s4", deps=["s3"])]),
        Decision(action="continue", reason="s2 looks right"), finish(), "ok"])
    out = await run(model)
    assert out["status"] == RunStatus.COMPLETED
    assert len(model.prompts) == 4  # plan, judgment of s2, end of plan, answer


async def test_summarization_keeps_every_prompt_bounded_over_50_steps():
    big = "x" * 1200

    @tool
    async def fetch(n: int) -> str:
        """Return a large blob."""
        return f"{n}:{big}"

    steps = [Step(id="s0", tool="fetch", args={"n": 0})] + [
        Step(id=f"s{i}", tool="fetch", args={"n": i}, depends_on=[f"s{i - 1}"],
             needs_judgment=True) for i in range(1, 50)]

    def summary_reply(messages) -> str:
        return "summary: fetched blobs so far, all fine"

    def respond(messages):
        system = messages[0].content
        if "running summary" in system:
            return summary_reply(messages)
        if "supervise" in system:
            return Decision(action="continue", reason="fine")
        return "answer"

    model = ScriptedChatModel(responses=[Plan(goal="g", steps=steps)] + [respond] * 200)
    out = await run(model, tools=ToolRegistry([fetch], read_only=True), max_steps=60,
                    summarize_threshold_tokens=3000, keep_recent_results=4,
                    token_budget=10_000_000)
    assert out["status"] == RunStatus.COMPLETED, out["reason"]
    assert len(out["results"]) == 50
    sizes = [sum(len(str(m.content)) for m in prompt) for prompt in model.prompts]
    summaries = [p for p in model.prompts if "running summary" in p[0].content]
    assert len(summaries) >= 5
    # Bounded: no prompt passes the threshold (in characters) plus the plan, one wave and
    # the fixed prompt text, and late prompts are no larger than early ones.
    plan_chars = len(Plan(goal="g", steps=steps).model_dump_json())
    assert max(sizes) < 3000 * 4 + plan_chars + 4000
    assert max(sizes[-10:]) <= 1.2 * max(sizes[:20])
    assert 50 * len(big) > 3 * max(sizes)


async def test_default_registry_lists_the_built_in_executors():
    names = default_registry().names()
    assert names[:5] == ["http_request", "browser_goto", "browser_click", "browser_fill",
                         "browser_read"]


async def test_a_model_call_that_hangs_ends_the_run_failed():
    import time as clock

    def hang(messages):
        clock.sleep(2)
        return "too late"

    out = await run(ScriptedChatModel(responses=[hang]), model_timeout_seconds=0.3)
    assert out["status"] == RunStatus.FAILED
    assert "did not answer within 0.3s" in out["reason"]
