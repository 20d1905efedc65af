"""Test banks: the cases a workbook is measured on, read from JSONL or CSV beside it.

A case is the request (the workbook's inputs), the expected answer and free tags. In JSONL a line
is ``{"inputs": {...}, "expected": ..., "tags": [...], "id": ...}``, or a flat object whose keys
other than ``expected``, ``tags`` and ``id`` are the inputs. In CSV the columns named like the
workbook's inputs are the inputs, ``expected`` is the expected answer (JSON when it parses as
JSON), ``tags`` is a ``;``-separated list and ``id`` names the case.

A case's ``split`` (a key in JSONL, a column in CSV) puts it in the tuning part (``tune``, the
default) or the held-out part (``holdout``): ``nux tune`` searches on the tuning part only, and
evaluations report the held-out figures beside the tuning ones. The split is in the bank's text,
so it is deterministic and part of the bank's digest, which keys every recorded verdict.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec

__all__ = ["HOLDOUT", "SPLITS", "TUNE", "Case", "as_cases", "bank_digest", "bank_path",
           "holdout_part", "load_bank", "resolve_bank", "tuning_part"]

_RESERVED = ("expected", "tags", "id", "split")
TUNE, HOLDOUT = "tune", "holdout"
SPLITS = (TUNE, HOLDOUT)


@dataclass(frozen=True)
class Case:
    """One test-bank case."""

    id: str
    inputs: dict[str, Any]
    expected: Any = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: ``tune`` (searched on by ``nux tune``) or ``holdout`` (only ever scored)
    split: str = TUNE

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "inputs": self.inputs, "expected": self.expected,
                "tags": list(self.tags), "split": self.split}


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


def _split(raw: Any, where: str) -> str:
    value = str(raw or TUNE).strip().lower()
    if value not in SPLITS:
        raise NuxError(problems=[Problem(
            code="test-bank", message=f"{where}: split {raw!r} is neither `tune` nor `holdout`",
            fix="write `split: tune` (searched on) or `split: holdout` (held out)",
            field="metadata.nux.test_bank")])
    return value


def _case(record: Mapping[str, Any], number: int) -> Case:
    inputs = record.get("inputs")
    if not isinstance(inputs, dict):
        inputs = {k: v for k, v in record.items() if k not in _RESERVED}
    case_id = str(record.get("id", number))
    return Case(id=case_id, inputs=dict(inputs),
                expected=record.get("expected"), tags=_tags(record.get("tags")),
                split=_split(record.get("split"), f"case {case_id}"))


def _jsonl(path: Path, text: str) -> list[Case]:
    cases: list[Case] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as exc:  # not JSON, nested or numbered past reason
            reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "too deep or too long"
            raise _bad(path, f":{number}", f"not JSON ({reason})",
                       "write one JSON object per line") from None
        if not isinstance(record, dict):
            raise _bad(path, f":{number}", "not a JSON object",
                       'write e.g. {"inputs": {"question": "..."}, "expected": "..."}')
        cases.append(_case(record, len(cases) + 1))
    return cases


def _cell(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, TypeError, RecursionError):
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
        case_id = row.get("id") or str(number)
        cases.append(Case(id=case_id, inputs=inputs, expected=expected,
                          tags=_tags(row.get("tags")),
                          split=_split(row.get("split"), f"{path.name} case {case_id}")))
    return cases


MAX_BANK_BYTES = 256 << 20


def load_bank(path: str | Path, input_names: Sequence[str] = ()) -> list[Case]:
    """Read a JSONL (``.jsonl``/``.json``) or CSV (``.csv``) test bank."""
    p = Path(path)
    try:
        if p.exists() and (not p.is_file() or p.stat().st_size > MAX_BANK_BYTES):
            raise _bad(p, "", f"it is not a file of at most {MAX_BANK_BYTES >> 20} MiB",
                       "point metadata.nux.test_bank at a JSONL or CSV file")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _bad(p, "", "it is not UTF-8 text", "save the test bank as UTF-8") from None
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


def bank_path(spec: WorkbookSpec, base_dir: str | Path) -> Path:
    """Where the workbook's test bank file is (``metadata.nux.test_bank``)."""
    if not spec.test_bank:
        raise NuxError(problems=[Problem(
            code="test-bank", message="the workbook names no test bank",
            fix="set metadata.nux.test_bank to a .jsonl or .csv file beside the workbook",
            field="metadata.nux.test_bank")])
    path = Path(spec.test_bank)
    return path if path.is_absolute() else Path(base_dir) / path


def resolve_bank(spec: WorkbookSpec, base_dir: str | Path) -> list[Case]:
    """The workbook's own test bank (``metadata.nux.test_bank``, relative to the workbook)."""
    return load_bank(bank_path(spec, base_dir), spec.input_names)


def bank_digest(spec: WorkbookSpec, base_dir: str | Path) -> str | None:
    """The sha256 of the workbook's test bank file (None: no bank, or no such file)."""
    if not spec.test_bank:
        return None
    path = bank_path(spec, base_dir)
    try:
        if not path.is_file() or path.stat().st_size > MAX_BANK_BYTES:
            return None  # a device or a giant: never read whole
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def tuning_part(cases: Sequence[Case]) -> list[Case]:
    """The cases ``nux tune`` searches on."""
    return [c for c in cases if c.split != HOLDOUT]


def holdout_part(cases: Sequence[Case]) -> list[Case]:
    """The held-out cases: scored, never searched on."""
    return [c for c in cases if c.split == HOLDOUT]


def as_cases(cases: Iterable[Case | Mapping[str, Any]]) -> list[Case]:
    """Cases from `Case` objects or plain records (as JSONL lines would hold them)."""
    return [c if isinstance(c, Case) else _case(c, i) for i, c in enumerate(cases, 1)]
