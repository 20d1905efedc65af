"""Structured JSON logs and the request log, with personal data and secrets redacted.

One redaction policy, :func:`redact`, for every log: e-mail addresses, phone numbers, API keys
and bearer tokens become ``[email]``, ``[phone]`` and ``[key]``. Every JSON record
(python-json-logger) carries the request id; every string in it, the message and the per-stage
inputs and outputs included, is redacted. The request log ``nux replay`` reads
(:class:`RequestLog`) is redacted the same way unless the operator opts into verbatim lines;
either way the file is created owner-only (0600).

Writes never block the event loop: records go through a ``QueueHandler`` and a
``QueueListener`` thread does the writing.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import os
import queue
import re
import sys
from pathlib import Path
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["RedactingJsonFormatter", "RequestLog", "owner_only", "redact", "redact_value",
           "serve_logger"]

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


def owner_only(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and its folder) readable and writable by its owner only (0600)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(target, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
    os.chmod(target, 0o600)
    return target


def _queued(logger: logging.Logger, handlers: list[logging.Handler]) -> None:
    """Route ``logger`` through a queue; a listener thread runs the (blocking) handlers."""
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, *handlers, respect_handler_level=True)
    listener.start()
    atexit.register(listener.stop)
    logger.addHandler(logging.handlers.QueueHandler(records))


class _Message(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


class RequestLog:
    """The JSONL of answered requests ``nux replay`` re-runs: redacted unless ``verbatim``.

    The file is owner-only (0600); lines are written by a background thread.
    """

    def __init__(self, path: str, *, verbatim: bool = False) -> None:
        self.path = owner_only(path)
        self.verbatim = verbatim
        self.logger = logging.getLogger(f"nux.requests.{self.path}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        if not getattr(self.logger, "_nux_configured", False):
            handler = logging.FileHandler(self.path, encoding="utf-8")
            handler.setFormatter(_Message())
            _queued(self.logger, [handler])
            self.logger._nux_configured = True  # type: ignore[attr-defined]

    def write(self, record: dict[str, Any]) -> None:
        if not self.verbatim:
            record = {k: redact_value(v) if k in ("inputs", "output") else v
                      for k, v in record.items()}
        self.logger.info("%s", json.dumps(record, default=str))


def serve_logger(name: str = "nux.serve", *, path: str | None = None) -> logging.Logger:
    """The application's logger: JSON lines to stderr (collected by Ray) and optionally a file."""
    logger = logging.getLogger(name)
    if getattr(logger, "_nux_configured", False):
        return logger
    formatter = RedactingJsonFormatter(
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"levelname": "level", "asctime": "time"})
    # The process's own stderr: a Serve replica replaces sys.stderr with a stream that re-logs
    # each line through Serve's text format (walking the stack for every line), which would
    # wrap these JSON lines in text; Ray collects the process's stderr as the worker's log.
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.__stderr__ or sys.stderr)]
    if path:
        handlers.append(logging.FileHandler(owner_only(path), encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(formatter)
    _queued(logger, handlers)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger._nux_configured = True  # type: ignore[attr-defined]
    return logger
