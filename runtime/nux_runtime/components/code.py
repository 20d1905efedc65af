"""Code stages: a plain Python function from a ``%%nux code`` cell.

The function's positional parameters name its inputs; its keyword-only parameters are params
(set in the cell's defaults, tunable, overridden per trial). The source is checked and run once
per process in the stage's sandbox (:mod:`nux_runtime.sandbox`: the catalog's import allow-list
and withheld builtins, which the spec carries); the return value is checked against the output
type the annotation declared. A refused import or builtin is a `StageError` of category
``policy``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jsonschema import Draft202012Validator

from nux_runtime.components.base import Component, RuntimeContext, shared
from nux_runtime.errors import StageError
from nux_runtime.sandbox import Refused, load_function
from nux_runtime.spec import Sandbox, StageSpec

__all__ = ["CodeStage"]


def _compile(stage: StageSpec) -> Callable[..., Any]:
    sandbox = stage.sandbox or Sandbox()  # a spec without one: no imports at all
    try:
        return load_function(stage.source or "", stage.function or stage.id, stage=stage.id,
                             allow_imports=sandbox.allow_imports,
                             withhold_builtins=sandbox.withhold_builtins)
    except Refused as exc:
        raise StageError(stage.id, f"refused: {exc}", category="policy") from None
    except LookupError as exc:
        raise StageError(stage.id, str(exc)) from None
    except SyntaxError as exc:
        raise StageError(stage.id, f"syntax error on line {exc.lineno}: {exc.msg}") from None


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
        except Refused as exc:
            raise StageError(self.stage.id, f"refused: {exc}", category="policy") from None
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
