"""Stack settings: what the platform engineer sets survives a re-export, and locations that
differ between the notebook and production are settings, not edits of the evaluated spec."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.cli import main
from nux_runtime.spec import WorkbookSpec
from tests.exporters.test_cli import CASES
from tests.exporters.test_program import (
    pulumi_event_loop,  # noqa: F401 - a fresh event loop per test
    run_program,
)
from tests.exporters.workbooks import faq
from tests.fixtures.llm_server import LLMServer

SALT = "encryptionsalt: v1:Zm9vYmFyYmF6:v1:c2FsdHNhbHQ=:dGhpcyBpcyBhIHNhbHQ=\n"
SECURE = ("  faq-bot:openaiApiKey:\n"
          "    secure: v1:AAAABBBBCCCCDDDD:EEEEFFFFGGGGHHHHIIIIJJJJKKKKLLLLMMMMNNNN\n")


def _export(*args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(main, ["export", *args, "--json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    body = json.loads(result.stdout) if result.exit_code == 0 else {}
    return result.exit_code, body, result.stderr


def test_re_export_keeps_what_the_platform_engineer_set(tmp_path: Path) -> None:
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES),
                                          encoding="utf-8")
    notebook = faq(tmp_path).save(tmp_path / "faq.ipynb")
    out = tmp_path / "deploy"
    code, _, stderr = _export(str(notebook), "--out", str(out))
    assert code == 0, stderr
    stack = out / "Pulumi.dev.yaml"
    # What `pulumi stack init` and `pulumi config set` leave: a salt, a secret, a changed value.
    edited = SALT + stack.read_text(encoding="utf-8").replace(
        "faq-bot:workerCpu: '4'\n", "faq-bot:workerCpu: '6'\n") + SECURE
    stack.write_text(edited, encoding="utf-8")
    (out / "NOTES.md").write_text("our runbook\n", encoding="utf-8")
    (out / "venv").mkdir()
    # The workbook now needs more workers (a default NUX computes changes), and no k8s YAML.
    code, body, stderr = _export(str(notebook), "--out", str(out), "--override",
                                 "shout.max_replicas=16", "--target", "pulumi",
                                 "--target", "serve")
    assert code == 0, stderr
    after = stack.read_text(encoding="utf-8")
    assert after.startswith(SALT) and after.endswith(SECURE)
    assert "faq-bot:workerCpu: '6'\n" in after
    assert "faq-bot:workerMaxReplicas: 4\n" in after
    # Only the line of the setting NUX changed differs.
    before_lines, after_lines = edited.splitlines(), after.splitlines()
    assert len(before_lines) == len(after_lines)
    differ = [(a, b) for a, b in zip(before_lines, after_lines, strict=True) if a != b]
    assert differ == [("  faq-bot:workerMaxReplicas: 3", "  faq-bot:workerMaxReplicas: 4")]
    assert "setting workerMaxReplicas: 3 -> 4 (the export's default changed)" in body["changes"]
    assert (out / "NOTES.md").read_text() == "our runbook\n" and (out / "venv").is_dir()
    assert not (out / "kubernetes.yaml").exists()  # a file the export no longer writes
    # The same export again changes nothing.
    code, body, _ = _export(str(notebook), "--out", str(out), "--override",
                            "shout.max_replicas=16", "--target", "pulumi", "--target", "serve")
    assert code == 0 and body["changes"] == [] and stack.read_text() == after


def test_endpoint_is_a_stack_setting_and_the_gate_stays_the_evaluated_spec(
        tmp_path: Path, llm_server: LLMServer) -> None:
    cases = [{"inputs": {"question": "What is the capital of France?"}, "expected": "Paris"},
             {"inputs": {"question": "What is the capital of Japan?"}, "expected": "Tokyo"}]
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases),
                                          encoding="utf-8")
    wb = Workbook("capitals", inputs={"question": "string"}, output="answer",
                  criteria=[{"name": "answered", "type": "regex", "pattern": "\\w"}],
                  acceptance={"error_rate": 0.0}, test_bank="cases.jsonl", base_dir=tmp_path)
    wb.model("answer", uses="llm.openai", inputs=["question"], params={
        "base_url": llm_server.base_url, "model": llm_server.model,
        "api_key_env": llm_server.api_key_env, "mode": "completion",
        "template": "Q: {question}\nA:", "stop": ["\n"], "max_tokens": 8})
    notebook = wb.save(tmp_path / "capitals.ipynb")
    out = tmp_path / "deploy"
    code, body, stderr = _export(str(notebook), "--out", str(out))
    assert code == 0, stderr
    assert body["acceptance"]["passed"] is True and body["forced"] is False
    spec = WorkbookSpec.from_json((out / "spec.json").read_text(encoding="utf-8"))
    assert spec.hash == body["spec_hash"]
    assert spec.stage("answer").params["base_url"] == llm_server.base_url
    stack = (out / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    assert f"capitals:answerBaseUrl: {llm_server.base_url}\n" in stack
    assert "pulumi config set --secret nuxTestLlmKey" in stack

    class Result:
        out_dir = out
        plan = type("P", (), {"name": "capitals"})

    production = "https://llm.internal.example:8443"
    asyncio.set_event_loop(asyncio.new_event_loop())  # the evaluation's asyncio.run left none
    mocks, _ = run_program(Result(), config={"answerBaseUrl": production},  # type: ignore[arg-type]
                           secrets={"nuxTestLlmKey": "x"})
    (service,) = mocks.of_type(":RayService")
    config = yaml.safe_load(service.inputs["spec"]["serveConfigV2"])
    answer = {d["name"]: d for d in config["applications"][0]["deployments"]}["answer"]
    assert answer["user_config"]["base_url"] == production
    (config_map,) = mocks.of_type(":ConfigMap")
    served = WorkbookSpec.from_json(config_map.inputs["data"]["spec.json"])
    assert served.hash == spec.hash
    assert service.inputs["metadata"]["annotations"]["nux.dev/acceptance"] == "passed"
    # The local default is the notebook's endpoint.
    standalone = yaml.safe_load((out / "serve_config.yaml").read_text(encoding="utf-8"))
    local = {d["name"]: d for d in standalone["applications"][0]["deployments"]}["answer"]
    assert local["user_config"]["base_url"] == llm_server.base_url
