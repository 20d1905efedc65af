"""The package's public face: its names, its entry point, the CRD it ships, the files it writes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

import nux_exporters
from nux_exporters import export
from nux_exporters.plan import RAY_SERVICE_NAME_MAX, ray_version
from nux_exporters.validation import CRDS
from nux_runtime.registry import load
from tests.exporters.workbooks import REPO, faq, gpu

SHARED_SCHEMAS = REPO.parent / "shared" / "schemas" / "kuberay-v1.7.0"
PUBLIC = ["TARGETS", "Acceptance", "ExportError", "ExportOptions", "ExportResult", "Plan",
          "StageOverride", "StagePlan", "export", "make_plan", "parse_override", "render"]


def test_public_names_are_exactly_these() -> None:
    assert nux_exporters.__all__ == PUBLIC
    public = {n for n in vars(nux_exporters) if not n.startswith("_")}
    modules = {"bundle", "literal", "manifests", "options", "plan", "program", "project",
               "serve", "validation", "annotations", "dataplan", "datafiles",
               "stackfile", "image", "observability", "cli"}
    assert public - modules == set(PUBLIC)


def test_registered_as_an_exporter() -> None:
    assert load("nux.exporters", "kuberay") is export


def test_shipped_crd_is_the_kuberay_1_7_0_one() -> None:
    shipped = Path(nux_exporters.__file__).parent / "schemas"
    for name in CRDS.values():
        text = (shipped / name).read_text(encoding="utf-8")
        assert "controller-gen" in text or "CustomResourceDefinition" in text
        if SHARED_SCHEMAS.is_dir():
            assert text == (SHARED_SCHEMAS / name).read_text(encoding="utf-8")


def test_ray_version_and_image_agree(tmp_path: Path) -> None:
    result = export(gpu().compile(), tmp_path / "gpu")
    docker = (result.out_dir / "Dockerfile").read_text(encoding="utf-8")
    assert f"FROM rayproject/ray:{ray_version()}-py311-gpu" in docker
    docs = list(yaml.safe_load_all((result.out_dir / "kubernetes.yaml").read_text()))
    service = next(d for d in docs if d and d["kind"] == "RayService")
    assert service["spec"]["rayClusterConfig"]["rayVersion"] == ray_version()
    assert len(service["metadata"]["name"]) <= RAY_SERVICE_NAME_MAX


def test_serve_config_beside_the_project_is_standalone(tmp_path: Path) -> None:
    result = export(faq().compile(), tmp_path / "faq")
    config = yaml.safe_load((result.out_dir / "serve_config.yaml").read_text())
    (app,) = config["applications"]
    assert app["args"] == {"spec_path": "spec.json"}
    assert (result.out_dir / "spec.json").read_text() == result.plan.spec.to_json()
    assert config["http_options"]["port"] == 8000
    provenance = json.loads((result.out_dir / "provenance.json").read_text())
    assert provenance["spec_hash"] == result.spec_hash
    assert provenance["acceptance"] is None


def test_serve_yaml_is_the_serve_config() -> None:
    from nux_exporters.plan import make_plan
    from nux_exporters.serve import serve_config, serve_yaml

    plan = make_plan(gpu().compile())
    for spec_path, standalone in (("spec.json", True), ("/etc/nux/spec.json", False)):
        text = serve_yaml(plan, spec_path=spec_path, standalone=standalone)
        assert yaml.safe_load(text) == serve_config(plan, spec_path=spec_path,
                                                    standalone=standalone)
