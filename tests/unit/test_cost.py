"""The cost budget's arithmetic, Nova Act's price table and time, and a reasoning call's
check before it is made: pure parts and the scripted model, no server."""

from __future__ import annotations

import threading
import time

import pytest
from langchain_core.messages import HumanMessage

from graph.context import Context, parse_settings
from graph.contracts import NOVA_ACT_PRICES, NovaActPrices, Plan, StepResult, StepTally, Usage
from graph.events import NodeUpdate
from graph.guards import CostBudget, budget_stop
from graph.reasoning import CostLimitReached, ModelReasoner, resolve_reasoner
from graph.reasoning.bedrock import NOVA_2_LITE_MAX_OUTPUT_TOKENS, output_bound
from graph.rendering import estimate_tokens
from graph.testing import ScriptedChatModel
from tools.step import AgentTime


def test_a_call_fits_the_budget_with_what_was_spent_and_what_is_in_flight():
    cost = CostBudget(max_cost_usd=1.0, spent_usd=0.25)
    assert cost.reserve(0.5, "step s1") is None  # 0.25 + 0.5 <= 1
    stop = cost.reserve(0.3, "step s2")  # 0.25 spent + 0.5 in flight + 0.3 > 1
    assert stop is not None and stop.status == "budget_exhausted"
    assert stop.reason == ("cost budget: step s2 could cost up to $0.3000, past max_cost_usd "
                           "$1 ($0.2500 spent, $0.5000 more in flight)")
    cost.settle(0.5, 0.1)  # s1 ended having cost less than its bound
    assert cost.spent_usd == pytest.approx(0.35) and cost.reserved_usd == 0.0
    assert cost.reserve(0.3, "step s2") is None
    assert cost.reserve(0.36, "the decision call") is not None  # 0.35 + 0.3 + 0.36 > 1


def test_without_max_cost_every_call_fits_and_nothing_is_kept():
    cost = CostBudget(max_cost_usd=None, spent_usd=5.0)
    assert cost.reserve(1e9, "anything") is None and cost.reserve(None, "unpriced") is None
    assert cost.reserved_usd == 0.0


def test_a_call_without_a_price_cannot_start_under_a_cost_budget():
    stop = CostBudget(max_cost_usd=10.0, spent_usd=0.0).reserve(None, "step s1 (browser_act)")
    assert stop is not None and stop.status == "failed"
    assert "set nova_act_prices" in stop.reason and "step s1 (browser_act)" in stop.reason


def test_budget_stop_says_when_the_cost_budget_is_spent():
    budgets = Context(max_cost_usd=0.5).budgets
    spent = Usage(estimated_cost_usd=0.2, nova_act_cost_usd=0.3)
    stop = budget_stop(tally=StepTally(), usage=spent, started_at=time.time(), budgets=budgets)
    assert stop is not None and stop.status == "budget_exhausted"
    assert stop.reason == "cost budget spent ($0.5000 of max_cost_usd $0.5)"
    assert budget_stop(tally=StepTally(), usage=Usage(estimated_cost_usd=0.49),
                       started_at=time.time(), budgets=budgets) is None
    assert budget_stop(tally=StepTally(), usage=spent, started_at=time.time(),
                       budgets=Context().budgets) is None  # no cost limit by default


def test_usage_adds_nova_act_time_and_its_cost_to_the_tokens():
    call = Usage.of_call(input_tokens=1_000_000, output_tokens=100_000)  # $0.30 + $0.25
    priced = StepResult(step_id="s1", status="ok", nova_act_seconds=90.0,
                        nova_act_cost_usd=0.1)
    unpriced = StepResult(step_id="s2", status="ok", nova_act_seconds=30.0)
    total = call + Usage.of_steps([priced, unpriced, StepResult(step_id="s3", status="ok")])
    assert total.reasoning_calls == 1 and total.estimated_cost_usd == pytest.approx(0.55)
    assert total.nova_act_seconds == 120.0 and total.nova_act_cost_usd == pytest.approx(0.1)
    assert total.nova_act_unpriced_seconds == 30.0
    assert total.total_cost_usd == pytest.approx(0.65)
    assert total.model_dump()["total_cost_usd"] == pytest.approx(0.65)  # in traces and JSON
    assert Usage.model_validate(total.model_dump()) == total  # read back from a dump
    assert total.describe_cost() == (
        "estimated cost $0.65000 (model $0.55000, Nova Act 120.0 s $0.10000); 30.0 s of Nova "
        "Act time unpriced: set nova_act_prices")
    assert call.describe_cost() == "estimated cost $0.55000"


def test_nova_act_has_no_price_until_one_is_set(tmp_path):
    assert NOVA_ACT_PRICES.agent_hour is None and NOVA_ACT_PRICES.cost_usd(60) is None
    assert "no public per-agent-hour price found" in NOVA_ACT_PRICES.source
    assert NOVA_ACT_PRICES.as_of
    assert Context().nova_act_price() == NOVA_ACT_PRICES
    table = Context(nova_act_prices='{"agent_hour": 4.8, "source": "my contract"}')
    assert table.nova_act_price().cost_usd(90) == pytest.approx(0.12)
    path = tmp_path / "nova-act.json"
    path.write_text('{"agent_hour": 3.6, "as_of": "2026-12-01"}')
    assert Context(nova_act_prices=str(path)).nova_act_price() == NovaActPrices(
        agent_hour=3.6, as_of="2026-12-01")
    with pytest.raises(ValueError, match="nova_act_prices is not a price table"):
        Context(nova_act_prices='{"agent_hour": -1}').nova_act_price()
    with pytest.raises(ValueError, match="nova_act_prices: cannot read"):
        Context(nova_act_prices=str(tmp_path / "missing.json")).nova_act_price()


def test_the_cost_settings_parse_from_set():
    parsed = parse_settings(["max_cost_usd=0.25", "max_output_tokens=2000",
                             'nova_act_prices={"agent_hour": 4}'])
    assert parsed == {"max_cost_usd": 0.25, "max_output_tokens": 2000,
                      "nova_act_prices": '{"agent_hour": 4}'}
    assert parse_settings(["max_cost_usd=none"]) == {"max_cost_usd": None}
    assert Context(**parsed).budgets.max_cost_usd == 0.25


def test_agent_time_counts_calls_in_other_threads_and_those_still_running():
    clock = AgentTime()

    def call(seconds: float) -> None:
        with clock.measure():
            time.sleep(seconds)

    done = threading.Thread(target=call, args=(0.05,))
    done.start()
    done.join()
    running = threading.Thread(target=call, args=(0.3,))
    running.start()
    time.sleep(0.1)
    during = clock.seconds  # the call in progress counts up to now
    running.join()
    clock.add(1.0)  # measured elsewhere (an executor deployment's attempt)
    assert 0.14 <= during < 0.35
    assert 1.35 <= clock.seconds < 1.6


def _plan_prompt() -> list:
    return [HumanMessage("plan this: " + "x" * 4_000)]


async def test_a_reasoning_call_that_could_pass_the_budget_is_not_made():
    model = ScriptedChatModel(responses=[Plan(goal="g", steps=[])])
    prompt = _plan_prompt()
    reasoner = ModelReasoner(model, output_bound=1_000,
                             cost=CostBudget(max_cost_usd=0.0027, spent_usd=0.0))
    # Its estimate: the prompt and the tool definition at the input price (over 1000 tokens:
    # $0.0003), plus the whole output bound at the output price (1000 tokens: $0.0025).
    with pytest.raises(CostLimitReached, match="the plan call could cost up to"):
        await reasoner._structured(Plan, prompt)
    assert model.prompts == []  # nothing was sent

    budget = CostBudget(max_cost_usd=0.01, spent_usd=0.0)
    reasoner = ModelReasoner(model, output_bound=1_000, cost=budget)
    reply = await reasoner._structured(Plan, prompt)
    assert len(model.prompts) == 1 and budget.reserved_usd == 0.0
    assert budget.spent_usd == pytest.approx(reply.usage.estimated_cost_usd)


async def test_the_estimate_counts_the_prompt_and_the_output_bound():
    budget = CostBudget(max_cost_usd=1.0, spent_usd=0.0)
    reasoner = ModelReasoner(ScriptedChatModel(responses=[]), output_bound=2_000, cost=budget)
    prompt = _plan_prompt()
    estimate = reasoner._reserve(prompt, "summarize")
    expected = (estimate_tokens(prompt[0].content) * 0.30 + 2_000 * 2.50) / 1e6
    assert estimate == pytest.approx(expected, abs=1e-6) and budget.reserved_usd == estimate


def test_the_output_bound_is_the_models_own_else_the_setting_else_nova_2_lites():
    scripted = ScriptedChatModel(responses=[])
    assert output_bound(scripted, Context()) == NOVA_2_LITE_MAX_OUTPUT_TOKENS == 65_535
    assert output_bound(scripted, Context(max_output_tokens=4_000)) == 4_000
    reasoner = resolve_reasoner(Context(max_output_tokens=300), scripted,
                                CostBudget(max_cost_usd=1.0, spent_usd=0.0))
    assert isinstance(reasoner, ModelReasoner) and reasoner.output_bound == 300


def test_an_act_update_that_only_adds_nova_act_time_shows_no_line():
    # Its steps' events already said it; the live view prints no bare "● act" line.
    assert not NodeUpdate(node="act", usage=Usage(nova_act_seconds=2.0).model_dump()
                          ).says_something()
    assert NodeUpdate(node="act", status="budget_exhausted").says_something()
