"""The Kubernetes objects of a workbook: Namespace, spec ConfigMap, RayService, optional Qdrant.

:func:`settings` lists every cluster setting with its default (they become the Pulumi config
keys and ``Pulumi.<stack>.yaml``); :func:`manifests` builds the objects from a plan and a set of
settings. The generated Pulumi program builds the same objects from the same settings, and a
test holds the two together. Secrets are never rendered here: the objects reference a Secret
named ``<name>-secrets`` by name, and its values come from Pulumi secret config or the platform's
own secret store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from nux_exporters.dataplan import DATA_MOUNT, JOBS_MOUNT, JobPlan, override_values
from nux_exporters.observability import pod_monitor
from nux_exporters.plan import CPU_WORKER_CPUS, GPU_WORKER_GPUS, QDRANT_KEY_ENV, Plan
from nux_exporters.serve import SPEC_MOUNT, serve_yaml
from nux_exporters.yaml_text import dump_yaml
from nux_runtime.errors import ExportError, Problem

__all__ = [
    "KUBERAY_CHART_VERSION",
    "QDRANT_IMAGE",
    "compact",
    "compact_spec",
    "dump_yaml",
    "ingest_job",
    "job_collection_key",
    "job_resource_name",
    "manifests",
    "network_policies",
    "provenance",
    "provenance_json",
    "qdrant_image",
    "qdrant_url",
    "ray_service",
    "settings",
]

KUBERAY_CHART_VERSION = "1.7.0"


def qdrant_image() -> str:
    """The Qdrant server release matching the installed qdrant-client (same major.minor: the
    client checks that the server is within one minor version)."""
    try:
        major, minor = version("qdrant-client").split(".")[:2]
    except (PackageNotFoundError, ValueError):
        return "qdrant/qdrant:v1.13.0"
    return f"qdrant/qdrant:v{major}.{minor}.0"


QDRANT_IMAGE = qdrant_image()
QDRANT_PORT = 6333
SERVE_PORT = 8000
CONFIG_MAP_LIMIT = 1024 * 1024
DASHBOARD_PORT = 8265
#: Ray's metrics export port in every Ray container (the PodMonitor scrapes it).
METRICS_PORT = 8080
#: The label every Ray pod of the workbook carries: what the NetworkPolicy selects.
RAY_POD_LABEL = "nux.dev/ray"
#: The head pod's own IP, from the downward API; the kubelet substitutes it into the
#: ``ray start`` command KubeRay generates, so the dashboard listens on the pod network only.
POD_IP_ENV = "NUX_POD_IP"


def settings(plan: Plan) -> dict[str, Any]:
    """Every cluster setting and its default, in the order the README documents them."""
    opts = plan.options
    values: dict[str, Any] = {
        "namespace": plan.namespace,
        "image": plan.image,
        "headCpu": "1",
        "headMemory": "4Gi",
        "workerCpu": str(CPU_WORKER_CPUS),
        "workerMemory": "8Gi",
        "workerMinReplicas": 1,
        "workerMaxReplicas": plan.cpu_worker_max,
        "nodeSelector": dict(sorted(opts.node_selector.items())),
        "tolerations": [dict(t) for t in opts.tolerations],
    }
    if plan.gpu:
        values.update({
            "gpuWorkerCpu": "8",
            "gpuWorkerMemory": "32Gi",
            "gpuWorkerGpus": GPU_WORKER_GPUS,
            "gpuWorkerMinReplicas": plan.gpu_worker_min,
            "gpuWorkerMaxReplicas": plan.gpu_worker_max,
            "gpuNodeSelector": dict(sorted(opts.gpu_node_selector.items())),
            "gpuTolerations": [dict(t) for t in opts.gpu_tolerations],
        })
    values.update({
        "idleTimeoutSeconds": 60,
        "installOperator": opts.install_operator,
        "qdrantMode": plan.qdrant_mode,
        "qdrantUrl": opts.qdrant_url,
        "qdrantImage": QDRANT_IMAGE,
        "qdrantStorage": "10Gi",
        "qdrantCpu": "1",
        "qdrantMemory": "2Gi",
        "upgradeStrategy": opts.upgrade_strategy,
        "canaryGatewayClass": "istio",
        "canaryStepPercent": opts.canary_step_percent,
        "canaryIntervalSeconds": opts.canary_interval_seconds,
        "networkPolicy": True,
        "podMonitor": False,
        "rayAuthMode": "token",
        "dashboardHost": f"$({POD_IP_ENV})",
    })
    if plan.data.jobs:
        values.update({"jobCpu": "2", "jobMemory": "4Gi"})
    for location in plan.data.locations:
        values[location.key] = location.default
    return values


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


def job_args(plan: Plan, cfg: Mapping[str, Any], job: JobPlan) -> list[str]:
    """``python -m nux_runtime.jobs`` arguments: the job file in the image, pointed at the
    production Qdrant and the collection the stack names."""
    args = ["run", f"{JOBS_MOUNT}/{job.file}"]
    url, collection = qdrant_url(cfg), cfg[job_collection_key(plan, job)]
    for stage in job.stages:
        args += ["--set", f"{stage}.url={url}", "--set", f"{stage}.api_key_env={QDRANT_KEY_ENV}",
                 "--set", f"{stage}.collection={collection}"]
    return args


def ingest_job(plan: Plan, cfg: Mapping[str, Any], job: JobPlan) -> dict[str, Any]:
    """The Kubernetes Job that fills one collection, in the runtime image."""
    labels = {**_labels(plan), "nux.dev/job": job.name}
    container: dict[str, Any] = {
        "name": "ingest",
        "image": cfg["image"],
        "command": ["python", "-m", "nux_runtime.jobs"],
        "args": job_args(plan, cfg, job),
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
        "resources": {"limits": {"cpu": cfg["jobCpu"], "memory": cfg["jobMemory"]},
                      "requests": {"cpu": cfg["jobCpu"], "memory": cfg["jobMemory"]}},
    }
    if QDRANT_KEY_ENV in plan.secrets:  # the job needs the Qdrant key and no other secret
        container["env"].append({"name": QDRANT_KEY_ENV, "valueFrom": {"secretKeyRef": {
            "name": f"{plan.name}-secrets", "key": QDRANT_KEY_ENV}}})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_resource_name(plan, job), "namespace": cfg["namespace"],
                     "labels": labels},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {"nux.dev/job-spec-hash": job.spec.hash}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


def compact(text: str) -> str:
    """JSON as the ConfigMap holds it: the same document without whitespace (1 MiB limit)."""
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def compact_spec(plan: Plan) -> str:
    """What ``compact(spec.json)`` gives, from the spec document the plan already holds."""
    return json.dumps(plan.spec_document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


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


def _labels(plan: Plan) -> dict[str, str]:
    return {"app.kubernetes.io/name": "nux", "app.kubernetes.io/instance": plan.name,
            "app.kubernetes.io/managed-by": "nux-export"}


def _env(plan: Plan, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "NUX_SPEC_PATH", "value": SPEC_MOUNT}]
    url = qdrant_url(cfg)
    if url:
        env.append({"name": "QDRANT_URL", "value": url})
    return env


def qdrant_url(cfg: Mapping[str, Any]) -> str:
    """The Qdrant server the stages use under these settings ("" when there is none)."""
    if cfg["qdrantMode"] == "statefulset":
        return f"http://qdrant.{cfg['namespace']}.svc.cluster.local:6333"
    if cfg["qdrantMode"] == "external":
        return str(cfg["qdrantUrl"])
    return ""


def _container(plan: Plan, cfg: Mapping[str, Any], name: str, cpu: str, memory: str,
               gpus: int = 0) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
        requests["nvidia.com/gpu"] = str(gpus)
    container: dict[str, Any] = {
        "name": name,
        "image": cfg["image"],
        "env": _env(plan, cfg),
        "resources": {"limits": limits, "requests": requests},
        "volumeMounts": [{"name": "nux-spec", "mountPath": "/etc/nux", "readOnly": True}],
    }
    if plan.secrets:
        container["envFrom"] = [{"secretRef": {"name": f"{plan.name}-secrets"}}]
    if name == "ray-head":
        container["env"].append({"name": POD_IP_ENV, "valueFrom": {
            "fieldRef": {"fieldPath": "status.podIP"}}})
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": SERVE_PORT, "name": "serve"},
        ]
    return container


def _pod(container: dict[str, Any], plan: Plan, node_selector: Mapping[str, str],
         tolerations: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "nux-spec", "configMap": {"name": f"{plan.name}-spec"}}],
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    return {"metadata": {"labels": {RAY_POD_LABEL: plan.name}}, "spec": spec}


def ray_service(plan: Plan, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The KubeRay RayService (ray.io/v1) for ``plan`` under the settings ``cfg``."""
    workers: list[dict[str, Any]] = [{
        "groupName": "cpu",
        "replicas": cfg["workerMinReplicas"],
        "minReplicas": cfg["workerMinReplicas"],
        "maxReplicas": cfg["workerMaxReplicas"],
        "rayStartParams": {},
        "template": _pod(_container(plan, cfg, "ray-worker", cfg["workerCpu"],
                                    cfg["workerMemory"]),
                         plan, cfg["nodeSelector"], cfg["tolerations"]),
    }]
    if plan.gpu:
        workers.append({
            "groupName": "gpu",
            "replicas": cfg["gpuWorkerMinReplicas"],
            "minReplicas": cfg["gpuWorkerMinReplicas"],
            "maxReplicas": cfg["gpuWorkerMaxReplicas"],
            "rayStartParams": {},
            "template": _pod(_container(plan, cfg, "ray-worker", cfg["gpuWorkerCpu"],
                                        cfg["gpuWorkerMemory"], cfg["gpuWorkerGpus"]),
                             plan, cfg["gpuNodeSelector"], cfg["gpuTolerations"]),
        })
    upgrade: dict[str, Any] = {"type": cfg["upgradeStrategy"]}
    if cfg["upgradeStrategy"] == "NewClusterWithIncrementalUpgrade":
        upgrade["clusterUpgradeOptions"] = {
            "gatewayClassName": cfg["canaryGatewayClass"],
            "stepSizePercent": cfg["canaryStepPercent"],
            "intervalSeconds": cfg["canaryIntervalSeconds"],
            "maxSurgePercent": 100,
        }
    cluster: dict[str, Any] = {"authOptions": {"mode": cfg["rayAuthMode"]}}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {
            "name": plan.name,
            "namespace": cfg["namespace"],
            "labels": _labels(plan),
            "annotations": {"nux.dev/workbook": plan.spec.name,
                            "nux.dev/spec-hash": plan.spec.hash,
                            "nux.dev/acceptance": acceptance_word(plan)},
        },
        "spec": {
            "upgradeStrategy": upgrade,
            "serveConfigV2": serve_yaml(plan, spec_path=SPEC_MOUNT, standalone=False,
                                        qdrant_url=qdrant_url(cfg) or None,
                                        locations=override_values(plan.data.locations, cfg),
                                        base_dir=DATA_MOUNT),
            "rayClusterConfig": {
                **cluster,
                "rayVersion": plan.ray_version,
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"idleTimeoutSeconds": cfg["idleTimeoutSeconds"],
                                      "upscalingMode": "Default"},
                "headGroupSpec": {
                    "rayStartParams": {"num-cpus": "0",
                                   "dashboard-host": str(cfg["dashboardHost"])},
                    "template": _pod(_container(plan, cfg, "ray-head", cfg["headCpu"],
                                                cfg["headMemory"]), plan, {}, []),
                },
                "workerGroupSpecs": workers,
            },
        },
    }


def acceptance_word(plan: Plan) -> str:
    if plan.acceptance is None:
        return "forced-unevaluated" if plan.forced else "not-evaluated"
    if plan.acceptance.passed:
        return "passed"
    return "failed-forced" if plan.forced else "failed"


#: Qdrant's own health endpoints (they need no API key): ready to serve, and alive.
QDRANT_PROBES: dict[str, Any] = {
    "startupProbe": {"httpGet": {"path": "/readyz", "port": QDRANT_PORT}, "periodSeconds": 5,
                     "failureThreshold": 60},
    "readinessProbe": {"httpGet": {"path": "/readyz", "port": QDRANT_PORT}, "periodSeconds": 10,
                       "failureThreshold": 3},
    "livenessProbe": {"httpGet": {"path": "/livez", "port": QDRANT_PORT}, "periodSeconds": 20,
                      "failureThreshold": 3},
}


def _qdrant(plan: Plan, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "qdrant", "app.kubernetes.io/instance": plan.name}
    env: list[dict[str, Any]] = []
    if QDRANT_KEY_ENV in plan.secrets:
        env.append({"name": "QDRANT__SERVICE__API_KEY", "valueFrom": {"secretKeyRef": {
            "name": f"{plan.name}-secrets", "key": "QDRANT_API_KEY"}}})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "qdrant", "namespace": cfg["namespace"], "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 6333},
                                               {"name": "grpc", "port": 6334}]},
    }
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "qdrant", "namespace": cfg["namespace"], "labels": labels},
        "spec": {
            "serviceName": "qdrant",
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "qdrant",
                    "image": cfg["qdrantImage"],
                    "env": env,
                    "ports": [{"containerPort": 6333, "name": "http"},
                              {"containerPort": 6334, "name": "grpc"}],
                    "resources": {
                        "limits": {"cpu": cfg["qdrantCpu"], "memory": cfg["qdrantMemory"]},
                        "requests": {"cpu": cfg["qdrantCpu"], "memory": cfg["qdrantMemory"]}},
                    **QDRANT_PROBES,
                    "volumeMounts": [{"name": "storage", "mountPath": "/qdrant/storage"}],
                }]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "storage"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": cfg["qdrantStorage"]}}},
            }],
        },
    }
    return [service, stateful_set]


def manifests(plan: Plan, cfg: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Namespace, spec ConfigMap, optional Qdrant, and the RayService (no Secret values)."""
    cfg = cfg or settings(plan)
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": cfg["namespace"], "labels": _labels(plan)}}
    data = {"provenance.json": compact(provenance_json(plan)), "spec.json": compact_spec(plan)}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{plan.name}-spec", "namespace": cfg["namespace"],
                     "labels": _labels(plan)},
        "data": data,
    }
    size = sum(len(v.encode("utf-8")) for v in data.values())
    if size > CONFIG_MAP_LIMIT:
        raise ExportError(problems=[Problem(
            code="export-size", field="spec.json",
            message=f"the frozen spec is {size} bytes; a ConfigMap holds at most "
                    f"{CONFIG_MAP_LIMIT}", fix="split the workbook into smaller ones")])
    objects = [namespace, config_map]
    if cfg["qdrantMode"] == "statefulset":
        objects += _qdrant(plan, cfg)
    if cfg["networkPolicy"]:
        objects += network_policies(plan, cfg)
    if qdrant_url(cfg):
        objects += [ingest_job(plan, cfg, job) for job in plan.data.jobs]
    if cfg["podMonitor"]:
        objects.append(pod_monitor(plan.name, cfg["namespace"]))
    objects.append(ray_service(plan, cfg))
    return objects


def network_policies(plan: Plan, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Ray pods admit the Serve port from anywhere, every port from each other (head and
    workers), and the dashboard port from the KubeRay operator only; the Qdrant server admits
    its ports from the Ray pods and the ingest jobs only."""
    def ray() -> dict[str, Any]:  # a fresh object each time: the YAML gets no aliases
        return {"matchLabels": {RAY_POD_LABEL: plan.name}}

    operator = {"namespaceSelector": {},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}}}
    prometheus = {"namespaceSelector": {},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    policies = [{
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{plan.name}-ray", "namespace": cfg["namespace"],
                     "labels": _labels(plan)},
        "spec": {
            "podSelector": ray(),
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": SERVE_PORT}]},
                {"from": [{"podSelector": ray()}]},
                {"from": [operator], "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}]},
                {"from": [prometheus], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ],
        },
    }]
    if cfg["qdrantMode"] == "statefulset":
        jobs = {"matchExpressions": [{"key": "nux.dev/job", "operator": "Exists"}],
                "matchLabels": {"app.kubernetes.io/instance": plan.name}}
        policies.append({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"{plan.name}-qdrant", "namespace": cfg["namespace"],
                         "labels": _labels(plan)},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "qdrant",
                                                "app.kubernetes.io/instance": plan.name}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": ray()}, {"podSelector": jobs}],
                             "ports": [{"protocol": "TCP", "port": QDRANT_PORT},
                                       {"protocol": "TCP", "port": QDRANT_PORT + 1}]}],
            },
        })
    return policies
