"""``export()``: plan, render, validate, then write the folder.

Every file is rendered in memory and every check runs before the first byte is written, so a
failed export leaves nothing behind. A new folder is written to a temporary sibling and moved
into place. Over a previous export, each file the export owns is replaced (atomically, one by
one), the files it wrote before and no longer does are removed, every other file is left alone,
and the stack file is merged (:mod:`nux_exporters.stackfile`): what the platform engineer set
survives, and each change is reported in :attr:`ExportResult.changes`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nux_exporters.datafiles import data_json, job_json
from nux_exporters.dataplan import DATA_DIR, JOBS_DIR, Sources
from nux_exporters.image import Image, image_files, runtime_image
from nux_exporters.manifests import manifests, provenance_json
from nux_exporters.manifests import settings as stack_settings
from nux_exporters.observability import DASHBOARD_FILE, POD_MONITOR_FILE, observability_files
from nux_exporters.options import Acceptance, ExportOptions
from nux_exporters.plan import Plan, config_key, make_plan
from nux_exporters.program import package_files, program_files
from nux_exporters.project import (
    dockerfile,
    pulumi_yaml,
    readme,
    requirements,
    stack_yaml,
)
from nux_exporters.serve import serve_config, serve_yaml, validate_serve_config
from nux_exporters.stackfile import merge_stack
from nux_exporters.validation import validate_objects
from nux_kuberay import WORKBOOK_FILE
from nux_kuberay.serve import dump_yaml
from nux_runtime.errors import ExportError, Problem
from nux_runtime.spec import WorkbookSpec

__all__ = ["ExportResult", "export", "render"]

MARKER = "provenance.json"
FileText = str | bytes


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the folder, the files (relative paths) and the plan behind them."""

    out_dir: Path
    files: tuple[str, ...]
    plan: Plan
    changes: tuple[str, ...] = ()

    @property
    def spec_hash(self) -> str:
        return self.plan.spec.hash


def _failed_thresholds(verdict: Acceptance) -> str:
    """``pass_rate is 0.5, needs >= 0.8`` for each threshold ``nux eval`` reported failed."""
    checks = verdict.summary.get("acceptance")
    if not isinstance(checks, list):
        return ""
    return "; ".join(
        f"{c.get('name')} is {c.get('value')}, needs {c.get('op', '>=')} {c.get('threshold')}"
        for c in checks if isinstance(c, dict) and c.get("passed") is False)


def _stale(verdict: Acceptance) -> list[Problem]:
    """The collections the verdict was measured on that do not hold what production ingests."""
    found = verdict.summary.get("stale_data")
    if not isinstance(found, list):
        return []
    fields = set(Problem.__dataclass_fields__)
    return [Problem(**{k: v for k, v in item.items() if k in fields}) for item in found
            if isinstance(item, dict) and "code" in item and "message" in item]


def _gate(acceptance: Any, force: bool) -> Acceptance | None:
    if acceptance is None:
        return None
    verdict = Acceptance.coerce(acceptance)
    stale = _stale(verdict)
    if stale and not force:
        raise ExportError(problems=[*stale, Problem(
            code="export-acceptance", field="acceptance",
            message="the acceptance verdict was measured on data the export does not ingest",
            fix="ingest as the export will (the command above), then export again; or export "
                "with --force (recorded in the README and the provenance)")])
    if not verdict.passed and not force:
        scores = _failed_thresholds(verdict) or ", ".join(
            f"{k}={v}" for k, v in sorted(verdict.summary.items())
            if isinstance(v, int | float | str)) or "see `nux eval`"
        raise ExportError(problems=[Problem(
            code="export-acceptance", field="acceptance",
            message=f"the workbook fails its acceptance criteria: {scores}",
            fix="improve or tune the workbook until `nux eval` passes, or export with --force "
                "(recorded in the README and the provenance)")])
    return verdict


def file_names(plan: Plan, extra: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Every path the export writes for ``plan`` (recorded in provenance.json: a re-export
    removes the ones it no longer writes); ``extra``: files rendered elsewhere (the image's)."""
    names = ["README.md", "spec.json", MARKER, "data.json", *(extra or {})]
    targets = plan.options.targets
    if "pulumi" in targets:
        names += ["Pulumi.yaml", f"Pulumi.{plan.options.stack}.yaml", "__main__.py",
                  WORKBOOK_FILE, *package_files(), "requirements.txt", "Dockerfile"]
    if "serve" in targets:
        names.append("serve_config.yaml")
    if "k8s-yaml" in targets:
        names.append("kubernetes.yaml")
    if {"pulumi", "k8s-yaml"} & set(targets):
        names += [POD_MONITOR_FILE, DASHBOARD_FILE]
    names += [f"{JOBS_DIR}/{job}" for job in plan.jobs]
    names += [f"{DATA_DIR}/{path}" for path in plan.data_files]
    return tuple(sorted(set(names)))


def render(spec: WorkbookSpec, options: ExportOptions | None = None, *,
           acceptance: Any = None, force: bool = False, sources: Sources | None = None
           ) -> tuple[Plan, dict[str, str | bytes]]:
    """Every file of the export, checked, as ``{relative path: text or bytes}`` (the wheels
    and shipped data are bytes; nothing written). ``sources``
    (``nux_kernel.datasources.find_sources``) says where the workbook's data is: the files its
    stages read are shipped under ``data/``, its ingest workbooks under ``jobs/``."""
    options = options or ExportOptions()
    verdict = _gate(acceptance, force)
    forced = force and verdict is not None and (not verdict.passed or bool(_stale(verdict)))
    plan = make_plan(spec, options, verdict, forced, sources)
    # serve_config.yaml runs anywhere: it uses a Qdrant server only when one was named.
    server = plan.options.qdrant_url if plan.qdrant_mode == "external" else None
    standalone = serve_config(plan, qdrant_url=server)
    problems = validate_serve_config(standalone)
    # The image's wheels and lock travel with the Pulumi project and the local profile.
    image = Image(extras=(), pins=(), wheels=(), runtime_ray=None)
    if {"pulumi", "serve"} & set(options.targets):
        image, found = runtime_image(plan)
        problems += found
    extra = image_files(plan, image) if image.wheels and not problems else {}
    plan.memo["files"] = file_names(plan, extra)
    objects = manifests(plan)
    problems += validate_objects(objects)
    if problems:
        raise ExportError(problems=problems)
    files: dict[str, str | bytes] = {
        **extra,
        "README.md": readme(plan, image),
        "spec.json": plan.spec_json,
        MARKER: provenance_json(plan),
        "data.json": data_json(plan),
    }
    for job in plan.data.jobs:
        files[f"{JOBS_DIR}/{job.file}"] = job_json(job)
    for item in plan.data.files:
        files[f"{DATA_DIR}/{item.path}"] = item.source.read_bytes()
    if "pulumi" in options.targets:
        files.update({
            "Pulumi.yaml": pulumi_yaml(plan),
            f"Pulumi.{options.stack}.yaml": stack_yaml(plan),
            **program_files(plan),
            "requirements.txt": requirements(plan),
            "Dockerfile": dockerfile(plan, image),
        })
    if "serve" in options.targets:
        files["serve_config.yaml"] = (
            f"# Ray Serve config of workbook {spec.name!r} (spec {spec.hash[:12]}).\n"
            "# `serve run serve_config.yaml` from this folder; spec.json is read from here.\n"
            + serve_yaml(plan, qdrant_url=server))
    if {"pulumi", "k8s-yaml"} & set(options.targets):
        files.update(observability_files(plan.name, plan.namespace, spec.name,
                                         [s.id for s in plan.stages], spec.hash))
    if "k8s-yaml" in options.targets:
        files["kubernetes.yaml"] = (
            f"# Kubernetes objects of workbook {spec.name!r} (spec {spec.hash[:12]}), rendered "
            "with the default settings.\n"
            + (f"# Create Secret {plan.name}-secrets yourself with keys: "
               f"{', '.join(plan.secrets)}.\n" if plan.secrets else "")
            + "".join("---\n" + dump_yaml(obj) for obj in objects))
    return plan, dict(sorted(files.items()))


def _replaceable(out_dir: Path) -> bool:
    if not out_dir.exists():
        return True
    if not out_dir.is_dir():
        return False
    return not any(out_dir.iterdir()) or (out_dir / MARKER).is_file()


def _previous(out_dir: Path) -> dict[str, Any]:
    try:
        found = json.loads((out_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def merged_files(out_dir: Path, plan: Plan, files: Mapping[str, FileText]
                 ) -> tuple[dict[str, FileText], list[str]]:
    """``files`` with the stack file merged over the one in ``out_dir``; what changed."""
    stack = f"Pulumi.{plan.options.stack}.yaml"
    path = out_dir / stack
    if stack not in files or not path.is_file():
        return dict(files), []
    previous = _previous(out_dir)
    old = previous.get("settings")
    text, changes = merge_stack(path.read_text(encoding="utf-8"), str(files[stack]),
                                old if isinstance(old, dict) else None, stack_settings(plan),
                                plan.name)
    merged = {**files, stack: text}
    new_secrets = sorted(set(plan.required_secrets) - set(previous.get("secrets") or []))
    if isinstance(previous.get("secrets"), list):
        changes += [f"new secret {env}: pulumi config set --secret {config_key(env)} <value>"
                    for env in new_secrets]
    return merged, changes


def write_tree(out_dir: Path, files: Mapping[str, FileText], plan: Plan | None = None
               ) -> list[str]:
    """Write ``files`` under ``out_dir``: a new folder all at once (a temporary sibling moved
    into place), a previous export file by file, keeping what it does not own. Returns what
    changed in the stack file."""
    try:
        return _write_tree(out_dir.resolve(), files, plan)
    except OSError as exc:
        raise ExportError(problems=[Problem(
            code="export-out", field="out",
            message=f"cannot write the export to {out_dir}: {exc.strerror or exc}",
            fix="choose a folder you can write to (its parent is created if missing)")]
        ) from None


def _put(target: Path, text: FileText) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text, encoding="utf-8", newline="\n")


def _write_tree(out_dir: Path, files: Mapping[str, FileText], plan: Plan | None) -> list[str]:
    if not _replaceable(out_dir):
        raise ExportError(problems=[Problem(
            code="export-out", field="out",
            message=f"{out_dir} exists and is not a previous export",
            fix="choose an empty or new folder, or the folder of a previous export")])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.is_dir() and (out_dir / MARKER).is_file():
        return _update_tree(out_dir, files, plan)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for rel, text in files.items():
            _put(staging / rel, text)
        os.chmod(staging, 0o755)
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return []


def _update_tree(out_dir: Path, files: Mapping[str, FileText], plan: Plan | None
                 ) -> list[str]:
    changes: list[str] = []
    if plan is not None:
        files, changes = merged_files(out_dir, plan, files)
    owned = _previous(out_dir).get("files")
    for rel, text in files.items():
        target = out_dir / rel
        staged = target.with_name(f".{target.name}.nux-{os.getpid()}")
        _put(staged, text)
        os.replace(staged, target)
    stale = sorted(set(owned if isinstance(owned, list) else []) - set(files))
    for rel in stale:
        target = (out_dir / str(rel)).resolve()
        if out_dir in target.parents and target.is_file() and not str(rel).startswith(
                "Pulumi."):
            target.unlink()
            parent = target.parent
            while parent != out_dir and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    return changes


def export(spec: WorkbookSpec, out_dir: str | os.PathLike[str],
           options: ExportOptions | None = None, *, acceptance: Any = None,
           force: bool = False, sources: Sources | None = None,
           **settings: Any) -> ExportResult:
    """Export ``spec`` to ``out_dir``: the Pulumi project, serve_config.yaml, kubernetes.yaml.

    ``acceptance`` is the ``nux eval`` verdict for this spec (an
    :class:`~nux_exporters.options.Acceptance`, a mapping with ``passed`` or an object with
    ``.passed``); a failing verdict raises :class:`ExportError` unless ``force``. Keyword
    ``settings`` are :class:`ExportOptions` fields (``stack="prod"``, ``gpus=False``).
    ``sources`` (``nux_kernel.datasources.find_sources``) says where the workbook's data is.
    Nothing is written when any check fails.
    """
    options = options or ExportOptions()
    if settings:
        try:
            options = replace(options, **settings)
        except TypeError as exc:
            raise ExportError(problems=[Problem(code="export-option", message=str(exc),
                                                fix="see nux_exporters.ExportOptions")]) from None
    plan, files = render(spec, options, acceptance=acceptance, force=force, sources=sources)
    target = Path(out_dir)
    changes = write_tree(target, files, plan)
    return ExportResult(out_dir=target, files=tuple(files), plan=plan, changes=tuple(changes))
