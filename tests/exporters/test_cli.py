"""``nux export`` as a user runs it: a saved notebook, the acceptance gate, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nux_kernel import Workbook
from nux_kernel.cli import main
from tests.exporters.workbooks import faq, gpu

CASES = [{"inputs": {"question": " what is nux? "}, "expected": "WHAT IS NUX?"},
         {"inputs": {"question": "why ray"}, "expected": "WHY RAY"}]


def _save(wb: Workbook, folder: Path, name: str = "wb.ipynb",
          cases: list[dict[str, Any]] = CASES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases),
                                        encoding="utf-8")
    return wb.save(folder / name)


def _tune_pin_export(notebook: Path) -> Path:
    """`nux tune` (2 trials), `nux pin` and `nux export` as a user runs them: the out folder."""
    code, _, stderr = invoke("tune", str(notebook), "--trials", "2", "--seed", "1",
                             "--no-plots")
    assert code == 0, stderr
    code, _, stderr = invoke("pin", str(notebook))
    assert code == 0, stderr
    out = notebook.parent / "deploy"
    code, _, stderr = invoke("export", str(notebook), "--out", str(out))
    assert code == 0, stderr
    return out


def _failing(folder: Path) -> Workbook:
    wb = faq(folder)
    wb.metadata["criteria"] = [{"name": "says_zzz", "type": "contains", "value": "ZZZ"}]
    return wb


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.stdout, result.stderr


def test_export_gated_by_a_passing_eval_then_cached(tmp_path: Path) -> None:
    notebook = _save(faq(tmp_path), tmp_path)
    out = tmp_path / "deploy"
    code, stdout, stderr = invoke("export", str(notebook), "--out", str(out), "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["acceptance"]["passed"] is True
    assert report["acceptance"]["source"] == "nux eval"
    assert set(report["files"]) >= {"Pulumi.yaml", "Pulumi.dev.yaml", "__main__.py",
                                    "serve_config.yaml", "kubernetes.yaml", "Dockerfile"}
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["acceptance"]["passed"] is True
    assert provenance["spec_hash"] == report["spec_hash"]
    assert provenance["forced"] is False
    # The verdict of this exact spec is recorded; the next export reuses it.
    code, stdout, _ = invoke("export", str(notebook), "--out", str(out), "--json")
    assert code == 0 and json.loads(stdout)["acceptance"]["source"] == "nux eval (cached)"


def test_failing_acceptance_is_refused_unless_forced(tmp_path: Path) -> None:
    notebook = _save(_failing(tmp_path), tmp_path)
    out = tmp_path / "deploy"
    code, _, stderr = invoke("export", str(notebook), "--out", str(out))
    assert code == 2
    assert "fails its acceptance criteria: pass_rate is 0.0, needs >= 1.0" in stderr
    assert "--force" in stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    code, _, stderr = invoke("export", str(notebook), "--out", str(out), "--force")
    assert code == 0
    assert "FORCED" in stderr
    assert "**Forced export.**" in (out / "README.md").read_text(encoding="utf-8")
    assert json.loads((out / "provenance.json").read_text(encoding="utf-8"))["forced"] is True


def test_a_bad_override_names_the_stage_and_writes_nothing(tmp_path: Path) -> None:
    wb = faq(tmp_path)
    wb.metadata.pop("test_bank")
    notebook = wb.save(tmp_path / "wb.ipynb")
    out = tmp_path / "deploy"
    code, _, stderr = invoke("export", str(notebook), "--out", str(out),
                             "--override", "shout.min_replicas=9")
    assert code == 2
    assert "cell shout" in stderr and "autoscaling_config.min_replicas" in stderr
    assert "Traceback" not in stderr and not out.exists()


def test_gpu_stage_refused_when_the_cluster_has_no_gpus(tmp_path: Path) -> None:
    notebook = gpu(tmp_path).save(tmp_path / "gpu.ipynb")
    code, _, stderr = invoke("export", str(notebook), "--out", str(tmp_path / "d"),
                             "--no-gpus")
    assert code == 2 and "GPUs are disabled" in stderr and "clean" in stderr


@pytest.mark.parametrize(("target", "files"), [
    ("serve", {"serve_config.yaml"}),
    ("k8s-yaml", {"kubernetes.yaml", "observability"}),
    ("pulumi", {"Pulumi.yaml", "Pulumi.prod.yaml", "__main__.py", "workbook.yaml",
                "nux_kuberay", "requirements.txt", "Dockerfile", "observability"}),
])
def test_one_target(target: str, files: set[str], tmp_path: Path) -> None:
    notebook = gpu(tmp_path).save(tmp_path / "gpu.ipynb")
    out = tmp_path / "deploy"
    code, _, stderr = invoke("export", str(notebook), "--out", str(out), "--target", target,
                             "--stack", "prod")
    assert code == 0, stderr
    written = {p.name for p in out.iterdir()}
    # the image's wheels and lock travel with the Pulumi project and the Serve config
    image = {"wheels", "requirements.lock"} if target in ("pulumi", "serve") else set()
    assert written == files | image | {"README.md", "spec.json", "provenance.json", "data.json"}


def test_settings_flow_into_the_stack_file(tmp_path: Path) -> None:
    notebook = gpu(tmp_path).save(tmp_path / "gpu.ipynb")
    out = tmp_path / "deploy"
    code, _, stderr = invoke(
        "export", str(notebook), "--out", str(out), "--install-operator",
        "--qdrant", "external", "--qdrant-url", "http://qdrant.example:6333",
        "--upgrade-strategy", "NewClusterWithIncrementalUpgrade", "--canary-step", "20",
        "--gpu-node-selector", "cloud.google.com/gke-accelerator=nvidia-l4",
        "--override", "answer.max_replicas=6")
    assert code == 0, stderr
    stack = (out / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    for line in ("gpu-bot:installOperator: true", "gpu-bot:qdrantMode: external",
                 "gpu-bot:qdrantUrl: http://qdrant.example:6333",
                 "gpu-bot:upgradeStrategy: NewClusterWithIncrementalUpgrade",
                 "gpu-bot:canaryStepPercent: 20",
                 "gpu-bot:gpuNodeSelector: {cloud.google.com/gke-accelerator: nvidia-l4}",
                 "pulumi config set --secret qdrantApiKey"):
        assert line in stack, line
    program = (out / "workbook.yaml").read_text(encoding="utf-8")
    assert "max_replicas: 6  # export override: scale.max_replicas" in program
    serve = (out / "serve_config.yaml").read_text(encoding="utf-8")
    assert "max_replicas: 6" in serve


def test_tuning_provenance_from_nux_pin_is_recorded(tmp_path: Path) -> None:
    out = _tune_pin_export(_save(faq(tmp_path), tmp_path))
    stages = json.loads((out / "provenance.json").read_text(encoding="utf-8"))["stages"]
    tuned = stages["shout"]["tuning"]["times"]
    assert isinstance(tuned["trial"], int) and tuned["study"].startswith("faq-bot")
    assert stages["clean"]["tuning"] == {}
    program = (out / "workbook.yaml").read_text(encoding="utf-8")
    assert f"(tuned: times from study {tuned['study']} trial {tuned['trial']})" in program
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert f"`shout.times` from study {tuned['study']}, trial {tuned['trial']}" in readme


def test_an_unwritable_out_folder_is_a_clear_error(tmp_path: Path) -> None:
    notebook = _save(faq(tmp_path), tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    code, _, stderr = invoke("export", str(notebook), "--out", str(blocker / "deploy"))
    assert code == 2
    assert "[export-out]" in stderr and str(blocker / "deploy") in stderr
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_held_out_figures_reach_the_export_readme(tmp_path: Path) -> None:
    cases = [*CASES, {"inputs": {"question": "who pages"}, "expected": "WHO PAGES",
                      "split": "holdout"},
             {"inputs": {"question": "is it on"}, "expected": "IS IT ON", "split": "holdout"}]
    out = _tune_pin_export(_save(faq(tmp_path), tmp_path, cases=cases))
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    splits = provenance["acceptance"]["splits"]
    assert (splits["tune"]["cases"], splits["holdout"]["cases"]) == (2, 2)
    held = provenance["stages"]["shout"]["tuning"]["times"]["holdout"]
    assert held["cases"] == 2 and held["pass_rate"] == 1.0
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "| tuning (searched on by `nux tune`) | 2 | 1.000 |" in readme
    assert "| held out (never tuned on) | 2 | 1.000 |" in readme
    assert "1.000 on 2 held-out cases)" in readme
