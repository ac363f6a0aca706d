"""A self-healing replay: a plan file is replayed without the model until one of its steps
fails (the world it was written for changed); from there the model takes over.

The replayed plan's steps that succeeded keep their results and are not sent again: the
model is asked, as after any failed step, with the run's results so far (the failed step's
among them), and it replans from there (observe, then plan) under the usual guards.
"""

from __future__ import annotations

from graph.contracts import Decision, Plan, StepResult
from graph.events import ReplayHandedOver, emit_in_run
from graph.reasoning.offline import PlanFileReasoner, replay_stopped
from graph.reasoning.protocol import Reasoner, Reply, StepStream


class SelfHealingReplay:
    """The replay (`PlanFileReasoner`) while the run's plan is the file's and its steps
    succeed, then the model's reasoner.

    `current_plan` is the run's plan when the reasoner is asked (None before the first):
    once it is no longer the file's, the model wrote it, and the model summarizes and
    answers too. Before, the replay does, without a model call.
    """

    def __init__(self, replay: PlanFileReasoner, model: Reasoner, current_plan: Plan | None):
        self.replay, self.model = replay, model
        self.replaying = current_plan is None or current_plan == replay.load_plan()

    async def plan(
        self, *, task: str, tools: str, summary: str, results: list[StepResult],
        previous_plan: Plan | None, max_attempts: int, on_steps: StepStream | None = None,
        review_feedback: str = "",
    ) -> Reply[Plan]:
        """The file's plan first; every later plan (a replan, or one after a person
        rejected a plan under review) from the model."""
        reasoner = self.replay if previous_plan is None and not review_feedback else self.model
        return await reasoner.plan(task=task, tools=tools, summary=summary, results=results,
                                   previous_plan=previous_plan, max_attempts=max_attempts,
                                   on_steps=on_steps, review_feedback=review_feedback)

    async def observe(
        self, *, task: str, plan: Plan, summary: str, results: list[StepResult], trigger: str
    ) -> Reply[Decision]:
        """The replay's decision while its steps succeed; at its first failure the model
        decides (told that the plan was replayed), and from then on."""
        failed = [r for r in results if r.status != "ok"]
        if self.replaying and not failed:
            return await self.replay.observe(task=task, plan=plan, summary=summary,
                                             results=results, trigger=trigger)
        if self.replaying:
            stopped = replay_stopped(failed)
            emit_in_run(ReplayHandedOver(steps=[r.step_id for r in failed], reason=stopped))
            trigger = (f"{stopped}. This plan replays an earlier run's plan, so what it "
                       "expected may have changed since: the steps that succeeded are done; "
                       "replan from here, or finish if the task cannot be done")
        return await self.model.observe(task=task, plan=plan, summary=summary,
                                        results=results, trigger=trigger)

    async def summarize(self, *, task: str, summary: str, results: list[StepResult]) -> Reply[str]:
        """The replay's fold (no call) while replaying, else the model's summary."""
        reasoner = self.replay if self.replaying else self.model
        return await reasoner.summarize(task=task, summary=summary, results=results)

    async def answer(
        self, *, task: str, status: str, reason: str, summary: str, results: list[StepResult]
    ) -> Reply[str]:
        """The replay's templated answer while replaying, else the model's."""
        reasoner = self.replay if self.replaying else self.model
        return await reasoner.answer(task=task, status=status, reason=reason, summary=summary,
                                     results=results)
