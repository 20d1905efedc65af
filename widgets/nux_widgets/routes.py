"""The server extension's HTTP routes, all under ``<base_url>/nux/`` and all authenticated.

::

    GET  /nux/catalog              the vetted catalog (?catalog=path overrides NUX_CATALOG)
    POST /nux/validate             {path, notebook?, catalog?} -> problems + graph
    POST /nux/run                  {path, notebook?, inputs, targets?} -> per-stage traces
                                   (run in the workbook's worker process, never here)
    GET  /nux/jobs                 background jobs, newest first (?kind=export&path=wb.ipynb
                                   for one workbook's jobs of one kind)
    POST /nux/jobs/<kind>          start a job (run-batch, tune, export) -> its record
    GET  /nux/jobs/<id>            a job's record (?after=<seq> for new progress only)
    POST /nux/jobs/<id>/stop       ask a job to stop
    GET  /nux/jobs/<id>/archive    an export job's project as a zip

A user's mistake answers 400 (422 for a workbook that does not compile) with
``{"problems": [...]}``: the same serializable problems the CLI prints, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from nux_runtime.errors import NuxError, Problem, WorkbookError
from nux_widgets.jobs import JobRunner
from nux_widgets.runs import run_payload
from nux_widgets.workbooks import catalog_payload, check, resolve_path
from nux_widgets.workers import WorkerPool

__all__ = [
    "ROUTES",
    "CatalogHandler",
    "JobArchiveHandler",
    "JobHandler",
    "JobStartHandler",
    "JobStopHandler",
    "JobsHandler",
    "NuxHandler",
    "RunHandler",
    "ValidateHandler",
    "setup_routes",
]

H = TypeVar("H", bound="NuxHandler")


def _problems_answer(fn: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """A `NuxError` becomes a 400/422 answer carrying its problems."""

    @wraps(fn)
    async def wrapper(self: NuxHandler, *args: Any, **kwargs: Any) -> None:
        try:
            await fn(self, *args, **kwargs)
        except NuxError as exc:
            self.set_status(422 if isinstance(exc, WorkbookError) else 400)
            self.finish(json.dumps({"problems": [p.to_dict() for p in exc.problems]}))

    return wrapper


class NuxHandler(APIHandler):
    """What every NUX route shares: the server root, the job runner, the worker processes."""

    @property
    def root(self) -> Path:
        return Path(self.settings.get("server_root_dir") or self.contents_manager.root_dir)

    @property
    def jobs(self) -> JobRunner:
        runner: JobRunner = self.settings["nux_jobs"]
        return runner

    @property
    def pool(self) -> WorkerPool:
        pool: WorkerPool = self.settings["nux_workers"]
        return pool

    def body(self) -> dict[str, Any]:
        try:
            data = self.get_json_body()
        except tornado.web.HTTPError:
            raise NuxError(problems=[Problem(code="request", message="the body is not JSON",
                                             fix="send a JSON object")]) from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise NuxError(problems=[Problem(code="request", message="the body must be a JSON "
                                             "object", fix="send a JSON object")])
        return data

    def reply(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload, default=str))


class CatalogHandler(NuxHandler):
    @tornado.web.authenticated
    @_problems_answer
    async def get(self) -> None:
        from nux_kernel.catalog import load_catalog

        path = self.get_query_argument("catalog", "").strip()
        catalog = load_catalog(resolve_path(self.root, path) if path else None)
        self.reply(catalog_payload(catalog))


class ValidateHandler(NuxHandler):
    @tornado.web.authenticated
    @_problems_answer
    async def post(self) -> None:
        body = self.body()
        checked = await asyncio.get_running_loop().run_in_executor(None, check, self.root, body)
        self.reply(checked.payload())


class RunHandler(NuxHandler):
    @tornado.web.authenticated
    @_problems_answer
    async def post(self) -> None:
        body = self.body()
        payload = await asyncio.get_running_loop().run_in_executor(
            None, run_payload, self.pool, self.root, body)
        self.reply(payload)


class JobsHandler(NuxHandler):
    @tornado.web.authenticated
    @_problems_answer
    async def get(self) -> None:
        kind = self.get_query_argument("kind", "")
        path = self.get_query_argument("path", "").lstrip("/")
        jobs = [j for j in self.jobs.list()
                if (not kind or j.kind == kind)
                and (not path or str(j.params.get("path", "")).lstrip("/") == path)]
        self.reply({"kinds": sorted(self.jobs.kinds), "jobs": [j.to_dict() for j in jobs]})


class JobStartHandler(NuxHandler):
    @tornado.web.authenticated
    @_problems_answer
    async def post(self, kind: str) -> None:
        job = self.jobs.start(kind, self.body())
        self.reply(job.to_dict(), status=202)


class JobHandler(NuxHandler):
    @tornado.web.authenticated
    @_problems_answer
    async def get(self, job_id: str) -> None:
        after = self.get_query_argument("after", "0")
        job = self.jobs.get(job_id)
        self.reply(job.to_dict(after=int(after) if after.isdigit() else 0))


class JobStopHandler(NuxHandler):
    @tornado.web.authenticated
    @_problems_answer
    async def post(self, job_id: str) -> None:
        self.reply(self.jobs.stop(job_id).to_dict())


class JobArchiveHandler(NuxHandler):
    @tornado.web.authenticated
    @_problems_answer
    async def get(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        archive = (job.result or {}).get("archive")
        if not archive or not Path(archive).is_file():
            raise NuxError(problems=[Problem(
                code="archive", message=f"job {job_id} has no project archive",
                fix="wait for the export job to finish")])
        self.set_header("Content-Disposition",
                        f'attachment; filename="{Path(archive).name}"')
        self.finish(Path(archive).read_bytes(), set_content_type="application/zip")


_ID = r"(?P<job_id>[0-9a-f]{12})"
ROUTES: list[tuple[str, type[NuxHandler]]] = [
    ("nux/catalog", CatalogHandler),
    ("nux/validate", ValidateHandler),
    ("nux/run", RunHandler),
    ("nux/jobs", JobsHandler),
    (rf"nux/jobs/{_ID}", JobHandler),
    (rf"nux/jobs/{_ID}/stop", JobStopHandler),
    (rf"nux/jobs/{_ID}/archive", JobArchiveHandler),
    (r"nux/jobs/(?P<kind>[a-z][a-z-]*)", JobStartHandler),
]


def setup_routes(web_app: Any) -> None:
    """Add the NUX routes to the Jupyter server's tornado application."""
    base = web_app.settings["base_url"]
    web_app.add_handlers(".*$", [(url_path_join(base, pattern), handler)
                                 for pattern, handler in ROUTES])
