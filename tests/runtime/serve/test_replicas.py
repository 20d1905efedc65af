"""Two ingress replicas on the session's Ray, sharing one real Redis: the rate limit holds
across them, an answer cached through one is served through the other, and Ray's metrics count
every request once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from nux_kernel.catalog import load_catalog
from nux_runtime.serve.auth import hash_key
from tests.fixtures.ray_serve import ServeCluster
from tests.fixtures.redis import RedisServer
from tests.runtime.serve.conftest import Served, support_workbook
from tests.runtime.serve.test_http import _sample, eventually, settled

pytestmark = pytest.mark.slow

KEY = "nux-test-replicas-key-0001"
METRICS_KEY = "nux-test-replicas-metrics-0001"
LIMITED = "nux-test-replicas-limited-0001"
BURST = 40  # requests per key in any 60 s; each test has its own key


@pytest.fixture(scope="module")
def replicated(ray_serve: ServeCluster, redis_server: RedisServer, support_catalog: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Served:
    from nux_runtime.serve.app import build_app

    base = tmp_path_factory.mktemp("replicas")
    spec = support_workbook(base, name="replicated").compile(load_catalog(support_catalog))
    (base / "spec.json").write_text(spec.to_json())
    (base / "keys").write_text("".join(f"{hash_key(k)}\n" for k in (KEY, METRICS_KEY, LIMITED)))
    settings = {
        "spec_path": str(base / "spec.json"), "base_dir": str(base), "stage_cpus": 0.05,
        "ingress_cpus": 0.05, "ingress_replicas": 2, "auth": {"keys_file": str(base / "keys")},
        "shared_state": {"redis_url": redis_server.url(0), "key_prefix": "replicas-test"},
        # BURST requests in any 60 s: the whole test runs inside one window
        "rate_limit": {"rate_per_s": BURST / 60, "burst": BURST},
    }
    url = ray_serve.deploy(build_app(settings), "replicated")
    return Served(spec, base, url, KEY, settings)


def _replicas_seen(api: httpx.Client, count: int = 2, tries: int = 60) -> set[str]:
    seen = set()
    for _ in range(tries):  # /healthz is not rate limited
        seen.add(api.get("/healthz").headers.get("X-Nux-Replica", ""))
        if len(seen - {""}) >= count:
            break
    return seen - {""}


def test_the_rate_limit_holds_across_replicas(replicated: Served) -> None:
    with replicated.client(LIMITED) as api:
        answers = [api.post("/v1/run", json={}) for _ in range(3 * BURST)]
    statuses = [r.status_code for r in answers]
    replicas = {r.headers["X-Nux-Replica"] for r in answers}
    assert len(replicas) == 2, "both ingress replicas answered"
    assert statuses.count(422) == BURST, statuses  # the burst, not twice it
    assert statuses.count(429) == 2 * BURST
    assert statuses[:BURST] == [422] * BURST
    assert {r.headers["X-Nux-Replica"] for r in answers if r.status_code == 429} == replicas


def test_an_answer_cached_through_one_replica_is_served_through_the_other(
        replicated: Served) -> None:
    with replicated.client() as api:
        assert len(_replicas_seen(api)) == 2
        first = api.post("/v1/run", json={"question": "where is my refund", "tier": "pro"})
        assert first.status_code == 200 and first.json()["cache"] is None
        storer = first.headers["X-Nux-Replica"]
        other = None
        for _ in range(BURST - 1):
            again = api.post("/v1/run", json={"question": " where is  my refund", "tier": "pro"})
            assert again.status_code == 200
            assert again.json()["cache"] == "exact", "a replica missed the shared answer"
            if again.headers["X-Nux-Replica"] != storer:
                other = again
                break
        assert other is not None, "no request reached the other replica"
        assert other.json()["output"] == first.json()["output"]


def test_metrics_count_every_request_once(replicated: Served) -> None:
    def total(api: httpx.Client) -> float:
        return _sample(api.get("/metrics").text, "ray_nux_requests_total",
                       workbook="replicated", route="run", status="200")

    with replicated.client(METRICS_KEY) as api:
        before = settled(lambda: total(api), nonzero=False)  # earlier tests' answers
        answers = [api.post("/v1/run", json={"question": f"count {i}", "tier": "free"},
                            headers={"Cache-Control": "no-cache"}) for i in range(10)]
        assert all(r.status_code == 200 for r in answers)
        assert len({r.headers["X-Nux-Replica"] for r in answers}) == 2
        eventually(lambda: total(api) - before >= 10)
        assert settled(lambda: total(api)) - before == 10
        text = api.get("/metrics").text
    workers = {line.split('WorkerId="')[1].split('"')[0] for line in text.splitlines()
               if line.startswith("ray_nux_requests_total") and 'workbook="replicated"' in line}
    assert len(workers) == 2, "each replica reports its own series"
