"""`nux serve`, `nux replay` and `nux api-key`, through the entry points a user takes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.cli import main
from nux_runtime.serve.auth import hash_key
from tests.fixtures.ray_serve import free_port
from tests.runtime.serve.conftest import ANSWER, Served, support_workbook
from tests.runtime.serve.test_http import eventually

pytestmark = pytest.mark.slow


def test_replay_reports_changed_answers(support: Served, support_catalog: Path,
                                        tmp_path: Path) -> None:
    with support.client() as api:
        ids = [api.post("/v1/run", json={"question": f"replay {uuid.uuid4().hex[:6]} {i}",
                                         "tier": "free"}).json()["request_id"]
               for i in range(3)]
    log = support.base_dir / "requests.jsonl"
    # a background thread writes the log: the lines follow the answers by a moment
    def all_logged() -> list[dict[str, object]]:
        found = [r for r in map(json.loads, log.read_text().splitlines())
                 if r["request_id"] in ids]
        return found if len(found) == len(ids) else []

    logged = eventually(all_logged)
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps(r) + "\n" for r in logged))
    same = support_workbook(tmp_path / "v1").save(tmp_path / "v1" / "wb.ipynb")
    changed_source = ANSWER.replace('f"Answer [{topic}]', 'f"Answer v2 [{topic}]')
    changed = support_workbook(tmp_path / "v2", answer_source=changed_source).save(
        tmp_path / "v2" / "wb.ipynb")
    runner = CliRunner()
    catalog = ["--catalog", str(support_catalog)]
    ok = runner.invoke(main, ["replay", str(requests), "--against", str(same), *catalog])
    assert ok.exit_code == 0, ok.output
    assert "0 of 3 answers changed" in ok.output
    bad = runner.invoke(main, ["replay", str(requests), "--against", str(changed), *catalog,
                               "--json"])
    assert bad.exit_code == 1, bad.output
    report = json.loads(bad.output)
    assert report["changed"] == 3
    assert {r["request_id"] for r in report["rows"]} == set(ids)
    assert all(r["after"].startswith("Answer v2") for r in report["rows"])


def test_replay_names_a_bad_log_line(tmp_path: Path) -> None:
    wb = Workbook("tiny", base_dir=tmp_path, inputs={"q": "string"}, output="echo")
    wb.code("echo", "def echo(q: str) -> str:\n    return q\n")
    path = wb.save(tmp_path / "tiny.ipynb")
    log = tmp_path / "log.jsonl"
    log.write_text('{"inputs": {"q": "a"}, "output": "a"}\nnot json\n{"output": 1}\n')
    result = CliRunner().invoke(main, ["replay", str(log), "--against", str(path)])
    assert result.exit_code == 2
    assert "log.jsonl:2: not JSON" in result.output
    assert "log.jsonl:3: no `inputs` object" in result.output


def test_api_key_prints_a_key_and_its_digest() -> None:
    result = CliRunner().invoke(main, ["api-key"])
    assert result.exit_code == 0
    lines = dict(line.split(":", 1) for line in result.output.splitlines())
    assert hash_key(lines["key"].strip()) == lines["sha256"].strip()


def _group(pgid: int) -> list[str]:
    """The processes still in process group ``pgid``."""
    import psutil

    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(proc.info["pid"]) == pgid:
                left.append(" ".join(proc.info["cmdline"] or []) or str(proc.info["pid"]))
        except (ProcessLookupError, PermissionError):
            continue
    return left


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM],
                         ids=["ctrl-c", "sigterm"])
def test_nux_serve_answers_then_stops_leaving_no_process(tmp_path: Path,
                                                         stop_signal: signal.Signals) -> None:
    wb = Workbook("greeter", base_dir=tmp_path, inputs={"name": "string"}, output="greet")
    wb.code("tidy", "def tidy(name: str) -> str:\n    return name.strip().title()\n")
    wb.template("greet", inputs=["tidy"], template="Hello, {tidy}!")
    path = wb.save(tmp_path / "greeter.ipynb")
    port = free_port()
    env = {**os.environ, "NUX_API_KEY_HASHES": hash_key("local-key-123")}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "nux"), "serve", str(path), "--port", str(port),
         "--stage-cpus", "0.1", "--request-log", str(tmp_path / "requests.jsonl")], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        r = httpx.post(f"{url}/v1/run", json={"name": "  ada lovelace "},
                       headers={"Authorization": "Bearer local-key-123"}, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["output"] == "Hello, Ada Lovelace!"
        assert httpx.post(f"{url}/v1/run", json={"name": "x"}, timeout=30).status_code == 401
        assert (tmp_path / ".nux" / "serve" / "spec.json").is_file()
    finally:
        proc.send_signal(stop_signal)  # to nux serve alone, not to its process group
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
    left = _group(proc.pid)
    if left:
        os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    assert "stopped" in output
    assert not left, f"processes left behind: {left}"
    for crash in ("SIGTERM received", "PC: @", "Traceback"):
        assert crash not in output, output
    assert "request log" in output and "redacted" in output and "0600" in output


def test_nux_serve_refuses_a_port_in_use_before_starting_ray(tmp_path: Path,
                                                            support_catalog: Path) -> None:
    import socket

    notebook = support_workbook(tmp_path).save(tmp_path / "wb.ipynb")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(notebook), "--port", str(port),
                                           "--catalog", str(support_catalog)])
    assert result.exit_code == 2
    assert f"[serve-address] cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.output
    bad = CliRunner().invoke(main, ["serve", str(notebook), "--port", "99999"])
    assert bad.exit_code == 2 and "--port" in bad.stderr
