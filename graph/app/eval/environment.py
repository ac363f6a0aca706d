"""The system a suite evaluates: an `Environment`, named by the suite (`environment:
mypkg.env:make`), that starts a fresh `Instance` for every run.

An environment says which tables its state has (`tables`: what fixtures may fill and what
the state check compares), what broken variants of its plans are made of (`variations`),
and the names of the variables its instances give (`variables`). `start(fixtures, folder)`
gives a running instance with the task's fixtures on top of its own seed; the instance
gives the variables plans and the preamble use (`{site}`, `{{ site }}`), the hosts a run
may reach, its tools (a registry factory, an MCP config, or both), its state as tables of
rows, the writes it received, and `stop`. An instance may also have `auth_config` (a path
or JSON text, `docs/auth.md`): the run gets its secrets by name, and every file the run
left is searched for them (`graph.app.eval.secrets`).

The runner knows nothing more of a system than this: the demo CRM
(`demo_site.environment:make`) and the ticket tracker (`demo_site.tickets.environment:make`)
are two environments behind it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict, runtime_checkable

from tools.errors import ConfigError
from tools.registry import ToolRegistry

Rows = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Table:
    """One table of an environment's state: its key column, the columns a fixture row may
    set, and the columns the system fills itself (an added row is compared without them)."""

    key: str
    columns: tuple[str, ...]
    generated: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variations:
    """What the broken variants of this environment's plans are made of
    (`graph.app.eval.variants`): the values an argument cycles through for `wrong_value`
    (`status`: the statuses), the argument names that pick a record (`other_record` aims
    them at another one), the seeded id ranges a record id moves within, a step that
    writes to a record no task names (`stray_write`), and one that sets a record to the
    value it has in every task's seed (`same_value_write`: a write that changes nothing is
    still a write the task did not ask for). None: that kind does not apply."""

    values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    record_args: tuple[str, ...] = ()
    id_ranges: tuple[tuple[int, int], ...] = ()
    stray_write: Mapping[str, Any] | None = None
    same_value_write: Mapping[str, Any] | None = None


class Write(TypedDict):
    """One write an instance received: which table, which row (its key: text, or a number
    as a database gives it; the state check compares keys as text)."""

    table: str
    row: str | int


@runtime_checkable
class Instance(Protocol):
    """A running instance of an environment, for one run."""

    variables: dict[str, str]
    """Filled into the preamble (`{name}`) and into reference plans (`{{ name }}`)."""
    allowed_hosts: list[str]
    """The hosts (`host:port`) a run may reach: its own instance and nothing else."""
    tools: Callable[[], ToolRegistry] | None
    """A factory of a registry of this instance's own tools, joined to the built-in ones."""
    mcp_servers: dict[str, dict[str, Any]]
    """`mcpServers` entries (as in an MCP config file) whose tools join the run."""

    async def snapshot(self) -> Rows:
        """Every row of every table of `Environment.tables`."""
        ...

    async def writes(self) -> list[Write]:
        """Every write received since the start, in order (fixtures are not writes)."""
        ...

    async def stop(self) -> None:
        """Stop what `start` started; the state stays readable for `snapshot`."""
        ...


@runtime_checkable
class Environment(Protocol):
    """A kind of system a suite's tasks run against."""

    name: str
    variables: tuple[str, ...]
    """The names of the variables its instances give (`Instance.variables`): the `{name}`s
    a suite's preamble and tasks may use, checked when the suite loads (an instance exists
    only once a run starts)."""
    tables: Mapping[str, Table]
    variations: Variations

    async def start(self, fixtures: Rows, folder: Path) -> Instance:
        """A fresh instance: the environment's seed plus `fixtures` (rows per table), its
        files in `folder`."""
        ...


class EnvironmentConfigError(ConfigError, ValueError):
    """An environment that cannot be loaded, or fixtures it cannot take."""


def _one_line(exc: BaseException) -> str:
    """`exc` as one line: its type and the first line of its message. The environment is
    the user's own code: what it raised is news for the eval's output, its traceback is
    not."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _import(module_name: str, folder: Path | None) -> Any:
    """`module_name` from Python's import path (`sys.path`) or, when it is not there, from
    `folder`, which is then added at the end of `sys.path`."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only when its top package is nowhere: a package found with a module missing, or
        # a module of its own that imports a missing one, is not the folder's to answer.
        top_missing = exc.name == module_name.partition(".")[0]
        if folder is None or not top_missing or str(folder) in sys.path:
            raise
    # At the end, and kept: it shadows no installed module, and the environment's own later
    # imports (in `start`, say) still find their siblings.
    sys.path.append(str(folder))
    return importlib.import_module(module_name)


def load_environment(spec: str, folder: Path | None = None) -> Environment:
    """The environment `spec` names: `module:attribute`, an `Environment` or a function
    that makes one. `module` is imported from Python's import path (installed packages,
    `PYTHONPATH`), else from `folder` (the suite file's). Raises `EnvironmentConfigError`
    saying what is wrong, in one line, also when importing the module or making the
    environment raises."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise EnvironmentConfigError(f"environment {spec!r}: expected module:attribute")
    try:
        found: Any = _import(module_name, folder.resolve() if folder else None)
    except Exception as exc:  # noqa: BLE001 - whatever the module raises, it does not load
        raise EnvironmentConfigError(f"environment {spec!r}: cannot import {module_name}: "
                                     f"{_one_line(exc)}") from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise EnvironmentConfigError(f"environment {spec!r}: {module_name} has no {attribute}")
        found = getattr(found, part)
    # A class or a function makes the environment; anything else is one.
    if isinstance(found, type) or (callable(found) and not isinstance(found, Environment)):
        try:
            environment = found()
        except Exception as exc:  # noqa: BLE001 - whatever it raises, there is no environment
            raise EnvironmentConfigError(f"environment {spec!r}: {attribute}() raised "
                                         f"{_one_line(exc)}") from None
    else:
        environment = found
    if not isinstance(environment, Environment):
        raise EnvironmentConfigError(f"environment {spec!r} is not an Environment (it needs name, "
                                     "variables, tables, variations and start)")
    return environment


def fixture_problem(environment: Environment, fixtures: Rows) -> str | None:
    """What is wrong with `fixtures` for `environment` (an unknown table or column), or
    None."""
    for table, rows in fixtures.items():
        if table not in environment.tables:
            return (f"fixtures: no table {table!r} in environment {environment.name!r} "
                    f"(tables: {', '.join(environment.tables)})")
        allowed = environment.tables[table].columns
        for row in rows:
            if not isinstance(row, dict):
                return f"fixtures: a row of {table!r} is not a mapping of columns"
            if unknown := [c for c in row if c not in allowed]:
                return (f"fixtures: table {table!r} has no column {unknown[0]!r} "
                        f"(columns: {', '.join(allowed)})")
    return None
