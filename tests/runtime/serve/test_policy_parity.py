"""The failure paths answer alike in ``nux run`` and in the served app: one stage-call policy.

One workbook, five requests, each taking one path of the policy: a stage slower than its
timeout (then its fallback), a transient error then success, an answer that fails its JSON
schema (given as text) then passes on the retry, a failing stage with a fallback, and a failing
stage without one. The same requests go through ``nux run --json`` (the playground executor, in
this process) and through the app on the session's local Ray Serve; the outputs, each stage's
status and reason, and the error of the failing request must be the same.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.catalog import load_catalog
from nux_kernel.cli import main
from tests.fixtures.ray_serve import ServeCluster
from tests.runtime.serve.conftest import catalog_with_time

pytestmark = pytest.mark.slow

FETCH = '''import time

_calls: dict[str, int] = {}


def fetch(case: str) -> str:
    if case == "slow":
        time.sleep(3.0)
    if case == "broken":
        raise ValueError("the fetch table has no row for this case")
    if case == "flaky":
        _calls[case] = _calls.get(case, 0) + 1
        if _calls[case] % 2 == 1:
            raise ConnectionError("the fetch service reset the connection")
    return f"fetched {case}"
'''
CANNED = '''def canned(case: str) -> str:
    return "canned"
'''
ANSWER = '''import json

_calls: dict[str, int] = {}


def answer(case: str, fetch: str) -> str:
    if case == "fatal":
        raise ValueError("no answer for this case")
    if case == "wobbly":
        _calls[case] = _calls.get(case, 0) + 1
        if _calls[case] % 2 == 1:
            return "not json at all"
    return json.dumps({"case": case, "from": fetch})
'''
CASES = ["slow", "flaky", "wobbly", "broken", "fatal"]
EXPECTED = {
    "slow": ('{"case": "slow", "from": "canned"}', {
        "fetch": ("error", "no answer within 1 s (timeout_s); answered by fallback 'canned'"),
        "canned": ("ok", ""), "answer": ("ok", "")}),
    "flaky": ('{"case": "flaky", "from": "fetched flaky"}', {
        "fetch": ("ok", ""), "answer": ("ok", "")}),
    "wobbly": ('{"case": "wobbly", "from": "fetched wobbly"}', {
        "fetch": ("ok", ""), "answer": ("ok", "")}),
    "broken": ('{"case": "broken", "from": "canned"}', {
        "fetch": ("error", "ValueError: the fetch table has no row for this case; answered by "
                           "fallback 'canned'"),
        "canned": ("ok", ""), "answer": ("ok", "")}),
    "fatal": (None, {"fetch": ("ok", ""),
                     "answer": ("error", "ValueError: no answer for this case")}),
}


def policy_workbook(base_dir: Path) -> Workbook:
    wb = Workbook("policy", base_dir=base_dir, output="answer", inputs={"case": "string"},
                  criteria=[{"type": "json_schema", "name": "shaped",
                             "schema": '{"type": "object", "required": ["case", "from"]}'}])
    wb.code("fetch", FETCH, retries=1, timeout_s=1.0, fallback="canned")
    wb.code("canned", CANNED)
    wb.code("answer", ANSWER)
    return wb


def _statuses(stages: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {sid: (t["status"], t.get("reason") or "") for sid, t in stages.items()}


def _served_log(log: Path, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the log is written by a background thread
        if log.is_file():
            for line in log.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if record.get("request_id") == request_id and "stages" in record:
                    return dict(record)
        time.sleep(0.2)
    raise AssertionError(f"no log line for request {request_id}")


def test_failure_paths_answer_alike_in_nux_run_and_served(
        ray_serve: ServeCluster, tmp_path: Path) -> None:
    from nux_runtime.serve.app import build_app

    catalog = catalog_with_time(tmp_path)
    wb = policy_workbook(tmp_path)
    path = wb.save(tmp_path / "policy.ipynb")
    (tmp_path / "requests.jsonl").write_text(
        "".join(json.dumps({"case": c}) + "\n" for c in CASES), encoding="utf-8")

    # the playground: nux run over the requests, as a data scientist runs it
    ran = CliRunner().invoke(main, ["run", str(path), "--inputs", str(tmp_path / "requests.jsonl"),
                                    "--json", "--no-cache", "--catalog", str(catalog)])
    assert ran.exit_code == 1, ran.output  # the fatal request fails
    local = dict(zip(CASES, json.loads(ran.stdout), strict=True))

    # the served app, on the session's Ray Serve
    served_dir = tmp_path / "served"
    served_dir.mkdir()
    spec = wb.compile(load_catalog(catalog))
    (served_dir / "spec.json").write_text(spec.to_json(), encoding="utf-8")
    log = served_dir / "serve.log"
    url = ray_serve.deploy(build_app({
        "spec_path": str(served_dir / "spec.json"), "base_dir": str(served_dir),
        "stage_cpus": 0.1, "ingress_cpus": 0.1, "log_path": str(log),
        "rate_limit": {"rate_per_s": 500, "burst": 1000}}), f"policy-{uuid.uuid4().hex[:6]}")

    with httpx.Client(base_url=url, timeout=60) as client:
        for case in CASES:
            output, stages = EXPECTED[case]
            mine = local[case]
            rid = uuid.uuid4().hex[:16]
            r = client.post("/v1/run", json={"case": case},
                            headers={"Cache-Control": "no-cache", "X-Request-ID": rid})
            assert _statuses({t["stage"]: t for t in mine["traces"]}) == stages, case
            served_stages = _statuses(_served_log(log, rid)["stages"])
            assert served_stages == stages, case
            if output is not None:
                assert r.status_code == 200, r.text
                assert mine["ok"] and mine["output"] == output == r.json()["output"], case
                assert _statuses(r.json()["stages"]) == stages, case
                continue
            # the failing stage without a fallback: the same error, named alike
            assert not mine["ok"] and r.status_code == 500, r.text
            error = mine["errors"][0]
            body = r.json()
            assert (body["field"], body["detail"], body["error"]) == (
                error["stage"], error["cause"], f"stage-{error['category']}")
            assert error["cause"] == "ValueError: no answer for this case"
