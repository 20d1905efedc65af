"""Reference-free criteria: checks an answer passes without a expected answer to compare to.

Production has no test bank at hand, so only the workbook's criteria that judge an answer on its
own apply: ``json`` (the answer is JSON, or already structured), ``json_schema`` (params:
``schema``) and ``regex`` (params: ``pattern``, ``ignore_case``, ``fullmatch``), on the whole
answer or its ``field``, checked by the code ``nux eval`` scores with. They validate every
answer (one retry, then the fallback) and score a sampled share for online evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from nux_runtime.answer_checks import check_for
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


def reference_free_checks(criteria: Iterable[Criterion]) -> list[Check]:
    """The criteria that can judge an answer alone (others need the test bank and are skipped);
    each checks exactly as ``nux eval`` scores it (:mod:`nux_runtime.answer_checks`)."""
    checks: list[Check] = []
    for c in criteria:
        check = check_for(c.type, c.params)
        if check is not None:
            checks.append(Check(c.name, c.type, c.stage, check))
    return checks
