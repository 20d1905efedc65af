"""The Pulumi program (``__main__.py``) of an exported workbook.

The program is a ``pulumi.ComponentResource`` (``WorkbookService``) with an Args class read once
from Pulumi config. The workbook-specific parts are plain data at the top (the Serve
deployments, each value commented with the cell it came from; the secrets); the rest is the same
reviewed code for every workbook, with the GPU worker group present only when a stage needs a
GPU. It builds exactly the objects :mod:`nux_exporters.manifests` renders for review.
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

from nux_exporters.dataplan import DATA_MOUNT, JOBS_MOUNT
from nux_exporters.literal import Code, Path, python_literal, python_string
from nux_exporters.manifests import (
    KUBERAY_CHART_VERSION,
    QDRANT_PROBES,
    acceptance_word,
    job_collection_key,
    job_resource_name,
    settings,
)
from nux_exporters.plan import Plan, StagePlan, config_key
from nux_exporters.serve import APP_BUILDER, HEALTH, SPEC_MOUNT, deployment, ingress_deployment

__all__ = ["render_program"]


def _stage_comments(stage: StagePlan) -> dict[Path, str]:
    src = stage.source_of
    scale_min = f"{src('min_replicas')}: scale.min_replicas"
    if stage.notes:
        scale_min += f" ({'; '.join(stage.notes)})"
    comments: dict[Path, str] = {
        ("max_ongoing_requests",): f"{src('max_ongoing_requests')}: scale.max_ongoing_requests",
        ("autoscaling_config", "min_replicas"): scale_min,
        ("autoscaling_config", "initial_replicas"): "starts at min_replicas",
        ("autoscaling_config", "max_replicas"): f"{src('max_replicas')}: scale.max_replicas",
        ("autoscaling_config", "target_ongoing_requests"):
            f"{src('target_ongoing_requests')}: scale.target_ongoing_requests",
        ("ray_actor_options", "num_cpus"): f"{src('num_cpus')}: resources.num_cpus",
        ("ray_actor_options", "num_gpus"): f"{src('num_gpus')}: resources.num_gpus",
        ("ray_actor_options", "memory"): f"{src('memory_mb')}: resources.memory_mb, in bytes",
        ("ray_actor_options", "runtime_env"):
            f"pip pins of {stage.stage.component.id}@{stage.stage.component.version}",
        (next(iter(HEALTH)),): "conservative health checks: a model may load slowly",
    }
    user = f"{stage.cell}: params"
    if stage.tuning:
        user += " (tuned: " + ", ".join(
            f"{name} from {_trial(info)}" for name, info in sorted(stage.tuning.items())) + ")"
    comments[("user_config",)] = user
    return comments


def _trial(info: Any) -> str:
    if isinstance(info, dict):
        trial = info.get("trial", info.get("number"))
        study = info.get("study")
        return " ".join(p for p in (f"study {study}" if study else "",
                                    f"trial {trial}" if trial is not None else "") if p) or "?"
    return str(info)


def _deployments(plan: Plan) -> str:
    lines = ["DEPLOYMENTS: list[dict[str, Any]] = ["]
    ingress = python_literal(ingress_deployment(plan), level=1, comments={
        (next(iter(HEALTH)),): "conservative health checks"})
    lines += ["    # The ingress: takes the request and walks the DAG over the stage handles.",
              f"    {ingress},"]
    for stage in plan.stages:
        body = deployment(stage)
        body["user_config"] = Code(f"params({python_string(stage.id)})")
        what: str = stage.stage.kind
        if stage.stage.component.id != what:
            what += f", {stage.stage.component.id}"
        header = f"    # Stage {python_string(stage.id)} ({what}), from {stage.cell}."
        if len(header) > 100:
            header = f"    # Stage from {stage.cell}."
        lines += [header,
                  f"    {python_literal(body, level=1, comments=_stage_comments(stage))},"]
    lines.append("]")
    return "\n".join(lines)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _field(key: str, value: Any) -> tuple[str, str, str]:
    """The Args dataclass field, the line of ``from_config`` that reads it, and a constant."""
    name, literal_key = _snake(key), python_string(key)
    if isinstance(value, bool | int) or not isinstance(value, dict | list):
        if isinstance(value, bool):
            kind, getter = "bool", "get_bool"
        elif isinstance(value, int):
            kind, getter = "int", "get_int"
        else:
            kind, getter, value = "str", "get", str(value)
        default = python_literal(value)
        return (f"    {name}: {kind} = {default}",
                f"{name}=_setting(config.{getter}({literal_key}), defaults.{name}),", "")
    kind = "dict[str, str]" if isinstance(value, dict) else "list[dict[str, str]]"
    read = f"{name}=_setting(config.get_object({literal_key}), defaults.{name}),"
    if not value:
        factory = "dict" if isinstance(value, dict) else "list"
        return f"    {name}: {kind} = field(default_factory={factory})", read, ""
    constant = name.upper()
    return (f"    {name}: {kind} = field(default_factory={constant}.copy)", read,
            f"{constant}: {kind} = {python_literal(value)}")


def _wrap_call(line: str) -> str:
    """``name=_setting(a, b),`` split the way ruff format splits a line that is too long."""
    if len(line) <= 100:
        return line
    pad = line[: len(line) - len(line.lstrip())]
    head, _, rest = line.strip().partition("(")
    return f"{pad}{head}(\n{pad}    {rest.removesuffix('),')}\n{pad}),"


def _args_class(plan: Plan) -> str:
    fields, reads, constants = [], [], []
    for key, value in settings(plan).items():
        declared, read, constant = _field(key, value)
        fields.append(declared)
        reads.append(_wrap_call("            " + read))
        if constant:
            constants.append(constant)
    fields.append("    secrets: dict[str, pulumi.Output[str]] = field(default_factory=dict)")
    head = ""
    if constants:
        head = "# Defaults of the structured settings (Pulumi config objects).\n"
        head += "\n".join(constants) + "\n\n\n"
    return head + (ARGS_CLASS.replace("{{FIELDS}}", "\n".join(fields))
                   .replace("{{READS}}", "\n".join(reads)))


def _docstring(plan: Plan) -> str:
    spec = plan.spec
    summary = (f'"""Pulumi program for the NUX workbook {python_string(spec.name)}: each stage '
               "is a Ray Serve deployment.")
    lines = [*textwrap.wrap(summary, 100, break_long_words=False), ""]
    lines += [
        f"Exported by `nux export` from spec {spec.hash[:12]} (full hash and provenance in",
        "provenance.json). The workbook is the source of truth for the stages: change a cell and",
        "export again. Cluster settings are Pulumi config (see README.md and the stack file).",
    ]
    if plan.forced:
        lines += ["", "FORCED EXPORT: `nux export --force` skipped the acceptance gate",
                  f"(verdict: {acceptance_word(plan)}); see README.md."]
    lines.append('"""')
    return "\n".join(lines)


def _assignment(name: str, text: str) -> str:
    """``NAME = "text"``; a text too long for one line becomes adjacent strings in parentheses,
    the layout ruff format keeps."""
    line = f"{name} = {python_string(text)}"
    if len(line) <= 100:
        return line
    chunks: list[str] = []
    for piece in re.findall(r"\S+\s*|\s+", text):
        if chunks and len(chunks[-1]) + len(piece) <= 80:
            chunks[-1] += piece
        else:
            chunks.append(piece)
    body = "\n".join(f"    {python_string(c)}" for c in chunks)
    return f"{name} = (\n{body}\n)"


def _stage_settings(plan: Plan) -> str:
    found: dict[str, dict[str, str]] = {}
    for location in plan.data.locations:
        for stage, param in location.targets:
            found.setdefault(stage, {})[param] = _snake(location.key)
    return python_literal(dict(sorted(found.items())))


def _jobs(plan: Plan) -> str:
    jobs = [{"job": job.name, "name": job_resource_name(plan, job),
             "file": f"{JOBS_MOUNT}/{job.file}",
             "stages": list(job.stages), "collection": _snake(job_collection_key(plan, job)),
             "spec_hash": job.spec.hash} for job in plan.data.jobs]
    return python_literal(jobs)


def render_program(plan: Plan) -> str:
    """The text of ``__main__.py``."""
    secrets = {env: config_key(env) for env in plan.required_secrets}
    optional = {env: config_key(env) for env in plan.optional_secrets}
    gpu = GPU_GROUP if plan.gpu else ""
    text = (PROGRAM
            .replace("{{DOCSTRING}}", _docstring(plan))
            .replace("{{WORKBOOK}}", _assignment("WORKBOOK", plan.spec.name))
            .replace("{{NAME}}", python_string(plan.name))
            .replace("{{SPEC_HASH}}", python_string(plan.spec.hash))
            .replace("{{RAY_VERSION}}", python_string(plan.ray_version))
            .replace("{{ACCEPTANCE}}", python_string(acceptance_word(plan)))
            .replace("{{SPEC_MOUNT}}", python_string(SPEC_MOUNT))
            .replace("{{APP_BUILDER}}", python_string(APP_BUILDER))
            .replace("{{CHART}}", python_string(KUBERAY_CHART_VERSION))
            .replace("{{SECRETS}}", python_literal(secrets))
            .replace("{{OPTIONAL_SECRETS}}", python_literal(optional))
            .replace("{{DATA_MOUNT}}", python_string(DATA_MOUNT) if plan.data.ships_data
                     else "None")
            .replace("{{STAGE_SETTINGS}}", _stage_settings(plan))
            .replace("{{JOBS}}", _jobs(plan))
            .replace("{{QDRANT_PROBES}}", python_literal(QDRANT_PROBES))
            .replace("{{QDRANT_STAGES}}", python_literal(list(plan.qdrant_stages)))
            .replace("{{DEPLOYMENTS}}", _deployments(plan))
            .replace("{{ARGS}}", _args_class(plan))
            .replace("{{GPU_GROUP}}", gpu))
    return text


ARGS_CLASS = '''\
@dataclass
class WorkbookServiceArgs:
    """Cluster settings of the workbook's service; each is a Pulumi config key (camelCase)."""

{{FIELDS}}

    @classmethod
    def from_config(cls, config: pulumi.Config) -> WorkbookServiceArgs:
        """Read every setting once; a key left unset keeps the default above."""
        defaults = cls()
        return cls(
{{READS}}
            secrets=read_secrets(config),
        )'''

GPU_GROUP = '''
    # Stages that need a GPU run here: nvidia.com/gpu limits, GPU nodes only.
    groups.append(
        {
            "groupName": "gpu",
            "replicas": args.gpu_worker_min_replicas,
            "minReplicas": args.gpu_worker_min_replicas,
            "maxReplicas": args.gpu_worker_max_replicas,
            "rayStartParams": {},
            "template": pod(
                container(
                    args,
                    "ray-worker",
                    args.gpu_worker_cpu,
                    args.gpu_worker_memory,
                    args.gpu_worker_gpus,
                ),
                args.gpu_node_selector,
                args.gpu_tolerations,
            ),
        }
    )'''

PROGRAM = '''\
{{DOCSTRING}}

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

{{WORKBOOK}}
NAME = {{NAME}}  # the RayService: 47 characters at most
SPEC_HASH = {{SPEC_HASH}}
RAY_VERSION = {{RAY_VERSION}}  # must equal the Ray version of the image (see Dockerfile)
ACCEPTANCE = {{ACCEPTANCE}}  # the acceptance verdict this export was made under
SPEC_MOUNT = {{SPEC_MOUNT}}  # where the pods see the frozen spec (ConfigMap)
APP_BUILDER = {{APP_BUILDER}}
KUBERAY_CHART_VERSION = {{CHART}}
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
SECRETS: dict[str, str] = {{SECRETS}}
# Secrets the service runs without (no API key: the app is open on purpose; no Redis URL: each
# replica keeps its state in memory).
OPTIONAL_SECRETS: dict[str, str] = {{OPTIONAL_SECRETS}}

# Where the image holds the files the stages read (data/ of this folder; None: no data).
DATA_MOUNT: str | None = {{DATA_MOUNT}}

# Stage -> param -> the setting (WorkbookServiceArgs field) that gives its production value.
# The spec keeps the notebook's values; a stack changes these without a new export.
STAGE_SETTINGS: dict[str, dict[str, str]] = {{STAGE_SETTINGS}}

# Ingest jobs: each fills a Qdrant collection from the documents the image carries, with
# `python -m nux_runtime.jobs`, before the RayService is created.
JOBS: list[dict[str, Any]] = {{JOBS}}

# Qdrant's own health endpoints (they need no API key).
QDRANT_PROBES: dict[str, Any] = {{QDRANT_PROBES}}

# Stages that read a Qdrant collection: pointed at the Qdrant server when there is one.
QDRANT_STAGES: list[str] = {{QDRANT_STAGES}}


def params(stage: str) -> dict[str, Any]:
    """The params the workbook pinned for one stage: its Ray Serve `user_config`."""
    return next(s["params"] for s in SPEC["stages"] if s["id"] == stage)


# One Ray Serve deployment per workbook stage, named by the stage id, plus the ingress.
{{DEPLOYMENTS}}


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


{{ARGS}}


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
    ]{{GPU_GROUP}}
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
'''
