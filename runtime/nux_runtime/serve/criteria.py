"""Reference-free criteria: checks an answer passes without a expected answer to compare to.

Production has no test bank at hand, so only the workbook's criteria that judge an answer on its
own apply: ``json`` (the answer is JSON, or already structured), ``json_schema`` (params:
``schema``) and ``regex`` (params: ``pattern``, matched with ``re.search``). They validate every
answer (one retry, then the fallback) and score a sampled share for online evaluation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from nux_runtime.spec import Criterion

__all__ = ["Check", "reference_free_checks"]


@dataclass(frozen=True)
class Check:
    """One reference-free criterion, ready to score a value: ``(passed, detail)``."""

    name: str
    type: str
    stage: str | None
    score: Callable[[Any], tuple[bool, str]]

    def applies_to(self, stage: str, outputs: tuple[str, ...]) -> bool:
        return self.stage == stage or (self.stage is None and stage in outputs)


def _as_json(value: Any) -> tuple[bool, Any]:
    if isinstance(value, str):
        try:
            return True, json.loads(value)
        except json.JSONDecodeError:
            return False, None
    return True, value


def _json_check() -> Callable[[Any], tuple[bool, str]]:
    def score(value: Any) -> tuple[bool, str]:
        ok, _ = _as_json(value)
        return ok, "" if ok else "the answer is not JSON"

    return score


def _schema_check(schema: dict[str, Any]) -> Callable[[Any], tuple[bool, str]]:
    validator = Draft202012Validator(schema)

    def score(value: Any) -> tuple[bool, str]:
        ok, data = _as_json(value)
        if not ok:
            return False, "the answer is not JSON"
        error = next(iter(validator.iter_errors(data)), None)
        return (True, "") if error is None else (False, error.message)

    return score


def _regex_check(pattern: str) -> Callable[[Any], tuple[bool, str]]:
    compiled = re.compile(pattern)

    def score(value: Any) -> tuple[bool, str]:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        ok = compiled.search(text) is not None
        return ok, "" if ok else f"the answer does not match /{pattern}/"

    return score


def reference_free_checks(criteria: Iterable[Criterion]) -> list[Check]:
    """The criteria that can judge an answer alone (others need the test bank and are skipped)."""
    checks: list[Check] = []
    for c in criteria:
        if c.type == "json":
            checks.append(Check(c.name, c.type, c.stage, _json_check()))
        elif c.type == "json_schema" and isinstance(c.params.get("schema"), dict):
            checks.append(Check(c.name, c.type, c.stage, _schema_check(c.params["schema"])))
        elif c.type == "regex" and isinstance(c.params.get("pattern"), str):
            checks.append(Check(c.name, c.type, c.stage, _regex_check(c.params["pattern"])))
    return checks
