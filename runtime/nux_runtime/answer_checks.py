"""Reference-free answer checks: what a criterion can judge on the answer alone.

One implementation for the two places that judge answers: ``nux eval``'s scorers (``json``,
``json_schema``, ``regex`` with a ``pattern``) and the served app's response validation, which
has no expected answer at hand. ``check_for(type, params)`` gives a function from an answer to
``(passed, detail)``, or None when the criterion needs an expected answer;
:func:`reference_free_checks` gives a workbook's criteria that apply, as :class:`Check` objects
that response validation (:mod:`nux_runtime.stagecall`) runs in the playground and in
production alike.

Params: ``regex`` takes ``pattern``, ``ignore_case`` and ``fullmatch`` (default ``re.search``);
``json_schema`` takes ``schema`` as a mapping or as JSON text; every type takes ``field``, a
dotted path (``items.0.name``) or JSON pointer (``/items/0/name``) that picks the checked part
of a structured answer (a JSON text is parsed first).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from nux_runtime.spec import Criterion

__all__ = ["Check", "CheckFn", "answer_text", "as_json", "check_for", "json_valid", "pick_field",
           "reference_free_checks", "schema_param"]

CheckFn = Callable[[Any], tuple[bool, str]]


def answer_text(value: Any) -> str:
    """An answer as text: a string as it is, anything else as canonical JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def as_json(value: Any) -> tuple[bool, Any, str]:
    """``(ok, value, detail)``: a JSON text parsed, or a JSON-serializable value as it is."""
    if isinstance(value, str):
        try:
            return True, json.loads(value), ""
        except json.JSONDecodeError as exc:
            return False, None, f"not JSON: {exc.msg} at {exc.pos}"
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        return False, None, f"not JSON-serializable: {exc}"
    return True, value, ""


def _path(path: str) -> list[str]:
    if path.startswith("/"):
        return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]
    return path.split(".")


def pick_field(value: Any, path: str) -> tuple[bool, Any]:
    """The part of ``value`` (a JSON text is parsed first) at ``path``; False when absent."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return False, None
    for key in _path(path):
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(
                key) < len(value):
            value = value[int(key)]
        else:
            return False, None
    return True, value


def schema_param(raw: Any) -> dict[str, Any] | None:
    """A ``schema`` param given as a mapping or as JSON text; None when it is neither."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return None
    return dict(raw) if isinstance(raw, Mapping) else None


def json_valid(value: Any) -> tuple[bool, str]:
    """The ``json`` check: a JSON text that parses, or a JSON-serializable value."""
    ok, _, detail = as_json(value)
    return ok, detail


def _schema(schema: dict[str, Any]) -> CheckFn:
    validator = Draft202012Validator(schema)
    wants = schema.get("type")

    def check(value: Any) -> tuple[bool, str]:
        if isinstance(value, str) and wants not in (None, "string"):
            ok, value, detail = as_json(value)
            if not ok:
                return False, detail
        error = next(iter(validator.iter_errors(value)), None)
        return (True, "") if error is None else (False, error.message)

    return check


def _regex(pattern: str, ignore_case: bool, fullmatch: bool) -> CheckFn:
    compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    match = compiled.fullmatch if fullmatch else compiled.search

    def check(value: Any) -> tuple[bool, str]:
        ok = match(answer_text(value)) is not None
        return ok, "" if ok else f"the answer does not match /{pattern}/"

    return check


def check_for(kind: str, params: Mapping[str, Any]) -> CheckFn | None:
    """The check a criterion of type ``kind`` makes on an answer alone; None when it needs an
    expected answer (or a model) to judge."""
    check: CheckFn | None = None
    if kind == "json":
        check = json_valid
    elif kind == "json_schema":
        schema = schema_param(params.get("schema"))
        check = _schema(schema) if schema is not None else None
    elif kind == "regex" and isinstance(params.get("pattern"), str):
        check = _regex(params["pattern"], bool(params.get("ignore_case")),
                       bool(params.get("fullmatch")))
    path = params.get("field")
    if check is None or not isinstance(path, str):
        return check
    whole = check

    def on_field(value: Any) -> tuple[bool, str]:
        found, part = pick_field(value, path)
        return whole(part) if found else (False, f"the answer has no field {path!r}")

    return on_field


@dataclass(frozen=True)
class Check:
    """One reference-free criterion, ready to score a value: ``(passed, detail)``."""

    name: str
    type: str
    stage: str | None
    score: CheckFn

    def applies_to(self, stage: str, outputs: tuple[str, ...]) -> bool:
        return self.stage == stage or (self.stage is None and stage in outputs)


def reference_free_checks(criteria: Iterable[Criterion]) -> list[Check]:
    """The criteria that can judge an answer alone (others need the test bank and are skipped):
    what response validation checks, in the playground and in the served app alike."""
    checks: list[Check] = []
    for c in criteria:
        check = check_for(c.type, c.params)
        if check is not None:
            checks.append(Check(c.name, c.type, c.stage, check))
    return checks
