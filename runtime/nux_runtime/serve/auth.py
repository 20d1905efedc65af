"""API keys (kept as sha256 digests) and a rate limit per key, shared by replicas over Redis.

Keys reach a replica as digests, from an environment variable or a mounted Kubernetes Secret, so
no replica ever holds a key in the clear. A client sends ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``; no key is 401, an unknown key 403. The two ways are FastAPI security
schemes (:data:`BEARER`, :data:`API_KEY`) that the routes depend on through
:func:`presented_key`, so ``/openapi.json`` declares them. :func:`hash_key` makes a digest
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
from typing import Annotated, Any

from fastapi import Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from nux_runtime.serve.settings import AuthSettings, RateLimitSettings

__all__ = ["API_KEY", "BEARER", "AuthDenied", "KeyRing", "RateLimiter", "hash_key",
           "presented_key"]

#: ``Authorization: Bearer <key>``; errors are the ingress's own (401/403 with the problem body).
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="An API key: `Authorization: Bearer <key>` (`nux api-key`).")
#: ``X-API-Key: <key>``, the same keys.
API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey",
                       description="An API key in the X-API-Key header.")


async def presented_key(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
        header: Annotated[str | None, Security(API_KEY)]) -> str | None:
    """The key a request presents (a bearer token first), or None; checked by the ingress."""
    if bearer is not None and bearer.credentials.strip():
        return bearer.credentials.strip()
    return header or None


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

    def identify(self, key: str | None) -> str | None:
        """The caller's key digest for the presented ``key`` (None when keys are not required
        and none was sent)."""
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
