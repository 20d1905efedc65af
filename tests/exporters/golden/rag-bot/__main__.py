"""Pulumi program for the NUX workbook "rag-bot": each stage is a Ray Serve deployment.

Exported by `nux export` from spec <spec-hash-12> (full hash and provenance in
provenance.json). The workbook is the source of truth for the stages: change a cell and
export again. Cluster settings are Pulumi config (see README.md and the stack file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pulumi
import pulumi_kubernetes as k8s
import yaml

T = TypeVar("T")
HERE = Path(__file__).parent

WORKBOOK = "rag-bot"
NAME = "rag-bot"  # the RayService: 47 characters at most
SPEC_HASH = "<spec-hash>"
RAY_VERSION = "2.60.0"  # must equal the Ray version of the image (see Dockerfile)
ACCEPTANCE = "not-evaluated"  # the acceptance verdict this export was made under
SPEC_MOUNT = "/etc/nux/spec.json"  # where the pods see the frozen spec (ConfigMap)
APP_BUILDER = "nux_runtime.serve.app:build_app"
KUBERAY_CHART_VERSION = "1.7.0"
# Every Ray pod carries this label: what the NetworkPolicy selects.
RAY_POD = {"nux.dev/ray": NAME}
LABELS = {
    "app.kubernetes.io/name": "nux",
    "app.kubernetes.io/instance": NAME,
    "app.kubernetes.io/managed-by": "nux-export",
}

SPEC = json.loads((HERE / "spec.json").read_text(encoding="utf-8"))
PROVENANCE = json.loads((HERE / "provenance.json").read_text(encoding="utf-8"))


def compact(document: Any) -> str:
    """JSON without whitespace: a ConfigMap holds at most 1 MiB."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Environment variable in the Ray pods -> Pulumi secret config key. Set each with
# `pulumi config set --secret <key> <value>`; no value is ever written in this project.
SECRETS: dict[str, str] = {
    "QDRANT_API_KEY": "qdrantApiKey",
}
# Secrets the service runs without (no API key: the app is open on purpose; no Redis URL: each
# replica keeps its state in memory).
OPTIONAL_SECRETS: dict[str, str] = {
    "NUX_API_KEY_HASHES": "nuxApiKeyHashes",
    "NUX_REDIS_URL": "nuxRedisUrl",
}

# Where the image holds the files the stages read (data/ of this folder; None: no data).
DATA_MOUNT: str | None = "/opt/nux/data"

# Stage -> param -> the setting (WorkbookServiceArgs field) that gives its production value.
# The spec keeps the notebook's values; a stack changes these without a new export.
STAGE_SETTINGS: dict[str, dict[str, str]] = {
    "retrieve": {
        "collection": "collection_handbook",
    },
}

# Ingest jobs: each fills a Qdrant collection from the documents the image carries, with
# `python -m nux_runtime.jobs`, before the RayService is created.
JOBS: list[dict[str, Any]] = [
    {
        "job": "ingest-handbook",
        "name": "rag-bot-ingest-handbook",
        "file": "/opt/nux/jobs/ingest-handbook.json",
        "stages": [
            "ingest",
        ],
        "collection": "collection_handbook",
        "spec_hash": "9b1ce122f0c57836afa758f4869b7075885855a4359f4e6bfe0a3699e171395e",
    },
]

# Qdrant's own health endpoints (they need no API key).
QDRANT_PROBES: dict[str, Any] = {
    "startupProbe": {
        "httpGet": {
            "path": "/readyz",
            "port": 6333,
        },
        "periodSeconds": 5,
        "failureThreshold": 60,
    },
    "readinessProbe": {
        "httpGet": {
            "path": "/readyz",
            "port": 6333,
        },
        "periodSeconds": 10,
        "failureThreshold": 3,
    },
    "livenessProbe": {
        "httpGet": {
            "path": "/livez",
            "port": 6333,
        },
        "periodSeconds": 20,
        "failureThreshold": 3,
    },
}

# Stages that read a Qdrant collection: pointed at the Qdrant server when there is one.
QDRANT_STAGES: list[str] = [
    "retrieve",
]


def params(stage: str) -> dict[str, Any]:
    """The params the workbook pinned for one stage: its Ray Serve `user_config`."""
    return next(s["params"] for s in SPEC["stages"] if s["id"] == stage)


# One Ray Serve deployment per workbook stage, named by the stage id, plus the ingress.
DEPLOYMENTS: list[dict[str, Any]] = [
    # The ingress: takes the request and walks the DAG over the stage handles.
    {
        "name": "Ingress",
        "max_ongoing_requests": 100,
        "autoscaling_config": {
            "min_replicas": 1,
            "initial_replicas": 1,
            "max_replicas": 4,
            "target_ongoing_requests": 32,
        },
        "ray_actor_options": {
            "num_cpus": 0.25,
        },
        "health_check_period_s": 10,  # conservative health checks
        "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 20,
    },
    # Stage "retrieve" (data, qdrant.search), from cell "retrieve", line 1.
    {
        "name": "retrieve",
        "max_ongoing_requests": 16,  # cell "retrieve", line 1: scale.max_ongoing_requests
        "autoscaling_config": {
            "min_replicas": 1,  # cell "retrieve", line 1: scale.min_replicas
            "initial_replicas": 1,  # starts at min_replicas
            "max_replicas": 4,  # cell "retrieve", line 1: scale.max_replicas
            "target_ongoing_requests": 4,  # cell "retrieve", line 1: scale.target_ongoing_requests
        },
        "ray_actor_options": {
            "num_cpus": 1,  # cell "retrieve", line 1: resources.num_cpus
            "memory": 1073741824,  # cell "retrieve", line 1: resources.memory_mb, in bytes
        },
        "user_config": params("retrieve"),  # cell "retrieve", line 1: params
        "health_check_period_s": 10,  # conservative health checks: a model may load slowly
        "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 20,
    },
    # Stage "context" (code), from cell "context", line 1.
    {
        "name": "context",
        "max_ongoing_requests": 8,  # cell "context", line 1: scale.max_ongoing_requests
        "autoscaling_config": {
            "min_replicas": 1,  # cell "context", line 1: scale.min_replicas
            "initial_replicas": 1,  # starts at min_replicas
            "max_replicas": 4,  # cell "context", line 1: scale.max_replicas
            "target_ongoing_requests": 2,  # cell "context", line 1: scale.target_ongoing_requests
        },
        "ray_actor_options": {
            "num_cpus": 0.5,  # cell "context", line 1: resources.num_cpus
        },
        "user_config": params("context"),  # cell "context", line 1: params
        "health_check_period_s": 10,  # conservative health checks: a model may load slowly
        "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 20,
    },
    # Stage "answer" (code, text.template), from cell "answer", line 1.
    {
        "name": "answer",
        "max_ongoing_requests": 8,  # cell "answer", line 1: scale.max_ongoing_requests
        "autoscaling_config": {
            "min_replicas": 1,  # cell "answer", line 1: scale.min_replicas
            "initial_replicas": 1,  # starts at min_replicas
            "max_replicas": 4,  # cell "answer", line 1: scale.max_replicas
            "target_ongoing_requests": 2,  # cell "answer", line 1: scale.target_ongoing_requests
        },
        "ray_actor_options": {
            "num_cpus": 0.25,  # cell "answer", line 1: resources.num_cpus
        },
        "user_config": params("answer"),  # cell "answer", line 1: params
        "health_check_period_s": 10,  # conservative health checks: a model may load slowly
        "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 20,
    },
]


def _setting(value: T | None, default: T) -> T:
    return default if value is None else value


def read_secrets(config: pulumi.Config) -> dict[str, pulumi.Output[str]]:
    """Every required secret, and each optional one that is set."""
    found = {env: config.require_secret(key) for env, key in SECRETS.items()}
    for env, key in OPTIONAL_SECRETS.items():
        value = config.get_secret(key)
        if value is not None:
            found[env] = value
    return found


def put(params: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`params` with `path` (`base_url`, `options.base_url`) set to `value`."""
    head, _, rest = path.partition(".")
    if rest:
        inner = params.get(head)
        value = put(inner if isinstance(inner, dict) else {}, rest, value)
    return {**params, head: value}


@dataclass
class WorkbookServiceArgs:
    """Cluster settings of the workbook's service; each is a Pulumi config key (camelCase)."""

    namespace: str = "rag-bot"
    image: str = "nux-rag-bot:d4e328d4553d"
    head_cpu: str = "1"
    head_memory: str = "4Gi"
    worker_cpu: str = "4"
    worker_memory: str = "8Gi"
    worker_min_replicas: int = 1
    worker_max_replicas: int = 2
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    idle_timeout_seconds: int = 60
    install_operator: bool = False
    qdrant_mode: str = "statefulset"
    qdrant_url: str = ""
    qdrant_image: str = "qdrant/qdrant:v1.20.0"
    qdrant_storage: str = "10Gi"
    qdrant_cpu: str = "1"
    qdrant_memory: str = "2Gi"
    upgrade_strategy: str = "NewCluster"
    canary_gateway_class: str = "istio"
    canary_step_percent: int = 10
    canary_interval_seconds: int = 60
    network_policy: bool = True
    pod_monitor: bool = False
    ray_auth_mode: str = "token"
    dashboard_host: str = "$(NUX_POD_IP)"
    job_cpu: str = "2"
    job_memory: str = "4Gi"
    collection_handbook: str = "handbook"
    secrets: dict[str, pulumi.Output[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: pulumi.Config) -> WorkbookServiceArgs:
        """Read every setting once; a key left unset keeps the default above."""
        defaults = cls()
        return cls(
            namespace=_setting(config.get("namespace"), defaults.namespace),
            image=_setting(config.get("image"), defaults.image),
            head_cpu=_setting(config.get("headCpu"), defaults.head_cpu),
            head_memory=_setting(config.get("headMemory"), defaults.head_memory),
            worker_cpu=_setting(config.get("workerCpu"), defaults.worker_cpu),
            worker_memory=_setting(config.get("workerMemory"), defaults.worker_memory),
            worker_min_replicas=_setting(
                config.get_int("workerMinReplicas"), defaults.worker_min_replicas
            ),
            worker_max_replicas=_setting(
                config.get_int("workerMaxReplicas"), defaults.worker_max_replicas
            ),
            node_selector=_setting(config.get_object("nodeSelector"), defaults.node_selector),
            tolerations=_setting(config.get_object("tolerations"), defaults.tolerations),
            idle_timeout_seconds=_setting(
                config.get_int("idleTimeoutSeconds"), defaults.idle_timeout_seconds
            ),
            install_operator=_setting(
                config.get_bool("installOperator"), defaults.install_operator
            ),
            qdrant_mode=_setting(config.get("qdrantMode"), defaults.qdrant_mode),
            qdrant_url=_setting(config.get("qdrantUrl"), defaults.qdrant_url),
            qdrant_image=_setting(config.get("qdrantImage"), defaults.qdrant_image),
            qdrant_storage=_setting(config.get("qdrantStorage"), defaults.qdrant_storage),
            qdrant_cpu=_setting(config.get("qdrantCpu"), defaults.qdrant_cpu),
            qdrant_memory=_setting(config.get("qdrantMemory"), defaults.qdrant_memory),
            upgrade_strategy=_setting(config.get("upgradeStrategy"), defaults.upgrade_strategy),
            canary_gateway_class=_setting(
                config.get("canaryGatewayClass"), defaults.canary_gateway_class
            ),
            canary_step_percent=_setting(
                config.get_int("canaryStepPercent"), defaults.canary_step_percent
            ),
            canary_interval_seconds=_setting(
                config.get_int("canaryIntervalSeconds"), defaults.canary_interval_seconds
            ),
            network_policy=_setting(config.get_bool("networkPolicy"), defaults.network_policy),
            pod_monitor=_setting(config.get_bool("podMonitor"), defaults.pod_monitor),
            ray_auth_mode=_setting(config.get("rayAuthMode"), defaults.ray_auth_mode),
            dashboard_host=_setting(config.get("dashboardHost"), defaults.dashboard_host),
            job_cpu=_setting(config.get("jobCpu"), defaults.job_cpu),
            job_memory=_setting(config.get("jobMemory"), defaults.job_memory),
            collection_handbook=_setting(
                config.get("collectionHandbook"), defaults.collection_handbook
            ),
            secrets=read_secrets(config),
        )


def qdrant_url(args: WorkbookServiceArgs) -> str:
    """The Qdrant server the stages use ("" when there is none)."""
    if args.qdrant_mode == "statefulset":
        return f"http://qdrant.{args.namespace}.svc.cluster.local:6333"
    return args.qdrant_url if args.qdrant_mode == "external" else ""


def serve_config(args: WorkbookServiceArgs) -> str:
    """`serveConfigV2`: the workbook as one Ray Serve application."""
    deployments = [dict(d) for d in DEPLOYMENTS]
    url = qdrant_url(args)
    for deployment in deployments:
        if url and deployment["name"] in QDRANT_STAGES:
            server = {"url": url, "api_key_env": "QDRANT_API_KEY"}
            deployment["user_config"] = {**deployment["user_config"], **server}
        for path, setting in STAGE_SETTINGS.get(deployment["name"], {}).items():
            value = getattr(args, setting)
            deployment["user_config"] = put(deployment["user_config"], path, value)
    app_args: dict[str, Any] = {"spec_path": SPEC_MOUNT}
    if DATA_MOUNT:
        app_args["base_dir"] = DATA_MOUNT
    application = {
        "name": NAME,
        "route_prefix": "/",
        "import_path": APP_BUILDER,
        "args": app_args,
        "deployments": deployments,
    }
    return yaml.safe_dump({"applications": [application]}, sort_keys=False)


def container(
    args: WorkbookServiceArgs, name: str, cpu: str, memory: str, gpus: int = 0
) -> dict[str, Any]:
    """A Ray container: the runtime image, the spec mounted, secrets as environment."""
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    env = [{"name": "NUX_SPEC_PATH", "value": SPEC_MOUNT}]
    if qdrant_url(args):
        env.append({"name": "QDRANT_URL", "value": qdrant_url(args)})
    spec: dict[str, Any] = {
        "name": name,
        "image": args.image,
        "env": env,
        "resources": {"limits": limits, "requests": dict(limits)},
        "volumeMounts": [{"name": "nux-spec", "mountPath": "/etc/nux", "readOnly": True}],
    }
    if SECRETS or OPTIONAL_SECRETS:
        spec["envFrom"] = [{"secretRef": {"name": f"{NAME}-secrets"}}]
    if name == "ray-head":
        # The head's pod IP: the kubelet puts it into the `ray start` command KubeRay
        # generates (`dashboard-host: $(NUX_POD_IP)`), so the dashboard skips other interfaces.
        pod_ip = {"fieldRef": {"fieldPath": "status.podIP"}}
        env.append({"name": "NUX_POD_IP", "valueFrom": pod_ip})
        spec["ports"] = [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": 8000, "name": "serve"},
        ]
    return spec


def pod(
    spec: dict[str, Any],
    node_selector: dict[str, str],
    tolerations: list[dict[str, str]],
) -> dict[str, Any]:
    """A pod template around one container, with the spec ConfigMap as a volume."""
    body: dict[str, Any] = {
        "containers": [spec],
        "volumes": [{"name": "nux-spec", "configMap": {"name": f"{NAME}-spec"}}],
    }
    if node_selector:
        body["nodeSelector"] = dict(node_selector)
    if tolerations:
        body["tolerations"] = [dict(t) for t in tolerations]
    return {"metadata": {"labels": dict(RAY_POD)}, "spec": body}


def worker_groups(args: WorkbookServiceArgs) -> list[dict[str, Any]]:
    """The Ray worker groups; the autoscaler adds and removes pods within min..max."""
    groups: list[dict[str, Any]] = [
        {
            "groupName": "cpu",
            "replicas": args.worker_min_replicas,
            "minReplicas": args.worker_min_replicas,
            "maxReplicas": args.worker_max_replicas,
            "rayStartParams": {},
            "template": pod(
                container(args, "ray-worker", args.worker_cpu, args.worker_memory),
                args.node_selector,
                args.tolerations,
            ),
        }
    ]
    return groups


def upgrade_strategy(args: WorkbookServiceArgs) -> dict[str, Any]:
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


def ray_service_spec(args: WorkbookServiceArgs) -> dict[str, Any]:
    """The RayService spec: a head that runs no stage, worker groups, the Serve app."""
    return {
        "upgradeStrategy": upgrade_strategy(args),
        "serveConfigV2": serve_config(args),
        "rayClusterConfig": {
            # KubeRay token authentication: the dashboard, job API and GCS ask for the token
            # KubeRay generates and keeps in a Secret ("disabled" turns it off).
            "authOptions": {"mode": args.ray_auth_mode},
            "rayVersion": RAY_VERSION,
            "enableInTreeAutoscaling": True,
            "autoscalerOptions": {
                "idleTimeoutSeconds": args.idle_timeout_seconds,
                "upscalingMode": "Default",
            },
            "headGroupSpec": {
                "rayStartParams": {"num-cpus": "0", "dashboard-host": args.dashboard_host},
                "template": pod(
                    container(args, "ray-head", args.head_cpu, args.head_memory), {}, []
                ),
            },
            "workerGroupSpecs": worker_groups(args),
        },
    }


class WorkbookService(pulumi.ComponentResource):
    """A NUX workbook on KubeRay: namespace, secrets, frozen spec, Ray cluster, Serve app.

    Outputs: ``serve_url`` (the Serve HTTP endpoint) and ``dashboard_url`` (the Ray dashboard).
    """

    def __init__(
        self,
        name: str,
        args: WorkbookServiceArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("nux:workbook:WorkbookService", name, None, opts)
        ns = args.namespace

        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels=LABELS),
            opts=pulumi.ResourceOptions(parent=self),
        )
        after: list[pulumi.Resource] = [self.namespace]

        if args.install_operator:
            self.operator = k8s.helm.v3.Release(
                f"{name}-kuberay-operator",
                chart="kuberay-operator",
                version=KUBERAY_CHART_VERSION,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(
                    repo="https://ray-project.github.io/kuberay-helm/"
                ),
                namespace=ns,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
            )
            after.append(self.operator)

        if SECRETS or OPTIONAL_SECRETS:
            self.secret = k8s.core.v1.Secret(
                f"{name}-secrets",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"{NAME}-secrets", namespace=ns, labels=LABELS
                ),
                string_data=args.secrets,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
            )
            after.append(self.secret)

        self.spec = k8s.core.v1.ConfigMap(
            f"{name}-spec",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{NAME}-spec", namespace=ns, labels=LABELS),
            data={"provenance.json": compact(PROVENANCE), "spec.json": compact(SPEC)},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
        )
        after.append(self.spec)

        if args.qdrant_mode == "statefulset":
            after += self._qdrant(name, args)
        if args.network_policy:
            after += self._network_policies(name, args)
        if qdrant_url(args):
            after += [self._ingest(name, args, job, after) for job in JOBS]

        if args.pod_monitor:  # needs the Prometheus operator's PodMonitor CRD
            text = (HERE / "observability" / "podmonitor.yaml").read_text(encoding="utf-8")
            monitor = yaml.safe_load(text)
            monitor["metadata"]["namespace"] = ns
            monitor["spec"]["namespaceSelector"] = {"matchNames": [ns]}
            self.pod_monitor = k8s.apiextensions.CustomResource(
                f"{name}-podmonitor",
                api_version=monitor["apiVersion"],
                kind=monitor["kind"],
                metadata=monitor["metadata"],
                spec=monitor["spec"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.namespace]),
            )

        self.ray_service = k8s.apiextensions.CustomResource(
            f"{name}-rayservice",
            api_version="ray.io/v1",
            kind="RayService",
            metadata={
                "name": NAME,
                "namespace": ns,
                "labels": LABELS,
                "annotations": {
                    "nux.dev/workbook": WORKBOOK,
                    "nux.dev/spec-hash": SPEC_HASH,
                    "nux.dev/acceptance": ACCEPTANCE,
                },
            },
            spec=ray_service_spec(args),
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )

        host = f"{NAME}-serve-svc.{ns}.svc.cluster.local"
        head = f"{NAME}-head-svc.{ns}.svc.cluster.local"
        self.serve_url = self.ray_service.id.apply(lambda _: f"http://{host}:8000/")
        self.dashboard_url = self.ray_service.id.apply(lambda _: f"http://{head}:8265/")
        self.register_outputs({"serve_url": self.serve_url, "dashboard_url": self.dashboard_url})

    def _network_policies(self, name: str, args: WorkbookServiceArgs) -> list[pulumi.Resource]:
        """The Ray pods admit the Serve port from anywhere, every port from each other (head
        and workers) and the dashboard port from the KubeRay operator only; the Qdrant server
        admits its ports from the Ray pods and the ingest jobs only."""
        ray = {"matchLabels": dict(RAY_POD)}
        operator = {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}},
        }
        prometheus = {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
        opts = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])
        policies: list[pulumi.Resource] = [
            k8s.networking.v1.NetworkPolicy(
                f"{name}-ray-policy",
                metadata={"name": f"{NAME}-ray", "namespace": args.namespace, "labels": LABELS},
                spec={
                    "podSelector": ray,
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {"ports": [{"protocol": "TCP", "port": 8000}]},
                        {"from": [{"podSelector": ray}]},
                        {"from": [operator], "ports": [{"protocol": "TCP", "port": 8265}]},
                        # Prometheus scrapes Ray's metrics port (observability/podmonitor.yaml)
                        {"from": [prometheus], "ports": [{"protocol": "TCP", "port": 8080}]},
                    ],
                },
                opts=opts,
            )
        ]
        if args.qdrant_mode == "statefulset":
            jobs = {
                "matchExpressions": [{"key": "nux.dev/job", "operator": "Exists"}],
                "matchLabels": {"app.kubernetes.io/instance": NAME},
            }
            qdrant = {"app.kubernetes.io/name": "qdrant", "app.kubernetes.io/instance": NAME}
            policies.append(
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-qdrant-policy",
                    metadata={
                        "name": f"{NAME}-qdrant",
                        "namespace": args.namespace,
                        "labels": LABELS,
                    },
                    spec={
                        "podSelector": {"matchLabels": qdrant},
                        "policyTypes": ["Ingress"],
                        "ingress": [
                            {
                                "from": [{"podSelector": ray}, {"podSelector": jobs}],
                                "ports": [
                                    {"protocol": "TCP", "port": 6333},
                                    {"protocol": "TCP", "port": 6334},
                                ],
                            }
                        ],
                    },
                    opts=opts,
                )
            )
        return policies

    def _qdrant(self, name: str, args: WorkbookServiceArgs) -> list[pulumi.Resource]:
        """A one-node Qdrant server with a persistent volume, for the retrieval stages."""
        labels = {"app.kubernetes.io/name": "qdrant", "app.kubernetes.io/instance": NAME}
        env: list[dict[str, Any]] = []
        if "QDRANT_API_KEY" in SECRETS:
            key = {"name": f"{NAME}-secrets", "key": "QDRANT_API_KEY"}
            env.append({"name": "QDRANT__SERVICE__API_KEY", "valueFrom": {"secretKeyRef": key}})
        meta = {"name": "qdrant", "namespace": args.namespace, "labels": labels}
        limits = {"cpu": args.qdrant_cpu, "memory": args.qdrant_memory}
        opts = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])
        service = k8s.core.v1.Service(
            f"{name}-qdrant",
            metadata=meta,
            spec={
                "selector": labels,
                "ports": [{"name": "http", "port": 6333}, {"name": "grpc", "port": 6334}],
            },
            opts=opts,
        )
        stateful_set = k8s.apps.v1.StatefulSet(
            f"{name}-qdrant",
            metadata=meta,
            spec={
                "serviceName": "qdrant",
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "qdrant",
                                "image": args.qdrant_image,
                                "env": env,
                                "ports": [
                                    {"containerPort": 6333, "name": "http"},
                                    {"containerPort": 6334, "name": "grpc"},
                                ],
                                "resources": {"limits": limits, "requests": dict(limits)},
                                **QDRANT_PROBES,
                                "volumeMounts": [
                                    {"name": "storage", "mountPath": "/qdrant/storage"}
                                ],
                            }
                        ]
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "storage"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": args.qdrant_storage}},
                        },
                    }
                ],
            },
            opts=opts,
        )
        return [service, stateful_set]

    def _ingest(
        self,
        name: str,
        args: WorkbookServiceArgs,
        job: dict[str, Any],
        after: list[pulumi.Resource],
    ) -> pulumi.Resource:
        """A Job that fills one collection in the production Qdrant; Pulumi waits for it to
        complete before it creates the RayService."""
        command = ["run", job["file"]]
        collection = getattr(args, job["collection"])
        for stage in job["stages"]:
            command += ["--set", f"{stage}.url={qdrant_url(args)}"]
            command += ["--set", f"{stage}.api_key_env=QDRANT_API_KEY"]
            command += ["--set", f"{stage}.collection={collection}"]
        labels = {**LABELS, "nux.dev/job": job["job"]}
        limits = {"cpu": args.job_cpu, "memory": args.job_memory}
        container: dict[str, Any] = {
            "name": "ingest",
            "image": args.image,
            "command": ["python", "-m", "nux_runtime.jobs"],
            "args": command,
            "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
            "resources": {"limits": limits, "requests": dict(limits)},
        }
        if "QDRANT_API_KEY" in SECRETS:  # the job needs the Qdrant key and no other secret
            key = {"name": f"{NAME}-secrets", "key": "QDRANT_API_KEY"}
            container["env"].append({"name": "QDRANT_API_KEY", "valueFrom": {"secretKeyRef": key}})
        return k8s.batch.v1.Job(
            f"{name}-{job['job']}",
            metadata={"name": job["name"], "namespace": args.namespace, "labels": labels},
            spec={
                "backoffLimit": 2,
                "template": {
                    "metadata": {
                        "labels": labels,
                        "annotations": {"nux.dev/job-spec-hash": job["spec_hash"]},
                    },
                    "spec": {"restartPolicy": "Never", "containers": [container]},
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
        )


service = WorkbookService(NAME, WorkbookServiceArgs.from_config(pulumi.Config()))
pulumi.export("serve_url", service.serve_url)
pulumi.export("dashboard_url", service.dashboard_url)
