"""The deployment plan: every production decision for a workbook, made once, checked whole.

:func:`make_plan` turns a frozen :class:`~nux_runtime.spec.WorkbookSpec` and the
:class:`~nux_exporters.options.ExportOptions` into a :class:`Plan`: Kubernetes names, one
:class:`StagePlan` per stage (actor options, autoscaling, pinned params, pip pins, secrets), the
worker groups and the image. Every renderer (Serve config, Kubernetes YAML, Pulumi program)
reads only the plan, so they cannot disagree. Every problem found is reported at once as an
:class:`~nux_runtime.errors.ExportError` naming the stage and the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib.metadata import PackageNotFoundError, entry_points, requires, version
from typing import Any

from nux_exporters.dataplan import DataPlan, Sources, data_digest, plan_data
from nux_exporters.options import (
    RESOURCE_FIELDS,
    SCALE_FIELDS,
    Acceptance,
    ExportOptions,
)
from nux_kuberay.serve import QDRANT_KEY_ENV
from nux_runtime.errors import ExportError, Problem
from nux_runtime.spec import StageSpec, WorkbookSpec

__all__ = [
    "CPU_WORKER_CPUS",
    "INGRESS",
    "RAY_SERVICE_NAME_MAX",
    "Plan",
    "StagePlan",
    "make_plan",
    "ray_version",
]

INGRESS = "Ingress"
API_KEYS_ENV = "NUX_API_KEY_HASHES"
#: The Redis URL of the shared state (rate limits, caches) the runtime reads; unset: in-process.
REDIS_URL_ENV = "NUX_REDIS_URL"
RAY_SERVICE_NAME_MAX = 47
CPU_WORKER_CPUS = 4
GPU_WORKER_GPUS = 1
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_SECRET_PARAM = re.compile(r"(^|_)(api_key|key|token|password|url)_env$")
#: secrets a deployment runs without: no API-key digests leave the app open on purpose
OPTIONAL_SECRETS = frozenset({API_KEYS_ENV, REDIS_URL_ENV})
_FALLBACK_RAY = "2.60.0"


@cache
def _runtime_requirements() -> tuple[str, ...]:
    try:
        return tuple(requires("nux-runtime") or ())
    except PackageNotFoundError:
        return ()


@cache
def ray_version() -> str:
    """The Ray version nux-runtime pins for serving: the image's Ray and ``rayVersion``."""
    for req in _runtime_requirements():
        match = re.match(r"^ray(\[[^\]]*\])?==([0-9][^;\s]*)", req)
        if match:
            return match.group(2)
    return _FALLBACK_RAY


@cache
def runtime_version() -> str:
    try:
        return version("nux-runtime")
    except PackageNotFoundError:
        return "0.1.0"


@cache
def extra_pins(extra: str) -> tuple[str, ...]:
    """The requirements nux-runtime lists for one extra, without the marker."""
    pins = []
    for req in _runtime_requirements():
        body, _, marker = req.partition(";")
        if f'extra == "{extra}"' in marker and not body.strip().startswith("nux-runtime"):
            pins.append(body.strip())
    return tuple(sorted(pins))


@cache
def _component_extras() -> dict[str, tuple[str, ...]]:
    return {ep.name: tuple(ep.extras) for ep in entry_points(group="nux.components")}


def stage_extras(stage: StageSpec) -> tuple[str, ...]:
    """The nux-runtime extras a stage's component needs: the extras its ``nux.components``
    entry point declares (``qdrant.search = ...:QdrantSearch [qdrant,embed]``)."""
    return _component_extras().get(stage.component.implementation, ())


def stage_pins(stage: StageSpec) -> tuple[str, ...]:
    """The pip requirements of every extra the stage needs."""
    return tuple(sorted({pin for extra in stage_extras(stage) for pin in extra_pins(extra)}))


def is_qdrant(stage: StageSpec) -> bool:
    """A stage that reads or writes a Qdrant collection (pointed at the production server)."""
    return "qdrant" in stage_extras(stage)


def config_key(env: str) -> str:
    """``OPENAI_API_KEY`` -> ``openaiApiKey`` (Pulumi config keys are camelCase)."""
    head, *rest = env.lower().split("_")
    return head + "".join(part.capitalize() for part in rest if part)


def slug(name: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name.lower())).strip("-")


@dataclass(frozen=True)
class StagePlan:
    """One stage as a Ray Serve deployment."""

    stage: StageSpec
    num_cpus: float
    num_gpus: float
    memory_mb: int | None
    min_replicas: int
    max_replicas: int
    target_ongoing_requests: float
    max_ongoing_requests: int
    pins: tuple[str, ...]
    secrets: tuple[str, ...]
    overridden: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()
    tuning: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.stage.id

    @property
    def cell(self) -> str:
        """Where the stage was written, for comments: ``cell "abc", line 1``."""
        origin = self.stage.origin
        if origin is None:
            return f'stage "{self.stage.id}"'
        return f'cell "{origin.cell}", line {origin.line}'

    def source_of(self, name: str) -> str:
        """Where one value came from: the cell, or the production override."""
        return "export override" if name in self.overridden else self.cell


@dataclass(frozen=True)
class Plan:
    """Everything the renderers need, decided and checked."""

    spec: WorkbookSpec
    options: ExportOptions
    name: str
    namespace: str
    image: str
    ray_version: str
    stages: tuple[StagePlan, ...]
    secrets: tuple[str, ...]
    cpu_worker_max: int
    gpu_worker_min: int
    gpu_worker_max: int
    qdrant_mode: str = "none"
    acceptance: Acceptance | None = None
    forced: bool = False
    data: DataPlan = field(default_factory=DataPlan)
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def spec_document(self) -> dict[str, Any]:
        """The spec as JSON data (what spec.json holds)."""
        return self.spec.model_dump(mode="json")

    @cached_property
    def spec_json(self) -> str:
        """spec.json: exactly ``WorkbookSpec.to_json()``."""
        return json.dumps(self.spec_document, sort_keys=True, indent=2) + "\n"

    @property
    def gpu(self) -> bool:
        """A GPU worker group exists exactly when some stage needs a GPU."""
        return any(s.num_gpus > 0 for s in self.stages)

    @property
    def qdrant_stages(self) -> tuple[str, ...]:
        """Stages that read or write a Qdrant collection."""
        return tuple(s.id for s in self.stages if is_qdrant(s.stage))

    @property
    def pins(self) -> tuple[str, ...]:
        """The pins of every served stage and of every ingest job's stages (same image)."""
        served = {p for s in self.stages for p in s.pins}
        jobs = {p for job in self.data.jobs for s in job.spec.stages for p in stage_pins(s)}
        return tuple(sorted(served | jobs))

    @property
    def required_secrets(self) -> tuple[str, ...]:
        """Secrets `pulumi up` refuses to run without."""
        return tuple(s for s in self.secrets if s not in OPTIONAL_SECRETS)

    @property
    def optional_secrets(self) -> tuple[str, ...]:
        return tuple(s for s in self.secrets if s in OPTIONAL_SECRETS)

    @property
    def data_files(self) -> tuple[str, ...]:
        """Paths under data/ the export ships (the image copies data/ to /opt/nux/data)."""
        return tuple(f.path for f in self.data.files)

    @property
    def jobs(self) -> tuple[str, ...]:
        """Job files under jobs/ (the image copies jobs/ to /opt/nux/jobs)."""
        return tuple(job.file for job in self.data.jobs)

    @property
    def base_image(self) -> str:
        suffix = "-gpu" if self.gpu else ""
        return f"rayproject/ray:{self.ray_version}-py311{suffix}"


def _problem(stage: str | None, field_name: str, message: str, fix: str,
             code: str = "export") -> Problem:
    if stage is not None and not message.startswith(field_name):
        message = f"{field_name}: {message}"
    return Problem(code=code, message=message, fix=fix, stage=stage, cell=stage,
                   field=field_name)


def _check_name(value: str, what: str, limit: int, fix: str) -> list[Problem]:
    if not value:
        return [_problem(None, what, f"the {what} is empty after making it a Kubernetes name",
                         fix, "export-name")]
    found = []
    if len(value) > limit:
        found.append(_problem(None, what, f"the {what} {value!r} is {len(value)} characters; "
                              f"Kubernetes allows at most {limit}", fix, "export-name"))
    if not _DNS_LABEL.match(value):
        found.append(_problem(None, what, f"the {what} {value!r} is not a DNS-1123 label "
                              "(lowercase letters, digits, '-')", fix, "export-name"))
    return found


def _overrides(spec: WorkbookSpec, options: ExportOptions
               ) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    merged: dict[str, dict[str, Any]] = {}
    found = []
    for override in options.overrides:
        if override.stage in spec.evaluation_stages:
            found.append(_problem(override.stage, "override",
                                  f"stage {override.stage!r} exists only for evaluation (a "
                                  "criterion scores it and no output reads it): it is not "
                                  "deployed", "drop the override", "export-override"))
            continue
        if override.stage not in spec.by_id:
            found.append(_problem(override.stage, "override",
                                  f"override names no stage {override.stage!r}",
                                  f"stages: {', '.join(spec.by_id)}", "export-override"))
            continue
        for key, value in override.values.items():
            if key not in SCALE_FIELDS + RESOURCE_FIELDS:
                kind = "resource" if key not in SCALE_FIELDS else "field"
                found.append(_problem(
                    override.stage, key, f"unknown {kind} {key!r}",
                    f"known: {', '.join(SCALE_FIELDS + RESOURCE_FIELDS)}", "export-override"))
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                found.append(_problem(override.stage, key, f"{key} must be a number, "
                                      f"got {value!r}", "give a number", "export-override"))
                continue
            merged.setdefault(override.stage, {})[key] = value
    return merged, found


def _stage_secrets(stage: StageSpec) -> tuple[str, ...]:
    names = set()
    for key, value in stage.params.items():
        if _SECRET_PARAM.search(key) and isinstance(value, str) and _ENV_NAME.match(value):
            names.add(value)
    if is_qdrant(stage):
        names.add(QDRANT_KEY_ENV)
    return tuple(sorted(names))


def _stage_plan(stage: StageSpec, values: Mapping[str, Any], options: ExportOptions
                ) -> tuple[StagePlan, list[Problem]]:
    found: list[Problem] = []
    res, scale = stage.resources, stage.scale
    num_cpus = float(values.get("num_cpus", res.num_cpus))
    num_gpus = float(values.get("num_gpus", res.num_gpus))
    memory = values.get("memory_mb", res.memory_mb)
    min_replicas = values.get("min_replicas", scale.min_replicas)
    max_replicas = values.get("max_replicas", scale.max_replicas)
    target = float(values.get("target_ongoing_requests", scale.target_ongoing_requests))
    max_ongoing = values.get("max_ongoing_requests", scale.max_ongoing_requests)
    for name in ("min_replicas", "max_replicas", "max_ongoing_requests", "memory_mb"):
        value = values.get(name)
        if value is not None and (not float(value).is_integer() or value < 0):
            found.append(_problem(stage.id, name, f"{name} must be a whole number >= 0, "
                                  f"got {value!r}", "give a whole number"))
    for name, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value < 0:
            found.append(_problem(stage.id, name, f"{name} is negative ({value:g})",
                                  "give 0 or more"))
    notes: list[str] = []
    if num_gpus > 0 and not options.gpus:
        found.append(_problem(
            stage.id, "num_gpus",
            f"stage {stage.id!r} needs {num_gpus:g} GPU per replica but GPUs are disabled for "
            "this export", "enable GPUs (drop --no-gpus) or set the stage's resources.num_gpus "
            "to 0"))
    if num_gpus > 0 and min_replicas == 0 and not options.gpu_scale_to_zero:
        min_replicas = 1
        notes.append("keeps one warm replica: a GPU stage is slow to start")
    plan = StagePlan(
        stage=stage, num_cpus=num_cpus, num_gpus=num_gpus,
        memory_mb=int(memory) if memory is not None else None,
        min_replicas=int(min_replicas), max_replicas=int(max_replicas),
        target_ongoing_requests=target, max_ongoing_requests=int(max_ongoing),
        pins=stage_pins(stage),
        secrets=_stage_secrets(stage), overridden=frozenset(values),
        notes=tuple(notes), tuning=dict(options.tuning.get(stage.id, {})))
    return plan, found


def make_plan(spec: WorkbookSpec, options: ExportOptions | None = None,
              acceptance: Acceptance | None = None, force: bool = False,
              sources: Sources | None = None) -> Plan:
    """Decide every production setting of ``spec``; raise one ExportError listing all problems.

    ``sources`` (``nux_kernel.datasources.find_sources``) tells where the workbook's data is:
    without it, a stage that reads a file or a collection is a problem. Only the served stages
    are planned (``WorkbookSpec.served``): a stage that exists only for evaluation (a ``metric``
    cell) is neither deployed nor given data; ``plan.spec`` stays the whole workbook.
    """
    options = options or ExportOptions()
    problems = options.problems()
    served = spec.served
    data, found = plan_data(served, sources, options.collections)
    problems += found
    name = options.name or slug(spec.name)
    problems += _check_name(name, "RayService name", RAY_SERVICE_NAME_MAX,
                            "rename the workbook (its `name`) or pass --name with a shorter one")
    namespace = options.namespace or name[:63].rstrip("-")
    problems += _check_name(namespace, "namespace", 63, "pass --namespace with a valid name")
    values, found = _overrides(spec, options)
    problems += found
    stages = []
    for stage in served.stages:
        if stage.id == INGRESS:
            problems.append(_problem(stage.id, "id", f"stage id {INGRESS!r} is the name of the "
                                     "ingress deployment", "rename the stage"))
        plan, found = _stage_plan(stage, values.get(stage.id, {}), options)
        stages.append(plan)
        problems += found
    if problems:
        raise ExportError(problems=problems)
    # The ingress demands an API key when digests are configured (nux_runtime.serve.auth);
    # a Redis URL, when set, gives every replica the same state.
    secrets = {API_KEYS_ENV, REDIS_URL_ENV} | {s for p in stages for s in p.secrets}
    secrets |= set(options.secrets)
    qdrant_mode = options.qdrant
    if qdrant_mode is None:
        qdrant_mode = "statefulset" if any(is_qdrant(p.stage) for p in stages) else "none"
    if qdrant_mode != "none":
        secrets.add(QDRANT_KEY_ENV)
    elif any(is_qdrant(p.stage) for p in stages):
        problems.append(_problem(None, "qdrant", "stages read Qdrant collections but the export "
                                 "deploys no Qdrant server and names none",
                                 "drop --qdrant none, or pass --qdrant external --qdrant-url URL"))
    if problems:
        raise ExportError(problems=problems)
    bad = sorted(s for s in secrets if not _ENV_NAME.match(s))
    if bad:
        raise ExportError(problems=[_problem(None, "secrets", f"secret name {s!r} is not an "
                                             "environment variable name",
                                             "use UPPER_CASE letters, digits and _")
                                    for s in bad])
    cpu_load = sum(p.max_replicas * p.num_cpus for p in stages if p.num_gpus == 0) + 1
    gpu_load = sum(p.max_replicas * p.num_gpus for p in stages)
    gpu_warm = any(p.num_gpus > 0 and p.min_replicas > 0 for p in stages)
    tag = spec.hash if not (data.files or data.jobs) else data_digest(data)
    image = options.image or f"nux-{name}:{tag[:12]}"
    return Plan(
        spec=spec, options=options, name=name, namespace=namespace, image=image,
        ray_version=ray_version(), stages=tuple(stages), secrets=tuple(sorted(secrets)),
        qdrant_mode=qdrant_mode,
        cpu_worker_max=max(1, math.ceil(cpu_load / CPU_WORKER_CPUS)),
        gpu_worker_min=1 if gpu_warm else 0,
        gpu_worker_max=max(1, math.ceil(gpu_load / GPU_WORKER_GPUS)),
        acceptance=acceptance, forced=force, data=data)
