"""``sql.query``: one parameterized SQL query through SQLAlchemy, read-only by default.

SQLite by default (``path``, relative to the workbook), any SQLAlchemy URL otherwise (``url``,
or ``url_env`` naming an environment variable that holds one with its password). The stage's
inputs are bound as the query's ``:name`` parameters, never interpolated into the text.

Read-only unless the catalog allows ``allow_writes``: SQLite files are opened read-only
(``mode=ro``) with ``PRAGMA query_only``; PostgreSQL runs the query in a ``READ ONLY``
transaction. ``row_limit`` caps the rows returned; ``timeout_s`` aborts a query that runs too
long (SQLite: a progress handler; PostgreSQL: ``statement_timeout``).

The stage cache keys a read-only SQLite stage by the database file's digest (recomputed only when
the file's inode, size or modification time moved), so a changed file recomputes the answers
that read it; a stage that may write, or that reads a server database (``url``/``url_env``,
whose state NUX cannot version), is never cached.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nux_runtime.components.base import Component, RuntimeContext, StageResult, shared
from nux_runtime.errors import NuxError, StageError
from nux_runtime.spec import StageSpec

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

__all__ = ["SQLQuery", "file_version", "get_engine", "json_value"]

_digests: dict[tuple[str, int, int, int], str] = {}
_digests_lock = threading.Lock()


def file_version(path: Path) -> str:
    """The sha256 of a file and of its SQLite write-ahead log, if any (memoized per inode,
    size and modification time, so an unchanged file is hashed once per process)."""
    parts = []
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            st = part.stat()
        except FileNotFoundError:
            continue
        key = (str(part), st.st_ino, st.st_size, st.st_mtime_ns)
        with _digests_lock:
            digest = _digests.get(key)
        if digest is None:
            h = hashlib.sha256()
            with part.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            digest = h.hexdigest()
            with _digests_lock:
                _digests[key] = digest
        parts.append(digest)
    return ":".join(parts) or "absent"


def json_value(value: Any) -> Any:
    """A database value as JSON: decimals as numbers, times as ISO text, bytes as hex."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def get_engine(url: str, *, read_only: bool) -> Engine:
    """The process-wide engine for a URL (SQLite files opened read-only when asked)."""
    try:
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url
    except ImportError:
        raise NuxError("SQLAlchemy is not installed; install `nux-runtime[sql]`") from None

    def build() -> Engine:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or not read_only:
            return create_engine(url, pool_pre_ping=True)
        database = parsed.database or ""
        if not database or database == ":memory:":
            raise NuxError("a read-only SQLite stage needs a database file")
        engine = create_engine(f"sqlite+pysqlite:///file:{database}?mode=ro&uri=true")

        @event.listens_for(engine, "connect")
        def _query_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

        return engine

    return shared("sql-engine", (url, read_only), build)


class SQLQuery(Component):
    """Runs ``params.query`` with the stage's inputs bound; returns the rows as objects."""

    @classmethod
    def may_cache(cls, stage: StageSpec) -> bool:
        params = stage.params
        return not (params.get("allow_writes") or params.get("url") or params.get("url_env"))

    @classmethod
    def cache_state(cls, stage: StageSpec, context: RuntimeContext) -> str | None:
        """The SQLite file's digest."""
        return f"sqlite:{file_version(context.path(str(stage.params.get('path', 'data.db'))))}"

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        self.read_only = not bool(self.params.get("allow_writes", False))
        try:
            self.url = self._url()
            self.engine = get_engine(self.url, read_only=self.read_only)
        except NuxError as exc:
            raise StageError(stage.id, str(exc), category="resource") from None
        self.backend = self.engine.dialect.name

    def _url(self) -> str:
        env_name = self.params.get("url_env")
        if env_name:
            value = self.context.env.get(str(env_name))
            if not value:
                raise NuxError(f"the environment variable {env_name} (url_env) is not set")
            return value
        if self.params.get("url"):
            return str(self.params["url"])
        path = self.context.path(str(self.params.get("path", "data.db")))
        if self.read_only and not path.is_file():
            raise NuxError(f"the SQLite database {path} does not exist")
        return f"sqlite:///{path}"

    def _bind(self, inputs: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
        missing = [n for n in names if n not in inputs]
        if missing:
            raise StageError(
                self.stage.id, f"the query reads :{', :'.join(missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not among the stage's inputs "
                f"({', '.join(inputs) or 'none'})", category="input")
        values = {}
        for name in names:
            value = inputs[name]
            if not isinstance(value, str | int | float | bool | type(None)):
                raise StageError(self.stage.id, f"input {name!r} is a {type(value).__name__}; "
                                 "bind only text, numbers, booleans or null", category="input")
            values[name] = value
        return values

    def _guard(self, conn: Connection, timeout: float) -> None:
        if self.backend == "postgresql":
            from sqlalchemy import text

            if self.read_only:
                conn.execute(text("SET TRANSACTION READ ONLY"))
            conn.execute(text(f"SET LOCAL statement_timeout = {int(timeout * 1000)}"))
        elif self.backend == "sqlite":
            deadline = time.monotonic() + timeout
            raw: Any = conn.connection.driver_connection
            raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        from sqlalchemy import exc as sa_exc
        from sqlalchemy import text

        statement = text(str(self.params["query"]))
        values = self._bind(inputs, list(statement.compile().params))
        limit = int(self.params.get("row_limit", 100))
        timeout = float(self.params.get("timeout_s", 10.0))
        try:
            with self.engine.connect() as conn:
                try:
                    self._guard(conn, timeout)
                    result = conn.execute(statement, values)
                    rows = result.mappings().fetchmany(limit + 1) if result.returns_rows else []
                    truncated = len(rows) > limit
                    if result.returns_rows:
                        result.close()
                    conn.commit()
                finally:
                    if self.backend == "sqlite":
                        driver: Any = conn.connection.driver_connection
                        driver.set_progress_handler(None, 0)
        except sa_exc.OperationalError as exc:
            raise self._error(exc) from None
        except sa_exc.DBAPIError as exc:
            raise self._error(exc) from None
        except sa_exc.SQLAlchemyError as exc:
            raise StageError(self.stage.id, f"the query failed: {exc}") from None
        records = [{k: json_value(v) for k, v in row.items()} for row in rows[:limit]]
        return StageResult(records, meta={"truncated": truncated, "row_limit": limit})

    def _error(self, exc: Any) -> StageError:
        message = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        lowered = message.lower()
        if "interrupted" in lowered or "statement timeout" in lowered or "canceling" in lowered:
            return StageError(self.stage.id, f"the query ran longer than timeout_s "
                              f"({self.params.get('timeout_s', 10.0)} s) and was stopped",
                              category="timeout")
        if "readonly" in lowered or "read-only" in lowered or "read only" in lowered:
            return StageError(self.stage.id, f"the query tries to write, and this stage is "
                              f"read-only ({message}); the catalog must allow writes",
                              category="input")
        if "could not connect" in lowered or "connection refused" in lowered:
            return StageError(self.stage.id, f"cannot reach the database: {message}",
                              category="transient")
        return StageError(self.stage.id, f"the query failed: {message}", category="input")
