"""The Kubernetes objects of a workbook, as plain documents.

Each function builds one object (or a few) from the :class:`ExportedWorkbook` and the cluster
settings; :class:`~nux_kuberay.service.WorkbookService` creates them as Pulumi resources and
``nux export`` writes :func:`objects` to ``kubernetes.yaml`` for review, so the two are the same
objects. No secret value is in any of them: they name the Secret ``<name>-secrets`` and its keys.
"""

from __future__ import annotations

import json
from typing import Any

from nux_kuberay.args import POD_IP_ENV, WorkbookServiceArgs
from nux_kuberay.serve import QDRANT_KEY_ENV, SPEC_MOUNT, serve_config_v2
from nux_kuberay.workbook import ExportedWorkbook, IngestJob

__all__ = [
    "KUBERAY_CHART_VERSION",
    "QDRANT_PROBES",
    "compact",
    "config_map",
    "ingest_job",
    "labels",
    "namespace",
    "network_policies",
    "objects",
    "pod_monitor",
    "qdrant",
    "ray_service",
]

#: The KubeRay operator's Helm chart (and CRD) version the objects are written for.
KUBERAY_CHART_VERSION = "1.7.0"
SERVE_PORT = 8000
DASHBOARD_PORT = 8265
#: Ray's metrics export port in every Ray container (the PodMonitor scrapes it).
METRICS_PORT = 8080
QDRANT_PORT = 6333
#: The label every Ray pod of the workbook carries: what the NetworkPolicy selects.
RAY_POD_LABEL = "nux.dev/ray"
#: Qdrant's own health endpoints (they need no API key): ready to serve, and alive.
QDRANT_PROBES: dict[str, Any] = {
    "startupProbe": {"httpGet": {"path": "/readyz", "port": QDRANT_PORT}, "periodSeconds": 5,
                     "failureThreshold": 60},
    "readinessProbe": {"httpGet": {"path": "/readyz", "port": QDRANT_PORT}, "periodSeconds": 10,
                       "failureThreshold": 3},
    "livenessProbe": {"httpGet": {"path": "/livez", "port": QDRANT_PORT}, "periodSeconds": 20,
                      "failureThreshold": 3},
}


def compact(document: Any) -> str:
    """JSON without whitespace, as the ConfigMap holds it (1 MiB at most)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def labels(workbook: ExportedWorkbook) -> dict[str, str]:
    return {"app.kubernetes.io/name": "nux", "app.kubernetes.io/instance": workbook.name,
            "app.kubernetes.io/managed-by": "nux-export"}


def _secret_key(workbook: ExportedWorkbook, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": f"{workbook.name}-secrets", "key": key}}


def namespace(workbook: ExportedWorkbook, args: WorkbookServiceArgs) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": args.namespace, "labels": labels(workbook)}}


def config_map(workbook: ExportedWorkbook, args: WorkbookServiceArgs) -> dict[str, Any]:
    """The frozen spec and its provenance, mounted in every Ray pod at /etc/nux."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{workbook.name}-spec", "namespace": args.namespace,
                     "labels": labels(workbook)},
        "data": {"provenance.json": compact(workbook.provenance),
                 "spec.json": compact(workbook.spec)},
    }


def _container(workbook: ExportedWorkbook, args: WorkbookServiceArgs, name: str, cpu: str,
               memory: str, gpus: int = 0) -> dict[str, Any]:
    """A Ray container: the runtime image, the spec mounted, the secrets as environment."""
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
        requests["nvidia.com/gpu"] = str(gpus)
    env: list[dict[str, Any]] = [{"name": "NUX_SPEC_PATH", "value": SPEC_MOUNT}]
    if args.qdrant_server:
        env.append({"name": "QDRANT_URL", "value": args.qdrant_server})
    container: dict[str, Any] = {
        "name": name,
        "image": args.image,
        "env": env,
        "resources": {"limits": limits, "requests": requests},
        "volumeMounts": [{"name": "nux-spec", "mountPath": "/etc/nux", "readOnly": True}],
    }
    if workbook.all_secrets:
        container["envFrom"] = [{"secretRef": {"name": f"{workbook.name}-secrets"}}]
    if name == "ray-head":
        # The head's pod IP: the kubelet puts it into the `ray start` command KubeRay
        # generates (`dashboard-host: $(NUX_POD_IP)`), so the dashboard skips other interfaces.
        env.append({"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": SERVE_PORT, "name": "serve"},
        ]
    return container


def _pod(workbook: ExportedWorkbook, container: dict[str, Any], node_selector: dict[str, str],
         tolerations: list[dict[str, str]]) -> dict[str, Any]:
    """A pod template around one container, with the spec ConfigMap as a volume."""
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "nux-spec", "configMap": {"name": f"{workbook.name}-spec"}}],
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    return {"metadata": {"labels": {RAY_POD_LABEL: workbook.name}}, "spec": spec}


def _worker_groups(workbook: ExportedWorkbook, args: WorkbookServiceArgs
                   ) -> list[dict[str, Any]]:
    """The Ray worker groups; the autoscaler adds and removes pods within min..max."""
    groups = [{
        "groupName": "cpu",
        "replicas": args.worker_min_replicas,
        "minReplicas": args.worker_min_replicas,
        "maxReplicas": args.worker_max_replicas,
        "rayStartParams": {},
        "template": _pod(workbook, _container(workbook, args, "ray-worker", args.worker_cpu,
                                              args.worker_memory),
                         args.node_selector, args.tolerations),
    }]
    if workbook.gpu:  # stages that need a GPU run here: nvidia.com/gpu limits, GPU nodes only
        groups.append({
            "groupName": "gpu",
            "replicas": args.gpu_worker_min_replicas,
            "minReplicas": args.gpu_worker_min_replicas,
            "maxReplicas": args.gpu_worker_max_replicas,
            "rayStartParams": {},
            "template": _pod(workbook, _container(
                workbook, args, "ray-worker", args.gpu_worker_cpu, args.gpu_worker_memory,
                args.gpu_worker_gpus), args.gpu_node_selector, args.gpu_tolerations),
        })
    return groups


def _upgrade_strategy(args: WorkbookServiceArgs) -> dict[str, Any]:
    """NewCluster by default; an incremental upgrade moves traffic in steps (a canary)."""
    strategy: dict[str, Any] = {"type": args.upgrade_strategy}
    if args.upgrade_strategy == "NewClusterWithIncrementalUpgrade":
        strategy["clusterUpgradeOptions"] = {
            "gatewayClassName": args.canary_gateway_class,
            "stepSizePercent": args.canary_step_percent,
            "intervalSeconds": args.canary_interval_seconds,
            "maxSurgePercent": 100,
        }
    return strategy


def ray_service(workbook: ExportedWorkbook, args: WorkbookServiceArgs) -> dict[str, Any]:
    """The KubeRay RayService (ray.io/v1): a head that runs no stage, worker groups, the app."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {
            "name": workbook.name,
            "namespace": args.namespace,
            "labels": labels(workbook),
            "annotations": {"nux.dev/workbook": workbook.workbook,
                            "nux.dev/spec-hash": workbook.spec_hash,
                            "nux.dev/acceptance": workbook.acceptance},
        },
        "spec": {
            "upgradeStrategy": _upgrade_strategy(args),
            "serveConfigV2": serve_config_v2(workbook, args),
            "rayClusterConfig": {
                # KubeRay token authentication: the dashboard, job API and GCS ask for the
                # token KubeRay generates and keeps in a Secret ("disabled" turns it off).
                "authOptions": {"mode": args.ray_auth_mode},
                "rayVersion": workbook.ray_version,
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {"idleTimeoutSeconds": args.idle_timeout_seconds,
                                      "upscalingMode": "Default"},
                "headGroupSpec": {
                    "rayStartParams": {"num-cpus": "0", "dashboard-host": args.dashboard_host},
                    "template": _pod(workbook, _container(workbook, args, "ray-head",
                                                          args.head_cpu, args.head_memory),
                                     {}, []),
                },
                "workerGroupSpecs": _worker_groups(workbook, args),
            },
        },
    }


def qdrant(workbook: ExportedWorkbook, args: WorkbookServiceArgs) -> list[dict[str, Any]]:
    """A one-node Qdrant server with a persistent volume (qdrantMode statefulset)."""
    selector = {"app.kubernetes.io/name": "qdrant", "app.kubernetes.io/instance": workbook.name}
    env: list[dict[str, Any]] = []
    if QDRANT_KEY_ENV in workbook.all_secrets:
        env.append({"name": "QDRANT__SERVICE__API_KEY",
                    "valueFrom": _secret_key(workbook, QDRANT_KEY_ENV)})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "qdrant", "namespace": args.namespace, "labels": selector},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": QDRANT_PORT},
                                                 {"name": "grpc", "port": QDRANT_PORT + 1}]},
    }
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "qdrant", "namespace": args.namespace, "labels": selector},
        "spec": {
            "serviceName": "qdrant",
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [{
                    "name": "qdrant",
                    "image": args.qdrant_image,
                    "env": env,
                    "ports": [{"containerPort": QDRANT_PORT, "name": "http"},
                              {"containerPort": QDRANT_PORT + 1, "name": "grpc"}],
                    "resources": {
                        "limits": {"cpu": args.qdrant_cpu, "memory": args.qdrant_memory},
                        "requests": {"cpu": args.qdrant_cpu, "memory": args.qdrant_memory}},
                    **QDRANT_PROBES,
                    "volumeMounts": [{"name": "storage", "mountPath": "/qdrant/storage"}],
                }]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "storage"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": args.qdrant_storage}}},
            }],
        },
    }
    return [service, stateful_set]


def network_policies(workbook: ExportedWorkbook, args: WorkbookServiceArgs
                     ) -> list[dict[str, Any]]:
    """The Ray pods admit the Serve port from anywhere, every port from each other (head and
    workers), the dashboard port from the KubeRay operator only and the metrics port from
    Prometheus only; the Qdrant server admits its ports from the Ray pods and the ingest jobs
    only."""
    def ray() -> dict[str, Any]:  # a fresh object each time: the YAML gets no aliases
        return {"matchLabels": {RAY_POD_LABEL: workbook.name}}

    operator = {"namespaceSelector": {},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}}}
    prometheus = {"namespaceSelector": {},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}
    policies = [{
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{workbook.name}-ray", "namespace": args.namespace,
                     "labels": labels(workbook)},
        "spec": {
            "podSelector": ray(),
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": SERVE_PORT}]},
                {"from": [{"podSelector": ray()}]},
                {"from": [operator], "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}]},
                # Prometheus scrapes Ray's metrics port (observability/podmonitor.yaml)
                {"from": [prometheus], "ports": [{"protocol": "TCP", "port": METRICS_PORT}]},
            ],
        },
    }]
    if args.qdrant_mode == "statefulset":
        jobs = {"matchExpressions": [{"key": "nux.dev/job", "operator": "Exists"}],
                "matchLabels": {"app.kubernetes.io/instance": workbook.name}}
        policies.append({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": f"{workbook.name}-qdrant", "namespace": args.namespace,
                         "labels": labels(workbook)},
            "spec": {
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "qdrant",
                                                "app.kubernetes.io/instance": workbook.name}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": ray()}, {"podSelector": jobs}],
                             "ports": [{"protocol": "TCP", "port": QDRANT_PORT},
                                       {"protocol": "TCP", "port": QDRANT_PORT + 1}]}],
            },
        })
    return policies


def ingest_job(workbook: ExportedWorkbook, args: WorkbookServiceArgs, job: IngestJob
               ) -> dict[str, Any]:
    """The Job that fills one collection in the production Qdrant, in the runtime image:
    ``python -m nux_runtime.jobs run <file>`` pointed at the server and the collection the stack
    names."""
    command = ["run", job.file]
    collection = {**workbook.settings, **args.locations}[job.collection]
    for stage in job.stages:
        command += ["--set", f"{stage}.url={args.qdrant_server}",
                    "--set", f"{stage}.api_key_env={QDRANT_KEY_ENV}",
                    "--set", f"{stage}.collection={collection}"]
    job_labels = {**labels(workbook), "nux.dev/job": job.job}
    container: dict[str, Any] = {
        "name": "ingest",
        "image": args.image,
        "command": ["python", "-m", "nux_runtime.jobs"],
        "args": command,
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
        "resources": {"limits": {"cpu": args.job_cpu, "memory": args.job_memory},
                      "requests": {"cpu": args.job_cpu, "memory": args.job_memory}},
    }
    if QDRANT_KEY_ENV in workbook.all_secrets:  # the Qdrant key and no other secret
        container["env"].append({"name": QDRANT_KEY_ENV,
                                 "valueFrom": _secret_key(workbook, QDRANT_KEY_ENV)})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job.name, "namespace": args.namespace, "labels": job_labels},
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {"labels": job_labels,
                             "annotations": {"nux.dev/job-spec-hash": job.spec_hash}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


def pod_monitor(workbook: ExportedWorkbook, args: WorkbookServiceArgs) -> dict[str, Any] | None:
    """observability/podmonitor.yaml's PodMonitor in the stack's namespace (None: not exported)."""
    if workbook.pod_monitor is None:
        return None
    monitor = json.loads(json.dumps(workbook.pod_monitor))
    monitor["metadata"]["namespace"] = args.namespace
    monitor["spec"]["namespaceSelector"] = {"matchNames": [args.namespace]}
    result: dict[str, Any] = monitor
    return result


def objects(workbook: ExportedWorkbook, args: WorkbookServiceArgs) -> list[dict[str, Any]]:
    """Every object in the order they are created (no Secret, no operator release)."""
    found = [namespace(workbook, args), config_map(workbook, args)]
    if args.qdrant_mode == "statefulset":
        found += qdrant(workbook, args)
    if args.network_policy:
        found += network_policies(workbook, args)
    if args.qdrant_server:
        found += [ingest_job(workbook, args, job) for job in workbook.jobs]
    monitor = pod_monitor(workbook, args)
    if args.pod_monitor and monitor is not None:
        found.append(monitor)
    found.append(ray_service(workbook, args))
    return found
