"""API keys (kept as sha256 digests) and a rate limit per key, shared by replicas over Redis.

Keys reach a replica as digests, from an environment variable or a mounted Kubernetes Secret, so
no replica ever holds a key in the clear. A client sends ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``; no key is 401, an unknown key 403. :func:`hash_key` makes a digest
(``nux api-key`` makes a key and prints both).

The rate limit is the ``limits`` library's moving window (at most ``burst`` requests in any
``burst / rate_per_s`` seconds) on its asyncio storage: in process by default, or one Redis that
every ingress replica counts against, so N replicas still allow the configured rate, not N times
it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nux_runtime.serve.settings import AuthSettings, RateLimitSettings

__all__ = ["AuthDenied", "KeyRing", "RateLimiter", "hash_key"]


def hash_key(key: str) -> str:
    """The sha256 hex digest a key is stored as."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class AuthDenied(Exception):
    """The request carries no key (401) or an unknown one (403)."""

    status: int
    detail: str


class KeyRing:
    """The accepted key digests; ``identify`` answers the caller's digest or raises."""

    def __init__(self, settings: AuthSettings, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        digests = {d.strip().lower() for d in env.get(settings.keys_env, "").split(",")}
        if settings.keys_file:
            path = Path(settings.keys_file)
            if path.is_file():
                digests |= {line.strip().lower() for line in path.read_text().splitlines()}
        self.digests = frozenset(d for d in digests if d)
        self.required = settings.required if settings.required is not None else bool(self.digests)

    @staticmethod
    def presented(headers: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        return headers.get("x-api-key") or None

    def identify(self, headers: Mapping[str, str]) -> str | None:
        """The caller's key digest (None when keys are not required and none was sent)."""
        key = self.presented(headers)
        if key is None:
            if self.required:
                raise AuthDenied(401, "send an API key as `Authorization: Bearer <key>`")
            return None
        digest = hash_key(key)
        if not any(hmac.compare_digest(digest, d) for d in self.digests):
            if self.required:
                raise AuthDenied(403, "the API key is not valid for this workbook")
            return None
        return digest


class RateLimiter:
    """``await take(caller)`` is 0 when the request is allowed, else the seconds to wait."""

    def __init__(self, settings: RateLimitSettings, *, redis_url: str | None = None,
                 namespace: str = "nux") -> None:
        from limits import RateLimitItemPerSecond
        from limits.aio.storage import MemoryStorage, RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        self.settings = settings
        self.item = RateLimitItemPerSecond(settings.burst, settings.window_s(),
                                           namespace=f"{namespace}:rate")
        storage: Any = (RedisStorage(f"async+{redis_url}", implementation="redispy")
                        if redis_url else MemoryStorage())
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)

    async def take(self, caller: str) -> float:
        if not self.settings.enabled:
            return 0.0
        if await self.limiter.hit(self.item, caller):
            return 0.0
        stats = await self.limiter.get_window_stats(self.item, caller)
        return max(0.001, float(stats.reset_time) - time.time())
