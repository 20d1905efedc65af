"""sql.query on SQLite and on a real PostgreSQL server: the contract, bound parameters,
read-only enforcement, row limit and timeout."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from nux_kernel import Executor, Workbook
from nux_kernel.catalog import DEFAULT_CATALOG, load_catalog
from nux_kernel.testing import ComponentContract
from nux_runtime.errors import PolicyError

LOOKUP = "SELECT id, name, score FROM users WHERE name = :name ORDER BY id"
INJECTIONS = ["bob' OR '1'='1", "x'; DROP TABLE users; --", "bob\"; DELETE FROM users; --"]
ROWS = [("ann", 1.5), ("bob", 2.0), ("cy", 3.25)]


def make_sqlite(base_dir: Path) -> Path:
    path = base_dir / "data.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, score REAL)")
        conn.executemany("INSERT INTO users (name, score) VALUES (?, ?)", ROWS)
    return path


def make_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute("CREATE TABLE users (id SERIAL PRIMARY KEY, name TEXT, score NUMERIC(6, 2))")
        for name, score in ROWS:
            c.execute("INSERT INTO users (name, score) VALUES (%s, %s)", (name, score))


def run(base_dir: Path, inputs: dict[str, Any], catalog: Any = None, **params: Any) -> Any:
    wb = Workbook("sql", inputs={k: {} for k in inputs}, output="rows")
    wb.data("rows", uses="sql.query", inputs=list(inputs), params=params)
    return Executor(wb.compile(catalog), base_dir=base_dir, cache=False).run(inputs)


class TestSQLiteContract(ComponentContract):
    component = "sql.query"
    inputs: ClassVar[Any] = {"name": "string"}
    params: ClassVar[Any] = {"query": LOOKUP}
    cases: ClassVar[Any] = [{"name": "bob"}, {"name": "cy"}]
    bad_params: ClassVar[Any] = {"row_limit": 0}
    failing_params: ClassVar[Any] = {"query": "SELECT * FROM missing WHERE name = :name"}
    failing_cause = "no such table: missing"
    failing_category = "input"

    @pytest.fixture
    def workbook_dir(self, tmp_path: Path) -> Path:
        make_sqlite(tmp_path)
        return tmp_path


@pytest.mark.slow
class TestPostgresContract(TestSQLiteContract):
    failing_cause = 'relation "missing" does not exist'

    @pytest.fixture
    def workbook_dir(self, tmp_path: Path, postgres_url: str) -> Path:
        make_postgres(postgres_url)
        self.params = {"query": LOOKUP, "url": postgres_url}
        return tmp_path


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Params that point a stage at a users table in SQLite or in PostgreSQL."""
    if request.param == "sqlite":
        make_sqlite(tmp_path)
        return {}
    url = request.getfixturevalue("postgres_url")
    make_postgres(url)
    return {"url": url}


def count_users(tmp_path: Path, database: dict[str, Any]) -> int:
    result = run(tmp_path, {}, query="SELECT count(*) AS n FROM users", **database)
    assert result.ok, result.errors
    return int(result.output[0]["n"])


def test_rows_are_json_objects(tmp_path: Path, database: dict[str, Any]) -> None:
    result = run(tmp_path, {"name": "cy"}, query=LOOKUP, **database)
    assert result.ok, result.errors
    assert result.output == [{"id": 3, "name": "cy", "score": 3.25}]


@pytest.mark.parametrize("attack", INJECTIONS)
def test_an_injection_attempt_is_only_a_value(tmp_path: Path, database: dict[str, Any],
                                              attack: str) -> None:
    result = run(tmp_path, {"name": attack}, query=LOOKUP, **database)
    assert result.ok, result.errors
    assert result.output == []
    assert count_users(tmp_path, database) == 3


def test_writes_are_refused_and_change_nothing(tmp_path: Path, database: dict[str, Any]) -> None:
    for query in ("DELETE FROM users", "UPDATE users SET score = 0", "DROP TABLE users"):
        result = run(tmp_path, {}, query=query, **database)
        [error] = result.errors
        assert error.stage == "rows" and error.category == "input"
        assert "read-only" in error.cause, error.cause
    assert count_users(tmp_path, database) == 3


def test_the_default_catalog_does_not_vet_writes(tmp_path: Path) -> None:
    make_sqlite(tmp_path)
    with pytest.raises(PolicyError) as info:
        run(tmp_path, {}, query="DELETE FROM users", allow_writes=True)
    assert any(p.field == "params.allow_writes" for p in info.value.problems)


def test_a_catalog_that_vets_writes_lets_them_through(tmp_path: Path,
                                                      database: dict[str, Any]) -> None:
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text())
    raw["components"]["sql.query"]["params"]["allow_writes"] = {"type": "boolean"}
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(raw))
    catalog = load_catalog(path)
    result = run(tmp_path, {"name": "ann"}, catalog, query="DELETE FROM users WHERE name = :name",
                 allow_writes=True, **database)
    assert result.ok, result.errors
    assert count_users(tmp_path, database) == 2


def test_row_limit(tmp_path: Path, database: dict[str, Any]) -> None:
    result = run(tmp_path, {}, query="SELECT name FROM users ORDER BY id", row_limit=2,
                 **database)
    assert result.output == [{"name": "ann"}, {"name": "bob"}]


def test_a_slow_query_is_stopped(tmp_path: Path, database: dict[str, Any]) -> None:
    slow = ("SELECT pg_sleep(5)" if database else
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
            "SELECT count(*) FROM c")
    result = run(tmp_path, {}, query=slow, timeout_s=0.3, **database)
    [error] = result.errors
    assert error.category == "timeout" and "timeout_s" in error.cause
    assert count_users(tmp_path, database) == 3  # the engine still serves the next query


def test_a_placeholder_without_an_input_is_named(tmp_path: Path) -> None:
    make_sqlite(tmp_path)
    result = run(tmp_path, {"name": "bob"},
                 query="SELECT * FROM users WHERE name = :name AND score > :minimum")
    [error] = result.errors
    assert error.category == "input" and ":minimum" in error.cause


def test_a_missing_database_file_is_a_resource_error(tmp_path: Path) -> None:
    result = run(tmp_path, {}, query="SELECT 1", path="absent.db")
    [error] = result.errors
    assert error.category == "resource" and "absent.db" in error.cause


def test_url_from_an_environment_variable(tmp_path: Path, postgres_url: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    make_postgres(postgres_url)
    monkeypatch.setenv("NUX_TEST_DB_URL", postgres_url)
    result = run(tmp_path, {"name": "ann"}, query=LOOKUP, url_env="NUX_TEST_DB_URL")
    assert result.ok, result.errors
    assert result.output == [{"id": 1, "name": "ann", "score": 1.5}]
