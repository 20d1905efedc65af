"""Code stages: a plain Python function from a ``%%nux code`` cell.

The function's positional parameters name its inputs; its keyword-only parameters are params
(set in the cell's defaults, tunable, overridden per trial). The source is compiled once per
process; the return value is checked against the output type the annotation declared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jsonschema import Draft202012Validator

from nux_runtime.components.base import Component, RuntimeContext, shared
from nux_runtime.errors import StageError
from nux_runtime.spec import StageSpec

__all__ = ["CodeStage"]


def _compile(stage: StageSpec) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"__name__": f"nux_stage_{stage.id}"}
    code = compile(stage.source or "", f"<nux code cell {stage.id}>", "exec")
    exec(code, namespace)  # the workbook author's own, vetted code
    fn = namespace.get(stage.function or stage.id)
    if not callable(fn):
        raise StageError(stage.id, f"the cell defines no function {stage.function!r}")
    return fn  # type: ignore[no-any-return]


class CodeStage(Component):
    """Runs the cell's function on the stage's inputs and keyword-only params."""

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        self.fn = shared("code", stage.hash, lambda: _compile(stage))
        schema = stage.output_schema
        self._validator = Draft202012Validator(schema) if schema else None

    def __call__(self, inputs: Mapping[str, Any]) -> Any:
        try:
            value = self.fn(**inputs, **self.params)
        except StageError:
            raise
        except Exception as exc:
            raise StageError(self.stage.id, f"{type(exc).__name__}: {exc}") from exc
        if self._validator is not None and not self._validator.is_valid(value):
            error = next(iter(self._validator.iter_errors(value)))
            raise StageError(
                self.stage.id,
                f"returned {type(value).__name__} that does not match its return annotation "
                f"({error.message})",
                category="output",
            )
        return value
