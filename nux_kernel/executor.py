"""The playground executor: the shared DAG walker over an in-process transport.

Each stage runs its vetted component in this process, through the stage cache, and leaves a
:class:`~nux_runtime.trace.StageTrace` (latency, tokens, cost, cache hit). Components are built
once per stage spec and reused by every run, evaluation case and tuning trial.

A trace's ``latency_ms`` is what the call took: the lookup for a cache hit, the warm call
otherwise (its retries included). ``compute_ms`` is the component's compute of the answer
(measured now, or when the cached answer was computed; the call is priced on it, as a replica
prices it) and ``cold_start_ms`` the time this call waited for the component to load
(a model) or for the stage's first read of its external state's version (opening a local
store): reported apart, never part of a latency that evaluation or tuning measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nux_kernel.cache import CacheEntry, StageCache, UnhashableInput
from nux_runtime.answer_checks import reference_free_checks
from nux_runtime.components.base import Component, RuntimeContext, Uncacheable
from nux_runtime.errors import NuxError, StageError
from nux_runtime.registry import load_component
from nux_runtime.spec import StageSpec, WorkbookSpec
from nux_runtime.stagecall import (
    Outcome,
    StagePolicy,
    StageRunner,
    answer_by_fallback,
    error_outcome,
    failure,
)
from nux_runtime.trace import StageTrace, preview
from nux_runtime.walker import WalkResult, walk

__all__ = ["Executor", "RunResult", "write_traces"]

T = TypeVar("T")


@dataclass
class RunResult:
    """One request through the workbook: the answer, every stage's trace, and the errors."""

    run_id: str
    inputs: dict[str, Any]
    walk: WalkResult
    traces: dict[str, StageTrace] = field(default_factory=dict)
    latency_ms: float = 0.0

    @property
    def output(self) -> Any:
        """The workbook's answer; raises :class:`StageError` (naming the stage and the cause)
        when the run gave none: a stage failed, or the output stage was skipped or not run.
        ``ok``, ``errors`` and ``walk.outcomes`` read a failed run without raising."""
        walk = self.walk
        if walk.ok:
            return walk.output
        if walk.errors:
            raise walk.errors[0]
        ran = [s for s in walk.spec.output if s in walk.outcomes]
        if not ran:
            raise StageError(walk.spec.output[0], "the output stage did not run (the run "
                             f"stopped at {', '.join(walk.outcomes) or 'no stage'}); read "
                             "result.walk.outcomes[stage].value")
        reasons = "; ".join(walk.outcomes[s].reason or s for s in ran)
        raise StageError(ran[0], f"the output stage was skipped ({reasons})")

    @property
    def ok(self) -> bool:
        return self.walk.ok

    @property
    def errors(self) -> list[StageError]:
        return self.walk.errors

    @property
    def cost_usd(self) -> float:
        return sum(t.cost_usd for t in self.traces.values())

    @property
    def tokens(self) -> tuple[int, int]:
        return (sum(t.tokens_in for t in self.traces.values()),
                sum(t.tokens_out for t in self.traces.values()))

    def trace_list(self) -> list[StageTrace]:
        order = [s.id for s in self.walk.spec.stages]
        return sorted(self.traces.values(), key=lambda t: order.index(t.stage))

    def to_records(self) -> list[dict[str, Any]]:
        """JSONL records: one per stage, each with the run id."""
        return [{"run_id": self.run_id, **t.to_dict()} for t in self.trace_list()]


class Executor:
    """Run a `WorkbookSpec` in this process, with the stage cache and per-stage traces.

    Each stage call goes through :class:`~nux_runtime.stagecall.StagePolicy`, the served app's
    own: the stage's timeout, retries of transient and timed-out calls, response validation of
    the output with the reference-free criteria (``validate=False`` turns it off, as the app's
    ``validate_response`` does), then the stage's fallback. A cached answer is validated like a
    fresh one, and a retry never reads the cache.
    """

    def __init__(self, spec: WorkbookSpec, *, base_dir: str | Path | None = None,
                 cache: StageCache | bool = True, max_concurrency: int = 8,
                 validate: bool = True) -> None:
        self.spec = spec
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.context = RuntimeContext(base_dir=self.base_dir)
        if cache is True:
            cache = StageCache(self.base_dir / ".nux" / "cache")
        self.cache: StageCache | None = cache or None
        self.max_concurrency = max_concurrency
        self.validate = validate
        self._runners: dict[str, StageRunner] = {}
        self._classes: dict[str, type[Component]] = {}
        self._policies: dict[str, StagePolicy] = {}
        self._versioned: set[str] = set()
        self._lock = threading.Lock()
        self.executions = 0

    @property
    def policy(self) -> StagePolicy:
        """The stage-call policy of the current spec (its outputs and criteria)."""
        spec = self.spec
        policy = self._policies.get(spec.hash)
        if policy is None:
            checks = reference_free_checks(spec.criteria) if self.validate else []
            policy = self._policies[spec.hash] = StagePolicy(spec.output, checks)
        return policy

    def component_class(self, stage: StageSpec) -> type[Component]:
        """The class implementing the stage's component (imported once)."""
        name = stage.component.implementation
        cls = self._classes.get(name)
        if cls is None:
            try:
                cls = self._classes[name] = load_component(name)
            except StageError:
                raise
            except NuxError as exc:
                raise StageError(stage.id, str(exc), category="resource") from None
        return cls

    def cache_key(self, stage: StageSpec, inputs: dict[str, Any]
                  ) -> tuple[str | None, str | None]:
        """(cache key, external state version) of a call; the key is None when the call may
        not be cached (a write, state without a version, an input without a value form)."""
        if self.cache is None:
            return None, None
        cls = self.component_class(stage)
        if not cls.may_cache(stage):
            return None, None
        try:
            state = cls.cache_state(stage, self.context)
            return StageCache.key(stage.hash, inputs, state), state
        except (Uncacheable, UnhashableInput):
            return None, None

    def data_state(self) -> dict[str, str] | None:
        """The version of the external state each stage reads (the stages that read none are
        left out); None when a stage reads or writes state that has no version (a write, a
        database server, a collection no ingest versioned), so no result of a whole run can be
        keyed by it. A result recorded with this mapping is current while it is unchanged."""
        found: dict[str, str] = {}
        for stage in self.spec.stages:
            try:
                cls = self.component_class(stage)
                if not cls.may_cache(stage):
                    return None
                state = cls.cache_state(stage, self.context)
            except (Uncacheable, StageError):  # a stage that cannot start: its run will say
                return None
            if state is not None:
                found[stage.id] = state
        return found

    def _load(self, stage: StageSpec) -> float:
        """Build the stage's component unless it is built; the milliseconds this waited."""
        if stage.hash in self._runners:
            return 0.0
        start = time.perf_counter()
        self.runner(stage)
        return (time.perf_counter() - start) * 1000.0

    def runner(self, stage: StageSpec) -> StageRunner:
        """The stage's runner and its component (built on first use, keyed by stage hash)."""
        runner = self._runners.get(stage.hash)
        if runner is None:
            cls = self.component_class(stage)
            with self._lock:
                runner = self._runners.get(stage.hash)
                if runner is None:
                    runner = StageRunner(stage, context=self.context, cls=cls)
                    self._runners[stage.hash] = runner
        return runner

    def component(self, stage: StageSpec) -> Component:
        """The stage's component instance (built on first use, keyed by stage hash)."""
        return self.runner(stage).component

    def _budget(self, stage: StageSpec, inputs: dict[str, Any], state: str | None
                ) -> tuple[str | None, int | None]:
        """The stage's budget-free cache key and current budget, for components that have one."""
        component = self.component(stage)
        if component.budget_param is None:
            return None, None
        return (StageCache.budget_key(stage, component.budget_param, inputs, state),
                component.budget())

    async def _call(self, traces: dict[str, StageTrace], stage: StageSpec,
                    inputs: dict[str, Any]) -> Any:
        start = time.perf_counter()
        cold_ms = 0.0
        entry: CacheEntry | None = None
        budget_key: str | None = None
        try:
            first = stage.hash not in self._versioned
            key, state = self.cache_key(stage, inputs)
            if first:  # the first version read opens what the stage reads (a local store)
                self._versioned.add(stage.hash)
                cold_ms = (time.perf_counter() - start) * 1000.0
            if self.cache is not None and key is not None:
                entry = self.cache.get(key)
                if entry is None:
                    cold_ms += self._load(stage)
                    budget_key, budget = self._budget(stage, inputs, state)
                    if budget_key is not None and budget is not None:
                        entry = self.cache.get_within(budget_key, budget)
            if entry is None:  # built before the call, as a replica is: outside the timeout
                cold_ms += self._load(stage)
        except StageError as exc:
            traces[stage.id] = StageTrace(
                stage.id, "error", cold_start_ms=cold_ms,
                latency_ms=(time.perf_counter() - start) * 1000.0 - cold_ms, reason=exc.cause)
            raise
        cached = entry
        hit = False

        async def attempt(number: int) -> Outcome:
            nonlocal cold_ms, hit
            hit = number == 0 and cached is not None
            if cached is not None and hit:
                return Outcome(ok=True, value=cached.value, tokens_in=cached.tokens_in,
                               tokens_out=cached.tokens_out, cost_usd=cached.cost_usd,
                               compute_ms=cached.compute_ms)
            try:
                cold_ms += self._load(stage)  # a retry of a cached answer that failed validation
            except StageError as exc:
                return error_outcome(exc)
            outcome = await _off_loop(self.runner(stage).run, inputs)
            with self._lock:
                self.executions += 1
            return outcome

        begin = time.perf_counter()
        cold_before = cold_ms
        outcome = await self.policy.call(stage, attempt)
        took_ms = (time.perf_counter() - begin) * 1000.0 - (cold_ms - cold_before)
        if not outcome.get("ok"):
            err = failure(stage, outcome)
            traces[stage.id] = StageTrace(stage.id, "error", cold_start_ms=cold_ms,
                                          latency_ms=took_ms, reason=err.cause)
            raise err
        if hit and cached is not None:
            entry = cached
            latency_ms = (time.perf_counter() - start) * 1000.0 - cold_ms
        else:
            entry = CacheEntry(outcome.get("value"), outcome.get("tokens_in", 0),
                               outcome.get("tokens_out", 0), float(outcome.get("cost_usd", 0.0)),
                               float(outcome.get("compute_ms", took_ms)),
                               outcome.get("budget_used"))
            if self.cache is not None and key is not None:
                self.cache.put(key, entry)
                if budget_key is not None and entry.budget_used is not None:
                    self.cache.put(budget_key, entry)
            latency_ms = took_ms
        traces[stage.id] = StageTrace(
            stage.id, "ok", latency_ms=latency_ms, tokens_in=entry.tokens_in,
            tokens_out=entry.tokens_out, cost_usd=entry.cost_usd, cache_hit=hit,
            output_preview=preview(entry.value), compute_ms=entry.compute_ms,
            cold_start_ms=cold_ms)
        return entry.value

    async def arun(self, inputs: Mapping[str, Any], *, targets: Iterable[str] | None = None,
                   inline: bool = True) -> RunResult:
        traces: dict[str, StageTrace] = {}
        start = time.perf_counter()
        spec = self.spec

        async def call(stage: StageSpec, values: dict[str, Any]) -> Any:
            try:
                return await self._call(traces, stage, values)
            except StageError as exc:
                if not stage.fallback or stage.fallback == stage.id:
                    raise
                value = await answer_by_fallback(spec, stage, exc, call, inputs,
                                                 max_concurrency=self.max_concurrency)
                traces[stage.id].reason = f"{exc.cause}; answered by fallback {stage.fallback!r}"
                return value

        result = await walk(spec, inputs, call, targets=targets,
                            max_concurrency=self.max_concurrency, inline=inline)
        for stage_id, outcome in result.outcomes.items():
            if outcome.status == "skipped":
                traces[stage_id] = StageTrace(stage_id, "skipped", reason=outcome.reason)
            elif outcome.status == "error" and stage_id not in traces:
                traces[stage_id] = StageTrace(stage_id, "error", reason=outcome.reason)
        return RunResult(run_id=uuid.uuid4().hex[:12], inputs=dict(inputs), walk=result,
                         traces=traces, latency_ms=(time.perf_counter() - start) * 1000.0)

    def run(self, inputs: Mapping[str, Any], *, targets: Iterable[str] | None = None
            ) -> RunResult:
        """Run one request (blocking)."""
        return _blocking(self.arun(inputs, targets=targets))

    async def arun_many(self, cases: Sequence[Mapping[str, Any]], *, concurrency: int = 4
                        ) -> list[RunResult]:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(case: Mapping[str, Any]) -> RunResult:
            async with semaphore:
                return await self.arun(case, inline=False)

        return list(await asyncio.gather(*(one(c) for c in cases)))

    def run_many(self, cases: Sequence[Mapping[str, Any]], *, concurrency: int = 4
                 ) -> list[RunResult]:
        """Run a batch of requests with bounded concurrency (blocking)."""
        return _blocking(self.arun_many(cases, concurrency=concurrency))

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        if self.cache is not None:
            self.cache.close()


class _DaemonWorkers:
    """Daemon threads that run stage calls off the event loop, kept between calls.

    A call the policy stopped waiting for (its timeout) may never return (a hung connection).
    ``ThreadPoolExecutor`` would keep it in a bounded pool and the interpreter would wait for it
    at exit; here every worker is a daemon thread, and a call finds an idle worker or starts a
    new one, so a hung call holds one thread and delays no other call, as the served app leaves
    a call its replica still runs. A worker idle for ``idle_s`` ends. Reusing threads keeps a
    stage call's overhead to a hand-off instead of a thread start.
    """

    def __init__(self, idle_s: float = 30.0) -> None:
        self.idle_s = idle_s
        self._reset()

    def _reset(self) -> None:
        """No workers (a forked child inherits the count, not the threads)."""
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # workers waiting for a job, less the jobs queued for them

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                self._jobs.put(job)
                return
        threading.Thread(target=self._work, args=(job,), name="nux-stage-call",
                         daemon=True).start()

    def _work(self, job: Callable[[], None] | None) -> None:
        while job is not None:
            job()
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=self.idle_s)
            except queue.Empty:
                with self._lock:
                    try:  # a job handed over as the wait ended
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        self._idle -= 1
                        job = None


_workers = _DaemonWorkers()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_workers._reset)


async def _off_loop(fn: Callable[[T], Outcome], arg: T) -> Outcome:
    """``fn(arg)`` on a daemon worker thread (:class:`_DaemonWorkers`), awaited here."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Outcome] = loop.create_future()

    def settle(value: Outcome | None, exc: BaseException | None) -> None:
        if future.done():  # the caller gave up (its timeout)
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def work() -> None:
        value: Outcome | None = None
        error: BaseException | None = None
        try:
            value = fn(arg)
        except BaseException as exc:  # delivered to the awaiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, value, error)

    _workers.submit(work)
    return await future


_loops = threading.local()


def _blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion, also from inside a running loop (a Jupyter kernel).

    Each thread keeps one event loop for its blocking runs: ``asyncio.run`` would build a new
    loop and install signal handlers on every call, which costs more than a short chain.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        loop = getattr(_loops, "loop", None)
        if loop is None or loop.is_closed():
            loop = _loops.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future: Future[T] = pool.submit(lambda: _blocking(coro))
        return future.result()


def write_traces(path: str | Path, results: Iterable[RunResult]) -> Path:
    """Append every run's stage traces to a JSONL file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("a", encoding="utf-8") as fh:
        for result in results:
            for record in result.to_records():
                fh.write(json.dumps(record, default=str) + "\n")
    return p
