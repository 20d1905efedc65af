"""The ingress's HTTP routes over stages run in this process (no Ray), sharing a real Redis:
the streamed route takes the plain route's caches, fallbacks, metrics and request log."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from nux_kernel.catalog import load_catalog
from nux_runtime.serve.auth import hash_key
from nux_runtime.serve.settings import ServeSettings
from nux_runtime.serve.transport import LocalClient
from tests.runtime.serve.conftest import catalog_with_time, support_workbook
from tests.runtime.serve.test_http import _sample, parse_sse


@pytest.fixture
def local_api(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
              ) -> Iterator[tuple[TestClient, Path]]:
    from nux_runtime.serve import ingress, metrics

    # the in-process registry, even when the session's Ray runs in this process
    monkeypatch.setattr(metrics, "_in_ray", lambda: False)

    spec = support_workbook(tmp_path).compile(load_catalog(catalog_with_time(tmp_path)))
    (tmp_path / "keys").write_text(hash_key("local-key") + "\n")
    settings = ServeSettings.model_validate({
        "spec_path": "unused.json", "base_dir": str(tmp_path),
        "auth": {"keys_file": str(tmp_path / "keys")},
        "request_log": str(tmp_path / "requests.jsonl"),
        "shared_state": {"redis_url": redis_url}})
    ingress._CORE[:] = [ingress.IngressCore(spec, settings, LocalClient(spec, tmp_path))]
    with TestClient(ingress.api, headers={"Authorization": "Bearer local-key"}) as client:
        yield client, tmp_path


def test_the_stream_route_is_booked_like_the_plain_one(
        local_api: tuple[TestClient, Path]) -> None:
    api, base = local_api
    plain = api.post("/v1/run", json={"question": "mail ana@corp.example", "tier": "pro"})
    assert plain.status_code == 200 and plain.json()["cache"] is None
    streamed = parse_sse(api.post("/v1/run/stream", json={
        "question": "mail  ana@corp.example", "tier": "pro"}).text)
    assert [e for e, _ in streamed] == ["token", "done"]
    assert streamed[-1][1]["cache"] == "exact"  # the plain route's answer, from Redis
    assert streamed[-1][1]["output"] == plain.json()["output"]
    fallback = parse_sse(api.post("/v1/run/stream", json={"question": "gibberish",
                                                          "tier": "pro"}).text)
    assert fallback[-1][1]["fallback"] == "apology"  # validated, then its fallback
    assert fallback[-1][1]["output"] == "Sorry, I cannot answer: gibberish"
    metrics = api.get("/metrics").text
    assert _sample(metrics, "nux_requests_total", route="stream", status="200") == 2
    assert _sample(metrics, "nux_cache_lookups_total", cache="exact", result="hit") == 1
    log = base / "requests.jsonl"
    deadline = time.monotonic() + 10
    while len(log.read_text().splitlines()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["cache"] for x in lines] == [None, "exact", None]
    assert "ana@corp.example" not in log.read_text()
