"""The exported-config contract: a Serve config naming ``nux_runtime.serve.app:build_app``
deploys through Serve's own config path, and its per-stage ``deployments:`` entries (named by
stage id) override replicas, resources and ``user_config`` (the stage's params)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from nux_kernel import Workbook
from tests.fixtures.ray_serve import ServeCluster

pytestmark = pytest.mark.slow


def test_serve_config_with_stage_overrides(ray_serve: ServeCluster, tmp_path: Path) -> None:
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    wb = Workbook("knobs", base_dir=tmp_path, inputs={"q": "string"}, output="wrap")
    wb.code("shout", "def shout(q: str, *, times: int = 1) -> str:\n    return q.upper() * times\n")
    wb.template("wrap", inputs=["shout"], template="<{shout}>")
    spec = wb.compile()
    (tmp_path / "spec.json").write_text(spec.to_json())
    small = {"ray_actor_options": {"num_cpus": 0.1},
             "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1,
                                    "target_ongoing_requests": 2}}
    config = ServeDeploySchema.model_validate({"applications": [{
        "name": "knobs", "route_prefix": "/knobs",
        "import_path": "nux_runtime.serve.app:build_app",
        "args": {"spec_path": str(tmp_path / "spec.json")},
        "deployments": [
            {"name": "Ingress", **small},
            {"name": "shout", "user_config": {"times": 3}, **small},
            {"name": "wrap", "user_config": dict(spec.stage("wrap").params), **small},
        ]}]})
    client = _get_global_client()
    client.deploy_apps(config)
    client._wait_for_application_running("knobs", timeout_s=240)
    r = httpx.post(f"{ray_serve.base_url}/knobs/v1/run", json={"q": "ab"}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "<ABABAB>"
    assert set(r.json()["stages"]) == {"shout", "wrap"}
