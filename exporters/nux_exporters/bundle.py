"""``export()``: plan, render, validate, then write the folder atomically.

Every file is rendered in memory and every check runs before the first byte is written; the
folder is written to a temporary sibling and moved into place, so a failed export leaves nothing
behind and a re-export replaces the previous one whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nux_exporters.image import Image, image_files, runtime_image
from nux_exporters.manifests import manifests, provenance_json
from nux_exporters.options import Acceptance, ExportOptions
from nux_exporters.plan import Plan, make_plan
from nux_exporters.program import render_program
from nux_exporters.project import dockerfile, pulumi_yaml, readme, requirements, stack_yaml
from nux_exporters.serve import serve_config, serve_yaml, validate_serve_config
from nux_exporters.validation import validate_objects
from nux_exporters.yaml_text import dump_yaml
from nux_runtime.errors import ExportError, Problem
from nux_runtime.spec import WorkbookSpec

__all__ = ["ExportResult", "export", "render"]

MARKER = "provenance.json"


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the folder, the files (relative paths) and the plan behind them."""

    out_dir: Path
    files: tuple[str, ...]
    plan: Plan

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


def _gate(acceptance: Any, force: bool) -> Acceptance | None:
    if acceptance is None:
        return None
    verdict = Acceptance.coerce(acceptance)
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


def render(spec: WorkbookSpec, options: ExportOptions | None = None, *,
           acceptance: Any = None, force: bool = False
           ) -> tuple[Plan, dict[str, str | bytes]]:
    """Every file of the export, checked, as ``{relative path: text or bytes}`` (the wheels
    are bytes; nothing written)."""
    options = options or ExportOptions()
    verdict = _gate(acceptance, force)
    forced = force and verdict is not None and not verdict.passed
    plan = make_plan(spec, options, verdict, forced)
    # serve_config.yaml runs anywhere: it uses a Qdrant server only when one was named.
    server = plan.options.qdrant_url if plan.qdrant_mode == "external" else None
    standalone = serve_config(plan, qdrant_url=server)
    problems = validate_serve_config(standalone)
    objects = manifests(plan)
    problems += validate_objects(objects)
    # The image's wheels and lock travel with the Pulumi project and the local profile.
    image = Image(extras=(), pins=(), wheels=(), runtime_ray=None)
    if {"pulumi", "serve"} & set(options.targets):
        image, found = runtime_image(plan)
        problems += found
    if problems:
        raise ExportError(problems=problems)
    files: dict[str, str | bytes] = {
        **(image_files(plan, image) if image.wheels else {}),
        "README.md": readme(plan, image),
        "spec.json": plan.spec_json,
        MARKER: provenance_json(plan),
    }
    if "pulumi" in options.targets:
        files.update({
            "Pulumi.yaml": pulumi_yaml(plan),
            f"Pulumi.{options.stack}.yaml": stack_yaml(plan),
            "__main__.py": render_program(plan),
            "requirements.txt": requirements(plan),
            "Dockerfile": dockerfile(plan, image),
        })
    if "serve" in options.targets:
        files["serve_config.yaml"] = (
            f"# Ray Serve config of workbook {spec.name!r} (spec {spec.hash[:12]}).\n"
            "# `serve run serve_config.yaml` from this folder; spec.json is read from here.\n"
            + serve_yaml(plan, qdrant_url=server))
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


def write_tree(out_dir: Path, files: Mapping[str, str | bytes]) -> None:
    """Write ``files`` under ``out_dir`` all at once: a temporary sibling moved into place."""
    try:
        _write_tree(out_dir.resolve(), files)
    except OSError as exc:
        raise ExportError(problems=[Problem(
            code="export-out", field="out",
            message=f"cannot write the export to {out_dir}: {exc.strerror or exc}",
            fix="choose a folder you can write to (its parent is created if missing)")]
        ) from None


def _write_tree(out_dir: Path, files: Mapping[str, str | bytes]) -> None:
    if not _replaceable(out_dir):
        raise ExportError(problems=[Problem(
            code="export-out", field="out",
            message=f"{out_dir} exists and is not a previous export",
            fix="choose an empty or new folder (a previous export is replaced whole)")])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for rel, text in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                target.write_bytes(text)
            else:
                target.write_text(text, encoding="utf-8", newline="\n")
        os.chmod(staging, 0o755)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            out_dir.rename(old)
        staging.rename(out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def export(spec: WorkbookSpec, out_dir: str | os.PathLike[str],
           options: ExportOptions | None = None, *, acceptance: Any = None,
           force: bool = False, **settings: Any) -> ExportResult:
    """Export ``spec`` to ``out_dir``: the Pulumi project, serve_config.yaml, kubernetes.yaml.

    ``acceptance`` is the ``nux eval`` verdict for this spec (an
    :class:`~nux_exporters.options.Acceptance`, a mapping with ``passed`` or an object with
    ``.passed``); a failing verdict raises :class:`ExportError` unless ``force``. Keyword
    ``settings`` are :class:`ExportOptions` fields (``stack="prod"``, ``gpus=False``). Nothing is
    written when any check fails.
    """
    options = options or ExportOptions()
    if settings:
        try:
            options = replace(options, **settings)
        except TypeError as exc:
            raise ExportError(problems=[Problem(code="export-option", message=str(exc),
                                                fix="see nux_exporters.ExportOptions")]) from None
    plan, files = render(spec, options, acceptance=acceptance, force=force)
    target = Path(out_dir)
    write_tree(target, files)
    return ExportResult(out_dir=target, files=tuple(files), plan=plan)
