"""A workbook scored by metric cells, served on the session's Ray Serve: the metric cells are no
deployments, the API neither documents nor requires ``expected`` (only they read it), and a
request without it answers as the notebook does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nux_runtime.spec import WorkbookSpec
from tests.exporters.workbooks import scored
from tests.fixtures.ray_serve import ServeCluster

pytestmark = pytest.mark.slow

APP = "scored"


@pytest.fixture(scope="module")
def served(ray_serve: ServeCluster, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[WorkbookSpec, httpx.Client]]:
    from nux_runtime.serve.app import build_app

    base: Path = tmp_path_factory.mktemp("scored")
    spec = scored(base).compile()
    (base / "spec.json").write_text(spec.to_json())
    settings = {"spec_path": str(base / "spec.json"), "base_dir": str(base),
                "stage_cpus": 0.1, "ingress_cpus": 0.1}
    url = ray_serve.deploy(build_app(settings), APP)
    with httpx.Client(base_url=url, timeout=60) as client:
        yield spec, client


def test_metric_cells_are_not_deployed(served: tuple[WorkbookSpec, httpx.Client]) -> None:
    from ray import serve

    spec, api = served
    deployments = set(serve.status().applications[APP].deployments)
    assert deployments == {"Ingress", "clean", "answer"}
    health = api.get("/healthz").json()
    assert health["stages"] == ["clean", "answer"] and health["spec_hash"] == spec.hash


def test_openapi_asks_for_no_expected_and_a_request_without_it_answers(
        served: tuple[WorkbookSpec, httpx.Client]) -> None:
    spec, api = served
    inputs = api.get("/openapi.json").json()["components"]["schemas"]["Inputs"]
    assert inputs["properties"] == {"question": {"type": "string"}}
    assert inputs["required"] == ["question"]
    r = api.post("/v1/run", json={"question": "  Paris "})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output"] == "A: Paris" and set(body["stages"]) == {"clean", "answer"}
    assert body["spec_hash"] == spec.hash
    # not part of the production API: refused like any unknown field
    extra = api.post("/v1/run", json={"question": "Paris", "expected": "paris"})
    assert extra.status_code == 422 and extra.json()["field"] == "expected"
