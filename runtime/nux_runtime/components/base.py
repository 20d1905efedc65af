"""The contract every vetted component implements.

A component is instantiated once per stage (once per replica in production) with the frozen
:class:`~nux_runtime.spec.StageSpec` and a :class:`RuntimeContext`, then called once per request
with the stage's input values. It returns a :class:`StageResult` (value plus token counts) or a
bare value. Heavy resources (a model, a client) are loaded once per process and shared; see
:func:`shared`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from nux_runtime.spec import StageSpec

__all__ = ["Component", "RuntimeContext", "StageResult", "Uncacheable", "shared"]

T = TypeVar("T")


@dataclass
class StageResult:
    """A component's answer: the value, and what it consumed.

    ``cost_usd`` is left ``None`` for the caller to price from the stage's cost model (tokens and
    replica time); a component that knows its exact price sets it.
    """

    value: Any
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeContext:
    """Where a component runs: the workbook's folder (relative paths resolve there) and env."""

    base_dir: Path = field(default_factory=Path.cwd)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    def path(self, value: str | os.PathLike[str]) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p


class Uncacheable(Exception):
    """Raised by :meth:`Component.cache_state` when the state a call reads has no version."""


class Component:
    """Base class of every component; subclasses override :meth:`__call__`.

    The stage cache contract: a component whose calls write (an ingest) or read state it cannot
    version sets ``cacheable = False`` (or overrides :meth:`may_cache`); a component whose calls
    read state outside their inputs (a collection, a database file) returns that state's version
    from :meth:`cache_state`, which becomes part of the cache key, so a change to the state
    recomputes exactly the calls that read it.

    A component whose work is capped by one param (an LLM's ``max_tokens``) names it in
    ``budget_param``, and sets ``meta["budget_used"]`` on a result that finished on its own
    before reaching the cap and that the same inputs always give: any budget of at least
    ``budget_used`` gives the same result, so the stage cache answers such calls (tuning trials
    that differ only in the cap) without recomputing.
    """

    budget_param: ClassVar[str | None] = None
    budget_default: ClassVar[int] = 0
    #: whether the stage cache may answer this component's calls (never for a write)
    cacheable: ClassVar[bool] = True

    @classmethod
    def may_cache(cls, stage: StageSpec) -> bool:
        """Whether calls of this stage may be answered from the stage cache."""
        return cls.cacheable

    @classmethod
    def cache_state(cls, stage: StageSpec, context: RuntimeContext) -> str | None:
        """The version of the external state a call of ``stage`` reads; None when a call reads
        only its inputs and params. Raises :class:`Uncacheable` when the state has no version.
        Called before the component is built, so it must be cheap and load no model."""
        return None

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        self.stage = stage
        self.context = context
        self.params: dict[str, Any] = dict(stage.params)

    def reconfigure(self, params: Mapping[str, Any]) -> None:
        """Apply new params without reloading (Ray Serve ``user_config``, tuning trials)."""
        self.params = {**self.stage.params, **params}

    def budget(self) -> int | None:
        """The current value of :attr:`budget_param`; None when the component has none."""
        if self.budget_param is None:
            return None
        return int(self.params.get(self.budget_param, self.budget_default))

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult | Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement __call__")

    def close(self) -> None:
        """Release per-stage resources (shared ones stay loaded for the process)."""


_shared: dict[tuple[str, Any], Any] = {}
_shared_lock = threading.Lock()


def shared(kind: str, key: Any, factory: Callable[[], T]) -> T:
    """One instance per (kind, key) per process: models and clients are loaded once.

    Instances with a ``close()`` method are closed when the process exits, while the libraries
    they need are still loaded (a model freed during interpreter teardown can fail noisily).
    """
    with _shared_lock:
        if (kind, key) not in _shared:
            if not _shared:
                atexit.register(_close_shared)
            _shared[(kind, key)] = factory()
        return _shared[(kind, key)]  # type: ignore[no-any-return]


def _close_shared() -> None:
    with _shared_lock:
        instances = list(_shared.values())
        _shared.clear()
    for instance in reversed(instances):
        close = getattr(instance, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
