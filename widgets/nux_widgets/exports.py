"""The ``export`` job: "Export to production" from JupyterLab.

The workbook (as saved) is compiled on the server; in a worker process of the job's own (an
evaluation runs the notebook's code) its acceptance verdict is taken the way ``nux export``
takes it (the recorded ``nux eval`` of this exact spec, or a fresh evaluation of its test bank),
and the Pulumi project, Ray Serve config and Kubernetes YAML written beside the workbook. The result
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
from nux_widgets.workers import WorkerContext, WorkerEnded, WorkerPool

__all__ = ["export_in_worker", "export_job"]


def export_in_worker(ctx: WorkerContext, args: dict[str, Any]) -> dict[str, Any]:
    """In the job's worker process: evaluate (when asked), export, and zip the project."""
    from nux_exporters import export
    from nux_kernel.datasources import find_sources
    from nux_kernel.provenance import acceptance_verdict, tuning_provenance

    spec, base_dir, out_dir = args["spec"], args["base_dir"], args["out_dir"]
    sources = find_sources(args["workbook"], spec)
    verdict = None
    if args["evaluate"]:
        ctx.report(step="evaluate", message="scoring the test bank against the criteria")
        verdict = acceptance_verdict(spec, base_dir, sources)
    ctx.report(step="export", message=f"writing {out_dir.name}/")
    result = export(spec, out_dir, acceptance=verdict, force=args["force"], stack=args["stack"],
                    tuning=tuning_provenance(str(args["workbook"]), spec), sources=sources)
    archive_base = base_dir / ".nux" / "exports" / f"{spec.name}-{spec.hash[:12]}"
    archive_base.parent.mkdir(parents=True, exist_ok=True)
    archive = shutil.make_archive(str(archive_base), "zip", root_dir=out_dir)
    ctx.report(step="done", message=f"{len(result.files)} files written")
    return {"files": list(result.files), "acceptance": verdict, "archive": archive}


def export_job(pool: WorkerPool, root: Path) -> JobFunction:
    def run(ctx: JobContext, body: dict[str, Any]) -> dict[str, Any]:
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
        stack = str(body.get("stack") or "dev")
        args = {"spec": spec, "base_dir": base_dir, "out_dir": out_dir, "workbook": workbook,
                "evaluate": bool(body.get("evaluate", True)), "force": bool(body.get("force")),
                "stack": stack}
        with pool.for_job(f"export {workbook.name}") as worker:
            try:
                written: dict[str, Any] = worker.call(
                    export_in_worker, args, on_event=lambda event: ctx.report(**event),
                    stop=ctx.stop_event)
            except WorkerEnded as ended:
                raise NuxError(problems=[Problem(
                    code="export-ended", message=f"the export ended: {ended.reason}",
                    fix="run the test bank from the DAG panel or `nux eval` to find the stage "
                        "that crashes or hangs")]) from None
        relative = out_dir.relative_to(root.expanduser().resolve()).as_posix()
        return {
            "out_dir": relative,
            "files": written["files"],
            "acceptance": written["acceptance"],
            "spec_hash": spec.hash,
            "archive": written["archive"],
            "next_steps": [
                f"cd {relative}",
                "python -m venv venv && venv/bin/pip install -r requirements.txt",
                f"pulumi stack init {stack}",
                "pulumi up",
            ],
        }

    return run
