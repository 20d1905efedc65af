"""Worker processes: where the JupyterLab server runs a workbook's code.

The server never runs a notebook's code itself. A run from the DAG panel, a batch run, a tuning
study and an export's evaluation go to a worker process, spawned (it inherits no server state)
from the server's own Python. Each workbook keeps one worker for its runs and batch cases,
reused so that a loaded model stays loaded; each tune or export job gets a worker of its own for
as long as it runs. All of them share the stage cache, which lives on disk in ``.nux/cache``
beside the workbook.

A code cell that crashes its process (a segfault, ``os._exit``), hangs (a run past
``NuxWorkers.run_timeout_s``, a job asked to stop that does not within ``stop_grace_s``) or
exhausts memory (``memory_limit_mb`` bounds each worker's address space) costs that run: the
caller gets a :class:`WorkerEnded` saying what happened, and the next call starts a fresh worker.

multiprocessing with a pipe rather than ``ProcessPoolExecutor``: before Python 3.14 an executor
cannot end the worker of a running task, and a hang has to be ended.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any, Literal

from traitlets import Float, Int
from traitlets.config import Configurable

from nux_kernel.progress import ProgressExecutor
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec

__all__ = [
    "NuxWorkers",
    "WorkerContext",
    "WorkerEnded",
    "WorkerFunction",
    "WorkerPool",
    "WorkerProcess",
    "serve",
]


class NuxWorkers(Configurable):
    """The worker processes' limits: ``c.NuxWorkers.<name>`` in jupyter_server_config.py."""

    run_timeout_s = Float(600.0, help="A run (or one batch case) that takes longer is stopped "
                          "and its worker process ended; 0 waits forever.").tag(config=True)
    memory_limit_mb = Int(0, help="The address-space limit of each worker process, in MiB; "
                          "0 sets half of this machine's memory.").tag(config=True)
    stop_grace_s = Float(10.0, help="How long a job asked to stop may take before its worker "
                         "process is ended.").tag(config=True)
    startup_timeout_s = Float(120.0, help="How long a new worker process may take to start."
                              ).tag(config=True)
    workbooks = Int(4, help="How many workbooks keep an idle worker process at once."
                    ).tag(config=True)

    def memory_bytes(self) -> int:
        if self.memory_limit_mb > 0:
            return int(self.memory_limit_mb) << 20
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


EndedHow = Literal["crash", "timeout", "stopped"]


class WorkerEnded(Exception):
    """The worker process ended before answering: crashed, timed out, or stopped on request."""

    def __init__(self, how: EndedHow, reason: str) -> None:
        super().__init__(reason)
        self.how = how
        self.reason = reason


class WorkerContext:
    """What a function running in the worker sees: progress reports, stop requests, executors."""

    def __init__(self, conn: Connection, stop: ProcessEvent) -> None:
        self._conn = conn
        self._stop = stop
        self._send_lock = threading.Lock()
        self._executors: OrderedDict[str, ProgressExecutor] = OrderedDict()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def send(self, message: tuple[str, Any]) -> None:
        with self._send_lock:  # stages side by side report from their own threads
            self._conn.send(message)

    def report(self, **event: Any) -> None:
        self.send(("event", event))

    def executor(self, spec: WorkbookSpec, base_dir: Path) -> ProgressExecutor:
        """The workbook's executor, kept per spec hash so its components load once."""
        key = f"{spec.hash}:{base_dir}"
        executor = self._executors.pop(key, None)
        if executor is None:
            executor = ProgressExecutor(spec, base_dir=base_dir, observer=lambda stage, trace:
                                        self.report(stage=stage, trace=trace and trace.to_dict()))
        self._executors[key] = executor
        while len(self._executors) > 4:
            self._executors.popitem(last=False)[1].close()
        return executor

    def close(self) -> None:
        for executor in self._executors.values():
            with contextlib.suppress(Exception):
                executor.close()


WorkerFunction = Callable[[WorkerContext, dict[str, Any]], Any]


def serve(conn: Connection, stop: ProcessEvent, memory_bytes: int) -> None:
    """The worker process: answer calls from the server until it closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is for the server; it ends us
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    context = WorkerContext(conn, stop)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            break
        try:
            reply: tuple[str, Any] = ("result", fn(context, args))
        except NuxError as exc:
            reply = ("problems", list(exc.problems))
        except Exception as exc:  # reported to the server as the call's failure
            reply = ("failed", f"{type(exc).__name__}: {exc}")
        try:
            context.send(reply)
        except Exception as exc:  # e.g. an answer that does not pickle
            context.send(("failed", f"the answer could not be sent back: {exc}"))
    context.close()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "the worker process stopped answering"
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (killed: out of memory, or by another process)" if name == "SIGKILL" else ""
        return f"the worker process running the workbook crashed ({name}){hint}"
    return f"the worker process running the workbook exited (status {code})"


class WorkerProcess:
    """One spawned worker process, started on first use and after it ends; one call at a time."""

    def __init__(self, name: str, settings: NuxWorkers) -> None:
        self.name = name
        self.settings = settings
        self.starts = 0
        self._mp = multiprocessing.get_context("spawn")
        self._stop = self._mp.Event()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def call(self, fn: WorkerFunction, args: dict[str, Any], *,
             on_event: Callable[[dict[str, Any]], None] | None = None,
             timeout_s: float | None = None, stop: threading.Event | None = None) -> Any:
        """Run ``fn(context, args)`` in the worker (blocking: call it from a thread).

        Raises :class:`WorkerEnded` when the process ends first, `NuxError` with the problems
        the function raised.
        """
        with self._lock:
            conn = self._start()
            self._stop.clear()
            try:
                conn.send((fn, args))
            except (BrokenPipeError, EOFError, OSError):  # it died while idle: once more
                conn = self._start()
                conn.send((fn, args))
            return self._answer(conn, on_event, timeout_s, stop)

    def _answer(self, conn: Connection, on_event: Callable[[dict[str, Any]], None] | None,
                timeout_s: float | None, stop: threading.Event | None) -> Any:
        deadline = time.monotonic() + timeout_s if timeout_s else None
        stop_by: float | None = None
        while True:
            if conn.poll(0.1):
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):
                    raise WorkerEnded("crash", self._reap()) from None
                if kind == "event":
                    if on_event is not None:
                        on_event(value)
                    continue
                if kind == "result":
                    return value
                if kind == "problems":
                    raise NuxError(problems=value)
                raise NuxError(problems=[Problem(
                    code="worker-failed", message=f"the worker process failed: {value}",
                    fix="see the Jupyter server log for details")])
            now = time.monotonic()
            if deadline is not None and now > deadline:
                self._kill()
                raise WorkerEnded("timeout", f"the run did not finish in {timeout_s:g} s and "
                                  "was stopped (NuxWorkers.run_timeout_s)")
            if stop is not None and stop.is_set():
                if stop_by is None:
                    self._stop.set()
                    stop_by = now + self.settings.stop_grace_s
                elif now > stop_by:
                    self._kill()
                    raise WorkerEnded("stopped", "stopped on request; the worker process did "
                                      f"not stop within {self.settings.stop_grace_s:g} s and "
                                      "was ended")

    def _start(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self._kill()
        parent, child = self._mp.Pipe()
        process = self._mp.Process(target=serve, name=f"nux-worker {self.name}",
                                   args=(child, self._stop, self.settings.memory_bytes()))
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self.starts += 1
        try:
            ready = parent.poll(self.settings.startup_timeout_s) and parent.recv()
        except (EOFError, OSError):
            ready = None
        if not ready or ready[0] != "ready":
            reason = _exit_reason(process.exitcode) if not process.is_alive() else (
                f"it did not start in {self.settings.startup_timeout_s:g} s")
            self._kill()
            raise NuxError(problems=[Problem(
                code="worker-start", message=f"the worker process for {self.name} did not "
                f"start: {reason}", fix="see the Jupyter server log for details")])
        return parent

    def _reap(self) -> str:
        process = self._process
        if process is not None:
            process.join(5)
        reason = _exit_reason(process.exitcode if process is not None else None)
        self._kill()
        return reason

    def _kill(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is not None:
            if process.is_alive():
                process.kill()
            process.join(5)
            with contextlib.suppress(ValueError):
                process.close()

    def close(self) -> None:
        """End the process: asked to (its pipe closes), then killed if it does not go."""
        process, conn = self._process, self._conn
        if conn is not None:
            conn.close()
            self._conn = None
        if process is not None:
            process.join(2)
        self._kill()


class WorkerPool:
    """The server's worker processes: one per workbook (at most ``workbooks`` idle ones kept,
    least recently used ended first) and one per running job."""

    def __init__(self, settings: NuxWorkers | None = None) -> None:
        self.settings = settings or NuxWorkers()
        self._workbooks: OrderedDict[str, WorkerProcess] = OrderedDict()
        self._jobs: set[WorkerProcess] = set()
        self._lock = threading.Lock()

    def for_workbook(self, path: Path) -> WorkerProcess:
        """The worker that runs this workbook's runs and batch cases."""
        key = str(path)
        with self._lock:
            worker = self._workbooks.pop(key, None) or WorkerProcess(path.name, self.settings)
            self._workbooks[key] = worker
            idle = [k for k, w in self._workbooks.items() if k != key and not w.busy]
            ended = [self._workbooks.pop(k) for k in
                     idle[:max(0, len(self._workbooks) - self.settings.workbooks)]]
        for old in ended:
            old.close()
        return worker

    @contextlib.contextmanager
    def for_job(self, name: str) -> Any:
        """A worker of the job's own, ended when the job ends."""
        worker = WorkerProcess(name, self.settings)
        with self._lock:
            self._jobs.add(worker)
        try:
            yield worker
        finally:
            with self._lock:
                self._jobs.discard(worker)
            worker.close()

    def close(self) -> None:
        with self._lock:
            workers = [*self._workbooks.values(), *self._jobs]
            self._workbooks.clear()
            self._jobs.clear()
        for worker in workers:
            worker.close()
