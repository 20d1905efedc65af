"""Structured JSON logs with personal data and secrets redacted.

Every record is one JSON object (python-json-logger) carrying the request id; every string in it,
the message and the per-stage inputs and outputs included, passes through :func:`redact` first:
e-mail addresses, phone numbers, API keys and bearer tokens become ``[email]``, ``[phone]`` and
``[key]``.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["RedactingJsonFormatter", "redact", "redact_value", "serve_logger"]

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}"), "Bearer [key]"),
    (re.compile(r"\b(?:sk|pk|rk|nux|ghp|gho|xox[abp])[-_][A-Za-z0-9_-]{12,}\b"), "[key]"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "[key]"),
    (re.compile(r"\b[A-Fa-f0-9]{32,}\b"), "[key]"),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"(?<![\w+])\+?\d{1,3}?[\s.-]?\(?\d{2,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?!\w)"),
     "[phone]"),
)


def redact(text: str) -> str:
    """The text with e-mails, phone numbers and keys replaced by placeholders."""
    for pattern, placeholder in _PATTERNS:
        text = pattern.sub(placeholder, text)
    return text


def redact_value(value: Any) -> Any:
    """Redact every string inside a JSON-like value (keys of mappings are kept)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines whose message and extra fields are redacted."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {k: redact_value(v) for k, v in super().process_log_record(log_data).items()}


def serve_logger(name: str = "nux.serve", *, path: str | None = None) -> logging.Logger:
    """The application's logger: JSON lines to stderr (collected by Ray) and optionally a file."""
    logger = logging.getLogger(name)
    if getattr(logger, "_nux_configured", False):
        return logger
    formatter = RedactingJsonFormatter(
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"levelname": "level", "asctime": "time"})
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger._nux_configured = True  # type: ignore[attr-defined]
    return logger
