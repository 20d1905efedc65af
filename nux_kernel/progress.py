"""An executor that tells an observer which stage it is running, as it runs it.

A process that runs a workbook for another one (the worker process of the JupyterLab server)
reports each stage as it starts and its trace as it ends, so that when the process dies in the
middle of a stage (a crash, a hang it is killed for) its parent knows which stage it was and what
had already finished.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nux_kernel.cache import StageCache
from nux_kernel.executor import Executor
from nux_runtime.spec import StageSpec, WorkbookSpec
from nux_runtime.trace import StageTrace

__all__ = ["ProgressExecutor", "StageObserver"]

#: called with (stage id, None) when a stage starts and (stage id, its trace) when it ends
StageObserver = Callable[[str, StageTrace | None], None]


class ProgressExecutor(Executor):
    """An :class:`Executor` that calls ``observer`` around every stage call."""

    def __init__(self, spec: WorkbookSpec, *, observer: StageObserver,
                 base_dir: str | Path | None = None, cache: StageCache | bool = True,
                 max_concurrency: int = 8) -> None:
        super().__init__(spec, base_dir=base_dir, cache=cache, max_concurrency=max_concurrency)
        self.observer = observer

    async def _call(self, traces: dict[str, StageTrace], stage: StageSpec,
                    inputs: dict[str, Any]) -> Any:
        self.observer(stage.id, None)
        try:
            return await super()._call(traces, stage, inputs)
        finally:
            self.observer(stage.id, traces.get(stage.id))
