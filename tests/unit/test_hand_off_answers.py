"""A person's answer to a hand-off: how it is read (bad answers refused), and its value kept
out of every dump (the mask) while the object in memory holds it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from graph.answers import HANDOFF, AnswerRefused, read_hand_off_answer
from graph.app.threads import final_state
from graph.checkpoints import serializer
from graph.contracts import RunStatus, Step
from graph.nodes.people import hand_off_request
from graph.redaction import REDACTED, redact_text
from tools.people import MASK, HandOff, PersonAnswer, PersonNeeded, devtools_links

MFA = HandOff(kind="mfa", asked="the sign-in code (MFA) for crm", answers=("value", "refuse"),
              url="http://127.0.0.1:8000/login/mfa", session="crm", field="#code",
              screenshot="/runs/t/steps/v1-open-person.png")


def request_for(hand_off: HandOff = MFA) -> dict:
    return hand_off_request({"step": Step(id="open", tool="browser_goto"), "args": {},
                             "plan_version": 1, "problem": None, "approved": False,
                             "hand_off": hand_off})


def test_hand_off_request_shows_the_need_the_page_and_the_answers_that_fit():
    request = request_for()
    assert request["kind"] == HANDOFF and request["need"] == "mfa"
    assert request["step_id"] == "open" and request["url"] == MFA.url
    assert request["screenshot"] == MFA.screenshot and request["session"] == "crm"
    assert [form["action"] for form in request["answers"]] == ["value", "refuse"]
    assert "field" not in request and "acted" not in request  # the executor's, not shown


@pytest.mark.parametrize(("answer", "says"), [
    ({"action": "value"}, "gives the value"),
    ({"action": "value", "value": "  "}, "gives the value"),
    ({"action": "done"}, "'done' does not answer this hand-off"),
    ({"action": "refuse", "value": "123456"}, "only a value answer gives a value"),
    ("yes", "not a hand-off answer"),
    ({"action": "value", "value": "1", "extra": 1}, "not a hand-off answer"),
    ({"action": "value", "value": MASK}, "the value's mask"),
])
def test_a_bad_hand_off_answer_is_refused_saying_why(answer, says):
    with pytest.raises(AnswerRefused, match=says):
        read_hand_off_answer(answer, request_for())


def test_a_value_is_read_and_cut_from_every_record_from_then_on():
    answer = read_hand_off_answer({"action": "value", "value": "482913"}, request_for())
    assert answer.value == "482913"
    assert redact_text("code=482913&next=/") == f"code={REDACTED}&next=/"
    assert redact_text("order 14829131") == "order 14829131"  # another number stays


def test_a_value_is_dumped_only_as_its_mask_and_read_back_as_lost():
    answer = PersonAnswer(action="value", value="735102", by="a test")
    assert "735102" not in repr(answer) and "735102" not in str(answer)
    assert answer.model_dump()["value"] == MASK
    assert "735102" not in answer.model_dump_json()
    kind, blob = serializer().dumps_typed(answer)
    assert b"735102" not in blob
    stored = serializer().loads_typed((kind, blob))
    assert isinstance(stored, PersonAnswer) and stored.lost and stored.by == "a test"
    with pytest.raises(AnswerRefused):
        read_hand_off_answer(stored, request_for())


def test_done_and_refuse_read_when_offered():
    captcha = HandOff(kind="captcha", asked="solve it")
    assert read_hand_off_answer({"action": "done"}, request_for(captcha)).action == "done"
    refused = read_hand_off_answer({"action": "refuse", "reason": "no"}, request_for(captcha))
    assert refused.reason == "no" and not refused.lost


def test_a_run_waiting_on_a_hand_off_is_needs_person():
    waiting = [SimpleNamespace(value=request_for())]
    final = final_state({"task": "t"}, waiting, [])
    assert final.status == RunStatus.NEEDS_PERSON
    assert final.reason.startswith("step open waits for a person: the sign-in code (MFA)")


def test_person_needed_is_typed_and_the_devtools_link_stays_on_loopback():
    needed = PersonNeeded(MFA)
    assert needed.type_name == "PersonNeeded" and not needed.retryable
    link, cdp = devtools_links("http://127.0.0.1:9333", "ABC")
    assert link == "http://127.0.0.1:9333/devtools/inspector.html?ws=127.0.0.1:9333/devtools/page/ABC"
    assert cdp == "http://127.0.0.1:9333"
    assert devtools_links("https://browser.example.com:9222", "ABC") == (None, None)
