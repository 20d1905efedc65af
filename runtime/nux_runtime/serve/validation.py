"""Request validation: every bad request becomes a 4xx with ``{error, field, detail}``.

Checked in order, each a class of bad input with its own status: the body size (413), JSON that
does not parse or is not an object (400), the workbook's input schema (422), string lengths (422)
and the injection-pattern policy (400). Nothing a client sends reaches a stage unchecked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from nux_runtime.serve.settings import InjectionPolicy

__all__ = ["BadRequest", "RequestValidator"]


@dataclass
class BadRequest(Exception):
    """A request refused before it runs."""

    status: int
    error: str
    field: str
    detail: str

    def body(self) -> dict[str, str]:
        return {"error": self.error, "field": self.field, "detail": self.detail}


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


class RequestValidator:
    """Checks request bodies against one workbook's input schema and the serving limits."""

    def __init__(self, input_schema: dict[str, Any], *, max_body_bytes: int,
                 max_string_chars: int, injection: InjectionPolicy) -> None:
        self.validator = Draft202012Validator(input_schema)
        self.max_body_bytes = max_body_bytes
        self.max_string_chars = max_string_chars
        self.injection = injection
        self.patterns = [re.compile(p) for p in injection.patterns] if injection.action != "off" \
            else []

    def check_length(self, content_length: str | None) -> None:
        """Refuse a body announced as too large before reading it."""
        if content_length is None:
            return
        try:
            size = int(content_length)
        except ValueError:
            raise BadRequest(400, "bad-header", "content-length",
                             "Content-Length is not a number") from None
        if size > self.max_body_bytes:
            raise BadRequest(413, "body-too-large", "body",
                             f"the body is {size} bytes; the limit is {self.max_body_bytes}")

    def parse(self, raw: bytes) -> dict[str, Any]:
        """The request's JSON object, or :class:`BadRequest`."""
        if len(raw) > self.max_body_bytes:
            raise BadRequest(413, "body-too-large", "body",
                             f"the body is {len(raw)} bytes; the limit is {self.max_body_bytes}")
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(400, "bad-encoding", "body", "the body is not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise BadRequest(400, "bad-json", "body",
                             f"the body is not JSON: {exc.msg} at line {exc.lineno} column "
                             f"{exc.colno}") from None
        except RecursionError:
            raise BadRequest(400, "bad-json", "body", "the JSON is nested too deeply") from None
        if not isinstance(data, dict):
            raise BadRequest(400, "bad-json", "body",
                             f"the body must be a JSON object, not {type(data).__name__}")
        return data

    def inputs(self, raw: bytes) -> tuple[dict[str, Any], list[str]]:
        """Validated inputs, and the fields the injection policy flagged (when it only logs)."""
        data = self.parse(raw)
        error = best_match(self.validator.iter_errors(data))
        if error is not None:
            field = ".".join(str(p) for p in error.absolute_path)
            if not field and error.validator == "required":
                missing = [n for n in error.validator_value if n not in data]
                field = missing[0] if missing else "body"
            elif not field and error.validator == "additionalProperties":
                extra = [n for n in data if n not in error.schema.get("properties", {})]
                field = extra[0] if extra else "body"
            raise BadRequest(422, "invalid-input", field or "body", error.message)
        flagged: list[str] = []
        for path, text in _strings(data, ""):
            if len(text) > self.max_string_chars:
                raise BadRequest(422, "string-too-long", path,
                                 f"{len(text)} characters; the limit is {self.max_string_chars}")
            if "\x00" in text:
                raise BadRequest(422, "invalid-input", path, "the text holds a NUL character")
            for pattern in self.patterns:
                if pattern.search(text):
                    if self.injection.action == "reject":
                        raise BadRequest(400, "injection-suspected", path,
                                         "the text matches the injection policy "
                                         f"(pattern /{pattern.pattern}/)")
                    flagged.append(path)
                    break
        return data, flagged
