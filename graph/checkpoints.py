"""Checkpointers and stores: SQLite by default (a file you can find), Postgres with a
postgresql:// URL. The store holds the step ledger (`graph.runtime.ledger`) beside the checkpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # LangGraph loads when a checkpointer opens, not with the CLI's help
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.store.base import BaseStore
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    from graph.context import Context

T = TypeVar("T")

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
    from tools.people import HandOff, PersonAnswer

    state_types = (Plan, Step, StepResult, StepError, StepTally, Decision, Usage, RunStatus,
                   HandOff, PersonAnswer)
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


def profiles_folder() -> Path:
    """Where kept browser profiles live (`tools.auth.profiles`), shared by every run and
    executor of this `DUET_HOME`. Not created here: the first save creates it (mode 0700)."""
    return _home() / "profiles"


def default_checkpointer_url() -> str:
    """`$DUET_CHECKPOINTER` if set, else the SQLite file in `duet_home()`."""
    return os.environ.get("DUET_CHECKPOINTER") or str(duet_home() / "checkpoints.sqlite")


def _busy_timeout(context: Context | None) -> float:
    """How long a SQLite statement waits for another connection's write lock before it fails
    with `database is locked`: `checkpointer_timeout_seconds`. Every write transaction here
    lasts milliseconds, so only a stuck writer (a process stopped holding the lock) waits
    this long. A file's shared connection keeps the value of the run that opened it."""
    from graph.context import Context

    return (context or Context()).checkpointer_timeout_seconds


@asynccontextmanager
async def open_checkpointer(url: str | None = None, context: Context | None = None
                            ) -> AsyncIterator[BaseCheckpointSaver]:
    """Open the checkpointer at `url`: a SQLite path, or a postgresql:// URL (its waits and
    bounds from `context`'s settings, see `_PostgresLink`).

    A SQLite file is opened once per process (and event loop): every run, `ls` and `show`
    at once shares one connection, closed when the last of them is done; see `_shared`."""
    url = url or default_checkpointer_url()
    if _is_postgres(url):
        async with _postgres(url, context, lambda conn: _postgres_classes()[0](
                conn, serde=serializer())) as saver:
            yield saver
        return
    async with _shared(("checkpointer", _file_key(url)), _sqlite_saver, url,
                       _busy_timeout(context)) as saver:
        yield saver


async def _sqlite_saver(stack: contextlib.AsyncExitStack, url: str,
                        busy_timeout: float) -> BaseCheckpointSaver:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    # IMMEDIATE: each write transaction takes the write lock when it begins (waiting up to
    # the busy timeout), never upgrades a read to a write midway (which fails at once).
    conn = await stack.enter_async_context(aiosqlite.connect(
        url, timeout=busy_timeout, isolation_level="IMMEDIATE"))
    saver = AsyncSqliteSaver(conn, serde=serializer())
    async with _file_lock(url):  # its setup (WAL, tables, a migration) once at a time
        await saver.setup()
    return saver


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def store_path(url: str) -> str:
    """The SQLite file of the store beside the checkpoint file `url` (a file of its own, so
    the ledger's writes never wait for a checkpoint's)."""
    path = Path(url)
    return str(path.with_name(f"{path.stem}.ledger.sqlite"))


@asynccontextmanager
async def open_store(url: str | None = None, context: Context | None = None
                     ) -> AsyncIterator[BaseStore]:
    """Open the LangGraph store for the checkpointer at `url`: the same Postgres database,
    or a SQLite file beside the checkpoints' (`store_path`), opened once per process as the
    checkpointer is."""
    url = url or default_checkpointer_url()
    if _is_postgres(url):
        async with (_postgres(url, context, _postgres_classes()[1]) as store,
                    _stopping_batches(store)):
            yield store
        return
    path = store_path(url)
    async with _shared(("store", _file_key(path)), _sqlite_store, path,
                       _busy_timeout(context)) as store:
        yield store


async def _sqlite_store(stack: contextlib.AsyncExitStack, path: str,
                        busy_timeout: float) -> AsyncSqliteStore:
    import aiosqlite

    conn = await stack.enter_async_context(aiosqlite.connect(
        path, timeout=busy_timeout, isolation_level=None))
    store = _immediate_store_class()(conn)
    async with _file_lock(path):
        # WAL: readers never wait for the writer, nor it for them (the file remembers it).
        await conn.execute("PRAGMA journal_mode=WAL")
        await store.setup()
    await stack.enter_async_context(_stopping_batches(store))
    return store


@functools.cache
def _immediate_store_class() -> type[AsyncSqliteStore]:
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    class ImmediateSqliteStore(AsyncSqliteStore):
        """LangGraph's SQLite store, its transactions begun IMMEDIATE.

        It begins each batch with a deferred `BEGIN`, then reads before it writes: when
        another process wrote in between, SQLite cannot upgrade the read to a write and
        fails at once with `database is locked` (no busy wait). IMMEDIATE takes the write
        lock first, so a batch waits its turn instead."""

        @asynccontextmanager
        async def _cursor(self, *, transaction: bool = True) -> AsyncIterator[Any]:
            if not self.is_setup:
                await self.setup()
            async with self.lock:
                if transaction:
                    await self.conn.execute("BEGIN IMMEDIATE")
                async with self.conn.cursor() as cur:
                    try:
                        yield cur
                    except BaseException:
                        if transaction and self.conn.in_transaction:
                            await self.conn.execute("ROLLBACK")  # none of a failed batch
                        raise
                    if transaction:
                        await self.conn.execute("COMMIT")

    return ImmediateSqliteStore


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


# Open SQLite checkpointers and stores of this process, by (kind, file, event loop).
_OPEN: dict[tuple[Any, ...], _Entry] = {}


@dataclass
class _Entry:
    ready: asyncio.Future
    stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    users: int = 0


@asynccontextmanager
async def _shared(key: tuple[Any, ...], opener: Callable[..., Awaitable[T]],
                  *args: Any) -> AsyncIterator[T]:
    """`opener(stack, *args)`'s value, opened once for every user of `key` in this event loop
    and closed (its `stack`) when the last one leaves. Many runs in one process then share
    one connection per file, whose lock orders their statements, rather than each holding
    its own and waiting on the others' write locks."""
    loop = asyncio.get_running_loop()
    key = (*key, loop)
    entry = _OPEN.get(key)
    opening = entry is None
    if entry is None:
        entry = _OPEN[key] = _Entry(loop.create_future())
    entry.users += 1  # before any wait: the first user leaving cannot close it under us
    try:
        if opening:
            try:
                entry.ready.set_result(await opener(entry.stack, *args))
            except BaseException as exc:
                del _OPEN[key]
                entry.ready.set_exception(exc)
                entry.ready.exception()  # retrieved: the waiters raise it, each on its own
                await entry.stack.aclose()
                raise
        yield await entry.ready
    finally:
        entry.users -= 1
        if entry.users == 0 and _OPEN.get(key) is entry:
            del _OPEN[key]
            await entry.stack.aclose()


def _file_key(path: str) -> str:
    return os.path.realpath(path)


@asynccontextmanager
async def _file_lock(path: str) -> AsyncIterator[None]:
    """An OS lock (fcntl) on `path`.lock, across processes: two first set-ups of one file at
    once both find no schema and both write its migrations (`UNIQUE constraint failed:
    store_migrations.v`). Polled, so waiting blocks no event loop and can be cancelled."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:  # noqa: ASYNC230 - a local file, at once
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_POSTGRES_SETUP_LOCK = 0x6475_6574  # "duet": one key for every nova-duet set-up


class CheckpointerUnavailable(Exception):
    """The checkpointer's database could not be reached within `dependency_wait_seconds`
    (refused, reset, gone), or did not answer within `checkpointer_timeout_seconds` (it
    accepts and stalls). Raised before any work when it happens at the start; mid-run it
    stops the run as any failed checkpoint write does (resumable)."""


class _PostgresLink:
    """The one connection of a Postgres checkpointer or store, kept usable.

    Each operation (a checkpoint written or read, a batch of the store) gets
    `checkpointer_timeout_seconds` to finish; past it the connection is closed under it
    (a stalled server may never answer, and asking it to cancel would wait too) and the
    operation fails. One stall, one bound: an operation that meets a database found
    stalled moments ago (LangGraph recording the failure of a ledger write) gets only a
    probe of `_PROBE_SECONDS` before it fails the same way. An unreachable server is
    waited for: the connection is reopened with backoff for up to
    `dependency_wait_seconds`, then the operation runs again. That is safe because every
    write here is an upsert keyed by the checkpoint or item: a write that landed before
    the connection broke lands the same once more."""

    def __init__(self, url: str, context: Context | None):
        from graph.context import Context

        context = context or Context()
        self.url = url
        self.wait = context.dependency_wait_seconds
        self.timeout = context.checkpointer_timeout_seconds
        self.conn: Any = None
        self.owner: Any = None  # the saver or store whose `conn` this is
        self._reopening = asyncio.Lock()
        _quiet_lost_connections()

    @property
    def name(self) -> str:
        """The database, for messages: host, port and name, never a password."""
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.url)
        return (f"the checkpointer database {info.get('dbname', '')!s} at "
                f"{info.get('host', 'localhost')}:{info.get('port', 5432)}")

    async def connect(self, bound: float | None = None) -> Any:
        """A new connection, as LangGraph's savers make theirs; libpq's own connect
        timeout (`bound`, else `checkpointer_timeout_seconds`; libpq's least is 2 s) and
        TCP keepalives so that a dead peer is noticed by the kernel too."""
        import psycopg
        from psycopg.rows import dict_row

        return await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, prepare_threshold=0, row_factory=dict_row,
            connect_timeout=max(2, round(bound or self.timeout)), keepalives=1,
            keepalives_idle=10, keepalives_interval=5, keepalives_count=3)

    def _bound(self) -> float:
        """How long the next operation may take: `checkpointer_timeout_seconds`, or only a
        probe's when this database was found stalled moments ago."""
        seen = _STALLS.get(self.url)
        if seen is not None and time.monotonic() - seen < _STALL_MEMORY:
            return min(self.timeout, _PROBE_SECONDS)
        return self.timeout

    async def call(self, operation: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`operation(*args)`, bounded, waiting out an outage (see the class)."""
        import psycopg

        from tools.backoff import backoff_pauses  # not at the top: `duet ls` loads this file

        pauses = backoff_pauses()
        delay = next(pauses)
        while True:
            conn = self.conn
            bound = self._bound()
            try:
                if conn is None or conn.closed:
                    conn = await self._reopen(conn, bound)
                result = await self._bounded(operation(*args), conn, bound)
                _OUTAGES.pop(self.url, None)
                _STALLS.pop(self.url, None)  # it answers again
                return result
            except psycopg.errors.ConnectionTimeout as exc:
                raise self._stalled(exc) from None
            except psycopg.OperationalError as exc:
                # One outage, one wait: an operation that meets it after another has waited
                # (LangGraph recording the failure of a ledger write) waits only what is left.
                now = time.monotonic()
                began, last = _OUTAGES.get(self.url, (now, now))
                if now - last > _OUTAGE_GAP:
                    began = now  # unreachable again after a while: a new outage
                _OUTAGES[self.url] = (began, now)
                if now + delay > began + self.wait:
                    raise CheckpointerUnavailable(
                        f"{self.name} cannot be reached ({_first_line(exc)}); waited "
                        f"{self.wait:g}s (dependency_wait_seconds): check that it is running "
                        "and that DUET_CHECKPOINTER names it") from None
                if conn is not None and not conn.closed:
                    await conn.close()  # broken: the next try opens a new one
                await asyncio.sleep(delay)
                delay = next(pauses)

    async def _reopen(self, broken: Any, bound: float) -> Any:
        async with self._reopening:  # one reconnect for all who found it broken
            if self.conn is broken:
                self.conn = await self.connect(bound)
                if self.owner is not None:
                    self.owner.conn = self.conn
            return self.conn

    async def _bounded(self, operation: Awaitable[T], conn: Any, bound: float) -> T:
        task = asyncio.ensure_future(operation)
        try:
            done, _ = await asyncio.wait({task}, timeout=bound)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            # Closed first: psycopg then skips its cancel request, which a stalled server
            # would not answer either (5 s more, and a warning).
            conn.pgconn.finish()
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise self._stalled(None)
        return task.result()

    def _stalled(self, exc: Exception | None) -> CheckpointerUnavailable:
        """The error of an operation the database did not answer (remembered, see
        `_STALLS`)."""
        _STALLS[self.url] = time.monotonic()
        said = f" ({_first_line(exc)})" if exc else ""
        return CheckpointerUnavailable(
            f"{self.name} did not answer within {self.timeout:g}s "
            f"(checkpointer_timeout_seconds){said}: check that it is not stopped or "
            "overloaded")

    async def close(self) -> None:
        """Close the connection (a broken one closes at once)."""
        if self.conn is not None:
            await self.conn.close()


@functools.cache
def _quiet_lost_connections() -> None:
    """Drop psycopg's warnings about a connection it lost or closed under a query: the link
    handles those (waits, reconnects, or fails the operation, typed), so they are noise on
    the run's stderr."""
    import logging

    said = ("error ignored terminating", "query not terminated", "query cancellation")
    logging.getLogger("psycopg").addFilter(
        lambda record: not str(record.msg).startswith(said))


# Each Postgres database of this process found unreachable, until it answers: when that
# outage began, and when it was last seen; seen again after `_OUTAGE_GAP`, a new one.
_OUTAGES: dict[str, tuple[float, float]] = {}
_OUTAGE_GAP = 10.0

# Each Postgres database of this process found stalled (it accepted, then did not answer
# within the bound), until it answers: when it was last found so. An operation within
# `_STALL_MEMORY` of that waits only `_PROBE_SECONDS` (libpq's least connect timeout), so
# one stall costs one bound, not one per operation that meets it.
_STALLS: dict[str, float] = {}
_STALL_MEMORY = 10.0
_PROBE_SECONDS = 2.0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@asynccontextmanager
async def _postgres(url: str, context: Context | None, make: Callable[[Any], T]
                    ) -> AsyncIterator[T]:
    """`make(connection)` (a saver or store) on a `_PostgresLink`, set up once."""
    link = _PostgresLink(url, context)
    try:
        await link.call(_noop)  # the first connection, under the same wait and bound
        link.owner = make(link.conn)
        link.owner.link = link
        await link.call(_setup_once, link, link.owner)
        yield link.owner
    finally:
        await link.close()


async def _noop() -> None:
    return None


async def _setup_once(link: _PostgresLink, user: Any) -> None:
    """`user.setup()` under a Postgres advisory lock (on a connection of its own): as on
    SQLite, two processes migrating one new database at once collide on the migrations
    table."""
    async with await link.connect() as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_POSTGRES_SETUP_LOCK,))
        try:
            await user.setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_POSTGRES_SETUP_LOCK,))


@functools.cache
def _postgres_classes() -> tuple[type, type]:
    """LangGraph's Postgres saver and store, every database operation through their link."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.store.postgres.aio import AsyncPostgresStore

    class LinkedPostgresSaver(AsyncPostgresSaver):
        link: _PostgresLink

        async def aget_tuple(self, config: Any) -> Any:
            return await self.link.call(super().aget_tuple, config)

        async def aput(self, config: Any, checkpoint: Any, metadata: Any,
                       new_versions: Any) -> Any:
            return await self.link.call(super().aput, config, checkpoint, metadata,
                                        new_versions)

        async def aput_writes(self, config: Any, writes: Any, task_id: str,
                              task_path: str = "") -> None:
            await self.link.call(super().aput_writes, config, list(writes), task_id,
                                 task_path)

        async def adelete_thread(self, thread_id: str) -> None:
            await self.link.call(super().adelete_thread, thread_id)

        async def aprune(self, thread_ids: Any, *, strategy: str = "keep_latest") -> None:
            await self.link.call(functools.partial(super().aprune, strategy=strategy),
                                 thread_ids)

        async def aget_delta_channel_history(self, *, config: Any, channels: Any) -> Any:
            return await self.link.call(functools.partial(
                super().aget_delta_channel_history, config=config, channels=channels))

        async def alist(self, config: Any, *, filter: Any = None, before: Any = None,
                        limit: int | None = None) -> AsyncIterator[Any]:
            # (`aget_state_history`.) LangGraph's reads every row at once anyway; here all
            # are read under one bound, each try by a generator of its own.
            async def listed() -> list[Any]:
                return [item async for item in AsyncPostgresSaver.alist(
                    self, config, filter=filter, before=before, limit=limit)]

            for item in await self.link.call(listed):
                yield item

    class LinkedPostgresStore(AsyncPostgresStore):
        link: _PostgresLink

        async def abatch(self, ops: Any) -> Any:
            return await self.link.call(super().abatch, list(ops))

    return LinkedPostgresSaver, LinkedPostgresStore
