"""One stage as a Ray Serve deployment: the stage's vetted component, run as the playground runs it.

A replica holds a :class:`~nux_runtime.stagecall.StageRunner`, the same one the playground
executor uses: the component built from the registry, one call, priced with the same cost model,
the answer as a plain :class:`~nux_runtime.stagecall.Outcome` dict (never a pickled exception).
:class:`StageReplica` is the Serve deployment class; the application builder names one
deployment after each stage id. Timeouts, retries and validation are the ingress's
(:class:`~nux_runtime.stagecall.StagePolicy`), as they are the executor's in the playground.

A streaming component's ``stream`` runs (blocking) on a thread of its own, one piece at a time,
so the replica's event loop keeps answering while the model writes, and streams waiting for the
model never hold up the one writing (:func:`stream_in_thread`).

Before its component loads, a replica caps the OpenMP threads of the models it runs (llama.cpp,
torch) at its CPUs (``OMP_THREAD_LIMIT``, which also sizes the local model's threads:
:func:`~nux_runtime.components.llm_local.llama_threads`), unless the operator set it: a replica
shares its node, and threads beyond its CPUs take them from the other replicas. How idle threads
wait is left to the OpenMP runtime (libgomp spins briefly, then sleeps): on the idle 2-core
benchmark machine forcing passive waits made the answer stage 10 to 20% slower, while on a node
oversubscribed by other tenants spinning threads cost far more; there, set
``OMP_WAIT_POLICY=PASSIVE`` in the pods' environment and the replica keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nux_runtime.spec import StageSpec
from nux_runtime.stagecall import Outcome, StageRunner

__all__ = ["LOCATION_PARAMS", "StageReplica", "openmp_policy", "stream_in_thread"]


async def stream_in_thread(chunks: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Drive a blocking generator from a thread of its own, one item at a time.

    Of its own, not the event loop's shared pool: a stream holds the model from its first piece
    to its last, and streams waiting for the model would otherwise take every worker of the
    pool while the one holding it waits for a worker to write its next piece. On its own thread
    a stream also acquires and releases what it holds (the model's lock) on the same thread.
    """
    done = object()
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nux-stream")

    def step() -> Any:
        return context.run(next, chunks, done)

    try:
        while True:
            chunk = await loop.run_in_executor(thread, step)
            if chunk is done:
                return
            yield chunk  # type: ignore[misc]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:  # releases what it holds (the model's lock)
            await loop.run_in_executor(thread, context.run, close)
        thread.shutdown(wait=False)


def openmp_policy(cpus: float | None) -> dict[str, str]:
    """Set this process's OpenMP thread limit for a replica of ``cpus`` CPUs (None: unknown)
    where the environment does not already: at most ``floor(cpus)`` threads. Effective for the
    OpenMP runtimes loaded after it (a model's library); returns what it set."""
    wanted: dict[str, str] = {}
    if cpus:
        wanted["OMP_THREAD_LIMIT"] = str(max(1, math.floor(cpus)))
    chosen = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(chosen)
    return chosen


def _replica_cpus() -> float | None:
    """The CPUs Ray gave this replica (None outside Ray)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        found = ray.get_runtime_context().get_assigned_resources().get("CPU")
    except Exception:  # outside a Ray worker
        return None
    return float(found) if found else None


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
        openmp_policy(_replica_cpus())  # before the component loads its model
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
