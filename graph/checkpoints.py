"""Checkpointers and stores: SQLite by default (a file you can find), Postgres with a
postgresql:// URL. The store holds the step ledger (`graph.runtime.ledger`) beside the checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # LangGraph loads when a checkpointer opens, not with the CLI's help
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.store.base import BaseStore

def serializer() -> JsonPlusSerializer:
    """The checkpoint serializer, allowing exactly our state types (and LangChain's own)."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from graph.contracts import (
        Decision,
        Plan,
        RunStatus,
        Step,
        StepError,
        StepResult,
        StepTally,
        Usage,
    )

    state_types = (Plan, Step, StepResult, StepError, StepTally, Decision, Usage, RunStatus)
    return JsonPlusSerializer(
        allowed_msgpack_modules=[(t.__module__, t.__name__) for t in state_types])


def duet_home() -> Path:
    """Where runs, checkpoints and traces live: `$DUET_HOME`, else `~/.nova-duet`."""
    home = _home()
    home.mkdir(parents=True, exist_ok=True)
    return home


def _home() -> Path:
    return _home_of(os.environ.get("DUET_HOME"))


@functools.lru_cache(maxsize=16)
def _home_of(setting: str | None) -> Path:
    # Asked for by every step (its files' folder): the path is made once per setting.
    return Path(setting or Path.home() / ".nova-duet")


def run_folder(thread_id: str) -> Path:
    """A run's own folder: its report and its steps' files (screenshots, Nova Act logs).
    Not created here (steps ask for it inside the event loop): whoever writes creates it."""
    return _home() / "runs" / thread_id


def default_checkpointer_url() -> str:
    """`$DUET_CHECKPOINTER` if set, else the SQLite file in `duet_home()`."""
    return os.environ.get("DUET_CHECKPOINTER") or str(duet_home() / "checkpoints.sqlite")


@asynccontextmanager
async def open_checkpointer(url: str | None = None) -> AsyncIterator[BaseCheckpointSaver]:
    """Open the checkpointer at `url`: a SQLite path, or a postgresql:// URL."""
    url = url or default_checkpointer_url()
    if _is_postgres(url):
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        async with AsyncPostgresSaver.from_conn_string(url, serde=serializer()) as saver:
            await saver.setup()
            yield saver
        return
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with aiosqlite.connect(url) as conn:
        saver = AsyncSqliteSaver(conn, serde=serializer())
        await saver.setup()
        yield saver


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def store_path(url: str) -> str:
    """The SQLite file of the store beside the checkpoint file `url`.

    Not the checkpoint file itself: LangGraph's SQLite store reads, then writes, in one
    deferred transaction, which SQLite refuses at once (`database is locked`, no waiting)
    when the checkpointer's connection wrote in between; many concurrent runs hit that."""
    path = Path(url)
    return str(path.with_name(f"{path.stem}.ledger.sqlite"))


@asynccontextmanager
async def open_store(url: str | None = None) -> AsyncIterator[BaseStore]:
    """Open the LangGraph store for the checkpointer at `url`: the same Postgres database,
    or a SQLite file beside the checkpoints' (`store_path`)."""
    url = url or default_checkpointer_url()
    if _is_postgres(url):
        from langgraph.store.postgres.aio import AsyncPostgresStore

        async with AsyncPostgresStore.from_conn_string(url) as store:
            await store.setup()
            async with _stopping_batches(store):
                yield store
        return
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    async with AsyncSqliteStore.from_conn_string(store_path(url)) as store:
        await store.setup()
        async with _stopping_batches(store):
            yield store


@asynccontextmanager
async def _stopping_batches(store: BaseStore) -> AsyncIterator[None]:
    """Stop the store's batching task on exit: LangGraph leaves it pending until garbage
    collection, which asyncio reports as a destroyed pending task."""
    try:
        yield
    finally:
        task = getattr(store, "_task", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
