"""What a plan review shows, and how the answers to a run's pauses are read."""

from __future__ import annotations

import pytest
from langchain_core.tools import tool

from graph.answers import (
    AnswerRefused,
    EditStep,
    PlanReview,
    RejectStep,
    read_plan_review,
    read_step_answers,
)
from graph.contracts import Plan, Step
from graph.nodes.review import checked_review, review_request, step_hosts
from tools import default_registry


@tool
def drop_table(name: str) -> str:
    """Drop a table."""
    return name


def registry():
    tools = default_registry()
    tools.register(drop_table, destructive=True)
    return tools


PLAN = Plan(goal="g", steps=[
    Step(id="list", tool="http_request", args={"url": "https://crm.example.com/api/x?y=1"}),
    Step(id="login", tool="http_request", depends_on=["list"], args={
        "url": "${list.output.json.next}", "method": "POST",
        "headers": {"Authorization": "Bearer ${secret.crm_token}"},
        "json_body": {"user": "ops", "password": "${secret.crm_password}"}}),
    Step(id="page", tool="browser_act", args={"instruction": "open the invoice",
                                               "start_url": "http://127.0.0.1:8000/inv"}),
    Step(id="drop", tool="drop_table", args={"name": "invoices"}),
])


def test_the_review_shows_each_steps_writes_hosts_and_secrets_by_name():
    request = review_request(PLAN, 3, registry(), {"drop": "carries a value from a page",
                                                   "list": "a read is never held"})
    assert request["kind"] == "plan_review" and request["plan_version"] == 3
    shown = {s["step_id"]: s for s in request["steps"]}
    assert {i: (s["writes"], s["hosts"], s["secrets"]) for i, s in shown.items()} == {
        "list": (False, ["crm.example.com"], []),
        # A URL from an earlier step's output is shown as its reference.
        "login": (True, ["${list.output.json.next}"], ["crm_password", "crm_token"]),
        "page": (True, ["127.0.0.1:8000"], []),
        "drop": (True, [], []),
    }
    assert shown["drop"]["destructive"] and shown["drop"]["escalated"]
    assert "escalated" not in shown["list"] and "destructive" not in shown["login"]
    assert shown["login"]["depends_on"] == ["list"]
    # Secrets by name only: the request holds references, never a value.
    assert "${secret.crm_password}" in str(shown["login"]["args"])


def test_hosts_come_from_url_arguments_only():
    assert step_hosts(Step(id="a", tool="t", args={"url": "not a url",
                                                   "text": "https://x.y"})) == []
    assert step_hosts(Step(id="a", tool="t", args={"url": 5})) == []


def test_a_plan_review_answer_is_read_strictly():
    assert read_plan_review({"action": "approve"}) == PlanReview(action="approve")
    assert read_plan_review(PlanReview(action="reject", reason="no")).reason == "no"
    edit = read_plan_review({"action": "edit", "plan": PLAN.model_dump(), "by": "ana"})
    assert edit.plan == PLAN and edit.by == "ana"
    for bad, said in [({"action": "edit"}, "an edit gives the plan to run"),
                      ({"action": "reject", "reason": "  "}, "a rejection gives its reason"),
                      ({"action": "approve", "note": "x"}, "note: Extra inputs"),
                      ({"action": "edit", "plan": {"goal": "g", "steps": [
                          {"id": "a", "tool": "t", "depends_on": ["a"]}]}}, "dependency cycle"),
                      (None, "not a plan review answer")]:
        with pytest.raises(AnswerRefused, match=said):
            read_plan_review(bad)


def test_an_edited_plan_is_checked_against_the_registry():
    bad = PLAN.model_copy(update={"steps": [Step(id="x", tool="http_request",
                                                 args={"url": "https://a.b", "verb": "GET"})]})
    with pytest.raises(AnswerRefused, match="the edited plan has invalid steps: x: .*verb"):
        checked_review({"action": "edit", "plan": bad.model_dump()}, registry(), 2)
    good = Plan(goal="g", steps=PLAN.steps[:1])
    assert checked_review({"action": "edit", "plan": good.model_dump()}, registry(), 2).plan == (
        good)


def test_step_answers_are_typed_and_refused_when_they_do_not_fit():
    asked = ["a", "b", "c", "d"]
    answers = read_step_answers({"a": "approve", "b": "reject", "c": {"reject": "why"},
                                 "d": {"edit": {"x": 1}}}, asked)
    assert answers == {"a": "approve", "b": "reject", "c": RejectStep(reject="why"),
                       "d": EditStep(edit={"x": 1})}
    assert read_step_answers(None, asked) == {}  # no answer: each step asked is rejected
    for bad, said in [({"a": "aprove"}, "'aprove' is not an answer"),
                      ({"a": {"reject": ""}}, "is not an answer"),
                      ({"a": {"edit": {}, "reject": "x"}}, "is not an answer"),
                      ({"z": "approve"}, r"not asked about: \['z'\]"),
                      (["approve"], "a map of step ids")]:
        with pytest.raises(AnswerRefused, match=said):
            read_step_answers(bad, asked)
