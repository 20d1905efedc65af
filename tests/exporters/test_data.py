"""Data in production: each collection, database and file a stage reads has a production path
the export creates (an ingest job, a shipped SQLite file, a database URL secret), or the export
refuses, naming the stage and the fix, and writes nothing.

The Pulumi program runs under Pulumi's mocks (no CLI, no cluster); the dependencies each resource
is registered with are read from the mock monitor, so "the ingest job runs before the service"
is checked on what Pulumi would order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from nux_exporters import ExportError, ExportResult, export
from nux_kernel import Workbook
from nux_kernel.datasources import find_sources
from nux_runtime.data import data_dependencies
from nux_runtime.errors import StageError
from nux_runtime.jobs import main as job_main
from nux_runtime.spec import WorkbookSpec
from tests.exporters.test_program import (
    SENTINEL,
    RecordingMocks,
    all_secrets,
    pulumi_event_loop,  # noqa: F401 - a fresh event loop per test
    run_program,
)
from tests.exporters.workbooks import ASSETS, TEMPLATES, notebook, rag, rag_bot

RAG_ASSETS = ASSETS / "rag-bot"


def _deployments(service: pulumi.runtime.MockResourceArgs) -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(service.inputs["spec"]["serveConfigV2"])
    return {d["name"]: d for d in config["applications"][0]["deployments"]}


def run_ordered(result: ExportResult, config: dict[str, Any] | None = None
                ) -> tuple[RecordingMocks, dict[str, list[str]]]:
    """The program under mocks, and each resource's dependencies (resource names)."""
    order: dict[str, list[str]] = {}
    original = pulumi.runtime.mocks.MockMonitor.RegisterResource

    def record(monitor: Any, request: Any) -> Any:
        order[request.name] = [urn.rsplit("::", 1)[-1] for urn in request.dependencies]
        return original(monitor, request)

    pulumi.runtime.mocks.MockMonitor.RegisterResource = record  # type: ignore[method-assign]
    try:
        mocks, _ = run_program(result, config=config, secrets=all_secrets(result))
    finally:
        pulumi.runtime.mocks.MockMonitor.RegisterResource = original  # type: ignore[method-assign]
    return mocks, order


def test_data_dependencies_come_from_params_alone() -> None:
    spec, _ = rag_bot()
    assert [(r.stage, r.kind, r.name) for r in data_dependencies(spec)] == [
        ("retrieve", "qdrant-collection", "handbook")]
    ingest, _ = notebook(RAG_ASSETS / "ingest.ipynb")
    assert {(r.kind, r.name, r.access) for r in data_dependencies(ingest)} == {
        ("folder", "corpus", "read"), ("qdrant-collection", "handbook", "write")}


def test_ingest_job_exists_runs_before_the_service_and_gets_qdrant(tmp_path: Path) -> None:
    spec, sources = rag_bot()
    assert set(sources.ingests) == {"handbook"}
    result = export(spec, tmp_path / "rag", sources=sources)
    job_file = json.loads((result.out_dir / "jobs" / "ingest-handbook.json").read_text())
    assert job_file["targets"] == ["ingest"] and job_file["workbook"] == "ingest.ipynb"
    shipped = sorted(p.name for p in (result.out_dir / "data" / "corpus").iterdir())
    assert shipped == ["leave.md", "on-call.md"]
    listed = json.loads((result.out_dir / "data.json").read_text())
    assert listed["collections"] == {"handbook": "job:ingest-handbook"}
    assert listed["reads"][0]["setting"] == "collectionHandbook"
    readme = (result.out_dir / "README.md").read_text()
    assert "## Where the data comes from" in readme and "ingest-handbook" in readme

    mocks, order = run_ordered(result)
    (job,) = mocks.of_type(":Job")
    container = job.inputs["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == result.plan.image
    assert container["command"] == ["python", "-m", "nux_runtime.jobs"]
    url = "http://qdrant.rag-bot.svc.cluster.local:6333"
    assert container["args"] == ["run", "/opt/nux/jobs/ingest-handbook.json",
                                 "--set", f"ingest.url={url}",
                                 "--set", "ingest.api_key_env=QDRANT_API_KEY",
                                 "--set", "ingest.collection=handbook"]
    key = {"name": "rag-bot-secrets", "key": "QDRANT_API_KEY"}
    assert {"name": "QDRANT_API_KEY", "valueFrom": {"secretKeyRef": key}} in container["env"]
    (secret,) = mocks.of_type(":Secret")
    assert "QDRANT_API_KEY" in secret.inputs["stringData"]["value"]
    # Pulumi creates the job after the Qdrant server, and the RayService after the job.
    assert {"rag-bot-qdrant", "rag-bot-secrets"} <= set(order["rag-bot-ingest-handbook"])
    assert "rag-bot-ingest-handbook" in order["rag-bot-rayservice"]
    (service,) = mocks.of_type(":RayService")
    retrieve = _deployments(service)["retrieve"]
    assert retrieve["user_config"]["url"] == url
    assert yaml.safe_load(service.inputs["spec"]["serveConfigV2"])["applications"][0][
        "args"]["base_dir"] == "/opt/nux/data"
    # The rendered kubernetes.yaml holds the same Job.
    rendered = [d for d in yaml.safe_load_all((result.out_dir / "kubernetes.yaml").read_text())
                if d and d["kind"] == "Job"]
    assert rendered[0]["spec"] == job.inputs["spec"]


def test_collection_name_is_a_stack_setting_for_the_service_and_the_job(tmp_path: Path) -> None:
    spec, sources = rag_bot()
    result = export(spec, tmp_path / "rag", sources=sources)
    mocks, _ = run_ordered(result, config={"collectionHandbook": "handbook-prod"})
    (job,) = mocks.of_type(":Job")
    args = job.inputs["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "ingest.collection=handbook-prod" in args
    (service,) = mocks.of_type(":RayService")
    assert _deployments(service)["retrieve"]["user_config"]["collection"] == "handbook-prod"
    assert WorkbookSpec.from_json((result.out_dir / "spec.json").read_text()).hash == spec.hash


def test_sqlite_file_travels_read_only_with_the_image(tmp_path: Path) -> None:
    spec, sources = notebook(TEMPLATES / "sql-qa" / "sql_qa.ipynb")
    result = export(spec, tmp_path / "sql", sources=sources)
    assert (result.out_dir / "data" / "data.db").read_bytes() == (
        TEMPLATES / "sql-qa" / "data.db").read_bytes()
    mocks, _ = run_ordered(result)
    (service,) = mocks.of_type(":RayService")
    config = yaml.safe_load(service.inputs["spec"]["serveConfigV2"])["applications"][0]
    assert config["args"]["base_dir"] == "/opt/nux/data"
    assert _deployments(service)["lookup"]["user_config"]["path"] == "data.db"
    standalone = yaml.safe_load((result.out_dir / "serve_config.yaml").read_text())
    assert standalone["applications"][0]["args"]["base_dir"] == "data"
    assert mocks.of_type(":Job") == []


def _sql_workbook(folder: Path, **params: Any) -> Path:
    wb = Workbook("orders", inputs={"order_id": "integer"}, output="lookup", base_dir=folder)
    wb.data("lookup", uses="sql.query", inputs=["order_id"],
            params={"query": "SELECT 1 AS one WHERE :order_id > 0", **params})
    folder.mkdir(parents=True, exist_ok=True)
    return wb.save(folder / "orders.ipynb")


def test_database_url_secret_reaches_the_sql_stage(tmp_path: Path) -> None:
    path = _sql_workbook(tmp_path / "wb", url_env="ORDERS_DB_URL")
    spec, sources = notebook(path)
    result = export(spec, tmp_path / "out", sources=sources)
    assert "ORDERS_DB_URL" in result.plan.required_secrets
    stack = (result.out_dir / "Pulumi.dev.yaml").read_text()
    assert "pulumi config set --secret ordersDbUrl" in stack
    assert "`ordersDbUrl`" in (result.out_dir / "README.md").read_text()
    mocks, _ = run_ordered(result)
    (secret,) = mocks.of_type(":Secret")
    assert secret.inputs["stringData"]["value"]["ORDERS_DB_URL"] == SENTINEL
    (service,) = mocks.of_type(":RayService")
    lookup = _deployments(service)["lookup"]
    assert lookup["user_config"]["url_env"] == "ORDERS_DB_URL"
    workers = service.inputs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    pod = workers[0]["template"]["spec"]["containers"][0]
    assert pod["envFrom"] == [{"secretRef": {"name": "orders-secrets"}}]
    for file in result.out_dir.rglob("*"):
        if file.is_file():
            assert SENTINEL.encode() not in file.read_bytes(), file


def test_optional_api_key_hashes_do_not_stop_pulumi_up(tmp_path: Path) -> None:
    path = _sql_workbook(tmp_path / "wb", url_env="ORDERS_DB_URL")
    spec, sources = notebook(path)
    result = export(spec, tmp_path / "out", sources=sources)
    assert result.plan.optional_secrets == ("NUX_API_KEY_HASHES", "NUX_REDIS_URL")
    # only the required secret is set: the program runs, and the Secret holds just that one
    mocks, _ = run_program(result, secrets={"ordersDbUrl": SENTINEL})
    (secret,) = mocks.of_type(":Secret")
    assert set(secret.inputs["stringData"]["value"]) == {"ORDERS_DB_URL"}


@pytest.mark.parametrize(("case", "fix"), [
    ("collection", "--collection handbook=external"),
    ("outside", "outside the workbook's folder"),
    ("missing", "does not exist"),
    ("ingest-outside", "outside the workbook's folder"),
])
def test_data_the_export_cannot_carry_is_refused_and_nothing_is_written(
        case: str, fix: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    if case == "collection":
        spec, sources = rag().compile(), None
        stage = "retrieve"
    elif case in ("outside", "missing"):
        outside = tmp_path / "elsewhere.db"
        outside.write_bytes((TEMPLATES / "sql-qa" / "data.db").read_bytes())
        target = str(outside) if case == "outside" else "nope.db"
        spec, sources = notebook(_sql_workbook(tmp_path / "wb", path=target))
        stage = "lookup"
    else:
        project = tmp_path / "wb"
        shutil.copytree(RAG_ASSETS, project)
        moved = tmp_path / "corpus"
        (project / "corpus").rename(moved)
        nb = json.loads((project / "ingest.ipynb").read_text())
        for cell in nb["cells"]:
            cell["source"] = "".join(cell["source"]).replace("folder: corpus",
                                                             f"folder: {moved}")
        (project / "ingest.ipynb").write_text(json.dumps(nb))
        spec, sources = notebook(project / "rag.ipynb")
        stage = "ingest"
    with pytest.raises(ExportError) as caught:
        export(spec, out, sources=sources)
    problems = [p for p in caught.value.problems if p.code == "export-data"]
    assert problems and problems[0].stage == stage, caught.value.problems
    assert fix in problems[0].message + problems[0].fix
    assert not out.exists()


def test_external_collection_needs_no_ingest_workbook(tmp_path: Path) -> None:
    result = export(rag().compile(), tmp_path / "rag", collections={"handbook": "external"})
    assert result.plan.data.jobs == ()
    assert json.loads((result.out_dir / "data.json").read_text())["collections"] == {
        "handbook": "external"}


def test_ingest_workbook_named_in_metadata_wins(tmp_path: Path) -> None:
    project = tmp_path / "wb"
    shutil.copytree(RAG_ASSETS, project)
    (project / "ingest.ipynb").rename(project / "fill.ipynb")
    shutil.copy(project / "fill.ipynb", project / "fill-again.ipynb")
    spec, sources = notebook(project / "rag.ipynb")
    assert sources.problems and "several notebooks" in sources.problems[0].message
    nb = json.loads((project / "rag.ipynb").read_text())
    nb["metadata"]["nux"]["ingest"] = {"handbook": "fill.ipynb"}
    (project / "rag.ipynb").write_text(json.dumps(nb))
    sources = find_sources(project / "rag.ipynb", spec)
    assert not sources.problems and sources.ingests["handbook"].notebook.name == "fill.ipynb"


def test_job_runner_refuses_bad_arguments_clearly(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    spec, sources = rag_bot()
    result = export(spec, tmp_path / "rag", sources=sources)
    job = str(result.out_dir / "jobs" / "ingest-handbook.json")
    assert job_main(["run", job, "--set", "nothing.url=x"]) == 2
    assert "--set names no stage nothing" in capsys.readouterr().err
    assert job_main(["run", str(result.out_dir / "spec.json")]) == 2
    assert "is not a NUX job file" in capsys.readouterr().err


def test_a_replica_is_built_at_its_production_location(tmp_path: Path) -> None:
    """The replica builds its component from the Serve config's user_config: a stage whose
    notebook database is absent in production runs on the one the deployment names."""
    from nux_runtime.serve.stage import StageReplica

    shutil.copy(TEMPLATES / "sql-qa" / "data.db", tmp_path / "production.db")
    spec, _ = notebook(_sql_workbook(tmp_path / "wb", path="notebook-only.db"))
    replica = StageReplica(spec.stage("lookup").model_dump_json(), str(tmp_path))
    replica.reconfigure({**spec.stage("lookup").params, "path": "production.db"})
    assert replica.runner.run({"order_id": 1})["value"] == [{"one": 1}]
    # Moving it again builds it again (a missing database now fails where it should).
    with pytest.raises(StageError, match=r"gone\.db"):
        replica.reconfigure({**spec.stage("lookup").params, "path": "gone.db"})


def test_qdrant_server_matches_the_client_with_limits_and_probes(tmp_path: Path) -> None:
    from importlib.metadata import version

    spec, sources = rag_bot()
    result = export(spec, tmp_path / "rag", sources=sources)
    major, minor = version("qdrant-client").split(".")[:2]
    mocks, _ = run_ordered(result)
    (stateful_set,) = mocks.of_type(":StatefulSet")
    (container,) = stateful_set.inputs["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"qdrant/qdrant:v{major}.{minor}.0"
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 6333}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": 6333}
    rendered = next(d for d in yaml.safe_load_all((result.out_dir / "kubernetes.yaml")
                                                  .read_text()) if d and d["kind"] == "StatefulSet")
    assert rendered["spec"]["template"]["spec"]["containers"][0] == container
