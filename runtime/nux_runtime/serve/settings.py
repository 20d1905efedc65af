"""`ServeSettings`: the application builder's ``args``, every field described.

A Serve config names ``nux_runtime.serve.app:build_app`` and passes these as ``args``; only
``spec_path`` is required. Per-stage replica settings (``ray_actor_options``,
``autoscaling_config``, ``max_ongoing_requests``, ``user_config``) are not here: they belong to
the Serve config's ``deployments:`` entries, one per stage id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AuthSettings",
    "CacheSettings",
    "InjectionPolicy",
    "OnlineEvalSettings",
    "RateLimitSettings",
    "SemanticCacheSettings",
    "ServeSettings",
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


class RateLimitSettings(_Settings):
    """A token bucket per API key (per client address when auth is off), per ingress replica."""

    enabled: bool = True
    rate_per_s: float = Field(default=20.0, gt=0, description="Tokens added per second.")
    burst: int = Field(default=40, ge=1, description="Bucket size: requests allowed at once.")


class SemanticCacheSettings(_Settings):
    """Answers for requests whose text is close enough to an earlier one (MiniLM + Qdrant)."""

    enabled: bool = Field(default=False, description="Loads the embedding model in the ingress.")
    threshold: float = Field(default=0.92, gt=0, le=1, description="Cosine similarity needed.")
    ttl_s: float = Field(default=3600.0, gt=0, description="How long an answer may be reused.")
    embedder: str = Field(default="minilm", description="Embedding model name.")
    qdrant_path: str | None = Field(
        default=None, description="Qdrant local folder; in memory when unset.")


class CacheSettings(_Settings):
    """The exact answer cache (normalized inputs), keyed by the spec hash."""

    enabled: bool = True
    max_entries: int = Field(default=10_000, ge=1)
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
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    semantic_cache: SemanticCacheSettings = Field(default_factory=SemanticCacheSettings)
    online_eval: OnlineEvalSettings = Field(default_factory=OnlineEvalSettings)
    validate_response: bool = Field(
        default=True, description="Check answers with the reference-free criteria.")
    fallback_response: Any = Field(
        default=None, description="Answer given when the workbook and its fallbacks fail.")
    default_timeout_s: float = Field(default=60.0, gt=0, description="Per-stage call timeout.")
    transport_retries: int = Field(
        default=3, ge=0, le=10, description="Retries of a call whose replica died or was busy.")
    otlp_endpoint: str | None = Field(
        default=None, description="OpenTelemetry OTLP/gRPC endpoint; tracing is off when unset.")
    log_path: str | None = Field(default=None, description="Also write JSON logs to this file.")
    log_stages: bool = Field(
        default=True, description="Log each stage call's inputs and output (redacted).")
    request_log: str | None = Field(
        default=None,
        description="JSONL of raw requests and answers for `nux replay` (holds raw inputs).")
    stage_cpus: float | None = Field(
        default=None, ge=0, description="Override every stage replica's CPUs (a laptop run).")
    ingress_cpus: float = Field(default=0.25, ge=0, description="CPUs of an ingress replica.")

    def spec_file(self) -> Path:
        return Path(self.spec_path).expanduser().resolve()

    def workdir(self) -> Path:
        if self.base_dir is not None:
            return Path(self.base_dir).expanduser().resolve()
        return Path.cwd()
