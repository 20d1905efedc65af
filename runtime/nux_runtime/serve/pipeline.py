"""One request through the workbook: the shared DAG walker over a stage client, made resilient.

The walk is :func:`nux_runtime.walker.walk` and each stage call goes through
:class:`~nux_runtime.stagecall.StagePolicy`, both the playground's own: the stage's timeout,
retries of transient and timed-out calls (and of a replica that was unreachable: killed,
restarting, so a replica restart costs latency, not answers), response validation with the
reference-free criteria (one retry), then the stage's ``fallback:``. What this module adds is
what production needs around that:

* streaming: the tokens of an output stage go to the client as they come, and the tokens of an
  attempt that is discarded are withdrawn with a :class:`Retract` (a stream takes the same
  retries and fallbacks as a plain call; it is validated when it ends);
* the app's fallback response when the workbook and its fallbacks fail;
* per-stage traces, Prometheus metrics, an OpenTelemetry span and a redacted log line with
  the stage's inputs and output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nux_runtime.answer_checks import Check
from nux_runtime.errors import StageError
from nux_runtime.serve.logs import redact_value
from nux_runtime.serve.metrics import Metrics
from nux_runtime.serve.tracing import Tracer
from nux_runtime.serve.transport import StageClient, Unreachable
from nux_runtime.spec import StageSpec, WorkbookSpec
from nux_runtime.stagecall import Outcome, StagePolicy, answer_by_fallback, failure
from nux_runtime.trace import StageTrace, preview
from nux_runtime.walker import walk

__all__ = ["Pipeline", "RequestResult", "Retract"]


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
        self.policy = StagePolicy(spec.output, checks if validate_response else (),
                                  default_timeout_s=default_timeout_s,
                                  transport_retries=transport_retries)
        self.fallback_response = fallback_response
        self.log_stages = log_stages

    # -- one stage ---------------------------------------------------------------------------
    async def _attempt(self, stage: StageSpec, values: dict[str, Any],
                       sink: TokenSink | None) -> Outcome:
        if sink is None:
            return await self.client.call(stage.id, values)
        end: Outcome = Outcome(ok=False, category="error", cause="the stream ended early")
        async for chunk in self.client.stream(stage.id, values):
            if "token" in chunk:
                sink(str(chunk["token"]))
            elif "end" in chunk:
                end = chunk["end"]
        return end

    async def call_stage(self, stage: StageSpec, values: dict[str, Any],
                         traces: dict[str, StageTrace], sink: TokenSink | None = None,
                         request_id: str = "") -> Any:
        """Call one stage through the stage-call policy; raise StageError when it fails."""
        start = time.perf_counter()
        sent: list[str] = []
        out: TokenSink | None = None
        if sink is not None:
            downstream = sink

            def out(token: str | Retract) -> None:
                if isinstance(token, str):
                    sent.append(token)
                downstream(token)

        def retract(reason: str) -> None:
            if sent and out is not None:
                sent.clear()
                out(Retract(reason))

        def error(category: str) -> None:
            self.metrics.stage_error(stage.id, category)

        def retry(_: str) -> None:
            self.metrics.stage_retries.labels(self.spec.name, stage.id).inc()

        async def attempt(_: int) -> Outcome:
            return await self._attempt(stage, values, out)

        with self.tracer.span(f"stage {stage.id}", {"nux.stage": stage.id,
                                                     "nux.component": stage.component.id}) as span:
            outcome = await self.policy.call(stage, attempt, on_error=error, on_retry=retry,
                                             on_discard=retract)
            seconds = time.perf_counter() - start
            span.set_attribute("nux.ok", bool(outcome.get("ok")))
        if self.log_stages:
            self.logger.info("stage answered" if outcome.get("ok") else "stage failed", extra={
                "request_id": request_id, "stage": stage.id, "inputs": redact_value(values),
                "output": redact_value(outcome.get("value")), "ok": bool(outcome.get("ok")),
                "category": outcome.get("category"), "latency_ms": round(seconds * 1000, 3)})
        if not outcome.get("ok"):
            err = failure(stage, outcome)
            traces[stage.id] = StageTrace(stage.id, "error", latency_ms=seconds * 1000.0,
                                          reason=err.cause)
            self.metrics.stage_latency.labels(self.spec.name, stage.id).observe(seconds)
            raise err
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
        self.logger.warning("stage failed; trying its fallback", extra={
            "stage": stage.id, "fallback": stage.fallback or "", "cause": error.cause,
            "category": error.category})
        self.metrics.fallbacks.labels(self.spec.name, stage.id).inc()
        return await answer_by_fallback(self.spec, stage, error, call, inputs)
