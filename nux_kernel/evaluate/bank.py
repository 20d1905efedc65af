"""Test banks: the cases a workbook is measured on, read from JSONL or CSV beside it.

A case is the request (the workbook's inputs), the expected answer and free tags. In JSONL a line
is ``{"inputs": {...}, "expected": ..., "tags": [...], "id": ...}``, or a flat object whose keys
other than ``expected``, ``tags`` and ``id`` are the inputs. In CSV the columns named like the
workbook's inputs are the inputs, ``expected`` is the expected answer (JSON when it parses as
JSON), ``tags`` is a ``;``-separated list and ``id`` names the case.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec

__all__ = ["Case", "as_cases", "load_bank", "resolve_bank"]

_RESERVED = ("expected", "tags", "id")


@dataclass(frozen=True)
class Case:
    """One test-bank case."""

    id: str
    inputs: dict[str, Any]
    expected: Any = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "inputs": self.inputs, "expected": self.expected,
                "tags": list(self.tags)}


def _bad(path: Path, where: str, message: str, fix: str) -> NuxError:
    return NuxError(problems=[Problem(code="test-bank", message=f"{path.name}{where}: {message}",
                                      fix=fix, field="metadata.nux.test_bank")])


def _tags(raw: Any) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        return tuple(t.strip() for t in raw.split(";") if t.strip())
    if isinstance(raw, list | tuple):
        return tuple(str(t) for t in raw)
    return (str(raw),)


def _case(record: Mapping[str, Any], number: int) -> Case:
    inputs = record.get("inputs")
    if not isinstance(inputs, dict):
        inputs = {k: v for k, v in record.items() if k not in _RESERVED}
    return Case(id=str(record.get("id", number)), inputs=dict(inputs),
                expected=record.get("expected"), tags=_tags(record.get("tags")))


def _jsonl(path: Path, text: str) -> list[Case]:
    cases: list[Case] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _bad(path, f":{number}", f"not JSON ({exc.msg})",
                       "write one JSON object per line") from None
        if not isinstance(record, dict):
            raise _bad(path, f":{number}", "not a JSON object",
                       'write e.g. {"inputs": {"question": "..."}, "expected": "..."}')
        cases.append(_case(record, len(cases) + 1))
    return cases


def _cell(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, TypeError):
        return raw


def _csv(path: Path, text: str, input_names: Sequence[str]) -> list[Case]:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        return []
    header = list(rows[0])
    names = [n for n in header if n in input_names] or [n for n in header if n not in _RESERVED]
    missing = [n for n in input_names if n not in header]
    if input_names and missing:
        raise _bad(path, "", f"no column for input(s) {', '.join(missing)}",
                   f"add a column per workbook input ({', '.join(input_names)})")
    cases = []
    for number, row in enumerate(rows, 1):
        inputs = {n: (row[n] if n in input_names else _cell(row[n])) for n in names}
        expected = _cell(row["expected"]) if row.get("expected") not in (None, "") else None
        if isinstance(expected, int | float) and not isinstance(expected, bool):
            expected = row["expected"]  # a CSV cell that reads as a number stays its text
        cases.append(Case(id=row.get("id") or str(number), inputs=inputs, expected=expected,
                          tags=_tags(row.get("tags"))))
    return cases


def load_bank(path: str | Path, input_names: Sequence[str] = ()) -> list[Case]:
    """Read a JSONL (``.jsonl``/``.json``) or CSV (``.csv``) test bank."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _bad(p, "", "the test bank file does not exist",
                   f"create {p} beside the workbook or fix metadata.nux.test_bank") from None
    except OSError as exc:
        raise _bad(p, "", f"cannot read it ({exc.strerror})", "check the path") from None
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        cases = _jsonl(p, text)
    elif suffix in (".csv", ".tsv"):
        cases = _csv(p, text, input_names)
    else:
        raise _bad(p, "", f"unknown test bank format {suffix or '(no suffix)'!r}",
                   "use a .jsonl or .csv file")
    if not cases:
        raise _bad(p, "", "the test bank has no cases", "add at least one case")
    return cases


def resolve_bank(spec: WorkbookSpec, base_dir: str | Path) -> list[Case]:
    """The workbook's own test bank (``metadata.nux.test_bank``, relative to the workbook)."""
    if not spec.test_bank:
        raise NuxError(problems=[Problem(
            code="test-bank", message="the workbook names no test bank",
            fix="set metadata.nux.test_bank to a .jsonl or .csv file beside the workbook",
            field="metadata.nux.test_bank")])
    path = Path(spec.test_bank)
    return load_bank(path if path.is_absolute() else Path(base_dir) / path, spec.input_names)


def as_cases(cases: Iterable[Case | Mapping[str, Any]]) -> list[Case]:
    """Cases from `Case` objects or plain records (as JSONL lines would hold them)."""
    return [c if isinstance(c, Case) else _case(c, i) for i, c in enumerate(cases, 1)]
