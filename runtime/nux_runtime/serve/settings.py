"""`ServeSettings`: the application builder's ``args``, every field described.

A Serve config names ``nux_runtime.serve.app:build_app`` and passes these as ``args``; only
``spec_path`` is required. Per-stage replica settings (``ray_actor_options``,
``autoscaling_config``, ``max_ongoing_requests``, ``user_config``) are not here: they belong to
the Serve config's ``deployments:`` entries, one per stage id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nux_runtime.stagecall import DEFAULT_TIMEOUT_S

__all__ = [
    "AuthSettings",
    "CacheSettings",
    "InjectionPolicy",
    "OnlineEvalSettings",
    "RateLimitSettings",
    "SemanticCacheSettings",
    "ServeSettings",
    "SharedStateSettings",
]

#: Phrases seen in prompt-injection attempts; a deployment extends or replaces the list.
DEFAULT_INJECTION_PATTERNS: tuple[str, ...] = (
    r"(?i)\bignore\s+(all\s+|any\s+)?(the\s+)?(previous|prior|above)\s+(instructions|prompts?)",
    r"(?i)\bdisregard\s+(all\s+|the\s+)?(previous|prior|above|system)\b",
    r"(?i)\breveal\s+(your\s+|the\s+)?(system\s+prompt|hidden\s+instructions)",
    r"(?i)<\s*/?\s*(system|im_start|im_end)\s*>",
)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InjectionPolicy(_Settings):
    """Patterns a string input may not match (prompt injection, markup smuggling)."""

    action: Literal["reject", "log", "off"] = Field(
        default="reject", description="reject: 400; log: serve and log a warning; off: no check.")
    patterns: tuple[str, ...] = Field(
        default=DEFAULT_INJECTION_PATTERNS, description="Python regular expressions.")


class AuthSettings(_Settings):
    """API keys, stored as sha256 hex digests (never the keys themselves)."""

    keys_env: str = Field(
        default="NUX_API_KEY_HASHES",
        description="Environment variable holding comma-separated sha256 digests of the keys.")
    keys_file: str | None = Field(
        default=None,
        description="File with one digest per line (a mounted Kubernetes Secret).")
    required: bool | None = Field(
        default=None,
        description="Demand a key; by default keys are demanded when any digest is configured.")


class SharedStateSettings(_Settings):
    """Where ingress replicas share the rate limit and the answer caches: a Redis server.

    Without a URL each replica keeps its own in process (right for one replica); with one,
    every replica counts against the same limits and finds the answers any replica stored.
    """

    redis_url: str | None = Field(
        default=None, description="redis:// or rediss:// URL; wins over redis_url_env.")
    redis_url_env: str = Field(
        default="NUX_REDIS_URL",
        description="Environment variable holding the URL (the export fills it from a Secret).")
    key_prefix: str = Field(default="nux", description="Prefix of every key NUX writes.")

    def url(self) -> str | None:
        """The configured Redis URL, or None for in-process state."""
        return self.redis_url or os.environ.get(self.redis_url_env) or None


class RateLimitSettings(_Settings):
    """Requests per API key (per client address when auth is off): at most ``burst`` in any
    moving window of ``burst / rate_per_s`` seconds (shared by all replicas with Redis)."""

    enabled: bool = True
    rate_per_s: float = Field(default=20.0, gt=0, description="Sustained requests per second.")
    burst: int = Field(default=40, ge=1, description="Requests allowed at once.")

    def window_s(self) -> int:
        """The moving window's length in whole seconds (at least 1)."""
        return max(1, round(self.burst / self.rate_per_s))


class SemanticCacheSettings(_Settings):
    """Answers for requests whose text is close enough to an earlier one (MiniLM embeddings).

    Entries are scoped by the spec hash, the caller's API key (when the request names one) and
    the stages' params; the nearest distance of every lookup is a metric
    (``nux_semantic_cache_nearest_distance``) to choose the threshold from data.
    """

    enabled: bool = Field(default=False, description="Loads the embedding model in the ingress.")
    threshold: float = Field(default=0.92, gt=0, le=1,
                             description="Cosine similarity needed (distance <= 1 - threshold).")
    ttl_s: float = Field(default=3600.0, gt=0, description="How long an answer may be reused.")
    max_entries: int = Field(default=2_000, ge=1, description="Entries kept per scope.")
    embedder: str = Field(default="minilm", description="Embedding model name.")


class CacheSettings(_Settings):
    """The exact answer cache (normalized inputs), scoped like the semantic cache."""

    enabled: bool = True
    max_entries: int = Field(default=10_000, ge=1,
                             description="Entries kept in process (Redis: bounded by the TTL).")
    ttl_s: float = Field(default=3600.0, gt=0)
    casefold: bool = Field(default=False, description="Treat inputs differing in case as equal.")


class OnlineEvalSettings(_Settings):
    """A sampled share of answers scored by the workbook's reference-free criteria."""

    sample_rate: float = Field(default=0.1, ge=0, le=1)


class ServeSettings(_Settings):
    """Everything the application builder accepts as ``args``."""

    spec_path: str = Field(description="The frozen WorkbookSpec JSON (relative: to the cwd).")
    base_dir: str | None = Field(
        default=None, description="Folder relative stage paths resolve against (the spec's).")
    max_body_bytes: int = Field(default=64 * 1024, ge=256, description="Request body limit.")
    max_string_chars: int = Field(default=8_000, ge=1, description="Limit for any string input.")
    injection: InjectionPolicy = Field(default_factory=InjectionPolicy)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    shared_state: SharedStateSettings = Field(default_factory=SharedStateSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    semantic_cache: SemanticCacheSettings = Field(default_factory=SemanticCacheSettings)
    online_eval: OnlineEvalSettings = Field(default_factory=OnlineEvalSettings)
    validate_response: bool = Field(
        default=True, description="Check answers with the reference-free criteria.")
    fallback_response: Any = Field(
        default=None, description="Answer given when the workbook and its fallbacks fail.")
    default_timeout_s: float = Field(
        default=DEFAULT_TIMEOUT_S, gt=0,
        description="Per-stage call timeout of a stage without timeout_s (as in the playground).")
    transport_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a call whose replica died or was busy.")
    otlp_endpoint: str | None = Field(
        default=None, description="OpenTelemetry OTLP/gRPC endpoint; tracing is off when unset.")
    log_path: str | None = Field(default=None, description="Also write JSON logs to this file.")
    log_stages: bool = Field(
        default=False,
        description="Also log each stage call's inputs and output (redacted), a line per stage; "
        "the request's line always carries every stage's status, latency, tokens and preview.")
    request_log: str | None = Field(
        default=None,
        description="JSONL of requests and answers for `nux replay`, redacted like every log.")
    request_log_verbatim: bool = Field(
        default=False,
        description="Keep the request log's inputs and answers unredacted (file mode 0600).")
    stage_cpus: float | None = Field(
        default=None, ge=0, description="Override every stage replica's CPUs (a laptop run).")
    ingress_cpus: float = Field(default=0.25, ge=0, description="CPUs of an ingress replica.")
    ingress_replicas: int | None = Field(
        default=None, ge=1,
        description="A fixed number of ingress replicas (else the Serve config's autoscaling).")

    def spec_file(self) -> Path:
        return Path(self.spec_path).expanduser().resolve()

    def workdir(self) -> Path:
        if self.base_dir is not None:
            return Path(self.base_dir).expanduser().resolve()
        return Path.cwd()
