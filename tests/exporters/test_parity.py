"""Parity: the exported ``serve_config.yaml``, run with ``serve run`` from the exported folder on
a local Ray, answers the test bank exactly as ``nux run`` does in-process.

``serve run`` runs in a child process whose working directory is the exported folder (the
config's ``spec_path`` is the ``spec.json`` beside it). The child starts its own private local
Ray, sized for the workbook's replicas, then hands over to Ray's own ``serve run`` command. The
only change to the exported config is the HTTP port (a free loopback one).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from nux_exporters import export
from nux_kernel.cli import main
from tests.exporters.workbooks import faq
from tests.fixtures.ray_serve import free_port

pytest.importorskip("nux_runtime.serve.app",
                    reason="the production runtime (nux_runtime.serve.app:build_app) is not "
                           "installed, so there is no Serve application to run the export on")

pytestmark = pytest.mark.slow

QUESTIONS = [" what is nux? ", "why ray", "Serve   it"]

SERVE_RUN = textwrap.dedent("""\
    import sys

    import ray
    from ray.serve.scripts import cli

    # A loaded machine can miss Ray's fixed 30 s start-up window: try again before giving up.
    for attempt in range(3):
        try:
            ray.init(address="local", num_cpus=8, include_dashboard=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    cli.main(["run", sys.argv[1]])
""")


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def _wait_ready(url: str, child: subprocess.Popen[bytes], log: Path, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            pytest.fail(f"serve run exited ({child.returncode}):\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(2)
    pytest.fail(f"the exported application was not ready in {limit_s:.0f} s:\n"
                f"{log.read_text()[-4000:]}")


def test_exported_serve_config_answers_like_nux_run(tmp_path: Path) -> None:
    workbook = tmp_path / "workbook"
    workbook.mkdir()
    cases = workbook / "cases.jsonl"
    cases.write_text("".join(json.dumps({"inputs": {"question": q}}) + "\n" for q in QUESTIONS),
                     encoding="utf-8")
    notebook = faq(workbook).save(workbook / "faq.ipynb")

    ran = CliRunner().invoke(main, ["run", str(notebook), "--inputs", str(cases), "--json",
                                    "--no-cache", "--trace", str(tmp_path / "trace.jsonl")])
    assert ran.exit_code == 0, ran.output
    expected = [r["output"] for r in json.loads(ran.stdout)]
    assert len(expected) == len(QUESTIONS) and all(expected)

    folder = export(faq(workbook).compile(), tmp_path / "deploy", targets=("serve",)).out_dir
    config = yaml.safe_load((folder / "serve_config.yaml").read_text(encoding="utf-8"))
    port = free_port()
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    (folder / "serve_config.local.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (tmp_path / "serve_run.py").write_text(SERVE_RUN, encoding="utf-8")

    log = tmp_path / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    with log.open("wb") as sink:
        child = subprocess.Popen(
            [sys.executable, str(tmp_path / "serve_run.py"), "serve_config.local.yaml"],
            cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(f"{base}/healthz", child, log, limit_s=300)
        served = [_post(f"{base}/v1/run", {"question": q}) for q in QUESTIONS]
        assert [s["output"] for s in served] == expected
        assert {s["spec_hash"] for s in served} == {json.loads(
            (folder / "provenance.json").read_text())["spec_hash"]}
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=30)
