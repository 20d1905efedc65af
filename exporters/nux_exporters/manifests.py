"""The workbook's side of the deployment, from a plan: settings, provenance, the data file.

:func:`settings` lists every cluster setting with its default (they become the Pulumi config
keys and ``Pulumi.<stack>.yaml``); :func:`workbook_document` is what ``workbook.yaml`` holds and
:func:`exported_workbook` the same as the Pulumi program loads it. The Kubernetes objects are
built from those by :mod:`nux_kuberay.objects`, the package the Pulumi program runs, so
:func:`manifests` (``kubernetes.yaml``, for review) and ``pulumi up`` create the same objects.
Secrets are never rendered: the objects reference a Secret named ``<name>-secrets`` by name, and
its values come from Pulumi secret config or the platform's own secret store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from nux_exporters.dataplan import DATA_MOUNT, JOBS_MOUNT, JobPlan
from nux_exporters.observability import pod_monitor
from nux_exporters.plan import CPU_WORKER_CPUS, GPU_WORKER_GPUS, Plan, config_key
from nux_exporters.serve import ingress_deployment, stage_deployment
from nux_kuberay import ExportedWorkbook, WorkbookServiceArgs
from nux_kuberay import objects as kuberay
from nux_kuberay.args import QDRANT_IMAGE as FALLBACK_QDRANT_IMAGE
from nux_kuberay.objects import KUBERAY_CHART_VERSION
from nux_runtime.errors import ExportError, Problem

__all__ = [
    "KUBERAY_CHART_VERSION",
    "QDRANT_IMAGE",
    "acceptance_word",
    "compact_spec",
    "exported_workbook",
    "job_collection_key",
    "job_resource_name",
    "manifests",
    "provenance",
    "provenance_json",
    "qdrant_image",
    "ray_service",
    "settings",
    "workbook_document",
]

CONFIG_MAP_LIMIT = 1024 * 1024


def qdrant_image() -> str:
    """The Qdrant server release matching the installed qdrant-client (same major.minor: the
    client checks that the server is within one minor version)."""
    try:
        major, minor = version("qdrant-client").split(".")[:2]
    except (PackageNotFoundError, ValueError):
        return FALLBACK_QDRANT_IMAGE
    return f"qdrant/qdrant:v{major}.{minor}.0"


QDRANT_IMAGE = qdrant_image()


def default_args(plan: Plan) -> WorkbookServiceArgs:
    """The cluster settings the export decides; the rest keep :class:`WorkbookServiceArgs`'s
    defaults."""
    opts = plan.options
    return WorkbookServiceArgs(
        namespace=plan.namespace, image=plan.image, worker_cpu=str(CPU_WORKER_CPUS),
        worker_max_replicas=plan.cpu_worker_max,
        node_selector=dict(sorted(opts.node_selector.items())),
        tolerations=[dict(t) for t in opts.tolerations],
        gpu_worker_gpus=GPU_WORKER_GPUS, gpu_worker_min_replicas=plan.gpu_worker_min,
        gpu_worker_max_replicas=plan.gpu_worker_max,
        gpu_node_selector=dict(sorted(opts.gpu_node_selector.items())),
        gpu_tolerations=[dict(t) for t in opts.gpu_tolerations],
        install_operator=opts.install_operator, qdrant_mode=plan.qdrant_mode,
        qdrant_url=opts.qdrant_url, qdrant_image=QDRANT_IMAGE,
        upgrade_strategy=opts.upgrade_strategy, canary_step_percent=opts.canary_step_percent,
        canary_interval_seconds=opts.canary_interval_seconds,
        locations={location.key: location.default for location in plan.data.locations})


def settings(plan: Plan) -> dict[str, Any]:
    """Every cluster setting and its default, in the order the README documents them."""
    return default_args(plan).settings(gpu=plan.gpu, jobs=bool(plan.data.jobs))


def job_collection_key(plan: Plan, job: JobPlan) -> str:
    """The setting that names the collection an ingest job writes."""
    return next(loc.key for loc in plan.data.locations
                if any(name == job.name for name, _ in loc.job_targets))


def job_resource_name(plan: Plan, job: JobPlan) -> str:
    """The Kubernetes Job's name: ``<name>-<job>``, within the 63 characters of a label."""
    name = f"{plan.name}-{job.name}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def compact_spec(plan: Plan) -> str:
    """What the ConfigMap holds as spec.json, from the spec document the plan already holds."""
    return kuberay.compact(plan.spec_document)


def provenance_json(plan: Plan) -> str:
    """provenance.json as written beside the project."""
    return json.dumps(provenance(plan), indent=2, sort_keys=True) + "\n"


def provenance(plan: Plan) -> dict[str, Any]:
    """What the export was made from: spec hash, catalog, acceptance verdict, tuning trials."""
    spec = plan.spec
    acceptance: dict[str, Any] | None = None
    if plan.acceptance is not None:
        acceptance = {"passed": plan.acceptance.passed, "source": plan.acceptance.source,
                      **json.loads(json.dumps(dict(plan.acceptance.summary), default=str))}
    return {
        "workbook": spec.name,
        "spec_hash": spec.hash,
        "catalog": spec.catalog.model_dump(mode="json") if spec.catalog else None,
        "ray_version": plan.ray_version,
        "acceptance": acceptance,
        "forced": plan.forced,
        "settings": settings(plan),
        "secrets": list(plan.required_secrets),
        "files": list(plan.memo.get("files", ())),
        "stages": {
            s.id: {
                "stage_hash": s.stage.hash,
                "component": f"{s.stage.component.id}@{s.stage.component.version}",
                "origin": s.stage.origin.model_dump(mode="json") if s.stage.origin else None,
                "tuning": json.loads(json.dumps(dict(s.tuning), default=str)),
                "overrides": sorted(s.overridden),
            }
            for s in plan.stages
        },
    }


def acceptance_word(plan: Plan) -> str:
    if plan.acceptance is None:
        return "forced-unevaluated" if plan.forced else "not-evaluated"
    if plan.acceptance.summary.get("stale_data"):
        return "stale-data-forced"  # only a forced export gets past stale data
    if plan.acceptance.passed:
        return "passed"
    return "failed-forced" if plan.forced else "failed"


def _stage_settings(plan: Plan) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for location in plan.data.locations:
        for stage, param in location.targets:
            found.setdefault(stage, {})[param] = location.key
    return dict(sorted(found.items()))


def workbook_document(plan: Plan) -> dict[str, Any]:
    """What ``workbook.yaml`` holds: every decision of the export the Pulumi program reads."""
    return {
        "workbook": plan.spec.name,
        "name": plan.name,
        "spec_hash": plan.spec.hash,
        "ray_version": plan.ray_version,
        "acceptance": acceptance_word(plan),
        "gpu": plan.gpu,
        "settings": settings(plan),
        "secrets": {env: config_key(env) for env in plan.required_secrets},
        "optional_secrets": {env: config_key(env) for env in plan.optional_secrets},
        "data_mount": DATA_MOUNT if plan.data.ships_data else None,
        "stage_settings": _stage_settings(plan),
        "qdrant_stages": list(plan.qdrant_stages),
        "jobs": [{"job": job.name, "name": job_resource_name(plan, job),
                  "file": f"{JOBS_MOUNT}/{job.file}", "stages": list(job.stages),
                  "collection": job_collection_key(plan, job), "spec_hash": job.spec.hash}
                 for job in plan.data.jobs],
        "deployments": [ingress_deployment(plan), *(stage_deployment(s) for s in plan.stages)],
    }


def exported_workbook(plan: Plan) -> ExportedWorkbook:
    """The workbook as the exported Pulumi program loads it from the folder."""
    return ExportedWorkbook.from_document(
        workbook_document(plan), plan.spec_document, json.loads(provenance_json(plan)),
        pod_monitor(plan.name, plan.namespace))


def _args(plan: Plan, cfg: Mapping[str, Any] | None) -> WorkbookServiceArgs:
    return WorkbookServiceArgs.from_settings(cfg if cfg is not None else settings(plan))


def ray_service(plan: Plan, cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The KubeRay RayService (ray.io/v1) for ``plan`` under the settings ``cfg``."""
    return kuberay.ray_service(exported_workbook(plan), _args(plan, cfg))


def manifests(plan: Plan, cfg: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The objects ``pulumi up`` creates under the settings ``cfg`` (default: the export's),
    but the Secret and the operator's Helm release."""
    found = kuberay.objects(exported_workbook(plan), _args(plan, cfg))
    data = next(o["data"] for o in found if o["kind"] == "ConfigMap")
    size = sum(len(v.encode("utf-8")) for v in data.values())
    if size > CONFIG_MAP_LIMIT:
        raise ExportError(problems=[Problem(
            code="export-size", field="spec.json",
            message=f"the frozen spec is {size} bytes; a ConfigMap holds at most "
                    f"{CONFIG_MAP_LIMIT}", fix="split the workbook into smaller ones")])
    return found
