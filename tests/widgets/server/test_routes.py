"""The server extension's routes, through HTTP on a real Jupyter server (pytest-jupyter)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse
from tornado.web import RequestHandler

from nux_widgets.routes import ROUTES

pytestmark = pytest.mark.usefixtures("jp_serverapp")


def _json(response: HTTPResponse) -> Any:
    return json.loads(response.body)


def _concrete(pattern: str) -> str:
    """A URL path for a route pattern: each named group filled with a value it accepts."""
    filled = {"job_id": "0123456789ab", "kind": "run-batch"}
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: filled[m.group(1)], pattern)


def _methods() -> list[tuple[str, str]]:
    """Every (route, method) the extension serves."""
    return [(pattern, method) for pattern, handler in ROUTES
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if getattr(handler, method.lower()) is not getattr(RequestHandler, method.lower())]


def test_the_route_table_is_what_the_browser_uses() -> None:
    assert len(_methods()) == 8


@pytest.mark.parametrize(("pattern", "method"), _methods())
async def test_every_route_refuses_an_unauthenticated_request(
        jp_fetch: Any, pattern: str, method: str) -> None:
    path = _concrete(pattern)
    body = "{}" if method == "POST" else None
    refused = await jp_fetch(path, method=method, body=body, raise_error=False,
                             headers={"Authorization": "token not-the-token"})
    assert refused.code == 403, (path, method, refused.code)
    # With the server's token the same request gets past authentication.
    allowed = await jp_fetch(path, method=method, body=body, raise_error=False)
    assert allowed.code != 403, (path, method)


async def test_catalog_lists_vetted_components(jp_fetch: Any) -> None:
    data = _json(await jp_fetch("nux", "catalog"))
    by_id = {c["id"]: c for c in data["components"]}
    assert {"code", "text.template"} <= set(by_id)
    template = by_id["text.template"]
    assert template["kind"] == "code"
    assert template["vetting"]["owner"]
    assert "template" in template["params"]
    assert data["hash"] and data["name"]


async def test_catalog_path_outside_the_root_is_refused(jp_fetch: Any) -> None:
    response = await jp_fetch("nux", "catalog", params={"catalog": "../../etc/passwd"},
                              raise_error=False)
    assert response.code == 400
    assert _json(response)["problems"][0]["code"] == "path"


async def test_validate_a_saved_workbook_gives_its_graph(jp_fetch: Any, workbook: Path) -> None:
    response = await jp_fetch("nux", "validate", method="POST",
                              body=json.dumps({"path": "books/shout.ipynb"}))
    data = _json(response)
    assert data["ok"] is True and data["problems"] == []
    nodes = {n["id"]: n["kind"] for n in data["graph"]["nodes"]}
    assert nodes == {"question": "input", "clean": "code", "shout": "code", "answer": "code"}
    edges = {(e["source"], e["target"]) for e in data["graph"]["edges"]}
    assert edges == {("question", "clean"), ("clean", "shout"), ("clean", "answer"),
                     ("shout", "answer")}
    assert set(data["stages"]) == {"clean", "shout", "answer"}
    assert data["graph"]["output"] == ["answer"]
    assert data["graph"]["input_schemas"] == {"question": {"type": "string"}}


async def test_validate_unsaved_notebook_shows_problems_on_their_cells(
        jp_fetch: Any, workbook: Path) -> None:
    notebook = json.loads(workbook.read_text())
    answer = next(c for c in notebook["cells"] if c["id"] == "answer")
    answer["source"] = "%%nux code answer\nuses: text.template\ninputs: [clean, shuot]\n" \
                       "params: {template: 'A: {shuot}'}"
    response = await jp_fetch("nux", "validate", method="POST",
                              body=json.dumps({"path": "books/shout.ipynb",
                                               "notebook": notebook}))
    data = _json(response)
    assert data["ok"] is False
    problem = next(p for p in data["problems"] if p["code"] == "unknown-input")
    assert problem["cell"] == "answer" and problem["line"] == 3
    assert "shout" in problem["fix"]
    # The graph still shows, drawn from the cells as written.
    assert ("shuot", "answer") in {(e["source"], e["target"]) for e in data["graph"]["edges"]}
    # The file on disk is untouched: validating the saved copy is still clean.
    saved = _json(await jp_fetch("nux", "validate", method="POST",
                                 body=json.dumps({"path": "books/shout.ipynb"})))
    assert saved["ok"] is True


async def test_validate_a_missing_or_escaping_path_is_a_problem(jp_fetch: Any) -> None:
    missing = await jp_fetch("nux", "validate", method="POST",
                             body=json.dumps({"path": "nope.ipynb"}), raise_error=False)
    assert missing.code == 422
    assert _json(missing)["problems"][0]["code"] == "notebook-missing"
    escaping = await jp_fetch("nux", "validate", method="POST",
                              body=json.dumps({"path": "../outside.ipynb"}), raise_error=False)
    assert escaping.code == 400
    not_json = await jp_fetch("nux", "validate", method="POST", body="{not json",
                              raise_error=False)
    assert not_json.code == 400
    assert b"Traceback" not in not_json.body


async def test_run_gives_per_stage_traces(jp_fetch: Any, workbook: Path) -> None:
    body = json.dumps({"path": "books/shout.ipynb", "inputs": {"question": "  hi "}})
    data = _json(await jp_fetch("nux", "run", method="POST", body=body))
    assert data["ok"] is True
    assert data["output"] == "Q: hi\nA: HIHI"
    traces = {t["stage"]: t for t in data["traces"]}
    assert list(traces) == ["clean", "shout", "answer"]
    assert all(t["status"] == "ok" and not t["cache_hit"] for t in traces.values())
    again = _json(await jp_fetch("nux", "run", method="POST", body=body))
    assert all(t["cache_hit"] for t in again["traces"])
    assert list((workbook.parent / ".nux" / "runs").glob("*.jsonl"))


async def test_run_with_bad_inputs_names_the_input(jp_fetch: Any, workbook: Path) -> None:
    response = await jp_fetch("nux", "run", method="POST", raise_error=False,
                              body=json.dumps({"path": "books/shout.ipynb",
                                               "inputs": {"questoin": "hi"}}))
    assert response.code == 400
    problems = _json(response)["problems"]
    assert any("question" in p["message"] or "question" in p.get("fix", "") for p in problems)
    assert b"Traceback" not in response.body


async def test_run_a_broken_workbook_answers_its_problems(jp_fetch: Any, workbook: Path
                                                          ) -> None:
    notebook = json.loads(workbook.read_text())
    notebook["metadata"]["nux"]["output"] = "answr"
    response = await jp_fetch("nux", "run", method="POST", raise_error=False,
                              body=json.dumps({"path": "books/shout.ipynb", "notebook": notebook,
                                               "inputs": {"question": "hi"}}))
    assert response.code == 422
    problem = _json(response)["problems"][0]
    assert problem["code"] == "missing-output" and "answer" in problem["fix"]


async def _wait(jp_fetch: Any, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        job = _json(await jp_fetch("nux", "jobs", job_id))
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


async def test_batch_job_runs_in_the_background(jp_fetch: Any, workbook: Path) -> None:
    cases = [{"question": q} for q in ("a", "b", "c")]
    notebook = json.loads(workbook.read_text())
    started = await jp_fetch("nux", "jobs", "run-batch", method="POST",
                             body=json.dumps({"path": "books/shout.ipynb", "cases": cases,
                                              "notebook": notebook}))
    assert started.code == 202
    job = await _wait(jp_fetch, _json(started)["id"])
    assert job["status"] == "done", job["problems"]
    assert job["result"]["ok"] == 3
    assert [r["output"] for r in job["result"]["results"]] == ["Q: a\nA: AA", "Q: b\nA: BB",
                                                                 "Q: c\nA: CC"]
    assert [e["case"] for e in job["events"]] == [1, 2, 3]
    listed = _json(await jp_fetch("nux", "jobs"))
    assert job["id"] in [j["id"] for j in listed["jobs"]]
    assert job["params"] == {"path": "books/shout.ipynb", "cases": cases}
    assert "run-batch" in listed["kinds"]
    newer = _json(await jp_fetch("nux", "jobs", job["id"], params={"after": "2"}))
    assert [e["case"] for e in newer["events"]] == [3]


async def test_job_problems_are_payloads(jp_fetch: Any, workbook: Path) -> None:
    started = await jp_fetch("nux", "jobs", "run-batch", method="POST",
                             body=json.dumps({"path": "books/shout.ipynb",
                                              "cases": [{"question": 3}]}))
    job = await _wait(jp_fetch, _json(started)["id"])
    assert job["status"] == "error"
    assert job["problems"][0]["code"] == "input" and "case 1" in job["problems"][0]["message"]
    unknown = await jp_fetch("nux", "jobs", "no-such-kind", method="POST", body="{}",
                             raise_error=False)
    assert unknown.code == 400 and "run-batch" in _json(unknown)["problems"][0]["fix"]
    missing = await jp_fetch("nux", "jobs", "0123456789ab", raise_error=False)
    assert missing.code == 400 and _json(missing)["problems"][0]["code"] == "job-missing"
    no_archive = await jp_fetch("nux", "jobs", job["id"], "archive", raise_error=False)
    assert no_archive.code == 400
