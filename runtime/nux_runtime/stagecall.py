"""One stage call, made the same way by the playground and by the served app.

The playground executor and the Serve pipeline walk the same DAG (:mod:`nux_runtime.walker`);
this module is what both do for each stage on the way:

* :class:`StageRunner` builds the stage's vetted component from the registry and makes one
  call: the answer normalized to a :class:`~nux_runtime.components.base.StageResult`, any
  exception turned into an error naming the stage, the call priced with the stage's cost model.
  The answer is a plain :class:`Outcome` dict (it crosses a process boundary in production,
  never as a pickled exception).
* :class:`StagePolicy` makes a call resilient: a timeout (the stage's ``timeout_s``, else the
  app's default; a stage that writes data, which production runs as a job, has none unless it
  sets one) gives category ``timeout``; ``transient`` and ``timeout`` errors are retried up
  to the stage's ``retries`` with exponential backoff and jitter (a ``ConnectionError`` or
  ``TimeoutError`` raised by the component counts as transient, see :func:`classify`); a replica
  that could not take the call (:class:`Unreachable`) is retried up to ``transport_retries``; and
  the answer of an output stage is validated with the workbook's reference-free criteria: one
  retry, then category ``output``.
* :func:`answer_by_fallback` walks the stage named by ``fallback:`` on demand, reusing what the
  walk already computed.

The playground keeps its stage cache around the call (a cached answer is validated like a fresh
one; a retry never reads the cache); the served app adds metrics, a span and a log line.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from nux_runtime.answer_checks import Check
from nux_runtime.components.base import Component, RuntimeContext, StageResult
from nux_runtime.data import stage_data
from nux_runtime.errors import NuxError, StageError
from nux_runtime.registry import load_component
from nux_runtime.spec import StageSpec, WorkbookSpec, canonical_json
from nux_runtime.walker import Transport, walk

__all__ = ["DEFAULT_TIMEOUT_S", "Attempt", "Outcome", "StagePolicy", "StageRunner",
           "Unreachable", "answer_by_fallback", "backoff", "build_component", "classify",
           "error_outcome", "failure"]

#: The per-call timeout of a stage without ``timeout_s`` (the served app's default too).
DEFAULT_TIMEOUT_S = 60.0

#: Error categories worth another attempt.
RETRYABLE = ("transient", "timeout")

#: Python exceptions that say "try again": a dropped connection, a busy peer, a slow answer.
TRANSIENT_CAUSES: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


class Unreachable(Exception):
    """The stage's replica could not take the call (died, restarting, overloaded)."""


class Outcome(TypedDict, total=False):
    """A stage call's answer: the value and what it cost, or the cause and its category."""

    ok: bool
    value: Any
    tokens_in: int
    tokens_out: int
    cost_usd: float
    compute_ms: float
    budget_used: int
    cause: str
    category: str


def classify(exc: StageError) -> str:
    """The error's category, with a wrapped connection or timeout error counted as transient."""
    if exc.category == "error" and isinstance(exc.__cause__, TRANSIENT_CAUSES):
        return "transient"
    return exc.category


def error_outcome(exc: StageError, compute_ms: float = 0.0) -> Outcome:
    return Outcome(ok=False, cause=exc.cause, category=classify(exc), compute_ms=compute_ms)


def failure(stage: StageSpec, outcome: Outcome) -> StageError:
    """The error a failed outcome stands for, naming the stage."""
    return StageError(stage.id, outcome.get("cause", "failed"),
                      category=outcome.get("category", "error"))


def build_component(stage: StageSpec, context: RuntimeContext,
                    cls: type[Component] | None = None) -> Component:
    """The stage's component, built from the registry; a missing one names the stage."""
    try:
        if cls is None:
            cls = load_component(stage.component.implementation)
        return cls(stage, context)
    except StageError:
        raise
    except NuxError as exc:
        raise StageError(stage.id, str(exc), category="resource") from None


class StageRunner:
    """One stage's component and its calls, priced with the stage's cost model."""

    def __init__(self, stage: StageSpec, base_dir: str | Path | None = None, *,
                 context: RuntimeContext | None = None,
                 cls: type[Component] | None = None) -> None:
        self.stage = stage
        self.context = context or RuntimeContext(base_dir=Path(base_dir or "."))
        self.component = build_component(stage, self.context, cls)

    @property
    def streams(self) -> bool:
        return callable(getattr(self.component, "stream", None))

    def reconfigure(self, params: Mapping[str, Any]) -> None:
        self.component.reconfigure(dict(params))

    def params(self) -> dict[str, Any]:
        """The params the component runs with (the spec's, or a Serve config's user_config)."""
        return json.loads(canonical_json(dict(getattr(self.component, "params", {}) or {})))

    def priced(self, result: StageResult, compute_ms: float) -> Outcome:
        cost = result.cost_usd if result.cost_usd is not None else self.stage.cost.cost(
            result.tokens_in, result.tokens_out, compute_ms / 1000.0)
        outcome = Outcome(ok=True, value=result.value, tokens_in=result.tokens_in,
                          tokens_out=result.tokens_out, cost_usd=cost, compute_ms=compute_ms)
        used = result.meta.get("budget_used")
        if isinstance(used, int):  # finished on its own within this budget (see Component)
            outcome["budget_used"] = used
        return outcome

    def _failed(self, exc: Exception, start: float) -> Outcome:
        if not isinstance(exc, StageError):
            err = StageError(self.stage.id, f"{type(exc).__name__}: {exc}")
            err.__cause__ = exc
            exc = err
        return error_outcome(exc, (time.perf_counter() - start) * 1000.0)

    def run(self, inputs: Mapping[str, Any]) -> Outcome:
        """One call of the component (no retries: :class:`StagePolicy` owns those)."""
        start = time.perf_counter()
        try:
            raw = self.component(dict(inputs))
        except Exception as exc:
            return self._failed(exc, start)
        result = raw if isinstance(raw, StageResult) else StageResult(raw)
        return self.priced(result, (time.perf_counter() - start) * 1000.0)

    def stream(self, inputs: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """``{"token": text}`` chunks, then ``{"end": Outcome}`` with the whole text as value.

        A component without ``stream`` answers with one chunk holding its whole answer. A
        streaming component's ``stream`` may *return* a :class:`StageResult` whose token counts
        price the call as its plain call is priced.
        """
        if not self.streams:
            outcome = self.run(inputs)
            if outcome.get("ok"):
                yield {"token": answer_text(outcome.get("value"))}
            yield {"end": outcome}
            return
        start = time.perf_counter()
        parts: list[str] = []
        counted: Any = None
        try:
            pieces = self.component.stream(dict(inputs))  # type: ignore[attr-defined]
            while True:
                try:
                    token = next(pieces)
                except StopIteration as stop:
                    counted = stop.value
                    break
                parts.append(str(token))
                yield {"token": str(token)}
        except Exception as exc:
            yield {"end": self._failed(exc, start)}
            return
        text = "".join(parts)
        if isinstance(counted, StageResult):
            result = StageResult(text, tokens_in=counted.tokens_in, tokens_out=counted.tokens_out,
                                 cost_usd=counted.cost_usd, meta=counted.meta)
        else:  # a component that does not count its stream: one token per piece
            result = StageResult(text, tokens_out=len(parts))
        yield {"end": self.priced(result, (time.perf_counter() - start) * 1000.0)}

    def close(self) -> None:
        self.component.close()


def answer_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


#: One attempt of a call: the attempt's number (0 first) -> its outcome.
Attempt = Callable[[int], Awaitable[Outcome]]
Event = Callable[[str], None]


def _ignore(_: str) -> None:
    return None


@dataclass(frozen=True)
class StagePolicy:
    """Timeout, retries and response validation of a stage call (see the module docstring)."""

    outputs: tuple[str, ...]
    checks: Sequence[Check] = ()
    default_timeout_s: float = DEFAULT_TIMEOUT_S
    transport_retries: int = 0

    def timeout_s(self, stage: StageSpec) -> float | None:
        """The stage's ``timeout_s``, else the default; None (no limit) for a stage that
        writes data (an ingest: production runs it as a job, not as a served call)."""
        if stage.timeout_s:
            return stage.timeout_s
        if any(ref.access == "write" for ref in stage_data(stage)):
            return None
        return self.default_timeout_s

    def invalid(self, stage: StageSpec, value: Any) -> str | None:
        """Why ``value`` fails a reference-free criterion on this stage; None when it passes."""
        for check in self.checks:
            if check.applies_to(stage.id, self.outputs):
                passed, detail = check.score(value)
                if not passed:
                    return f"criterion {check.name!r}: {detail}"
        return None

    async def call(self, stage: StageSpec, attempt: Attempt, *, on_error: Event = _ignore,
                   on_retry: Event = _ignore, on_discard: Event = _ignore) -> Outcome:
        """The outcome of ``stage``'s call after its retries; never raises for a failed call.

        ``on_error(category)`` hears every failed attempt, ``on_retry(why)`` every retry, and
        ``on_discard(reason)`` every attempt whose answer is thrown away (a streamed answer's
        tokens are withdrawn from the client then).
        """
        timeout = self.timeout_s(stage)
        number = tries = transport_failures = 0
        validated_retry = False
        while True:
            try:
                # a deadline on this task, not a task per call as asyncio.wait_for makes
                async with asyncio.timeout(timeout):
                    outcome = await attempt(number)
            except TimeoutError:
                limit = timeout or 0.0
                outcome = Outcome(ok=False, category="timeout", compute_ms=limit * 1000.0,
                                  cause=f"no answer within {limit:g} s (timeout_s)")
            except Unreachable as exc:
                transport_failures += 1
                on_error("unreachable")
                cause = f"the stage's replica is unreachable: {exc}"
                on_discard(cause)
                if transport_failures > self.transport_retries:
                    return Outcome(ok=False, category="transient", cause=cause)
                on_retry("unreachable")
                await asyncio.sleep(backoff(transport_failures - 1))
                number += 1
                continue
            if outcome.get("ok"):
                problem = self.invalid(stage, outcome.get("value"))
                if problem is None:
                    return outcome
                on_error("output")
                on_discard(problem)
                if not validated_retry:
                    validated_retry = True
                    on_retry("output")
                    number += 1
                    continue
                return Outcome(ok=False, category="output", cause=problem,
                               compute_ms=outcome.get("compute_ms", 0.0))
            category = outcome.get("category", "error")
            on_error(category)
            on_discard(outcome.get("cause", "failed"))
            if category in RETRYABLE and tries < stage.retries:
                on_retry(category)
                await asyncio.sleep(backoff(tries))
                tries += 1
                number += 1
                continue
            return outcome


async def answer_by_fallback(spec: WorkbookSpec, stage: StageSpec, error: StageError,
                             call: Transport, inputs: Mapping[str, Any], *,
                             max_concurrency: int = 8) -> Any:
    """The answer of ``stage``'s fallback stage, walked on demand with ``call``; re-raises
    ``error`` when the fallback does not answer either."""
    fallback = stage.fallback
    if not fallback or fallback == stage.id:
        raise error
    walked = await walk(spec, inputs, call, targets=[fallback], max_concurrency=max_concurrency)
    outcome = walked.outcomes.get(fallback)
    if outcome is None or outcome.status != "ok":
        raise error
    return outcome.value


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to 0.1 s, 0.2 s, 0.4 s ... capped at 2 s."""
    return random.uniform(0.5, 1.0) * min(0.1 * 2**attempt, 2.0)
