"""The ingress deployment: the HTTP API of a served workbook (FastAPI through Ray Serve).

Routes: ``POST /v1/run``, ``POST /v1/run/stream`` (server-sent events), ``POST /v1/feedback``,
``GET /healthz``, ``GET /metrics`` and ``GET /openapi.json``. Every request is admitted in one
order: API key (401/403), rate limit (429), body size (413), JSON (400), input schema and string
limits (422), injection policy (400); then the caches, then the walk over the stage handles
(:class:`~nux_runtime.serve.pipeline.Pipeline`). ``/v1/run/stream`` takes the same path as
``/v1/run``: the same validation, retries and fallbacks (tokens of an answer that is discarded
are withdrawn with a ``retract`` event), the same pricing, cache bookkeeping, metrics and logs.
With ``shared_state`` naming a Redis, the rate limit and both caches are shared by every replica.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from functools import cached_property
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from ray import serve

from nux_runtime.answer_checks import reference_free_checks
from nux_runtime.errors import StageError
from nux_runtime.serve.auth import AuthDenied, KeyRing, RateLimiter, presented_key
from nux_runtime.serve.caches import ExactCache, SemanticCache, cache_scope
from nux_runtime.serve.logs import RequestLog, redact_value, serve_logger
from nux_runtime.serve.metrics import Metrics
from nux_runtime.serve.openapi import FEEDBACK_SCHEMA, workbook_openapi
from nux_runtime.serve.pipeline import Pipeline, RequestResult, Retract
from nux_runtime.serve.settings import InjectionPolicy, ServeSettings
from nux_runtime.serve.tracing import Tracer
from nux_runtime.serve.transport import HandleClient, StageClient, Unreachable
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
#: How long the stages' params (part of every cache scope) are trusted before asking again.
PARAMS_REFRESH_S = 10.0


class Refused(Exception):
    """A request answered before it runs: a status, the error body and headers."""

    def __init__(self, status: int, error: str, field: str, detail: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.headers = status, dict(headers or {})
        self.body = {"error": error, "field": field, "detail": detail}

    def response(self, request_id: str) -> JSONResponse:
        return JSONResponse({**self.body, "request_id": request_id}, status_code=self.status,
                            headers={**self.headers, **replica_header()})


class IngressCore:
    """Everything the ingress does for one workbook, over any stage client."""

    def __init__(self, spec: WorkbookSpec, settings: ServeSettings, client: StageClient) -> None:
        self.spec = spec
        # What a request reaches: no stage or input that exists only for evaluation.
        self.served = spec.served
        self.settings = settings
        self.logger = serve_logger(path=settings.log_path)
        self.metrics = Metrics(spec.name)
        self.tracer = Tracer(spec.name, otlp_endpoint=settings.otlp_endpoint)
        self.checks = reference_free_checks(spec.criteria)
        self.pipeline = Pipeline(
            self.served, client, metrics=self.metrics, tracer=self.tracer, logger=self.logger,
            checks=self.checks, default_timeout_s=settings.default_timeout_s,
            transport_retries=settings.transport_retries,
            fallback_response=settings.fallback_response,
            validate_response=settings.validate_response, log_stages=settings.log_stages)
        limits = {"max_body_bytes": settings.max_body_bytes,
                  "max_string_chars": settings.max_string_chars}
        self.validator = RequestValidator(self.served.inputs, injection=settings.injection,
                                          **limits)
        self.feedback_validator = RequestValidator(
            FEEDBACK_SCHEMA, injection=InjectionPolicy(action="off"), **limits)
        self.keys = KeyRing(settings.auth)
        self.client = client
        shared = settings.shared_state
        redis_url = shared.url()
        self.limiter = RateLimiter(settings.rate_limit, redis_url=redis_url,
                                   namespace=f"{shared.key_prefix}:{spec.name}")
        self.exact = self.semantic = None
        if settings.cache.enabled:
            self.exact = ExactCache(spec.hash, settings.cache, prefix=shared.key_prefix,
                                    redis_client=_async_redis(redis_url) if redis_url else None)
        if settings.semantic_cache.enabled:
            self.semantic = SemanticCache(
                spec.hash, settings.semantic_cache, prefix=shared.key_prefix,
                redis_client=_sync_redis(redis_url) if redis_url else None)
        self.request_log = (RequestLog(settings.request_log,
                                       verbatim=settings.request_log_verbatim)
                            if settings.request_log else None)
        self._params: tuple[float, dict[str, Any]] | None = None

    # -- admission ---------------------------------------------------------------------------
    async def admit(self, request: Request, validator: RequestValidator,
                    key: str | None = None) -> tuple[dict[str, Any], list[str], str | None]:
        """The request's inputs, the fields the injection policy flagged, and the caller
        (``key``: what :func:`~nux_runtime.serve.auth.presented_key` found, else read here)."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            caller = self.keys.identify(key if key is not None else KeyRing.presented(headers))
        except AuthDenied as exc:
            self.metrics.reject(f"auth-{exc.status}")
            raise Refused(exc.status, "unauthorized" if exc.status == 401 else "forbidden",
                          "authorization", exc.detail,
                          {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                          ) from None
        client = request.client.host if request.client else "unknown"
        wait = await self.limiter.take(caller or f"addr:{client}")
        if wait > 0:
            self.metrics.reject("rate-limit")
            raise Refused(429, "rate-limited", "authorization",
                          f"too many requests; retry in {wait:.2f} s",
                          {"Retry-After": str(max(1, int(wait + 0.999)))})
        try:
            validator.check_length(headers.get("content-length"))
            raw = await request.body()
            inputs, flagged = validator.inputs(raw)
            return inputs, flagged, caller
        except BadRequest as exc:
            self.metrics.reject(exc.error)
            raise Refused(exc.status, exc.error, exc.field, exc.detail) from None

    @staticmethod
    def request_id(request: Request) -> str:
        """The request id Serve assigned (and echoes as X-Request-ID), else a new one."""
        given = request.headers.get("x-request-id", "")
        return given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]

    # -- caches ------------------------------------------------------------------------------
    async def scope(self, caller: str | None) -> str | None:
        """The cache scope of a caller's request, None when the stages cannot say their params."""
        now = time.monotonic()
        if self._params is None or now - self._params[0] > PARAMS_REFRESH_S:
            try:
                found = await asyncio.gather(*(self.client.params(s.id)
                                               for s in self.served.stages))
            except Unreachable:
                return None
            self._params = (now, {s.id: p for s, p in zip(self.served.stages, found,
                                                          strict=True)})
        return cache_scope(caller, self._params[1])

    async def cached(self, inputs: dict[str, Any], request: Request, scope: str | None
                     ) -> tuple[str, dict[str, Any]] | None:
        if scope is None or "no-cache" in request.headers.get("cache-control", ""):
            return None
        if self.exact is not None:
            hit = await self.exact.get(inputs, scope)
            self.metrics.cache("exact", hit is not None)
            if hit is not None:
                return "exact", hit
        if self.semantic is not None:
            found = await self.semantic.lookup(inputs, scope)
            self.metrics.cache("semantic", found.answer is not None)
            if found.distance is not None:
                self.metrics.semantic_distance.labels(self.spec.name).observe(found.distance)
            if found.answer is not None:
                return "semantic", {**found.answer, "similarity": found.similarity}
        return None

    async def remember(self, inputs: dict[str, Any], result: RequestResult, scope: str | None
                       ) -> None:
        if scope is None or not result.ok or result.fallback is not None:
            return
        answer = {"output": result.output}
        if self.exact is not None:
            await self.exact.put(inputs, answer, scope)
        if self.semantic is not None:
            await self.semantic.remember(inputs, answer, scope)

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
        if self.request_log is not None and status == 200:
            self.request_log.write({
                "request_id": request_id, "time": time.time(), "spec_hash": self.spec.hash,
                "inputs": inputs, "output": output, "cache": cache,
                "fallback": result.fallback if result is not None else None})

    def failure(self, result: RequestResult) -> Refused:
        error = result.error or StageError(self.spec.output[0], "no answer")
        status = _STATUS_OF.get(error.category, 500)
        return Refused(status, f"stage-{error.category}", error.stage, error.cause)

    def answer(self, request_id: str, output: Any, stages: dict[str, Any], cache: str | None,
               fallback: str | None, **extra: Any) -> dict[str, Any]:
        return {"output": output, "request_id": request_id, "spec_hash": self.spec.hash,
                "cache": cache, "fallback": fallback, "stages": stages, **extra}

    def book(self, route: str, rid: str, inputs: dict[str, Any], body: dict[str, Any],
             status: int, result: RequestResult | None, cache: str | None, start: float
             ) -> dict[str, Any]:
        """Count, time and log an answered request; the body as the client receives it."""
        seconds = time.perf_counter() - start
        self.metrics.requests.labels(self.spec.name, route, str(status)).inc()
        self.metrics.request_latency.labels(self.spec.name, route).observe(seconds)
        self.record(rid, inputs, body.get("output"), status, result, cache, seconds)
        return body if status == 200 else {**body, "request_id": rid}

    async def respond(self, route: str, rid: str, inputs: dict[str, Any], caller: str | None,
                      request: Request, start: float, sink: Any = None
                      ) -> tuple[int, dict[str, Any], bool]:
        """Answer admitted inputs from a cache or the walk: (status, body, whether the output
        stage streamed its tokens into ``sink``). Booked like every request."""
        scope = await self.scope(caller)
        hit = await self.cached(inputs, request, scope)
        if hit is not None:
            cache, answer = hit
            body = self.answer(rid, answer["output"], {}, cache, None,
                               **({"similarity": answer["similarity"]}
                                  if "similarity" in answer else {}))
            return 200, self.book(route, rid, inputs, body, 200, None, cache, start), False
        result = await self.pipeline.run(inputs, rid, sink=sink)
        if not result.ok:
            failed = self.failure(result)
            return failed.status, self.book(route, rid, inputs, failed.body, failed.status,
                                            result, None, start), False
        await self.remember(inputs, result, scope)
        self.evaluate(result.output)
        body = self.answer(rid, result.output, result.stages(), None, result.fallback)
        return 200, self.book(route, rid, inputs, body, 200, result, None, start), \
            result.streamed

    # -- routes ------------------------------------------------------------------------------
    async def run(self, request: Request, key: str | None = None) -> Response:
        rid, start = self.request_id(request), time.perf_counter()
        try:
            inputs, flagged, caller = await self.admit(request, self.validator, key)
        except Refused as refused:
            self.metrics.requests.labels(self.spec.name, "run", str(refused.status)).inc()
            return refused.response(rid)
        if flagged:
            self.logger.warning("injection policy matched", extra={"request_id": rid,
                                                                   "fields": flagged})
        status, body, _ = await self.respond("run", rid, inputs, caller, request, start)
        return JSONResponse(body, status_code=status, headers=replica_header())

    async def stream(self, request: Request, key: str | None = None) -> Response:
        rid, start = self.request_id(request), time.perf_counter()
        try:
            inputs, flagged, caller = await self.admit(request, self.validator, key)
        except Refused as refused:
            self.metrics.requests.labels(self.spec.name, "stream", str(refused.status)).inc()
            return refused.response(rid)
        if flagged:
            self.logger.warning("injection policy matched", extra={"request_id": rid,
                                                                   "fields": flagged})
        return StreamingResponse(self._events(rid, inputs, caller, request, start),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", **replica_header()})

    async def _events(self, rid: str, inputs: dict[str, Any], caller: str | None,
                      request: Request, start: float) -> AsyncIterator[str]:
        queue: asyncio.Queue[str | Retract] = asyncio.Queue()
        task = asyncio.ensure_future(self.respond("stream", rid, inputs, caller, request, start,
                                                  sink=queue.put_nowait))
        try:
            while not task.done() or not queue.empty():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                item = getter.result()
                if isinstance(item, Retract):
                    yield _sse("retract", {"reason": item.reason})
                else:
                    yield _sse("token", {"token": item})
            status, body, streamed = task.result()
        finally:
            if not task.done():
                task.cancel()
        if status != 200:
            yield _sse("error", body)
            return
        if not streamed:
            yield _sse("token", {"token": _text(body["output"])})
        yield _sse("done", body)

    async def feedback(self, request: Request, key: str | None = None) -> Response:
        rid = self.request_id(request)
        try:
            data, _, _ = await self.admit(request, self.feedback_validator, key)
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
        return workbook_openapi(base, self.spec, keys_required=self.keys.required)


def replica_header() -> dict[str, str]:
    """``X-Nux-Replica``: which ingress replica answered (to trace a request across replicas)."""
    try:
        return {"X-Nux-Replica": serve.get_replica_context().replica_id.unique_id}
    except Exception:  # outside a Serve replica
        return {}


def _async_redis(url: str) -> Any:
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url)


def _sync_redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


_CORE: list[IngressCore] = []
#: The API key a request presents, through the security schemes ``/openapi.json`` declares.
Key = Annotated[str | None, Depends(presented_key)]


def _core() -> IngressCore:
    return _CORE[0]


@api.post("/v1/run")
async def run(request: Request, key: Key) -> Response:
    return await _core().run(request, key)


@api.post("/v1/run/stream")
async def run_stream(request: Request, key: Key) -> Response:
    return await _core().stream(request, key)


@api.post("/v1/feedback")
async def feedback(request: Request, key: Key) -> Response:
    return await _core().feedback(request, key)


@api.get("/healthz")
async def healthz() -> Response:
    core = _core()
    return JSONResponse({"status": "ok", "workbook": core.spec.name, "spec_hash": core.spec.hash,
                         "stages": [s.id for s in core.served.stages]}, headers=replica_header())


@api.get("/metrics")
async def metrics() -> Response:
    return Response(await _core().metrics.render(), media_type=CONTENT_TYPE_LATEST)


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
