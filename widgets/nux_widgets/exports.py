"""The ``export`` job: "Export to production" from JupyterLab.

The workbook (as saved) is compiled, its acceptance verdict taken the way ``nux export`` takes
it (the recorded ``nux eval`` of this exact spec, or a fresh evaluation of its test bank), and
the Pulumi project, Ray Serve config and Kubernetes YAML written beside the workbook. The result
names the files, the verdict and the next steps, and the project is zipped for download.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from nux_runtime.errors import NuxError, Problem
from nux_widgets.jobs import JobContext, JobFunction
from nux_widgets.runs import compiled
from nux_widgets.workbooks import resolve_path

__all__ = ["export_job"]


def export_job(root: Path) -> JobFunction:
    def run(ctx: JobContext, body: dict[str, Any]) -> dict[str, Any]:
        from nux_exporters import export
        from nux_kernel.cli.export import acceptance_verdict, tuning_provenance

        spec, base_dir = compiled(root, {k: v for k, v in body.items() if k != "notebook"})
        workbook = resolve_path(root, str(body["path"]))
        folder = body.get("out_dir") or "deploy"
        if not isinstance(folder, str):
            raise NuxError(problems=[Problem(code="request", message="`out_dir` must be a "
                                             "folder name", fix="send e.g. \"deploy\"",
                                             field="out_dir")])
        out_dir = (base_dir / folder).resolve()
        if root.expanduser().resolve() not in out_dir.parents:
            raise NuxError(problems=[Problem(
                code="path", message=f"export folder {folder!r} is outside the folder "
                "JupyterLab serves", fix="give a folder name such as `deploy`",
                field="out_dir")])
        verdict = None
        if body.get("evaluate", True):
            ctx.report(step="evaluate", message="scoring the test bank against the criteria")
            verdict = acceptance_verdict(spec, base_dir)
        ctx.report(step="export", message=f"writing {out_dir.name}/")
        stack = str(body.get("stack") or "dev")
        result = export(spec, out_dir, acceptance=verdict, force=bool(body.get("force")),
                        stack=stack, tuning=tuning_provenance(str(workbook), spec))
        archive_base = base_dir / ".nux" / "exports" / f"{spec.name}-{spec.hash[:12]}"
        archive_base.parent.mkdir(parents=True, exist_ok=True)
        archive = shutil.make_archive(str(archive_base), "zip", root_dir=out_dir)
        relative = out_dir.relative_to(root.expanduser().resolve()).as_posix()
        ctx.report(step="done", message=f"{len(result.files)} files written")
        return {
            "out_dir": relative,
            "files": list(result.files),
            "acceptance": verdict,
            "spec_hash": spec.hash,
            "archive": archive,
            "next_steps": [
                f"cd {relative}",
                "python -m venv venv && venv/bin/pip install -r requirements.txt",
                f"pulumi stack init {stack}",
                "pulumi up",
            ],
        }

    return run
