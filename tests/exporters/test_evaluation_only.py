"""Metric cells exist only for evaluation: ``nux eval`` runs and scores them, the export deploys
none of them and the production API asks for no input only they read (``expected``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from nux_exporters import export
from nux_exporters.options import ExportOptions, StageOverride
from nux_kernel.cli import main
from nux_runtime.errors import ExportError
from tests.exporters.workbooks import scored

EVALUATION = ("gold_answer", "score_close", "score_long")
CASES = [{"inputs": {"question": " Paris "}, "expected": "PARIS"},
         {"inputs": {"question": "Rome"}, "expected": "Oslo"}]


def _deployments(serve_config: dict[str, Any]) -> list[str]:
    (app,) = serve_config["applications"]
    return [d["name"] for d in app["deployments"]]


def test_nux_eval_scores_the_metric_cells(tmp_path: Path) -> None:
    (tmp_path / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CASES),
                                          encoding="utf-8")
    notebook = scored(tmp_path).save(tmp_path / "scored.ipynb")
    checked = CliRunner().invoke(main, ["validate", str(notebook)])
    assert ("scored-bot: 5 stages (3 for evaluation only, not served: gold_answer, score_close, "
            "score_long), no problems") in checked.stdout
    as_json = json.loads(CliRunner().invoke(main, ["validate", "--json", str(notebook)]).stdout)
    assert as_json["evaluation_only"] == {"stages": list(EVALUATION), "inputs": ["expected"]}
    result = CliRunner().invoke(main, ["eval", str(notebook), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    summary = report["summary"]
    # "A: Paris" holds "paris", "A: Rome" does not hold "oslo"; both answers are longer
    assert summary["criteria"]["close"] == {"type": "metric", "pass_rate": 0.5, "mean": 0.5}
    assert summary["criteria"]["long"]["mean"] == 1.0
    assert summary["passed"] is True
    # the metric cells ran, and what a case measures is the request production serves
    for case in json.loads(Path(report["run"]).read_text(encoding="utf-8"))["cases"]:
        traces = {t["stage"]: t for t in case["traces"]}
        assert set(traces) == {"clean", "answer", *EVALUATION}
        assert all(traces[s]["status"] == "ok" and traces[s]["cost_usd"] > 0 for s in EVALUATION)
        chain = [traces["clean"], traces["answer"]]
        assert case["cost_usd"] == pytest.approx(sum(t["cost_usd"] for t in chain))
        assert case["latency_ms"] == pytest.approx(sum(t["compute_ms"] for t in chain))


def test_the_export_deploys_no_evaluation_stage(tmp_path: Path) -> None:
    spec = scored().compile()
    assert spec.evaluation_stages == EVALUATION
    result = export(spec, tmp_path / "deploy")
    out = result.out_dir
    served = ["Ingress", "clean", "answer"]
    assert [s.id for s in result.plan.stages] == served[1:]
    program_data = yaml.safe_load((out / "workbook.yaml").read_text())  # what __main__.py deploys
    assert [d["name"] for d in program_data["deployments"]] == served
    assert _deployments(yaml.safe_load((out / "serve_config.yaml").read_text())) == served
    objects = list(yaml.safe_load_all((out / "kubernetes.yaml").read_text()))
    (service,) = [o for o in objects if o and o["kind"] == "RayService"]
    assert _deployments(yaml.safe_load(service["spec"]["serveConfigV2"])) == served
    # the ConfigMap carries the whole workbook (its hash is what the app reports) ...
    (config_map,) = [o for o in objects if o and o["kind"] == "ConfigMap"
                     and "spec.json" in o.get("data", {})]
    assert json.loads(config_map["data"]["spec.json"])["stages"][2]["id"] == "gold_answer"
    # ... and nothing else that is deployed names an evaluation stage
    rendered = [o for o in objects if o is not config_map]
    texts = {"kubernetes.yaml": yaml.safe_dump_all(rendered),
             **{p.relative_to(out).as_posix(): p.read_text(encoding="utf-8")
                for p in [out / "__main__.py", out / "workbook.yaml", out / "provenance.json",
                          *out.glob("Pulumi*.yaml"), *(out / "observability").iterdir()]}}
    for name, text in texts.items():
        assert not [s for s in EVALUATION if s in text], name
    readme = (out / "README.md").read_text(encoding="utf-8")
    stage_rows = [line for line in readme.splitlines() if line.startswith("| ")]
    assert not [s for s in EVALUATION for row in stage_rows if f"| {s} |" in row]
    assert ("Evaluation only, not deployed: `gold_answer`, `score_close`, `score_long`"
            in readme and "The API takes no `expected`" in readme)


def test_an_override_of_an_evaluation_stage_is_refused(tmp_path: Path) -> None:
    options = ExportOptions(overrides=(StageOverride("score_close", {"max_replicas": 3}),))
    with pytest.raises(ExportError) as refused:
        export(scored().compile(), tmp_path / "deploy", options)
    (problem,) = refused.value.problems
    assert problem.stage == "score_close" and "only for evaluation" in problem.message
    assert not (tmp_path / "deploy").exists()
