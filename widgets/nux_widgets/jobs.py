"""Background jobs on the Jupyter server: tuning, export, batch runs.

A job is followed by a thread of the server process, so closing the browser tab does not stop
it; whatever runs the notebook's code runs in a worker process (:mod:`nux_widgets.workers`),
never in that thread. The browser polls its record (status, progress events, result, problems)
and may ask it to stop. A job function receives a :class:`JobContext`: it reports progress with
:meth:`JobContext.report` and checks :attr:`JobContext.stopping` between steps. A `NuxError`
ends the job with its problems; any other exception ends it with one problem naming the job.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from nux_runtime.errors import NuxError, Problem

__all__ = ["Job", "JobContext", "JobFunction", "JobRunner", "JobStatus"]

JobStatus = Literal["queued", "running", "done", "error", "stopped"]


@dataclass
class Job:
    """One background job and everything the browser may want to know about it."""

    id: str
    kind: str
    params: dict[str, Any]
    status: JobStatus = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    problems: list[Problem] = field(default_factory=list)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def to_dict(self, after: int = 0) -> dict[str, Any]:
        """The job's record; ``after`` skips the progress events the caller already has."""
        with self.lock:
            return {
                "id": self.id,
                "kind": self.kind,
                "params": self.params,
                "status": self.status,
                "created": self.created,
                "started": self.started,
                "finished": self.finished,
                "stop_requested": self.stop_requested.is_set(),
                "events": [e for e in self.events if e["seq"] > after],
                "last_seq": len(self.events),
                "result": self.result,
                "problems": [p.to_dict() for p in self.problems],
            }


class JobContext:
    """What a job function sees: report progress, and whether a stop was asked for."""

    def __init__(self, job: Job) -> None:
        self._job = job

    @property
    def job_id(self) -> str:
        return self._job.id

    @property
    def stopping(self) -> bool:
        return self._job.stop_requested.is_set()

    @property
    def stop_event(self) -> threading.Event:
        """Set when a stop is asked for (a worker process waiting on the job watches it)."""
        return self._job.stop_requested

    def report(self, **event: Any) -> None:
        with self._job.lock:
            self._job.events.append({"seq": len(self._job.events) + 1, "time": time.time(),
                                     **event})


JobFunction = Callable[[JobContext, dict[str, Any]], dict[str, Any]]


class JobRunner:
    """Start, follow and stop jobs; ``kinds`` maps a job kind to its function."""

    def __init__(self, kinds: dict[str, JobFunction], *, max_workers: int = 2) -> None:
        self.kinds = dict(kinds)
        self._jobs: dict[str, Job] = {}
        # Daemon threads: a job never holds the server open when it shuts down.
        self._slots = threading.Semaphore(max_workers)
        self._lock = threading.Lock()

    def start(self, kind: str, params: dict[str, Any]) -> Job:
        fn = self.kinds.get(kind)
        if fn is None:
            raise NuxError(problems=[Problem(
                code="job-kind", message=f"no job kind {kind!r} on this server",
                fix=f"available: {', '.join(sorted(self.kinds)) or 'none'}")])
        # The record keeps the small parameters; the notebook itself goes to the job only.
        record = {k: v for k, v in params.items() if k != "notebook"}
        job = Job(id=uuid.uuid4().hex[:12], kind=kind, params=record)
        with self._lock:
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, fn, dict(params)),
                         name=f"nux-job-{job.id}", daemon=True).start()
        return job

    def _run(self, job: Job, fn: JobFunction, params: dict[str, Any]) -> None:
        with self._slots:
            self._run_now(job, fn, params)

    def _run_now(self, job: Job, fn: JobFunction, params: dict[str, Any]) -> None:
        with job.lock:
            if job.stop_requested.is_set():
                job.status, job.finished = "stopped", time.time()
                return
            job.status, job.started = "running", time.time()
        try:
            result = fn(JobContext(job), params)
        except NuxError as exc:
            with job.lock:
                job.problems, job.status = list(exc.problems), "error"
        except Exception as exc:  # a bug, not a user's mistake: still a record, not a crash
            with job.lock:
                job.problems = [Problem(code="job-failed",
                                        message=f"{job.kind} job failed: "
                                                f"{type(exc).__name__}: {exc}",
                                        fix="see the Jupyter server log for details")]
                job.status = "error"
        else:
            with job.lock:
                job.result = result
                job.status = "stopped" if job.stop_requested.is_set() else "done"
        finally:
            with job.lock:
                job.finished = time.time()

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NuxError(problems=[Problem(code="job-missing", message=f"no job {job_id!r}",
                                             fix="list the jobs with GET /nux/jobs")])
        return job

    def list(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)

    def stop(self, job_id: str) -> Job:
        job = self.get(job_id)
        job.stop_requested.set()
        with job.lock:
            if job.status == "queued":
                job.status, job.finished = "stopped", time.time()
        return job

    def shutdown(self) -> None:
        for job in self.list():
            job.stop_requested.set()
