"""The stage cache: key = (stage spec hash, external state version, input values hash), in memory
and on disk.

A re-run, an evaluation or a tuning trial reuses every stage whose spec, inputs and external
state did not change. Editing a stage changes its hash, so it recomputes; what it feeds
recomputes only when its output changed. A stage that reads state outside its inputs (a Qdrant
collection, a SQLite file) puts that state's version in its key, so an ingest or a changed file
recomputes exactly the stages that read it; a stage that writes is never cached (the component
contract in :mod:`nux_runtime.components.base`). Inputs hash by value (JSON, arrays by content);
an input that has no value form (an arbitrary object) makes the call uncacheable rather than
keyed by its ``repr``. The disk layer lives under ``.nux/cache`` beside the workbook (a
:mod:`diskcache` store, safe across processes); the memory layer answers repeated keys without
touching disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from nux_runtime.spec import StageSpec

__all__ = ["CacheEntry", "StageCache", "UnhashableInput", "input_hash"]


class UnhashableInput(TypeError):
    """An input value with no canonical value form: the call is not cached."""


def _encode(value: Any) -> Any:
    if hasattr(value, "tolist") and callable(value.tolist):
        return {"__array__": value.tolist(), "dtype": str(getattr(value, "dtype", ""))}
    if isinstance(value, set | frozenset):
        items = [json.dumps(v, sort_keys=True, separators=(",", ":"), default=_encode)
                 for v in value]
        return {"__set__": sorted(items)}
    if isinstance(value, bytes | bytearray):
        return {"__bytes__": bytes(value).hex()}
    raise UnhashableInput(f"a {type(value).__name__} has no value form to key the cache by")


def input_hash(inputs: dict[str, Any]) -> str:
    """Hash of a stage's input values (JSON-canonical; arrays by content and dtype).

    Raises :class:`UnhashableInput` for a value that is not JSON, an array, a set or bytes.
    """
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=_encode)
    return hashlib.sha256(text.encode()).hexdigest()


def _state(state: str | None) -> str:
    return hashlib.sha256(state.encode()).hexdigest()[:32] if state else "-"


@dataclass(frozen=True)
class CacheEntry:
    """A stored stage result and what computing it cost."""

    value: Any
    tokens_in: int
    tokens_out: int
    cost_usd: float
    compute_ms: float
    #: set when the result answers any budget (e.g. ``max_tokens``) of at least this much
    budget_used: int | None = None


class StageCache:
    """Two layers: an in-memory LRU in front of an optional on-disk store."""

    def __init__(self, directory: str | Path | None = None, *, memory_items: int = 4096) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._disk = diskcache.Cache(str(self.directory)) if self.directory is not None else None
        self._memory: OrderedDict[str, CacheEntry] = OrderedDict()
        self._limit = memory_items
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(stage_hash: str, inputs: dict[str, Any], state: str | None = None) -> str:
        """The key of a call; ``state`` is the version of the external state it reads.

        Raises :class:`UnhashableInput` when an input has no value form."""
        return f"{stage_hash}:{_state(state)}:{input_hash(inputs)}"

    @staticmethod
    def budget_key(stage: StageSpec, budget_param: str, inputs: dict[str, Any],
                   state: str | None = None) -> str:
        """The key of the stage's results under any value of its budget param."""
        body = stage.body()
        body["params"] = {k: v for k, v in body["params"].items() if k != budget_param}
        body["tune"] = {k: v for k, v in body["tune"].items() if k != budget_param}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return (f"budget:{hashlib.sha256(text.encode()).hexdigest()}:{_state(state)}:"
                f"{input_hash(inputs)}")

    def get(self, key: str, *, count: bool = True) -> CacheEntry | None:
        """The entry under ``key``; ``count`` False leaves the hit/miss counters alone."""
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                self._memory.move_to_end(key)
                self.hits += count
                return entry
        stored = self._disk.get(key) if self._disk is not None else None
        with self._lock:
            if isinstance(stored, CacheEntry):
                self._remember(key, stored)
                self.hits += count
                return stored
            self.misses += count
        return None

    def get_within(self, key: str, budget: int) -> CacheEntry | None:
        """A result stored under a budget key that finished within ``budget``."""
        entry = self.get(key, count=False)
        used = getattr(entry, "budget_used", None)
        if entry is None or used is None or used > budget:
            return None
        with self._lock:  # the exact lookup before this one counted a miss
            self.misses -= 1
            self.hits += 1
        return entry

    def put(self, key: str, entry: CacheEntry) -> None:
        with self._lock:
            self._remember(key, entry)
        if self._disk is not None:
            with contextlib.suppress(Exception):  # an unpicklable value stays in memory only
                self._disk.set(key, entry)

    def _remember(self, key: str, entry: CacheEntry) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self._limit:
            self._memory.popitem(last=False)

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def clear(self) -> None:
        with self._lock:
            self._memory.clear()
        if self._disk is not None:
            self._disk.clear()

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()
