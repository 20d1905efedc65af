"""The errors NUX raises, and the serializable problems they carry.

::

    NuxError                 every error NUX raises on purpose
    ├── WorkbookError        the workbook does not compile (cell id, line, fix)
    │   └── PolicyError      a component, parameter or import is not vetted
    ├── StageError           a stage failed at run time (stage id, cause)
    └── ExportError          the export cannot be written (stage, field)

A user's mistake is reported as one or more :class:`Problem` records: one line each in a
terminal, a JSON payload for machines and the JupyterLab side. Exceptions are for control flow;
problems are what crosses a process boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ExportError",
    "NuxError",
    "PolicyError",
    "Problem",
    "StageError",
    "WorkbookError",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workbook, located and with a fix.

    ``cell`` is the notebook cell id (or the stage id for a workbook built in Python), ``line``
    the 1-based line inside that cell (the ``%%nux`` line is line 1), ``code`` a stable
    machine-readable tag such as ``unknown-input``.
    """

    code: str
    message: str
    fix: str = ""
    cell: str | None = None
    stage: str | None = None
    line: int | None = None
    field: str | None = None

    def render(self) -> str:
        """One line for a terminal: ``where: message (fix)``."""
        where = []
        if self.cell is not None:
            where.append(f"cell {self.cell}")
        if self.stage is not None and self.stage != self.cell:
            where.append(f"stage {self.stage}")
        if self.line is not None:
            where.append(f"line {self.line}")
        prefix = ", ".join(where) or "workbook"
        text = f"{prefix}: [{self.code}] {self.message}"
        if self.fix:
            text += f" -- fix: {self.fix}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


class NuxError(Exception):
    """Root of every error NUX raises on purpose; carries one or more problems."""

    code = "nux-error"

    def __init__(self, message: str = "", *, problems: Iterable[Problem] = ()) -> None:
        self.problems: list[Problem] = list(problems)
        if not message and self.problems:
            message = "; ".join(p.render() for p in self.problems)
        super().__init__(message)
        if not self.problems:
            self.problems = [Problem(code=self.code, message=message)]

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "problems": [p.to_dict() for p in self.problems]}


class WorkbookError(NuxError):
    """The workbook does not compile; every problem found is listed."""

    code = "workbook"


class PolicyError(WorkbookError):
    """A component, parameter or import is outside the organization's vetted catalog."""

    code = "policy"


class StageError(NuxError):
    """A stage failed while running: names the stage and the cause.

    ``category`` groups failures for metrics and retries: ``input`` (bad input for the stage),
    ``timeout``, ``transient`` (worth a retry), ``resource`` (a missing model file, an empty
    collection) or ``error``.
    """

    code = "stage"

    def __init__(self, stage: str, cause: str, *, category: str = "error") -> None:
        self.stage = stage
        self.cause = cause
        self.category = category
        super().__init__(
            f"stage {stage!r} failed: {cause}",
            problems=[Problem(code=f"stage-{category}", message=cause, stage=stage)],
        )

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(stage=self.stage, cause=self.cause, category=self.category)
        return data


class ExportError(NuxError):
    """The workbook cannot be exported as it stands; names the stage and field."""

    code = "export"
