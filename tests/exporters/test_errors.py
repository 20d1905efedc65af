"""What an export refuses: one clear problem naming the stage and the field, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nux_exporters import Acceptance, ExportError, StageOverride, export, parse_override
from nux_exporters.serve import validate_serve_config
from nux_exporters.validation import validate_objects
from nux_kernel import Workbook
from tests.exporters.workbooks import CLEAN, faq, gpu


@dataclass(frozen=True)
class Refusal:
    """One bad export: the workbook, the export settings, and the problem expected."""

    id: str
    workbook: Callable[[], Workbook]
    settings: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None
    field: str | None = None
    words: str = ""


def _long_name() -> Workbook:
    wb = Workbook("a-workbook-name-that-is-far-too-long-for-a-rayservice",
                  inputs={"question": "string"}, output="clean")
    wb.code("clean", CLEAN)
    return wb


REFUSALS = [
    Refusal("min-above-max", faq,
            {"overrides": (StageOverride("shout", {"min_replicas": 5}),)},
            stage="shout", field="autoscaling_config.min_replicas",
            words="must be greater than or equal to min_replicas"),
    Refusal("name-too-long", _long_name, stage=None, field="RayService name",
            words="at most 47"),
    Refusal("bad-name", faq, {"name": "Faq_Bot"}, field="RayService name",
            words="DNS-1123"),
    Refusal("unknown-resource", faq, {"overrides": (parse_override("answer.tpu=1"),)},
            stage="answer", field="tpu", words="unknown resource 'tpu'"),
    Refusal("unknown-stage", faq, {"overrides": (parse_override("nope.max_replicas=2"),)},
            stage="nope", field="override", words="no stage 'nope'"),
    Refusal("gpu-disabled", gpu, {"gpus": False}, stage="clean", field="num_gpus",
            words="GPUs are disabled"),
    Refusal("negative-replicas", faq, {"overrides": (parse_override("shout.max_replicas=-1"),)},
            stage="shout", field="max_replicas", words="whole number"),
    Refusal("bad-canary", faq, {"canary_step_percent": 0}, field="canary_step_percent",
            words="outside 1..100"),
    Refusal("external-qdrant-without-url", faq, {"qdrant": "external"}, field="qdrant_url",
            words="needs the server's URL"),
    Refusal("failing-acceptance", faq,
            {"acceptance": {"passed": False, "pass_rate": 0.25}}, field="acceptance",
            words="fails its acceptance criteria: pass_rate=0.25"),
]


@pytest.mark.parametrize("case", REFUSALS, ids=[c.id for c in REFUSALS])
def test_refused_with_a_clear_problem_and_nothing_written(case: Refusal,
                                                           tmp_path: Path) -> None:
    spec = case.workbook().compile()
    settings = dict(case.settings)
    acceptance = settings.pop("acceptance", None)
    out = tmp_path / "deploy"
    with pytest.raises(ExportError) as raised:
        export(spec, out, acceptance=acceptance, **settings)
    problems = raised.value.problems
    assert any(p.stage == case.stage and p.field == case.field and case.words in p.message
               for p in problems), [p.render() for p in problems]
    assert all(p.fix for p in problems)
    assert list(tmp_path.iterdir()) == []  # no folder, no staging leftovers


def test_failing_acceptance_exports_with_force_and_says_so(tmp_path: Path) -> None:
    result = export(faq().compile(), tmp_path / "deploy", force=True,
                    acceptance=Acceptance(passed=False, summary={"pass_rate": 0.25}))
    readme = (result.out_dir / "README.md").read_text(encoding="utf-8")
    assert "**Forced export.**" in readme and "FAILED" in readme
    provenance = (result.out_dir / "provenance.json").read_text(encoding="utf-8")
    assert '"forced": true' in provenance and '"pass_rate": 0.25' in provenance
    assert "nux.dev/acceptance: failed-forced" in (
        result.out_dir / "kubernetes.yaml").read_text(encoding="utf-8")
    assert "FORCED EXPORT" in (result.out_dir / "__main__.py").read_text(encoding="utf-8")


def test_a_folder_that_is_not_an_export_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ExportError, match="not a previous export"):
        export(faq().compile(), out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_unknown_serve_keys_are_named_with_their_stage() -> None:
    config = {"applications": [{"name": "app", "import_path": "a.b:c", "deployments": [
        {"name": "answer", "ray_actor_options": {"num_cpus": 1, "num_cpu": 2},
         "autoscaling_config": {"min_replicas": 1, "max_replicas": 2, "target_ongoing": 3}},
    ]}], "http_option": {}}
    found = {(p.stage, p.field) for p in validate_serve_config(config)}
    assert ("answer", "ray_actor_options.num_cpu") in found
    assert ("answer", "autoscaling_config.target_ongoing") in found
    assert (None, "http_option") in found


def test_crd_and_core_schemas_catch_bad_objects(tmp_path: Path) -> None:
    from nux_exporters.manifests import manifests
    from nux_exporters.plan import make_plan

    objects = manifests(make_plan(faq().compile()))
    assert validate_objects(objects) == []
    service = objects[-1]
    service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplicas"] = "many"
    service["spec"]["upgradeStrategy"]["clusterUpgradeOptions"] = {"stepSizePercent": 5}
    objects[0]["metadata"]["labels"] = {"team": 7}
    found: dict[str | None, list[str]] = {}
    for problem in validate_objects(objects):
        found.setdefault(problem.field, []).append(problem.message)
    assert "spec.rayClusterConfig.workerGroupSpecs[0].maxReplicas" in found
    assert any("'gatewayClassName' is a required property" in m
               for m in found["spec.upgradeStrategy.clusterUpgradeOptions"])
    assert "metadata.labels.team" in found


def test_a_schema_error_shared_by_several_stages_names_each_of_them() -> None:
    same = {"ray_actor_options": {"num_cpus": "lots"}, "max_ongoing_requests": 8}
    config = {"applications": [{"name": "app", "import_path": "a.b:c", "deployments": [
        {"name": "one", **same}, {"name": "two", **same},
        {"name": "three", "ray_actor_options": {"num_cpus": 1}}]}]}
    stages = {p.stage for p in validate_serve_config(config)}
    assert stages == {"one", "two"}
