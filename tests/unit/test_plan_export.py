"""A run's plan as a plan file (`duet export`), the defaults its header declares, and how a
replay ends or hands over when a step fails: pure functions and reasoners called directly."""

from __future__ import annotations

import pytest

from graph.app.export import plan_template
from graph.context import Context
from graph.contracts import Decision, Plan, StepError, StepResult
from graph.reasoning import (
    ConfigurationError,
    PlanFileError,
    PlanFileReasoner,
    resolve_reasoner,
)
from graph.reasoning.offline import default_line
from graph.testing import ScriptedChatModel

SITE = "http://127.0.0.1:4100"
TASK = (f"Add a note 'vip' for customer 3 of the CRM at {SITE}/api, tagged say \"hi\", and "
        "read its orders.")
PLAN = Plan.model_validate({"goal": "Note {{ x }} for customer 3 {% if %}", "steps": [
    {"id": "s1", "tool": "http_request", "args": {"url": f"{SITE}/api/customers/3"}},
    {"id": "s2", "tool": "http_request", "depends_on": ["s1"], "side_effects": True, "args": {
        "url": f"{SITE}/api/notes", "method": "POST",
        "headers": {"Authorization": "Bearer ${secret.crm_token}"},
        "json_body": {"customer_id": 3, "text": "for ${s1.output.json.name}: 3 {#note#}",
                      "tags": ["vip", "v3", 'say "hi"'], "urgent": True, "due": None}}},
    {"id": "s3", "tool": "http_request", "args": {"url": f"{SITE}/api/v3/orders?limit=3"}},
]})


def file_text(plan: Plan, task: str, known: dict[str, str]) -> tuple[str, dict[str, str]]:
    body, variables = plan_template(plan, task, known)
    return "\n".join(default_line(n, v) for n, v in variables.items()) + "\n" + body, variables


def test_the_task_values_become_variables_whose_defaults_render_the_plan_back():
    text, variables = file_text(PLAN, TASK, {"site": SITE, "unused": "nowhere"})
    # The run's own variable wins where a task URL starts at the same place; a variable
    # no argument uses is left out.
    assert variables == {"site": SITE, "tags": "vip", "customer_id": "3"}
    assert 'url: "{{ site }}/api/customers/{{ customer_id }}"' in text
    assert "customer_id: {{ customer_id }}\n" in text  # a number stays a number
    # References stay as they are; `3` only as a whole word; a quoted value stays literal.
    assert "${secret.crm_token}" in text and "${s1.output.json.name}" in text
    assert '/api/v3/orders?limit={{ customer_id }}"' in text and "- v3" in text
    assert PlanFileReasoner(None, text=text).load_plan() == PLAN

    again = PlanFileReasoner(None, {"customer_id": "41", "site": "http://127.0.0.1:9"},
                             text=text).load_plan()
    steps = {step.id: step.args for step in again.steps}
    assert steps["s1"] == {"url": "http://127.0.0.1:9/api/customers/41"}
    assert steps["s2"]["json_body"]["customer_id"] == 41
    assert steps["s2"]["json_body"]["text"] == "for ${s1.output.json.name}: 41 {#note#}"
    assert steps["s2"]["json_body"]["tags"] == ["vip", "v3", 'say "hi"']
    assert again.goal == PLAN.goal


def test_without_known_variables_a_url_of_the_task_names_the_base_of_the_arguments():
    text, variables = file_text(PLAN, TASK, {})
    assert variables["url"] == f"{SITE}/api"
    assert 'url: "{{ url }}/notes"' in text
    assert PlanFileReasoner(None, text=text).load_plan() == PLAN


def test_a_plan_without_task_values_exports_as_it_is():
    plan = Plan.model_validate({"goal": "g", "steps": [
        {"id": "a", "tool": "http_request", "args": {"url": "http://127.0.0.1:1/x"}}]})
    text, variables = file_text(plan, "something else", {})
    assert variables == {} and "{{" not in text
    assert PlanFileReasoner(None, text=text).load_plan() == plan


def test_a_header_default_that_is_not_a_json_string_is_one_line_naming_it(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("# default site = http://x\ngoal: g\nsteps: []\n")
    with pytest.raises(PlanFileError) as caught:
        PlanFileReasoner(path).load_plan()
    assert str(caught.value) == (f"plan file {str(path)!r}: default site: the value must be "
                                 "a JSON string in double quotes, not 'http://x'")
    # A comment line that only looks like one (a task quoted in the header) is no default.
    path.write_text("# a task:\n#   default site = x\ngoal: g\nsteps: []\n")
    assert PlanFileReasoner(path).load_plan().goal == "g"
    # A default below the header is no default: the variable must be given.
    path.write_text("goal: g\n# default n = \"1\"\nsteps: [{id: a, tool: t, args: {n: "
                    "'{{ n }}'}}]\n")
    with pytest.raises(PlanFileError, match="'n' is undefined: give it with --var n=VALUE"):
        PlanFileReasoner(path).load_plan()


def test_plan_file_and_plan_text_together_are_refused():
    with pytest.raises(ConfigurationError, match="plan_file or as plan_text, not both"):
        PlanFileReasoner.of(Context(plan_file="p.yaml", plan_text="goal: g"))


FAILED = StepResult(step_id="s3", tool="http_request", status="error", error=StepError(
    type="ToolError", message=f"GET {SITE}/api/v3/orders answered 404: not found"))
OK = [StepResult(step_id="s1", tool="http_request", status="ok", output={"json": {}}),
      StepResult(step_id="s2", tool="http_request", status="ok", output={"json": {}})]


async def test_a_replay_that_meets_a_failed_step_finishes_naming_it_and_what_it_met():
    reply = await PlanFileReasoner(None, text=file_text(PLAN, TASK, {})[0]).observe(
        task=TASK, plan=PLAN, summary="", results=[*OK, FAILED], trigger="x")
    assert reply.value.action == "finish" and reply.usage.reasoning_calls == 0
    assert reply.value.reason == (
        "the replay stopped at step 's3' (http_request) ended error: ToolError: GET "
        f"{SITE}/api/v3/orders answered 404: not found")


async def test_a_self_healing_replay_asks_the_model_only_from_the_first_failed_step():
    text = file_text(PLAN, TASK, {})[0]
    model = ScriptedChatModel(responses=[Decision(action="replan", reason="v3 moved"),
                                         "a summary", "an answer"])
    context = Context(plan_text=text, self_healing=True)
    replaying = resolve_reasoner(context, model, PLAN)
    assert (await replaying.plan(task=TASK, tools="", summary="", results=[],
                                 previous_plan=None, max_attempts=1)).value == PLAN
    going_on = await replaying.observe(task=TASK, plan=PLAN, summary="", results=OK,
                                       trigger="steps ['s2'] need your judgment")
    assert going_on.value.action == "continue" and not model.prompts
    folded = await replaying.summarize(task=TASK, summary="", results=OK)
    assert folded.usage.reasoning_calls == 0 and not model.prompts

    handed = await replaying.observe(task=TASK, plan=PLAN, summary="", results=[*OK, FAILED],
                                     trigger="steps ['s3'] did not succeed")
    assert handed.value.action == "replan" and handed.usage.reasoning_calls == 1
    asked = "\n".join(str(m.content) for m in model.prompts[0])
    assert "answered 404: not found" in asked and "replays an earlier run's plan" in asked

    healed = Plan.model_validate({"goal": "g", "steps": [
        {"id": "v4", "tool": "http_request", "args": {"url": f"{SITE}/api/v4/orders"}}]})
    after = resolve_reasoner(context, model, healed)
    assert (await after.summarize(task=TASK, summary="", results=OK)).value == "a summary"
    answer = await after.answer(task=TASK, status="failed", reason="r", summary="", results=OK)
    assert answer.value == "an answer" and len(model.prompts) == 3
