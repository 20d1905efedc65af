"""The ingress deployment: the HTTP API of a served workbook (FastAPI through Ray Serve).

Routes: ``POST /v1/run``, ``POST /v1/run/stream`` (server-sent events), ``POST /v1/feedback``,
``GET /healthz``, ``GET /metrics`` and ``GET /openapi.json``. Every request is admitted in one
order: API key (401/403), rate limit (429), body size (413), JSON (400), input schema and string
limits (422), injection policy (400); then the caches, then the walk over the stage handles
(:class:`~nux_runtime.serve.pipeline.Pipeline`).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from ray import serve

from nux_runtime.errors import StageError
from nux_runtime.serve.auth import AuthDenied, KeyRing, RateLimiter
from nux_runtime.serve.caches import ExactCache, SemanticCache
from nux_runtime.serve.criteria import reference_free_checks
from nux_runtime.serve.logs import redact_value, serve_logger
from nux_runtime.serve.metrics import Metrics
from nux_runtime.serve.openapi import FEEDBACK_SCHEMA, workbook_openapi
from nux_runtime.serve.pipeline import Pipeline, RequestResult
from nux_runtime.serve.settings import InjectionPolicy, ServeSettings
from nux_runtime.serve.tracing import Tracer
from nux_runtime.serve.transport import HandleClient, StageClient
from nux_runtime.serve.validation import BadRequest, RequestValidator
from nux_runtime.spec import WorkbookSpec

__all__ = ["Ingress", "IngressCore", "api"]

api = FastAPI(title="NUX workbook", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug of ours still answers in the one error shape, without a traceback."""
    serve_logger().exception("unexpected error", extra={"path": request.url.path})
    return JSONResponse({"error": "internal", "field": "", "detail": type(exc).__name__},
                        status_code=500)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A stage that refuses the input is the client's to fix (422); an answer that fails validation,
# a timeout or an unavailable stage are ours (502, 504, 503); anything else is a 500.
_STATUS_OF = {"input": 422, "output": 502, "timeout": 504, "transient": 503, "resource": 503}


class Refused(Exception):
    """A request answered before it runs: a status, the error body and headers."""

    def __init__(self, status: int, error: str, field: str, detail: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.headers = status, dict(headers or {})
        self.body = {"error": error, "field": field, "detail": detail}

    def response(self, request_id: str) -> JSONResponse:
        return JSONResponse({**self.body, "request_id": request_id}, status_code=self.status,
                            headers=self.headers)


class IngressCore:
    """Everything the ingress does for one workbook, over any stage client."""

    def __init__(self, spec: WorkbookSpec, settings: ServeSettings, client: StageClient) -> None:
        self.spec = spec
        self.settings = settings
        self.logger = serve_logger(path=settings.log_path)
        self.metrics = Metrics(spec.name)
        self.tracer = Tracer(spec.name, otlp_endpoint=settings.otlp_endpoint)
        self.checks = reference_free_checks(spec.criteria)
        self.pipeline = Pipeline(
            spec, client, metrics=self.metrics, tracer=self.tracer, logger=self.logger,
            checks=self.checks, default_timeout_s=settings.default_timeout_s,
            transport_retries=settings.transport_retries,
            fallback_response=settings.fallback_response,
            validate_response=settings.validate_response, log_stages=settings.log_stages)
        limits = {"max_body_bytes": settings.max_body_bytes,
                  "max_string_chars": settings.max_string_chars}
        self.validator = RequestValidator(spec.inputs, injection=settings.injection, **limits)
        self.feedback_validator = RequestValidator(
            FEEDBACK_SCHEMA, injection=InjectionPolicy(action="off"), **limits)
        self.keys = KeyRing(settings.auth)
        self.limiter = RateLimiter(settings.rate_limit)
        self.exact = ExactCache(spec.hash, settings.cache) if settings.cache.enabled else None
        self.semantic = (SemanticCache(spec.hash, settings.semantic_cache)
                         if settings.semantic_cache.enabled else None)
        self._log_lock = threading.Lock()

    # -- admission ---------------------------------------------------------------------------
    async def admit(self, request: Request, validator: RequestValidator
                    ) -> tuple[dict[str, Any], list[str]]:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            caller = self.keys.identify(headers)
        except AuthDenied as exc:
            self.metrics.reject(f"auth-{exc.status}")
            raise Refused(exc.status, "unauthorized" if exc.status == 401 else "forbidden",
                          "authorization", exc.detail,
                          {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                          ) from None
        client = request.client.host if request.client else "unknown"
        wait = self.limiter.take(caller or f"addr:{client}")
        if wait > 0:
            self.metrics.reject("rate-limit")
            raise Refused(429, "rate-limited", "authorization",
                          f"too many requests; retry in {wait:.2f} s",
                          {"Retry-After": str(max(1, int(wait + 0.999)))})
        try:
            validator.check_length(headers.get("content-length"))
            raw = await request.body()
            return validator.inputs(raw)
        except BadRequest as exc:
            self.metrics.reject(exc.error)
            raise Refused(exc.status, exc.error, exc.field, exc.detail) from None

    @staticmethod
    def request_id(request: Request) -> str:
        """The request id Serve's proxy assigned (and echoes as X-Request-ID), else a new one."""
        given = request.headers.get("x-request-id", "")
        return given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]

    # -- caches ------------------------------------------------------------------------------
    async def cached(self, inputs: dict[str, Any], request: Request
                     ) -> tuple[str, dict[str, Any]] | None:
        if "no-cache" in request.headers.get("cache-control", ""):
            return None
        if self.exact is not None:
            hit = self.exact.get(inputs)
            self.metrics.cache("exact", hit is not None)
            if hit is not None:
                return "exact", hit
        if self.semantic is not None:
            found = await asyncio.to_thread(self.semantic.get, inputs)
            self.metrics.cache("semantic", found is not None)
            if found is not None:
                answer, similarity = found
                return "semantic", {**answer, "similarity": similarity}
        return None

    async def remember(self, inputs: dict[str, Any], result: RequestResult) -> None:
        if not result.ok or result.fallback is not None:
            return
        answer = {"output": result.output}
        if self.exact is not None:
            self.exact.put(inputs, answer)
        if self.semantic is not None:
            await asyncio.to_thread(self.semantic.put, inputs, answer)

    # -- after a request ---------------------------------------------------------------------
    def evaluate(self, output: Any) -> None:
        """Score a sampled share of answers with the reference-free criteria."""
        if not self.checks or random.random() >= self.settings.online_eval.sample_rate:
            return
        for check in self.checks:
            if check.stage is None or check.stage in self.spec.output:
                passed, _ = check.score(output)
                self.metrics.online_eval.labels(self.spec.name, check.name,
                                                "pass" if passed else "fail").inc()

    def record(self, request_id: str, inputs: dict[str, Any], output: Any, status: int,
               result: RequestResult | None, cache: str | None, seconds: float) -> None:
        self.logger.info("request answered", extra={
            "request_id": request_id, "workbook": self.spec.name, "status": status,
            "latency_ms": round(seconds * 1000.0, 3), "cache": cache,
            "inputs": redact_value(inputs), "output": redact_value(output),
            "stages": result.stages() if result is not None else {},
            "fallback": result.fallback if result is not None else None})
        if self.settings.request_log and status == 200:
            line = json.dumps({"request_id": request_id, "time": time.time(),
                               "spec_hash": self.spec.hash, "inputs": inputs,
                               "output": output, "cache": cache,
                               "fallback": result.fallback if result is not None else None},
                              default=str)
            with self._log_lock, Path(self.settings.request_log).open("a") as fh:
                fh.write(line + "\n")

    def failure(self, result: RequestResult) -> Refused:
        error = result.error or StageError(self.spec.output[0], "no answer")
        status = _STATUS_OF.get(error.category, 500)
        return Refused(status, f"stage-{error.category}", error.stage, error.cause)

    def answer(self, request_id: str, output: Any, stages: dict[str, Any], cache: str | None,
               fallback: str | None, **extra: Any) -> dict[str, Any]:
        return {"output": output, "request_id": request_id, "spec_hash": self.spec.hash,
                "cache": cache, "fallback": fallback, "stages": stages, **extra}

    # -- routes ------------------------------------------------------------------------------
    async def run(self, request: Request) -> Response:
        rid, start = self.request_id(request), time.perf_counter()
        try:
            inputs, flagged = await self.admit(request, self.validator)
        except Refused as refused:
            self.metrics.requests.labels(self.spec.name, "run", str(refused.status)).inc()
            return refused.response(rid)
        if flagged:
            self.logger.warning("injection policy matched", extra={"request_id": rid,
                                                                   "fields": flagged})
        hit = await self.cached(inputs, request)
        if hit is not None:
            cache, answer = hit
            body = self.answer(rid, answer["output"], {}, cache, None,
                               **({"similarity": answer["similarity"]}
                                  if "similarity" in answer else {}))
            return self.finish("run", rid, inputs, body, 200, None, cache, start)
        result = await self.pipeline.run(inputs, rid)
        if not result.ok:
            failed = self.failure(result)
            return self.finish("run", rid, inputs, failed.body, failed.status, result, None,
                               start)
        await self.remember(inputs, result)
        self.evaluate(result.output)
        body = self.answer(rid, result.output, result.stages(), None, result.fallback)
        return self.finish("run", rid, inputs, body, 200, result, None, start)

    def finish(self, route: str, rid: str, inputs: dict[str, Any], body: dict[str, Any],
               status: int, result: RequestResult | None, cache: str | None, start: float
               ) -> JSONResponse:
        seconds = time.perf_counter() - start
        self.metrics.requests.labels(self.spec.name, route, str(status)).inc()
        self.metrics.request_latency.labels(self.spec.name, route).observe(seconds)
        self.record(rid, inputs, body.get("output"), status, result, cache, seconds)
        if status != 200:
            body = {**body, "request_id": rid}
        return JSONResponse(body, status_code=status)

    async def stream(self, request: Request) -> Response:
        rid, start = self.request_id(request), time.perf_counter()
        try:
            inputs, _ = await self.admit(request, self.validator)
        except Refused as refused:
            self.metrics.requests.labels(self.spec.name, "stream", str(refused.status)).inc()
            return refused.response(rid)
        return StreamingResponse(self._events(rid, inputs, request, start),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _events(self, rid: str, inputs: dict[str, Any], request: Request, start: float
                      ) -> AsyncIterator[str]:
        hit = await self.cached(inputs, request)
        if hit is not None:
            cache, answer = hit
            yield _sse("token", {"token": _text(answer["output"])})
            yield _sse("done", self.answer(rid, answer["output"], {}, cache, None))
            self.metrics.requests.labels(self.spec.name, "stream", "200").inc()
            return
        queue: asyncio.Queue[str] = asyncio.Queue()
        task = asyncio.ensure_future(self.pipeline.run(inputs, rid, sink=queue.put_nowait))
        try:
            while not task.done() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield _sse("token", {"token": getter.result()})
                else:
                    getter.cancel()
            result = task.result()
        finally:
            if not task.done():
                task.cancel()
        if not result.ok:
            failed = self.failure(result)
            self.finish("stream", rid, inputs, failed.body, failed.status, result, None, start)
            yield _sse("error", {**failed.body, "request_id": rid})
            return
        if not result.streamed:
            yield _sse("token", {"token": _text(result.output)})
        await self.remember(inputs, result)
        self.evaluate(result.output)
        body = self.answer(rid, result.output, result.stages(), None, result.fallback)
        self.finish("stream", rid, inputs, body, 200, result, None, start)
        yield _sse("done", body)

    async def feedback(self, request: Request) -> Response:
        rid = self.request_id(request)
        try:
            data, _ = await self.admit(request, self.feedback_validator)
        except Refused as refused:
            self.metrics.requests.labels(self.spec.name, "feedback", str(refused.status)).inc()
            return refused.response(rid)
        if "thumbs" in data:
            self.metrics.feedback.labels(self.spec.name, f"thumbs-{data['thumbs']}").inc()
        if "score" in data:
            self.metrics.feedback.labels(self.spec.name, "score").inc()
            self.metrics.feedback_score.labels(self.spec.name).observe(float(data["score"]))
        self.logger.info("feedback", extra={"request_id": data["request_id"],
                                            "feedback": redact_value(data)})
        self.metrics.requests.labels(self.spec.name, "feedback", "202").inc()
        return JSONResponse({"ok": True, "request_id": data["request_id"]}, status_code=202)

    @cached_property
    def document(self) -> dict[str, Any]:
        """The OpenAPI document: the routes, with the workbook's schemas for the bodies."""
        base = get_openapi(title=api.title, version=api.version, routes=api.routes)
        return workbook_openapi(base, self.spec)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


_CORE: list[IngressCore] = []


def _core() -> IngressCore:
    return _CORE[0]


@api.post("/v1/run")
async def run(request: Request) -> Response:
    return await _core().run(request)


@api.post("/v1/run/stream")
async def run_stream(request: Request) -> Response:
    return await _core().stream(request)


@api.post("/v1/feedback")
async def feedback(request: Request) -> Response:
    return await _core().feedback(request)


@api.get("/healthz")
async def healthz() -> dict[str, Any]:
    spec = _core().spec
    return {"status": "ok", "workbook": spec.name, "spec_hash": spec.hash,
            "stages": [s.id for s in spec.stages]}


@api.get("/metrics")
async def metrics() -> Response:
    return Response(_core().metrics.render(), media_type=CONTENT_TYPE_LATEST)


@api.get("/openapi.json", include_in_schema=False)
async def openapi() -> dict[str, Any]:
    return _core().document


@serve.ingress(api)
class Ingress:
    """The Serve ingress deployment (the builder names it ``Ingress``); one per replica process.

    The routes above are module functions (FastAPI resolves their annotations there); the
    replica's :class:`IngressCore` answers them.
    """

    def __init__(self, spec_json: str, settings: dict[str, Any], handles: dict[str, Any]) -> None:
        spec = WorkbookSpec.from_json(spec_json)
        core = IngressCore(spec, ServeSettings.model_validate(settings), HandleClient(handles))
        _CORE[:] = [core]
