"""Stage clients: how the ingress reaches a stage, over Ray Serve or in this process.

Both answer :class:`~nux_runtime.stagecall.Outcome` dicts, so the request pipeline does not know
which it drives. :class:`HandleClient` calls the per-stage DeploymentHandles; a replica that died
or is unavailable raises :class:`~nux_runtime.stagecall.Unreachable`, which the stage-call
policy retries with backoff.
:class:`LocalClient` runs the components in this process (tests of the pipeline, benchmarks).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from nux_runtime.serve.stage import stream_in_thread
from nux_runtime.spec import WorkbookSpec
from nux_runtime.stagecall import Outcome, StageRunner, Unreachable

__all__ = ["HandleClient", "LocalClient", "StageClient", "Unreachable"]


class StageClient(Protocol):
    async def call(self, stage: str, inputs: dict[str, Any]) -> Outcome: ...

    def stream(self, stage: str, inputs: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def streams(self, stage: str) -> bool: ...

    async def params(self, stage: str) -> dict[str, Any]: ...


def _unreachable_types() -> tuple[type[BaseException], ...]:
    from ray import exceptions as rex
    from ray.serve import exceptions as sex

    return (rex.RayActorError, rex.ActorUnavailableError, rex.ActorDiedError,
            sex.BackPressureError, sex.DeploymentUnavailableError, sex.ReplicaUnavailableError,
            rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError)


def _made_here(handle: Any) -> Any:
    """``handle`` made again in this process, as its own environment says handles go.

    A handle carries how its calls travel (gRPC in Serve's throughput mode, or Ray's actor
    calls), fixed by the Serve constants of the process that built the app: a driver that
    imported Ray Serve before the mode was set would send by-reference handles into the
    ingress. Made again here, they follow the replica's environment, as they do in the image.
    """
    from ray import serve

    return serve.get_deployment_handle(handle.deployment_name, app_name=handle.app_name)


class HandleClient:
    """Stage calls over Ray Serve DeploymentHandles (one per stage id)."""

    def __init__(self, handles: Mapping[str, Any]) -> None:
        self.handles = {stage: _made_here(handle) for stage, handle in handles.items()}
        self._unreachable = _unreachable_types()
        self._streams: dict[str, bool] = {}

    async def call(self, stage: str, inputs: dict[str, Any]) -> Outcome:
        response = self.handles[stage].remote(inputs)
        try:
            result: Outcome = await response
        except asyncio.CancelledError:
            response.cancel()
            raise
        except self._unreachable as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        return result

    async def stream(self, stage: str, inputs: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        gen = self.handles[stage].options(stream=True, method_name="stream").remote(inputs)
        try:
            async for chunk in gen:
                yield chunk
        except self._unreachable as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc

    async def streams(self, stage: str) -> bool:
        if stage not in self._streams:
            try:
                handle = self.handles[stage].options(method_name="streams")
                self._streams[stage] = bool(await handle.remote())
            except self._unreachable as exc:
                raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        return self._streams[stage]

    async def params(self, stage: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = await self.handles[stage].options(
                method_name="params").remote()
        except self._unreachable as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc
        return found


class LocalClient:
    """Stage calls on components in this process (one runner per stage)."""

    def __init__(self, spec: WorkbookSpec, base_dir: str | Path) -> None:
        self.runners = {s.id: StageRunner(s, base_dir) for s in spec.stages}

    async def call(self, stage: str, inputs: dict[str, Any]) -> Outcome:
        return await asyncio.to_thread(self.runners[stage].run, inputs)

    async def stream(self, stage: str, inputs: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async for chunk in stream_in_thread(self.runners[stage].stream(inputs)):
            yield chunk

    async def streams(self, stage: str) -> bool:
        return self.runners[stage].streams

    async def params(self, stage: str) -> dict[str, Any]:
        return self.runners[stage].params()
