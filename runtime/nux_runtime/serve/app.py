"""The application builder: a frozen WorkbookSpec -> a Ray Serve application.

A Serve config names it by import path, ``nux_runtime.serve.app:build_app``, with ``args``
``{"spec_path": "<spec JSON>", ...}`` (the rest: :class:`nux_runtime.serve.ServeSettings`).
It builds one deployment per served stage, **named by the stage id**, so a config's
``deployments:`` entries override ``ray_actor_options``, ``autoscaling_config``,
``max_ongoing_requests`` and ``user_config`` (the stage's params, applied by
``Component.reconfigure``) stage by stage; and one ingress deployment named ``Ingress`` that
walks the DAG over the stages' DeploymentHandles. Replica resources and scaling default to what
the spec says for each stage. A stage that exists only for evaluation (``WorkbookSpec.served``:
a ``metric`` cell and what only it reads) is not deployed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment

from nux_runtime.errors import NuxError, Problem
from nux_runtime.serve.ingress import Ingress
from nux_runtime.serve.settings import ServeSettings
from nux_runtime.serve.stage import StageReplica
from nux_runtime.spec import StageSpec, WorkbookSpec

__all__ = ["INGRESS", "application", "build_app", "load_settings", "stage_options"]

#: The name of the ingress deployment in every NUX application.
INGRESS = "Ingress"


def load_settings(args: Mapping[str, Any]) -> ServeSettings:
    """The builder's ``args`` as settings, or a NuxError naming each bad field."""
    try:
        return ServeSettings.model_validate(dict(args))
    except ValidationError as exc:
        raise NuxError(problems=[
            Problem(code="serve-args", message=f"{'.'.join(map(str, e['loc']))}: {e['msg']}",
                    fix="see nux_runtime.serve.settings.ServeSettings",
                    field=".".join(map(str, e["loc"])))
            for e in exc.errors()]) from None


def _load_spec(settings: ServeSettings) -> WorkbookSpec:
    path = settings.spec_file()
    try:
        return WorkbookSpec.from_json(path.read_bytes())
    except OSError as exc:
        raise NuxError(problems=[Problem(
            code="spec-path", message=f"cannot read the workbook spec {path}: {exc.strerror}",
            fix="set args.spec_path to the spec JSON `nux spec` or `nux export` wrote",
            field="spec_path")]) from None
    except ValidationError as exc:
        raise NuxError(problems=[Problem(
            code="spec-invalid", message=f"{path} is not a valid WorkbookSpec: "
            f"{exc.error_count()} errors, first: {exc.errors()[0]['msg']}",
            fix="write it again with `nux spec` or `nux export`", field="spec_path")]) from None


def stage_options(stage: StageSpec, settings: ServeSettings) -> dict[str, Any]:
    """The deployment options the spec asks for (a Serve config may override each)."""
    actor: dict[str, Any] = {"num_cpus": stage.resources.num_cpus
                             if settings.stage_cpus is None else settings.stage_cpus}
    if stage.resources.num_gpus:
        actor["num_gpus"] = stage.resources.num_gpus
    if stage.resources.memory_mb:
        actor["memory"] = stage.resources.memory_mb * 1024 * 1024
    options: dict[str, Any] = {"name": stage.id, "ray_actor_options": actor,
                               "max_ongoing_requests": stage.scale.max_ongoing_requests}
    # Always an autoscaling config (fixed when min == max), never num_replicas: a Serve config
    # that overrides autoscaling_config then merges cleanly with these defaults.
    scale = stage.scale
    options["autoscaling_config"] = {
        "min_replicas": scale.min_replicas, "max_replicas": scale.max_replicas,
        "initial_replicas": max(1, scale.min_replicas),
        "target_ongoing_requests": scale.target_ongoing_requests}
    return options


def application(spec: WorkbookSpec, settings: ServeSettings) -> Application:
    """The Serve application of ``spec``: the stage deployments and the ingress, bound."""
    base_dir = str(settings.workdir())
    # Replicas run in other working directories: every path they read is made absolute here.
    settings = settings.model_copy(update={
        "base_dir": base_dir, "spec_path": str(settings.spec_file()),
        **{k: str(Path(v).expanduser().resolve()) for k in ("log_path", "request_log")
           if (v := getattr(settings, k))}})
    stage_deployment: Deployment = serve.deployment(StageReplica)  # type: ignore[assignment]
    handles = {
        stage.id: stage_deployment.options(**stage_options(stage, settings)).bind(
            stage.model_dump_json(), base_dir)
        for stage in spec.served.stages  # evaluation-only stages are never deployed
    }
    ingress_deployment: Deployment = serve.deployment(Ingress)  # type: ignore[assignment]
    fixed: dict[str, Any] = ({} if settings.ingress_replicas is None
                             else {"num_replicas": settings.ingress_replicas})
    ingress = ingress_deployment.options(
        name=INGRESS, ray_actor_options={"num_cpus": settings.ingress_cpus},
        max_ongoing_requests=256, **fixed)
    return ingress.bind(spec.to_json(), settings.model_dump(mode="json"), handles)


def build_app(args: Mapping[str, Any]) -> Application:
    """The entry point a Serve config's ``import_path`` names."""
    settings = load_settings(args)
    return application(_load_spec(settings), settings)
