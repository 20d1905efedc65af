"""One request through the workbook: the shared DAG walker over a stage client, made resilient.

The walk is :func:`nux_runtime.walker.walk`, the playground's own; what this module adds is the
transport a production call needs around each stage:

* a per-stage timeout (``timeout_s``, else the app default) -> category ``timeout``;
* retries with exponential backoff and jitter: up to ``retries`` for ``transient`` and
  ``timeout`` errors, and up to ``transport_retries`` when the replica itself was unreachable
  (killed, restarting), so a replica restart costs latency, not answers;
* response validation of an output stage with the reference-free criteria: one retry, then
  the fallback; a streamed answer is validated when it ends, and the tokens of an attempt that
  is discarded are withdrawn from the client with a :class:`Retract` (streaming takes the same
  retries and fallbacks as a plain call);
* the fallback stage named by ``fallback:`` (walked on demand with the same transport, reusing
  every stage already computed), and last the app's fallback response;
* per-stage traces, Prometheus metrics, an OpenTelemetry span and a redacted log line with
  the stage's inputs and output.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nux_runtime.errors import StageError
from nux_runtime.serve.criteria import Check
from nux_runtime.serve.logs import redact_value
from nux_runtime.serve.metrics import Metrics
from nux_runtime.serve.stage import Outcome
from nux_runtime.serve.tracing import Tracer
from nux_runtime.serve.transport import StageClient, Unreachable
from nux_runtime.spec import StageSpec, WorkbookSpec
from nux_runtime.trace import StageTrace, preview
from nux_runtime.walker import walk

__all__ = ["Pipeline", "RequestResult", "Retract"]

RETRYABLE = ("transient", "timeout")


@dataclass(frozen=True)
class Retract:
    """Sent to a token sink: the tokens streamed so far belong to a discarded answer."""

    reason: str


TokenSink = Callable[[str | Retract], None]


@dataclass
class RequestResult:
    """The answer to one request, and what each stage did for it."""

    request_id: str
    output: Any = None
    ok: bool = False
    error: StageError | None = None
    fallback: str | None = None
    traces: dict[str, StageTrace] = field(default_factory=dict)
    streamed: bool = False

    def stages(self) -> dict[str, dict[str, Any]]:
        return {sid: {k: v for k, v in t.to_dict().items() if k not in ("stage",)}
                for sid, t in self.traces.items()}


class Pipeline:
    """Runs requests for one workbook over one stage client."""

    def __init__(self, spec: WorkbookSpec, client: StageClient, *, metrics: Metrics,
                 tracer: Tracer, logger: logging.Logger, checks: list[Check],
                 default_timeout_s: float, transport_retries: int,
                 fallback_response: Any = None, validate_response: bool = True,
                 log_stages: bool = False) -> None:
        self.spec = spec
        self.client = client
        self.metrics = metrics
        self.tracer = tracer
        self.logger = logger
        self.checks = checks if validate_response else []
        self.default_timeout_s = default_timeout_s
        self.transport_retries = transport_retries
        self.fallback_response = fallback_response
        self.log_stages = log_stages

    # -- one stage ---------------------------------------------------------------------------
    async def _attempt(self, stage: StageSpec, values: dict[str, Any],
                       sink: TokenSink | None) -> Outcome:
        timeout = stage.timeout_s or self.default_timeout_s
        if sink is None:
            try:
                return await asyncio.wait_for(self.client.call(stage.id, values), timeout)
            except TimeoutError:
                return Outcome(ok=False, category="timeout", compute_ms=timeout * 1000.0,
                               cause=f"no answer within {timeout:g} s (timeout_s)")

        async def consume() -> Outcome:
            end: Outcome = Outcome(ok=False, category="error", cause="the stream ended early")
            async for chunk in self.client.stream(stage.id, values):
                if "token" in chunk:
                    sink(str(chunk["token"]))  # type: ignore[misc]
                elif "end" in chunk:
                    end = chunk["end"]
            return end

        try:
            return await asyncio.wait_for(consume(), timeout)
        except TimeoutError:
            return Outcome(ok=False, category="timeout", compute_ms=timeout * 1000.0,
                           cause=f"the stream did not finish within {timeout:g} s (timeout_s)")

    def _invalid(self, stage: StageSpec, value: Any) -> str | None:
        for check in self.checks:
            if check.applies_to(stage.id, self.spec.output):
                passed, detail = check.score(value)
                if not passed:
                    return f"criterion {check.name!r}: {detail}"
        return None

    async def call_stage(self, stage: StageSpec, values: dict[str, Any],
                         traces: dict[str, StageTrace], sink: TokenSink | None = None,
                         request_id: str = "") -> Any:
        """Call one stage with timeout, retries and response validation; raise StageError."""
        start = time.perf_counter()
        attempt = transport_failures = 0
        validated_retry = False
        sent: list[str] = []
        if sink is not None:
            downstream = sink

            def sink(token: str | Retract) -> None:
                if isinstance(token, str):
                    sent.append(token)
                downstream(token)

        def retract(reason: str) -> None:
            if sent and sink is not None:
                sent.clear()
                sink(Retract(reason))

        with self.tracer.span(f"stage {stage.id}", {"nux.stage": stage.id,
                                                     "nux.component": stage.component.id}) as span:
            while True:
                try:
                    outcome = await self._attempt(stage, values, sink)
                except Unreachable as exc:
                    transport_failures += 1
                    self.metrics.stage_error(stage.id, "unreachable")
                    retract(f"the stage's replica is unreachable: {exc}")
                    if transport_failures > self.transport_retries:
                        outcome = Outcome(ok=False, category="transient",
                                          cause=f"the stage's replica is unreachable: {exc}")
                    else:
                        self.metrics.stage_retries.labels(self.spec.name, stage.id).inc()
                        await asyncio.sleep(_backoff(transport_failures - 1))
                        continue
                if outcome.get("ok"):
                    problem = self._invalid(stage, outcome.get("value"))
                    if problem is None:
                        break
                    self.metrics.stage_error(stage.id, "output")
                    retract(problem)
                    if not validated_retry:
                        validated_retry = True
                        self.metrics.stage_retries.labels(self.spec.name, stage.id).inc()
                        continue
                    outcome = Outcome(ok=False, category="output", cause=problem,
                                      compute_ms=outcome.get("compute_ms", 0.0))
                    break
                category = outcome.get("category", "error")
                self.metrics.stage_error(stage.id, category)
                retract(outcome.get("cause", "failed"))
                if category in RETRYABLE and attempt < stage.retries:
                    self.metrics.stage_retries.labels(self.spec.name, stage.id).inc()
                    await asyncio.sleep(_backoff(attempt))
                    attempt += 1
                    continue
                break
            seconds = time.perf_counter() - start
            span.set_attribute("nux.ok", bool(outcome.get("ok")))
        if self.log_stages:
            self.logger.info("stage answered" if outcome.get("ok") else "stage failed", extra={
                "request_id": request_id, "stage": stage.id, "inputs": redact_value(values),
                "output": redact_value(outcome.get("value")), "ok": bool(outcome.get("ok")),
                "category": outcome.get("category"), "latency_ms": round(seconds * 1000, 3)})
        if not outcome.get("ok"):
            cause = outcome.get("cause", "failed")
            traces[stage.id] = StageTrace(stage.id, "error", latency_ms=seconds * 1000.0,
                                          reason=cause)
            self.metrics.stage_latency.labels(self.spec.name, stage.id).observe(seconds)
            raise StageError(stage.id, cause, category=outcome.get("category", "error"))
        value = outcome.get("value")
        tokens_in, tokens_out = outcome.get("tokens_in", 0), outcome.get("tokens_out", 0)
        cost = float(outcome.get("cost_usd", 0.0))
        self.metrics.stage_call(stage.id, seconds, tokens_in, tokens_out, cost)
        traces[stage.id] = StageTrace(stage.id, "ok", latency_ms=seconds * 1000.0,
                                      tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost,
                                      output_preview=preview(value))
        return value

    # -- one request -------------------------------------------------------------------------
    async def run(self, inputs: Mapping[str, Any], request_id: str,
                  sink: TokenSink | None = None) -> RequestResult:
        """Walk the workbook for one request; tokens of a streaming output stage go to ``sink``."""
        result = RequestResult(request_id)
        traces = result.traces
        computed: dict[str, Any] = {}
        stream_into: dict[str, TokenSink] = {}
        if sink is not None:
            for out in self.spec.output:
                try:
                    if await self.client.streams(out):
                        stream_into[out] = sink
                except Unreachable:
                    pass

        async def call(stage: StageSpec, values: dict[str, Any]) -> Any:
            if stage.id in computed:
                return computed[stage.id]
            try:
                value = await self.call_stage(stage, values, traces, stream_into.get(stage.id),
                                              request_id)
                if stage.id in stream_into:
                    result.streamed = True
            except StageError as exc:
                if not stage.fallback or stage.fallback == stage.id:
                    raise
                value = await self._fallback(stage, exc, call, inputs)
                traces[stage.id].reason = f"{exc.cause}; answered by fallback {stage.fallback!r}"
                result.fallback = stage.fallback
            computed[stage.id] = value
            return value

        with self.tracer.span("request", {"nux.workbook": self.spec.name,
                                          "nux.request_id": request_id}):
            walked = await walk(self.spec, inputs, call)
        for stage_id, outcome in walked.outcomes.items():
            if outcome.status == "skipped":
                traces[stage_id] = StageTrace(stage_id, "skipped", reason=outcome.reason)
            elif outcome.status == "error" and stage_id not in traces:
                traces[stage_id] = StageTrace(stage_id, "error", reason=outcome.reason)
        if walked.ok:
            result.ok, result.output = True, walked.output
        else:
            errors = walked.errors
            result.error = errors[0] if errors else StageError(
                self.spec.output[0], "every output stage was skipped", category="input")
            if self.fallback_response is not None:
                result.ok, result.output, result.fallback = True, self.fallback_response, "response"
                self.metrics.fallbacks.labels(self.spec.name, "response").inc()
        return result

    async def _fallback(self, stage: StageSpec, error: StageError,
                        call: Callable[[StageSpec, dict[str, Any]], Any],
                        inputs: Mapping[str, Any]) -> Any:
        fallback = stage.fallback or ""
        self.logger.warning("stage failed; trying its fallback", extra={
            "stage": stage.id, "fallback": fallback, "cause": error.cause,
            "category": error.category})
        self.metrics.fallbacks.labels(self.spec.name, stage.id).inc()
        walked = await walk(self.spec, inputs, call, targets=[fallback])
        outcome = walked.outcomes.get(fallback)
        if outcome is None or outcome.status != "ok":
            raise error
        return outcome.value


def _backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to 0.1 s, 0.2 s, 0.4 s ... capped at 2 s."""
    return random.uniform(0.5, 1.0) * min(0.1 * 2**attempt, 2.0)
