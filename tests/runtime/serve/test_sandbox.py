"""The served app refuses what `nux run` refuses: the probe stage of tests/kernel/test_sandbox.py
deployed on the session's Ray Serve, asked each way out of the allow-list."""

from __future__ import annotations

import json

import httpx
import pytest

from nux_runtime.serve.auth import hash_key
from tests.fixtures.ray_serve import ServeCluster
from tests.kernel.test_sandbox import REFUSED, probe_workbook

KEY = "nux-test-sandbox-key-0001"


def test_the_served_app_refuses_the_same(ray_serve: ServeCluster,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    from nux_runtime.serve.app import build_app

    base = tmp_path_factory.mktemp("sandbox")
    spec = probe_workbook(base).compile()
    assert spec.stage("probe").sandbox is not None  # the allow-list travels with the spec
    (base / "spec.json").write_text(spec.to_json())
    (base / "keys").write_text(hash_key(KEY) + "\n")
    settings = {"spec_path": str(base / "spec.json"), "base_dir": str(base), "stage_cpus": 0.1,
                "ingress_cpus": 0.1, "auth": {"keys_file": str(base / "keys")}}
    url = ray_serve.deploy(build_app(settings), "sandbox")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}",
                                             "Cache-Control": "no-cache"}, timeout=60) as api:
        ok = api.post("/v1/run", json={"question": "hello"})
        assert ok.status_code == 200, ok.text
        assert ok.json()["output"] == "HELLO"
        for question, refusal in REFUSED.items():
            r = api.post("/v1/run", json={"question": question})
            assert r.status_code >= 400, (question, r.text)
            text = json.dumps(r.json())
            assert "probe" in text and refusal in text, (question, text)
