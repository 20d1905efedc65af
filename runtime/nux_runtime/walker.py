"""The one DAG walker, shared by the playground executor and the production ingress.

:func:`walk` visits the stages a request needs in dependency order and calls a *transport* for
each one. The transport is either

* a blocking function ``call(stage, inputs) -> value`` (the playground, in-process): a stage
  that is alone runs inline, stages ready side by side run in worker threads; or
* a coroutine function (production, over Ray Serve DeploymentHandles): ready stages run as
  concurrent tasks.

Conditions (``when:``) are evaluated here, so both transports skip the same stages. A stage whose
input was skipped or failed is skipped with the reason; a failing stage never loses the results of
the branches that do not depend on it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nux_runtime.conditions import ConditionError, evaluate_condition
from nux_runtime.dag import Graph
from nux_runtime.errors import StageError
from nux_runtime.spec import StageSpec, WorkbookSpec
from nux_runtime.trace import StageStatus

__all__ = ["StageOutcome", "Transport", "WalkResult", "graph_of", "walk"]

Transport = Callable[[StageSpec, dict[str, Any]], Any | Awaitable[Any]]


@dataclass
class StageOutcome:
    status: StageStatus
    value: Any = None
    error: StageError | None = None
    reason: str = ""


@dataclass
class WalkResult:
    """What a walk produced: one outcome per visited stage, and the answering output stage."""

    spec: WorkbookSpec
    outcomes: dict[str, StageOutcome] = field(default_factory=dict)

    @property
    def output_stage(self) -> str | None:
        """The first output stage that ran (several outputs: the first not skipped)."""
        for stage in self.spec.output:
            outcome = self.outcomes.get(stage)
            if outcome is not None and outcome.status != "skipped":
                return stage
        return None

    @property
    def output(self) -> Any:
        stage = self.output_stage
        return None if stage is None else self.outcomes[stage].value

    @property
    def errors(self) -> list[StageError]:
        return [o.error for o in self.outcomes.values() if o.error is not None]

    @property
    def ok(self) -> bool:
        stage = self.output_stage
        return stage is not None and self.outcomes[stage].status == "ok"

    def raise_for_output(self) -> Any:
        """The output value, or the error that kept the workbook from answering."""
        stage = self.output_stage
        if stage is not None and self.outcomes[stage].status == "ok":
            return self.outcomes[stage].value
        if self.errors:
            raise self.errors[0]
        reasons = "; ".join(f"{s}: {self.outcomes[s].reason}" for s in self.spec.output)
        raise StageError(self.spec.output[0], f"every output stage was skipped ({reasons})")


_GRAPHS: dict[str, Graph] = {}


def graph_of(spec: WorkbookSpec) -> Graph:
    """The spec's stage graph (memoized by spec hash)."""
    graph = _GRAPHS.get(spec.hash)
    if graph is None:
        graph = Graph({s.id: s.dependencies() for s in spec.stages})
        _GRAPHS[spec.hash] = graph
    return graph


async def walk(
    spec: WorkbookSpec,
    inputs: Mapping[str, Any],
    call: Transport,
    *,
    targets: Iterable[str] | None = None,
    max_concurrency: int = 8,
    inline: bool = True,
) -> WalkResult:
    """Run the stages ``targets`` need (the output stages by default) through ``call``.

    With a blocking transport, a stage that is alone runs inline unless ``inline`` is False
    (several walks sharing one event loop, as a batch does, keep the loop free that way).
    """
    graph = graph_of(spec)
    wanted = graph.ancestors(spec.output if targets is None else targets)
    order = [s for s in graph.order() if s in wanted]
    blocking = not inspect.iscoroutinefunction(call)
    result = WalkResult(spec)
    outcomes = result.outcomes
    waiting = {s: sum(1 for u in graph.upstream[s] if u in wanted) for s in order}
    ready = [s for s in order if waiting[s] == 0]
    running: dict[asyncio.Future[Any], str] = {}
    semaphore = asyncio.Semaphore(max_concurrency)

    def finish(stage_id: str, outcome: StageOutcome) -> None:
        outcomes[stage_id] = outcome
        for down in graph.downstream[stage_id]:
            if down in waiting:
                waiting[down] -= 1
                if waiting[down] == 0:
                    ready.append(down)

    def prepare(stage: StageSpec) -> dict[str, Any] | StageOutcome:
        """The stage's input values, or the outcome that replaces running it."""
        values: dict[str, Any] = {}
        for name in stage.dependencies():
            upstream = outcomes.get(name)
            if upstream is None:
                if name in inputs:
                    values[name] = inputs[name]
                continue
            if upstream.status != "ok":
                return StageOutcome("skipped", reason=f"upstream {name!r} {upstream.status}")
            values[name] = upstream.value
        if stage.when:
            try:
                if not evaluate_condition(stage.when, values):
                    return StageOutcome("skipped", reason=f"when: {stage.when}")
            except ConditionError as exc:
                err = StageError(stage.id, str(exc), category="input")
                return StageOutcome("error", error=err, reason=str(exc))
        return {name: values[name] for name in stage.inputs if name in values}

    async def run(stage: StageSpec, values: dict[str, Any], alone: bool) -> StageOutcome:
        try:
            async with semaphore:
                if blocking and not alone:
                    value = await asyncio.to_thread(call, stage, values)
                else:
                    value = call(stage, values)
                    if inspect.isawaitable(value):
                        value = await value
        except StageError as exc:
            return StageOutcome("error", error=exc, reason=exc.cause)
        except Exception as exc:  # a transport bug still names the stage
            err = StageError(stage.id, f"{type(exc).__name__}: {exc}")
            return StageOutcome("error", error=err, reason=err.cause)
        return StageOutcome("ok", value=value)

    while ready or running:
        batch, ready[:] = list(ready), []
        launch: list[tuple[StageSpec, dict[str, Any]]] = []
        for stage_id in batch:
            stage = spec.by_id[stage_id]
            prepared = prepare(stage)
            if isinstance(prepared, StageOutcome):
                finish(stage_id, prepared)
            else:
                launch.append((stage, prepared))
        if not launch and ready:
            continue
        if inline and len(launch) == 1 and not running and not ready:
            stage, values = launch[0]
            finish(stage.id, await run(stage, values, alone=True))
            continue
        for stage, values in launch:
            running[asyncio.ensure_future(run(stage, values, alone=False))] = stage.id
        if not running:
            continue
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for future in done:
            finish(running.pop(future), future.result())
    return result
