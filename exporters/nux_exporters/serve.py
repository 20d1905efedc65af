"""The Ray Serve config: one application per workbook, one deployment per stage plus the ingress.

The application's ``import_path`` is the ``nux_runtime`` application builder; its ``args`` name
the frozen spec file. Each stage's deployment is named by the stage id and carries its own
``ray_actor_options``, ``autoscaling_config``, ``max_ongoing_requests`` and the pinned params as
``user_config``. The application's shape and how a ``user_config`` gets its production values
are :mod:`nux_kuberay.serve`'s, which builds the RayService's ``serveConfigV2`` from the same
deployments (``workbook.yaml``).

The config is checked with Ray's own schemas (``ServeDeploySchema`` and ``AutoscalingConfig``)
plus a strict pass that rejects keys those schemas would silently ignore.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from nux_exporters.dataplan import DATA_DIR
from nux_exporters.plan import INGRESS, Plan, StagePlan, is_qdrant
from nux_kuberay import serve as kuberay
from nux_kuberay.serve import APP_BUILDER, SPEC_MOUNT, dump_yaml
from nux_runtime.errors import ExportError, Problem
from nux_runtime.spec import canonical_json

__all__ = [
    "APP_BUILDER",
    "HEALTH",
    "SPEC_MOUNT",
    "deployment",
    "ingress_deployment",
    "serve_config",
    "serve_yaml",
    "stage_deployment",
    "validate_serve_config",
]

# Conservative health checking: a stage that loads a model gets time before it is replaced.
HEALTH: dict[str, float] = {
    "health_check_period_s": 10,
    "health_check_timeout_s": 30,
    "graceful_shutdown_timeout_s": 20,
}
MIB = 1024 * 1024


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def actor_options(stage: StagePlan) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": _number(stage.num_cpus)}
    if stage.num_gpus:
        options["num_gpus"] = _number(stage.num_gpus)
    if stage.memory_mb is not None:
        options["memory"] = stage.memory_mb * MIB
    # No per-stage runtime_env: the image (and the local profile's virtualenv) holds every
    # package of requirements.lock, so a replica starts without installing anything.
    return options


def stage_deployment(stage: StagePlan) -> dict[str, Any]:
    """The Serve deployment options of one stage (named by the stage id), but its
    ``user_config``: what ``workbook.yaml`` lists for the Pulumi program."""
    return {
        "name": stage.id,
        "max_ongoing_requests": stage.max_ongoing_requests,
        "autoscaling_config": {
            "min_replicas": stage.min_replicas,
            "initial_replicas": stage.min_replicas,
            "max_replicas": stage.max_replicas,
            "target_ongoing_requests": _number(stage.target_ongoing_requests),
        },
        "ray_actor_options": actor_options(stage),
        **HEALTH,
    }


def deployment(stage: StagePlan, qdrant_url: str | None = None,
               locations: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The Serve deployment of one stage: its options and its ``user_config``, the pinned
    params pointed at ``qdrant_url`` and the ``locations`` (param path -> value)."""
    return kuberay.with_user_config(stage_deployment(stage), kuberay.user_config(
        stage.stage.params, qdrant_url=qdrant_url, qdrant=is_qdrant(stage.stage),
        locations=locations))


def ingress_deployment(plan: Plan) -> dict[str, Any]:
    """The ingress walks the DAG over the stage handles; it scales with the widest stage."""
    widest = max((s.max_replicas for s in plan.stages), default=1)
    return {
        "name": INGRESS,
        "max_ongoing_requests": 100,
        "autoscaling_config": {
            "min_replicas": 1,
            "initial_replicas": 1,
            "max_replicas": max(2, widest),
            "target_ongoing_requests": 32,
        },
        "ray_actor_options": {"num_cpus": 0.25},
        **HEALTH,
    }


def application(plan: Plan, spec_path: str, qdrant_url: str | None = None,
                locations: Mapping[str, Mapping[str, Any]] | None = None,
                base_dir: str = DATA_DIR) -> dict[str, Any]:
    """The Serve application; stages that read data resolve their paths in ``base_dir`` (the
    export's ``data/`` folder, or where the image holds it)."""
    locations = locations or {}
    return kuberay.application(
        plan.name, [ingress_deployment(plan),
                    *(deployment(s, qdrant_url, locations.get(s.id)) for s in plan.stages)],
        spec_path=spec_path, base_dir=base_dir if plan.data.ships_data else None)


def serve_config(plan: Plan, *, spec_path: str = "spec.json", standalone: bool = True,
                 qdrant_url: str | None = None,
                 locations: Mapping[str, Mapping[str, Any]] | None = None,
                 base_dir: str = DATA_DIR) -> dict[str, Any]:
    """The multi-application Serve config.

    ``standalone`` adds the HTTP options for ``serve run``/``serve deploy``; inside a RayService
    KubeRay owns them and ``serveConfigV2`` carries only the applications.
    """
    config: dict[str, Any] = {}
    if standalone:
        config["proxy_location"] = "EveryNode"
        config["http_options"] = {"host": "0.0.0.0", "port": 8000}
    config["applications"] = [application(plan, spec_path, qdrant_url, locations, base_dir)]
    return config


# stands for the spec path in the YAML dumped once per plan, replaced per file
_SPEC_PATH_TOKEN = "nux-spec-path-token"


def serve_yaml(plan: Plan, *, spec_path: str = "spec.json", standalone: bool = True,
               qdrant_url: str | None = None,
               locations: Mapping[str, Mapping[str, Any]] | None = None,
               base_dir: str = DATA_DIR) -> str:
    """:func:`serve_config` as YAML text. The applications (one entry per stage: the bulk of it)
    are dumped once per plan and settings, and shared by serve_config.yaml and the RayService."""
    key = f"applications-yaml:{qdrant_url}:{base_dir}:{canonical_json(locations or {})}"
    if key not in plan.memo:
        plan.memo[key] = dump_yaml({"applications": [
            application(plan, _SPEC_PATH_TOKEN, qdrant_url, locations, base_dir)]})
    text = str(plan.memo[key]).replace(_SPEC_PATH_TOKEN, spec_path)
    if not standalone:
        return text
    head = {k: v for k, v in serve_config(plan, spec_path=spec_path).items()
            if k != "applications"}
    return dump_yaml(head) + text


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field annotation can hold (directly, or as list/dict items)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, typing.List):  # noqa: UP006
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def unknown_keys(model: type[BaseModel], value: Any, path: tuple[str | int, ...] = ()
                 ) -> list[tuple[tuple[str | int, ...], str]]:
    """Keys in ``value`` that ``model`` does not declare, at any depth: (path, key) pairs."""
    if isinstance(value, list):
        return [hit for i, item in enumerate(value) for hit in unknown_keys(model, item,
                                                                            (*path, i))]
    if not isinstance(value, Mapping):
        return []
    fields = model.model_fields
    names = {f.alias or n: n for n, f in fields.items()} | {n: n for n in fields}
    hits: list[tuple[tuple[str | int, ...], str]] = []
    for key, item in value.items():
        if key not in names:
            hits.append((path, str(key)))
            continue
        for sub in _models_in(fields[names[key]].annotation)[:1]:
            hits += unknown_keys(sub, item, (*path, key))
    return hits


def _where(config: Mapping[str, Any], path: tuple[Any, ...]) -> tuple[str | None, str]:
    """The stage a config path points into, and the dotted field below the deployment."""
    if len(path) >= 4 and path[0] == "applications" and path[2] == "deployments":
        try:
            name = config["applications"][path[1]]["deployments"][path[3]]["name"]
        except (IndexError, KeyError, TypeError):
            name = None
        return name, ".".join(str(p) for p in path[4:])
    return None, ".".join(str(p) for p in path)


def _distinct_deployments(config: Mapping[str, Any]
                          ) -> tuple[dict[str, Any], list[list[list[int]]]]:
    """The config with deployments that differ only by name checked once (Ray's schema costs
    about a millisecond per deployment); per application, the indexes each kept one stands for.
    """
    reduced = dict(config)
    groups: list[list[list[int]]] = []
    applications = []
    listed = config.get("applications", [])
    for app in listed if isinstance(listed, list) else []:
        kept: dict[str, int] = {}
        members: list[list[int]] = []
        deployments: list[Any] = []
        raw = app.get("deployments", []) if isinstance(app, Mapping) else []
        for d, dep in enumerate(raw if isinstance(raw, list) else []):
            body = {k: v for k, v in dep.items() if k != "name"} if isinstance(
                dep, Mapping) else {"": d}
            key = canonical_json(body)
            if key not in kept:
                kept[key] = len(deployments)
                deployments.append(dep)
                members.append([])
            members[kept[key]].append(d)
        applications.append({**app, "deployments": deployments} if isinstance(app, Mapping)
                            else app)
        groups.append(members)
    if isinstance(listed, list):
        reduced["applications"] = applications
    return reduced, groups


def validate_serve_config(config: Mapping[str, Any]) -> list[Problem]:
    """Ray's ServeDeploySchema and AutoscalingConfig, and no key they do not know."""
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    problems: list[Problem] = []

    def add(path: tuple[Any, ...], message: str, fix: str) -> None:
        stage, field = _where(config, path)
        if field:
            message = f"{field}: {message}"
        problems.append(Problem(code="export-serve", message=message, fix=fix, stage=stage,
                                cell=stage, field=field or None))

    for path, key in unknown_keys(ServeDeploySchema, config):
        add((*path, key), f"Ray Serve does not know the key {key!r}",
            "remove it; see ray.serve.schema.ServeDeploySchema")
    reduced, groups = _distinct_deployments(config)
    try:
        ServeDeploySchema.model_validate(reduced)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            paths = [loc]
            if len(loc) >= 4 and loc[0] == "applications" and loc[2] == "deployments":
                try:
                    members = groups[int(loc[1])][int(loc[3])]
                except (IndexError, ValueError):
                    members = [int(loc[3])] if str(loc[3]).isdigit() else []
                paths = [(*loc[:3], d, *loc[4:]) for d in members] or [loc]
            for path in paths:
                add(path, f"Ray Serve rejects the config: {error['msg']}",
                    "fix the stage's scale or resources")
    verdicts: dict[str, list[Any]] = {}  # stages often share one autoscaling config
    for a, app in enumerate(config.get("applications", [])):
        for d, dep in enumerate(app.get("deployments", [])):
            auto = dep.get("autoscaling_config")
            if not isinstance(auto, Mapping):
                continue
            key = canonical_json(auto)
            if key not in verdicts:
                try:
                    AutoscalingConfig.model_validate(auto)
                    verdicts[key] = []
                except ValidationError as exc:
                    verdicts[key] = exc.errors()
            if verdicts[key]:
                for error in verdicts[key]:
                    where = "min_replicas" if "min_replicas" in error["msg"] else ".".join(
                        str(x) for x in error["loc"])
                    add(("applications", a, "deployments", d, "autoscaling_config", where),
                        f"autoscaling: {error['msg'].removeprefix('Value error, ')}",
                        "make min_replicas <= max_replicas (scale: in the cell, or the "
                        "override)")
    return problems


def check_serve_config(config: Mapping[str, Any]) -> None:
    problems = validate_serve_config(config)
    if problems:
        raise ExportError(problems=problems)
