"""The Pulumi program's package, ``nux_kuberay``, on its own under Pulumi's mocks.

A small workbook is written here by hand (no compiler, no export): the component creates exactly
the objects :func:`nux_kuberay.objects.objects` lists (what ``kubernetes.yaml`` shows for
review), reads each setting once and typed from the stack's config, and needs nothing of NUX
but the package itself: an exported folder runs with every other NUX package unimportable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

import nux_kuberay
from nux_exporters import export
from nux_exporters.literal import yaml_text
from nux_kuberay import ExportedWorkbook, WorkbookService, WorkbookServiceArgs
from nux_kuberay.objects import objects
from tests.exporters.test_program import (  # noqa: F401  (the event-loop fixture)
    RecordingMocks,
    pulumi_event_loop,
)
from tests.exporters.workbooks import rag_bot

PROJECT = "tiny"


def _workbook(*, gpu: bool = False) -> ExportedWorkbook:
    settings: dict[str, Any] = {
        **WorkbookServiceArgs(namespace="tiny", image="tiny:1").settings(gpu=gpu, jobs=True),
        "qdrantMode": "statefulset", "answerBaseUrl": "http://127.0.0.1:8080/v1",
        "collectionHandbook": "handbook"}
    health = {"health_check_period_s": 10}
    document = {
        "workbook": "Tiny", "name": PROJECT, "spec_hash": "abc", "ray_version": "2.60.0",
        "acceptance": "passed", "gpu": gpu, "settings": settings,
        "secrets": {"QDRANT_API_KEY": "qdrantApiKey"},
        "optional_secrets": {"NUX_REDIS_URL": "nuxRedisUrl"},
        "data_mount": None,
        "stage_settings": {"answer": {"options.base_url": "answerBaseUrl"},
                           "retrieve": {"collection": "collectionHandbook"}},
        "qdrant_stages": ["retrieve"],
        "jobs": [{"job": "ingest-handbook", "name": "tiny-ingest-handbook",
                  "file": "/opt/nux/jobs/ingest-handbook.json", "stages": ["ingest"],
                  "collection": "collectionHandbook", "spec_hash": "def"}],
        "deployments": [
            {"name": "Ingress", "max_ongoing_requests": 100,
             "ray_actor_options": {"num_cpus": 0.25}, **health},
            {"name": "retrieve", "max_ongoing_requests": 8,
             "ray_actor_options": {"num_cpus": 1}, **health},
            {"name": "answer", "max_ongoing_requests": 8,
             "ray_actor_options": {"num_cpus": 1, "num_gpus": 1 if gpu else 0}, **health},
        ],
    }
    spec = {"name": "Tiny", "stages": [
        {"id": "retrieve", "params": {"collection": "handbook", "top_k": 2}},
        {"id": "answer", "params": {"options": {"base_url": "http://127.0.0.1:8080/v1"}}}]}
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
               "metadata": {"name": "tiny-ray", "namespace": "tiny"},
               "spec": {"namespaceSelector": {"matchNames": ["tiny"]}}}
    return ExportedWorkbook.from_document(document, spec, {"spec_hash": "abc"}, monitor)


def _run(workbook: ExportedWorkbook, config: dict[str, Any] | None = None,
         secrets: dict[str, str] | None = None
         ) -> tuple[RecordingMocks, WorkbookServiceArgs, dict[str, list[str]]]:
    """The component under mocks; the resources, the args it read, each one's dependencies."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="dev", preview=False)
    values = {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v)
              for k, v in (config or {}).items()}
    secrets = {"qdrantApiKey": "k"} if secrets is None else secrets
    hidden = {f"{PROJECT}:{k}": v for k, v in secrets.items()}
    pulumi.runtime.set_all_config({**values, **hidden}, secret_keys=list(hidden))
    order: dict[str, list[str]] = {}
    original = pulumi.runtime.mocks.MockMonitor.RegisterResource

    def record(monitor: Any, request: Any) -> Any:
        order[request.name] = [urn.rsplit("::", 1)[-1] for urn in request.dependencies]
        return original(monitor, request)

    found: list[WorkbookServiceArgs] = []

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def run() -> pulumi.Output[Any]:
        args = WorkbookServiceArgs.from_config(pulumi.Config(), workbook)
        found.append(args)
        return WorkbookService(PROJECT, workbook, args).serve_url

    pulumi.runtime.mocks.MockMonitor.RegisterResource = record  # type: ignore[method-assign]
    try:
        run()
    finally:
        pulumi.runtime.mocks.MockMonitor.RegisterResource = original  # type: ignore[method-assign]
    return mocks, found[0], order


def _camel(document: dict[str, Any]) -> dict[str, Any]:
    """An object's fields as the engine receives a resource's inputs."""
    return {k: v for k, v in document.items() if k not in ("apiVersion", "kind")}


def test_the_component_creates_exactly_the_listed_objects() -> None:
    workbook = _workbook(gpu=True)
    mocks, args, _ = _run(workbook, config={"podMonitor": True, "namespace": "prod"})
    listed = objects(workbook, args)
    created = {(r.typ.rsplit(":", 1)[-1], r.inputs["metadata"]["name"]): r.inputs
               for r in mocks.created if "metadata" in r.inputs}
    for document in listed:
        inputs = created.pop((document["kind"], document["metadata"]["name"]))
        for key, value in _camel(document).items():
            assert inputs[key] == value, (document["kind"], key)
    # Beyond the listed objects only the Secret, whose values kubernetes.yaml never holds.
    assert sorted(created) == [("Secret", "tiny-secrets")]
    kinds = [d["kind"] for d in listed]
    assert kinds == ["Namespace", "ConfigMap", "Service", "StatefulSet", "NetworkPolicy",
                     "NetworkPolicy", "Job", "PodMonitor", "RayService"]
    assert all(d["metadata"].get("namespace", "prod") == "prod" for d in listed)


def test_settings_are_read_once_typed_and_reach_the_objects() -> None:
    workbook = _workbook(gpu=True)
    production = "https://llm.internal.example/v1"
    _, args, _ = _run(workbook, config={
        "workerMaxReplicas": 7, "installOperator": True, "nodeSelector": {"pool": "cpu"},
        "headCpu": "2", "answerBaseUrl": production, "collectionHandbook": "prod-handbook",
        "notASetting": "ignored"})
    assert args.worker_max_replicas == 7 and args.install_operator is True
    assert args.node_selector == {"pool": "cpu"} and args.head_cpu == "2"
    assert args.worker_min_replicas == 1  # unset: the export's default
    assert "notASetting" not in args.locations
    # The settings a workbook has, and back: nothing lost on the way.
    assert WorkbookServiceArgs.from_settings(args.settings(gpu=True, jobs=True)) == \
        WorkbookServiceArgs(**{**vars(args), "secrets": {}})
    service = next(d for d in objects(workbook, args) if d["kind"] == "RayService")
    deployments = {d["name"]: d for d in yaml.safe_load(
        service["spec"]["serveConfigV2"])["applications"][0]["deployments"]}
    assert deployments["answer"]["user_config"] == {"options": {"base_url": production}}
    assert deployments["retrieve"]["user_config"] == {
        "collection": "prod-handbook", "top_k": 2,
        "url": "http://qdrant.tiny.svc.cluster.local:6333", "api_key_env": "QDRANT_API_KEY"}
    assert "user_config" not in deployments["Ingress"]
    job = next(d for d in objects(workbook, args) if d["kind"] == "Job")
    assert "ingest.collection=prod-handbook" in job["spec"]["template"]["spec"][
        "containers"][0]["args"]


def test_jobs_run_after_the_qdrant_server_and_before_the_service() -> None:
    _, _, order = _run(_workbook())
    job = order["tiny-ingest-handbook"]
    assert {"tiny-qdrant", "tiny-spec", "tiny-secrets", "tiny-ray-policy"} <= set(job)
    assert "tiny-ingest-handbook" in order["tiny-rayservice"]
    # No Qdrant server: no job, and the stages keep their own store.
    mocks, args, _ = _run(_workbook(), config={"qdrantMode": "none"})
    assert mocks.of_type(":Job") == [] and args.qdrant_server == ""


def test_gpu_group_only_for_a_workbook_with_a_gpu_stage() -> None:
    for gpu in (False, True):
        mocks, _, _ = _run(_workbook(gpu=gpu))
        (service,) = mocks.of_type(":RayService")
        groups = service.inputs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        assert [g["groupName"] for g in groups] == (["cpu", "gpu"] if gpu else ["cpu"])


def test_a_required_secret_left_unset_stops_the_program() -> None:
    with pytest.raises(pulumi.ConfigMissingError, match="qdrantApiKey"):
        _run(_workbook(), secrets={})
    mocks, _, _ = _run(_workbook(), secrets={"qdrantApiKey": "k", "nuxRedisUrl": "redis://r"})
    (secret,) = mocks.of_type(":Secret")
    assert set(secret.inputs["stringData"]["value"]) == {"QDRANT_API_KEY", "NUX_REDIS_URL"}


def test_workbook_yaml_reads_back_exactly() -> None:
    value = {"plain": "word", "number-like": "1", "yes": "yes", "null": None, "empty": "",
             "colon": "a: b", "hash": "x # y", "quote": 'say "hi"', "newline": "a\nb",
             "unicode": "café ☕", "control": "\x85\x07", "ints": [0, -3, 10**12],
             "floats": [0.25, 1e-05, 1e20, float("inf")], "bools": [True, False],
             "nested": [{"a": {"b": [1, {"c": []}]}, "d": {}}, [1, 2]],
             "nvidia.com/gpu.present": "true", "dollar": "$(NUX_POD_IP)"}
    comments = {("plain",): "a comment", ("nested", 0): "above an item",
                ("nested", 0, "a", "b"): "x" * 120}
    text = yaml_text(value, comments)
    assert yaml.safe_load(text) == value
    assert "plain: word  # a comment" in text and "  # above an item\n  - a:" in text


def test_the_exported_package_is_the_source(tmp_path: Path) -> None:
    spec, sources = rag_bot()
    out = export(spec, tmp_path / "rag", sources=sources, targets=("pulumi",)).out_dir
    source = Path(nux_kuberay.__file__).parent
    copied = sorted(p.name for p in (out / "nux_kuberay").iterdir())
    assert copied == sorted(p.name for p in source.glob("*.py"))
    for name in copied:
        assert (out / "nux_kuberay" / name).read_bytes() == (source / name).read_bytes()


# Pulumi runs the project folder (runpy.run_path); every NUX package but the folder's own
# nux_kuberay copy refuses to import, so the program can use nothing the folder lacks.
ALONE = """
import asyncio, importlib.abc, json, runpy, sys
import pulumi

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"nux_exporters", "nux_runtime", "nux_kernel", "nux_widgets"}:
            raise ImportError(name + " is not in the exported folder")
        return None

sys.meta_path.insert(0, Refuse())

class Mocks(pulumi.runtime.Mocks):
    created = []
    def new_resource(self, args):
        self.created.append(args.typ)
        return args.name + "-id", dict(args.inputs)
    def call(self, args):
        return {}

asyncio.set_event_loop(asyncio.new_event_loop())
mocks = Mocks()
pulumi.runtime.set_mocks(mocks, project="rag-bot", stack="dev", preview=False)
pulumi.runtime.set_all_config({"rag-bot:qdrantApiKey": "k"}, secret_keys=["rag-bot:qdrantApiKey"])

@pulumi.runtime.test
def run():
    return runpy.run_path(sys.argv[1], run_name="__main__")["service"].serve_url

run()
print(json.dumps({"package": sys.modules["nux_kuberay"].__file__,
                  "kinds": sorted(t.rsplit(":", 1)[-1] for t in mocks.created)}))
"""


def test_the_exported_folder_runs_with_no_nux_package(tmp_path: Path) -> None:
    spec, sources = rag_bot()
    out = export(spec, tmp_path / "rag", sources=sources).out_dir
    done = subprocess.run([sys.executable, "-I", "-c", ALONE, str(out)], cwd=tmp_path,
                          capture_output=True, text=True, check=False,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert Path(report["package"]).parent == out / "nux_kuberay"
    assert report["kinds"] == ["ConfigMap", "Job", "Namespace", "NetworkPolicy",
                               "NetworkPolicy", "RayService", "Secret", "Service",
                               "StatefulSet", "WorkbookService"]

