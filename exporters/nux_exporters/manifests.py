"""The Kubernetes objects of a workbook: Namespace, spec ConfigMap, RayService, optional Qdrant.

:func:`settings` lists every cluster setting with its default (they become the Pulumi config
keys and ``Pulumi.<stack>.yaml``); :func:`manifests` builds the objects from a plan and a set of
settings. The generated Pulumi program builds the same objects from the same settings, and a
test holds the two together. Secrets are never rendered here: the objects reference a Secret
named ``<name>-secrets`` by name, and its values come from Pulumi secret config or the platform's
own secret store.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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
    "manifests",
    "provenance",
    "provenance_json",
    "qdrant_url",
    "ray_service",
    "settings",
]

KUBERAY_CHART_VERSION = "1.7.0"
QDRANT_IMAGE = "qdrant/qdrant:v1.13.0"
SERVE_PORT = 8000
CONFIG_MAP_LIMIT = 1024 * 1024
DASHBOARD_PORT = 8265


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
        "upgradeStrategy": opts.upgrade_strategy,
        "canaryGatewayClass": "istio",
        "canaryStepPercent": opts.canary_step_percent,
        "canaryIntervalSeconds": opts.canary_interval_seconds,
    })
    return values


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
    return {"spec": spec}


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
                                        qdrant_url=qdrant_url(cfg) or None),
            "rayClusterConfig": {
                "rayVersion": plan.ray_version,
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"idleTimeoutSeconds": cfg["idleTimeoutSeconds"],
                                      "upscalingMode": "Default"},
                "headGroupSpec": {
                    "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
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
    objects.append(ray_service(plan, cfg))
    return objects
