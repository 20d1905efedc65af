"""Per-stage traces: what one stage call did, and what it cost."""

from __future__ import annotations

import reprlib
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["StageStatus", "StageTrace", "preview"]

StageStatus = Literal["ok", "error", "skipped"]


_REPR = reprlib.Repr()
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = _REPR.maxset = 8
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel = 120, 80, 3


def preview(value: Any, limit: int = 80) -> str:
    """A one-line preview of a stage output for tables and logs (never a full large repr)."""
    text = value[: limit * 4] if isinstance(value, str) else _REPR.repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class StageTrace:
    """One stage of one run: status, latency, tokens, cost and whether the cache answered."""

    stage: str
    status: StageStatus
    latency_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cache_hit: bool = False
    output_preview: str = ""
    reason: str = ""
    #: the warm compute of the answer (for a cache hit: when it was computed); 0 if unknown
    compute_ms: float = 0.0
    #: the time this call waited for its component to load (a model), apart from latency
    cold_start_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
