"""One stage as a Ray Serve deployment: the stage's vetted component, run as the playground runs it.

:class:`StageRunner` holds what a replica does without Ray in the picture: build the component
from the registry (the same ``load_component`` the executor uses), call it, and price the call
with the same cost model. Its answer crosses the process boundary as a plain :class:`Outcome`
dict, never as a pickled exception. :class:`StageReplica` is the Serve deployment class; the
application builder names one deployment after each stage id.

A streaming component's ``stream`` is a generator of text pieces that may *return* a
:class:`StageResult` whose token counts price the call as its plain call is priced; the replica
runs that (blocking) generator in a worker thread, one piece at a time, so its event loop keeps
answering while the model writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

from nux_runtime.components.base import Component, RuntimeContext, StageResult
from nux_runtime.errors import NuxError, StageError
from nux_runtime.registry import load_component
from nux_runtime.spec import StageSpec, canonical_json

__all__ = ["LOCATION_PARAMS", "Outcome", "StageReplica", "StageRunner", "classify",
           "error_outcome", "stream_in_thread"]

#: Python exceptions that say "try again": a dropped connection, a busy peer, a slow answer.
TRANSIENT_CAUSES: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


class Outcome(TypedDict, total=False):
    """A stage call's answer as it crosses from the stage replica to the ingress."""

    ok: bool
    value: Any
    tokens_in: int
    tokens_out: int
    cost_usd: float
    compute_ms: float
    cause: str
    category: str


def classify(exc: StageError) -> str:
    """The error's category, with a wrapped connection or timeout error counted as transient."""
    if exc.category == "error" and isinstance(exc.__cause__, TRANSIENT_CAUSES):
        return "transient"
    return exc.category


def error_outcome(exc: StageError, compute_ms: float = 0.0) -> Outcome:
    return Outcome(ok=False, cause=exc.cause, category=classify(exc), compute_ms=compute_ms)


class StageRunner:
    """Builds one stage's component and runs calls on it, priced like the playground prices them."""

    def __init__(self, stage: StageSpec, base_dir: str | Path) -> None:
        self.stage = stage
        self.context = RuntimeContext(base_dir=Path(base_dir))
        try:
            cls = load_component(stage.component.implementation)
            self.component: Component = cls(stage, self.context)
        except StageError:
            raise
        except NuxError as exc:
            raise StageError(stage.id, str(exc), category="resource") from None

    @property
    def streams(self) -> bool:
        return callable(getattr(self.component, "stream", None))

    def reconfigure(self, params: Mapping[str, Any]) -> None:
        self.component.reconfigure(dict(params))

    def params(self) -> dict[str, Any]:
        """The params the component runs with (the spec's, or a Serve config's user_config)."""
        return json.loads(canonical_json(dict(getattr(self.component, "params", {}) or {})))

    def _priced(self, result: StageResult, compute_ms: float) -> Outcome:
        cost = result.cost_usd if result.cost_usd is not None else self.stage.cost.cost(
            result.tokens_in, result.tokens_out, compute_ms / 1000.0)
        return Outcome(ok=True, value=result.value, tokens_in=result.tokens_in,
                       tokens_out=result.tokens_out, cost_usd=cost, compute_ms=compute_ms)

    def run(self, inputs: Mapping[str, Any]) -> Outcome:
        """One call of the component (no retries: the ingress owns retries and timeouts)."""
        start = time.perf_counter()
        try:
            raw = self.component(dict(inputs))
        except StageError as exc:
            return error_outcome(exc, (time.perf_counter() - start) * 1000.0)
        except Exception as exc:
            err = StageError(self.stage.id, f"{type(exc).__name__}: {exc}")
            err.__cause__ = exc
            return error_outcome(err, (time.perf_counter() - start) * 1000.0)
        result = raw if isinstance(raw, StageResult) else StageResult(raw)
        return self._priced(result, (time.perf_counter() - start) * 1000.0)

    def stream(self, inputs: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """``{"token": text}`` chunks, then ``{"end": Outcome}`` with the whole text as value.

        A component without ``stream`` answers with one chunk holding its whole answer.
        """
        if not self.streams:
            outcome = self.run(inputs)
            if outcome.get("ok"):
                yield {"token": _as_text(outcome.get("value"))}
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
        except StageError as exc:
            yield {"end": error_outcome(exc, (time.perf_counter() - start) * 1000.0)}
            return
        except Exception as exc:
            err = StageError(self.stage.id, f"{type(exc).__name__}: {exc}")
            err.__cause__ = exc
            yield {"end": error_outcome(err, (time.perf_counter() - start) * 1000.0)}
            return
        text = "".join(parts)
        if isinstance(counted, StageResult):
            result = StageResult(text, tokens_in=counted.tokens_in, tokens_out=counted.tokens_out,
                                 cost_usd=counted.cost_usd, meta=counted.meta)
        else:  # a component that does not count its stream: one token per piece
            result = StageResult(text, tokens_out=len(parts))
        yield {"end": self._priced(result, (time.perf_counter() - start) * 1000.0)}

    def close(self) -> None:
        self.component.close()


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


async def stream_in_thread(chunks: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Drive a blocking generator from a worker thread, one item at a time."""
    done = object()
    try:
        while True:
            chunk = await asyncio.to_thread(next, chunks, done)
            if chunk is done:
                return
            yield chunk  # type: ignore[misc]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            await asyncio.to_thread(close)  # releases what it holds (a model lock)


#: Params a component reads when it is built (where its server, store or database is): a
#: ``user_config`` that changes one builds the component again instead of reconfiguring it.
LOCATION_PARAMS = frozenset({"base_url", "url", "url_env", "path", "api_key_env", "options",
                             "target"})


class StageReplica:
    """The Serve deployment class of a stage; ``user_config`` is the stage's params.

    The component is built from the spec's params merged with the ``user_config`` (Serve passes
    it right after ``__init__``), so a deployment pointed at production locations (a Qdrant
    server, an endpoint, a database) never opens the notebook's ones.
    """

    def __init__(self, stage_json: str, base_dir: str) -> None:
        self.stage = StageSpec.model_validate_json(stage_json)
        self.base_dir = base_dir
        self._runner: StageRunner | None = None
        self._built_from: dict[str, Any] = {}

    @property
    def runner(self) -> StageRunner:
        if self._runner is None:
            self._build({})
        assert self._runner is not None
        return self._runner

    def _build(self, user_config: Mapping[str, Any]) -> None:
        params = {**self.stage.params, **user_config}
        stage = self.stage
        if user_config:
            stage = StageSpec.model_validate({**self.stage.model_dump(), "params": params})
        if self._runner is not None:
            self._runner.close()
        self._runner = StageRunner(stage, self.base_dir)
        self._built_from = params

    def reconfigure(self, user_config: Mapping[str, Any] | None) -> None:
        params = {**self.stage.params, **(user_config or {})}
        moved = any(params.get(k) != self._built_from.get(k) for k in LOCATION_PARAMS)
        if self._runner is None or moved:
            self._build(user_config or {})
        self.runner.reconfigure(user_config or {})

    async def __call__(self, inputs: dict[str, Any]) -> Outcome:
        # Components block (a model, a query); a thread keeps the replica answering health
        # checks and other requests while one runs.
        return await asyncio.to_thread(self.runner.run, inputs)

    def streams(self) -> bool:
        return self.runner.streams

    def params(self) -> dict[str, Any]:
        return self.runner.params()

    async def stream(self, inputs: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async for chunk in stream_in_thread(self.runner.stream(inputs)):
            yield chunk

    def __del__(self) -> None:
        runner = getattr(self, "_runner", None)
        if runner is not None:
            with contextlib.suppress(Exception):  # closing at exit must not raise
                runner.close()
