"""Resume from the narrowest crash window: a step's writes are saved, its checkpoint is not.

A SIGKILL can land there (the crash trials found it); this reproduces it without a kill by a
checkpointer whose checkpoint writes fail while its task writes succeed.
"""

from __future__ import annotations

import aiosqlite
import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from graph import Context, Decision, RunStatus, build_graph
from graph.app.runner import run_thread
from graph.checkpoints import duet_home, serializer
from graph.testing import ScriptedChatModel
from tests.integration.test_approval import PLAN, approval_tools, sent


class LosesCheckpoints(AsyncSqliteSaver):
    """Saves task writes, then dies before the checkpoint (as a killed process would)."""

    async def aput(self, *args, **kwargs):
        raise SystemError("killed before the checkpoint was written")


async def test_a_run_whose_last_checkpoint_was_lost_resumes_from_the_saved_writes():
    model = ScriptedChatModel(responses=[PLAN])
    tools = approval_tools()
    _, waiting = await run_thread("mail", thread_id="t", model=model, tools=tools,
                                  context=Context())
    assert waiting.status == RunStatus.NEEDS_APPROVAL

    async with aiosqlite.connect(duet_home() / "checkpoints.sqlite") as conn:
        saver = LosesCheckpoints(conn, serde=serializer())
        graph = build_graph(model=model, tools=tools, checkpointer=saver)
        config = {"configurable": {"thread_id": "t"}}
        pending = (await graph.aget_state(config)).interrupts[0]
        with pytest.raises(SystemError):
            await graph.ainvoke(Command(resume={pending.id: {"mail": "approve"}}), config,
                                context=Context(), durability="sync")
        state = await graph.aget_state(config)
    assert state.next == () and state.tasks, "the approve task's writes are saved, no more"
    assert sent == []

    model.responses += [Decision(action="finish", reason="sent"), "sent [mail]"]
    _, final = await run_thread(None, thread_id="t", model=model, tools=tools)
    assert final.status == RunStatus.COMPLETED, final.reason
    assert [r.step_id for r in final.results] == ["read", "mail"]
    assert len(sent) == 1
