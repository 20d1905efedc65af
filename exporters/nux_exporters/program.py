"""The Pulumi program of an export: ``__main__.py``, ``workbook.yaml`` and ``nux_kuberay/``.

The program's logic is the package :mod:`nux_kuberay` (linted, type-checked and tested with the
rest of NUX), copied as it is into the exported folder, so the folder runs with only pulumi,
pulumi-kubernetes and PyYAML installed. What the export decided for the workbook is data:
``workbook.yaml`` (:func:`~nux_exporters.manifests.workbook_document`), each value commented with
the cell it came from. ``__main__.py`` loads it, reads the stack's config once and creates the
``WorkbookService``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path as FilePath
from typing import Any

import nux_kuberay
from nux_exporters.literal import Path, python_string, yaml_text
from nux_exporters.manifests import acceptance_word, workbook_document
from nux_exporters.plan import Plan, StagePlan
from nux_exporters.serve import HEALTH
from nux_kuberay import WORKBOOK_FILE

__all__ = ["PACKAGE", "package_files", "program_files", "render_program", "workbook_yaml"]

#: The folder of the exported project that holds the program's package.
PACKAGE = "nux_kuberay"

_TOP_COMMENTS: dict[Path, str] = {
    ("name",): "the RayService: 47 characters at most",
    ("ray_version",): "must equal the Ray version of the image (see Dockerfile)",
    ("acceptance",): "the acceptance verdict this export was made under",
    ("gpu",): "a GPU worker group: some stage needs a GPU",
    ("settings",): "every cluster setting (a Pulumi config key) and its default; set them "
                   "in the stack file, not here",
    ("secrets",): "environment variable in the Ray pods -> Pulumi secret config key "
                  "(`pulumi config set --secret <key> <value>`; no value is ever written here)",
    ("optional_secrets",): "secrets the service runs without (no API key: open on purpose; "
                           "no Redis URL: each replica keeps its state in memory)",
    ("data_mount",): "where the image holds data/ (null: the stages read no files)",
    ("stage_settings",): "stage -> param -> the setting that gives its production value "
                         "(the spec keeps the notebook's)",
    ("qdrant_stages",): "stages pointed at the Qdrant server when there is one",
    ("jobs",): "ingest jobs: each fills a Qdrant collection from the documents the image "
               "carries, before the RayService is created",
    ("deployments",): "the Ray Serve deployments: the ingress, then one per stage (named by "
                      "the stage id); a stage's user_config is its params in spec.json",
}


def _trial(info: Any) -> str:
    if isinstance(info, dict):
        trial = info.get("trial", info.get("number"))
        study = info.get("study")
        return " ".join(p for p in (f"study {study}" if study else "",
                                    f"trial {trial}" if trial is not None else "") if p) or "?"
    return str(info)


def _stage_comments(stage: StagePlan, at: Path) -> dict[Path, str]:
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
        (next(iter(HEALTH)),): "conservative health checks: a model may load slowly",
    }
    what: str = stage.stage.kind
    if stage.stage.component.id != what:
        what += f", {stage.stage.component.id}"
    user = f"{stage.cell}: params"
    if stage.tuning:
        user += " (tuned: " + ", ".join(
            f"{name} from {_trial(info)}" for name, info in sorted(stage.tuning.items())) + ")"
    found = {(*at, *path): text for path, text in comments.items()}
    found[at] = f"Stage {python_string(stage.id)} ({what}); user_config: {user}"
    return found


def workbook_yaml(plan: Plan) -> str:
    """The text of ``workbook.yaml``."""
    document = workbook_document(plan)
    comments = {**_TOP_COMMENTS,
                ("deployments", 0): "The ingress: takes the request and walks the DAG over the "
                                    "stage handles.",
                ("deployments", 0, next(iter(HEALTH))): "conservative health checks"}
    for index, stage in enumerate(plan.stages, start=1):
        comments.update(_stage_comments(stage, ("deployments", index)))
    head = (f"What `nux export` decided for workbook {python_string(plan.spec.name)} (spec "
            f"{plan.spec.hash[:12]}): the data the Pulumi program (__main__.py, "
            f"{PACKAGE}/) deploys. The workbook is the source of truth: change a cell and "
            "export again.")
    lines = textwrap.wrap(head, 100, initial_indent="# ", subsequent_indent="# ",
                          break_long_words=False)
    return "\n".join(lines) + "\n" + yaml_text(document, comments)


def _docstring(plan: Plan) -> str:
    spec = plan.spec
    summary = (f'"""Pulumi program for the NUX workbook {python_string(spec.name)}: each stage '
               "is a Ray Serve deployment.")
    lines = [*textwrap.wrap(summary, 100, break_long_words=False), ""]
    lines += [
        f"Exported by `nux export` from spec {spec.hash[:12]} (full hash and provenance in",
        f"provenance.json). What the export decided is data in {WORKBOOK_FILE}; the package",
        f"{PACKAGE}/ beside this file, the same reviewed code for every workbook, turns it into",
        "Kubernetes objects. The workbook is the source of truth for the stages: change a cell",
        "and export again. Cluster settings are Pulumi config (see README.md and the stack",
        "file).",
    ]
    if plan.forced:
        lines += ["", "FORCED EXPORT: `nux export --force` skipped the acceptance gate",
                  f"(verdict: {acceptance_word(plan)}); see README.md."]
    lines.append('"""')
    return "\n".join(lines)


def render_program(plan: Plan) -> str:
    """The text of ``__main__.py``."""
    return _docstring(plan) + '''

from __future__ import annotations

from pathlib import Path

import pulumi

from nux_kuberay import ExportedWorkbook, WorkbookService, WorkbookServiceArgs

workbook = ExportedWorkbook.load(Path(__file__).parent)
args = WorkbookServiceArgs.from_config(pulumi.Config(), workbook)
service = WorkbookService(workbook.name, workbook, args)
pulumi.export("serve_url", service.serve_url)
pulumi.export("dashboard_url", service.dashboard_url)
'''


def package_files() -> dict[str, str]:
    """The program's package as the export copies it: ``nux_kuberay/<module>.py``."""
    root = FilePath(nux_kuberay.__file__).parent
    return {f"{PACKAGE}/{path.name}": path.read_text(encoding="utf-8")
            for path in sorted(root.glob("*.py"))}


def program_files(plan: Plan) -> dict[str, str]:
    """Every file of the Pulumi program: the entry point, the workbook's data, the package."""
    return {"__main__.py": render_program(plan), WORKBOOK_FILE: workbook_yaml(plan),
            **package_files()}
