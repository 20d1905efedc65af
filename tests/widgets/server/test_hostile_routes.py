"""Hostile notebooks and catalogs through `/nux/validate` and `/nux/catalog`: the Jupyter server
reads them and runs nothing (an audit hook watches for files, sockets and processes that NUX's
code opens while a request is answered), answers each with its problem, never a traceback."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.kernel.hostile import BANK_CASES, Watcher, corpus

_WATCHERS: list[Watcher] = []  # an audit hook cannot be removed: one per session, made on use
CATALOGS = {
    "bomb.yaml": ("name: evil\nversion: '1'\n" + "\n".join(
        [f"a0: &a0 [{', '.join(['lol'] * 10)}]"]
        + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)])).encode(),
    "deep.yaml": b"name: evil\nversion: '1'\ncomponents: " + b"[" * 5000 + b"]" * 5000,
    "binary.yaml": bytes(range(256)) * 8,
    "list.yaml": b"name: evil\nversion: '1'\ncomponents: [1, 2, 3]\n",
}


@pytest.fixture
def watched() -> Any:
    if not _WATCHERS:
        _WATCHERS.append(Watcher(only=("nux_kernel", "nux_widgets", "nux_runtime")))
    watcher = _WATCHERS[0]
    watcher.seen.clear()
    watcher.armed = True
    yield watcher
    watcher.armed = False


def _problems(response: Any) -> list[str]:
    return [p["code"] for p in json.loads(response.body)["problems"]]


async def test_validate_reads_hostile_notebooks_and_runs_nothing(
        jp_fetch: Any, jp_root_dir: Path, watched: Watcher) -> None:
    marker = jp_root_dir / "pwned"
    for name, (data, code) in corpus(marker).items():
        if name in BANK_CASES:
            continue  # the route checks the workbook; the test bank is read by runs
        (jp_root_dir / f"{name}.ipynb").write_bytes(data)
        bodies = [{"path": f"{name}.ipynb"}]
        with contextlib.suppress(ValueError, RecursionError):  # not JSON: nothing to send
            bodies.append({"path": f"{name}.ipynb", "notebook": json.loads(data)})
        for body in bodies:
            response = await jp_fetch("nux", "validate", method="POST", body=json.dumps(body),
                                      raise_error=False)
            assert response.code in (200, 422), (name, response.code, response.body[:300])
            assert code in _problems(response), (name, response.body[:600])
            assert b"Traceback" not in response.body
    assert watched.seen == []
    assert not marker.exists()


async def test_catalog_route_reads_hostile_catalogs_and_runs_nothing(
        jp_fetch: Any, jp_root_dir: Path, watched: Watcher) -> None:
    for name, data in CATALOGS.items():
        (jp_root_dir / name).write_bytes(data)
        response = await jp_fetch("nux", "catalog", params={"catalog": name}, raise_error=False)
        assert response.code == 400, (name, response.code, response.body[:300])
        assert _problems(response)[0] in ("catalog-yaml", "catalog-entry"), response.body[:300]
    assert watched.seen == []


async def test_a_body_nested_past_reason_is_a_request_problem(jp_fetch: Any) -> None:
    response = await jp_fetch("nux", "validate", method="POST", body="[" * 100_000,
                              raise_error=False)
    assert response.code == 400
    assert _problems(response) == ["request"]
