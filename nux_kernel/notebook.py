"""Reading a workbook: the ``.ipynb`` is the source of truth.

A notebook-level ``nux`` metadata block names the workbook, its inputs, output, criteria and test
bank. A stage is a cell whose source starts with ``%%nux <kind> <id>``; every other cell is the
user's own and is ignored. This module turns a notebook file into a :class:`WorkbookSource`:
plain data, no execution, every problem recorded rather than raised.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nux_kernel.limits import MAX_DEPTH, MAX_NOTEBOOK_BYTES, depth
from nux_runtime.errors import Problem, WorkbookError

__all__ = [
    "HEADER",
    "CellSource",
    "WorkbookSource",
    "notebook_source",
    "parse_header",
    "read_notebook",
]

HEADER = re.compile(r"^%%nux(?:[ \t]+(?P<args>.*))?$")
KINDS = ("model", "data", "code")
STAGE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_METADATA_CHARS = 1024 * 1024


@dataclass
class CellSource:
    """One ``%%nux`` cell as written: header fields and the body below the header line."""

    cell: str
    kind: str
    stage: str
    body: str
    index: int = 0

    def header(self) -> str:
        return f"%%nux {self.kind} {self.stage}"

    def text(self) -> str:
        return f"{self.header()}\n{self.body}" if self.body else self.header()


@dataclass
class WorkbookSource:
    """A workbook before compiling: metadata, stage cells, the folder it lives in."""

    metadata: dict[str, Any]
    cells: list[CellSource]
    base_dir: Path = field(default_factory=Path.cwd)
    path: Path | None = None
    problems: list[Problem] = field(default_factory=list)


def parse_header(line: str, cell: str) -> tuple[str, str] | Problem:
    """``%%nux <kind> <id>`` -> (kind, id), or the problem with it."""
    match = HEADER.match(line.rstrip())
    args = (match.group("args") or "").split() if match else []
    if len(args) != 2:
        return Problem(
            code="header",
            message=f"the cell header {line.strip()!r} must be `%%nux <kind> <id>`",
            fix="write e.g. `%%nux model answer` (kinds: model, data, code)",
            cell=cell,
            line=1,
        )
    kind, stage = args
    if kind not in KINDS:
        return Problem(
            code="header-kind",
            message=f"unknown cell kind {kind!r}",
            fix=f"use one of: {', '.join(KINDS)}",
            cell=cell,
            stage=stage,
            line=1,
        )
    if not STAGE_ID.match(stage):
        return Problem(
            code="header-id",
            message=f"stage id {stage!r} is not a valid name",
            fix="use letters, digits and underscores, starting with a letter (e.g. `answer_v2`)",
            cell=cell,
            stage=stage,
            line=1,
        )
    return kind, stage


def _source_text(source: Any) -> str | None:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    return None


def read_notebook(path: str | Path) -> WorkbookSource:
    """Read an ``.ipynb`` file into a :class:`WorkbookSource`.

    A file that is not a notebook at all raises :class:`WorkbookError`; problems inside a
    readable notebook are collected on the result.
    """
    p = Path(path)
    fail = "open it in JupyterLab and save it again, or restore it from version control"
    try:
        if p.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise WorkbookError(problems=[Problem(
                code="notebook-size",
                message=f"{p.name} is larger than {MAX_NOTEBOOK_BYTES // (1024 * 1024)} MiB",
                fix="clear the cell outputs (Edit > Clear Outputs of All Cells) and save again")])
        raw = json.loads(p.read_bytes())
    except FileNotFoundError:
        raise WorkbookError(
            problems=[Problem(code="notebook-missing", message=f"{p} does not exist",
                              fix="check the path")]
        ) from None
    except RecursionError:
        raise WorkbookError(
            problems=[Problem(code="notebook-json", message=f"{p.name} nests too deeply to be a "
                              "notebook", fix=fail)]
        ) from None
    except ValueError as exc:  # not UTF-8, not JSON, a number past the digit limit
        raise WorkbookError(
            problems=[Problem(code="notebook-json", message=f"{p.name} is not valid JSON: {exc}",
                              fix=fail)]
        ) from None
    except OSError as exc:
        raise WorkbookError(
            problems=[Problem(code="notebook-read", message=f"cannot read {p}: {exc.strerror}",
                              fix="check the path and its permissions")]
        ) from None
    return notebook_source(raw, p)


def notebook_source(raw: Any, path: str | Path) -> WorkbookSource:
    """A notebook's parsed JSON (as a browser sends it) -> :class:`WorkbookSource`."""
    p = Path(path)
    fail = "open it in JupyterLab and save it again, or restore it from version control"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        raise WorkbookError(
            problems=[Problem(code="notebook-format",
                              message=f"{p.name} is not a Jupyter notebook (no `cells` list)",
                              fix=fail)]
        )
    source = WorkbookSource(metadata={}, cells=[], base_dir=p.resolve().parent, path=p)
    metadata = raw.get("metadata")
    nux = metadata.get("nux") if isinstance(metadata, dict) else None
    if nux is None:
        source.problems.append(Problem(
            code="metadata-missing",
            message="the notebook has no `nux` metadata block",
            fix="add metadata.nux with at least `name`, `inputs` and `output` "
                "(see docs/workbook-format.md)",
            field="metadata.nux",
        ))
    elif not isinstance(nux, dict):
        source.problems.append(Problem(
            code="metadata", message="metadata.nux must be a mapping",
            fix="set metadata.nux to an object with `name`, `inputs` and `output`",
            field="metadata.nux",
        ))
    elif depth(nux) > MAX_DEPTH or len(json.dumps(nux)) > MAX_METADATA_CHARS:
        source.problems.append(Problem(
            code="metadata-limit",
            message=f"metadata.nux is larger than NUX reads (over {MAX_DEPTH} levels deep or "
                    f"{MAX_METADATA_CHARS // 1024} KiB)",
            fix="keep inputs, criteria and prompts in metadata.nux; move data to the test bank "
                "or to files beside the workbook",
            field="metadata.nux",
        ))
    else:
        source.metadata = nux
    for index, cell in enumerate(raw["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        raw_id = cell.get("id")
        cell_id = raw_id if isinstance(raw_id, str) else f"cell-{index}"
        text = _source_text(cell.get("source", ""))
        if text is None:
            source.problems.append(Problem(
                code="notebook-cell", message="the cell's source is not text", fix=fail,
                cell=cell_id,
            ))
            continue
        first, _, body = text.partition("\n")
        if not first.startswith("%%nux"):
            continue
        header = parse_header(first, cell_id)
        if isinstance(header, Problem):
            source.problems.append(header)
            continue
        kind, stage = header
        source.cells.append(CellSource(cell=cell_id, kind=kind, stage=stage, body=body,
                                       index=index))
    return source
