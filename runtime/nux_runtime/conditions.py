"""`when:` conditions: small, safe expressions over workbook inputs and upstream outputs.

A condition is one Python expression (``classify.label == 'hard'``, ``len(question) > 200``)
evaluated with :mod:`simpleeval`: no imports, no attribute access to private names, no calls but
a few pure builtins. Dict values can be read as ``stage.key`` or ``stage['key']``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from simpleeval import EvalWithCompoundTypes

__all__ = ["ConditionError", "condition_names", "evaluate_condition"]

_FUNCTIONS: dict[str, Any] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "any": any,
    "all": all,
}


class ConditionError(ValueError):
    """A condition that does not parse or cannot be evaluated."""


@lru_cache(maxsize=1024)
def _parse(expression: str) -> ast.Expression:
    try:
        return ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"`when: {expression}` is not a valid expression: {exc.msg}") from None


@lru_cache(maxsize=1024)
def condition_names(expression: str) -> tuple[str, ...]:
    """The free names a condition reads (inputs or stage ids), in order of first use."""
    tree = _parse(expression)
    bound = {
        n.id
        for comp in ast.walk(tree)
        if isinstance(comp, ast.comprehension)
        for n in ast.walk(comp.target)
        if isinstance(n, ast.Name)
    }
    names: dict[str, None] = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
                and node.id not in bound and node.id not in _FUNCTIONS
                and node.id not in _CONSTANTS):
            names[node.id] = None
    return tuple(names)


_CONSTANTS = {"True": True, "False": False, "None": None}


def evaluate_condition(expression: str, values: Mapping[str, Any]) -> bool:
    """Evaluate a condition against the values of the names it reads."""
    _parse(expression)
    evaluator = EvalWithCompoundTypes(names={**_CONSTANTS, **values}, functions=_FUNCTIONS)
    try:
        return bool(evaluator.eval(expression.strip()))
    except Exception as exc:  # simpleeval raises many types; all mean "this condition failed"
        raise ConditionError(f"`when: {expression}` failed: {exc}") from None
