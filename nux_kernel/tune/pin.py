"""``nux pin``: write a trial's params into the notebook cells, with where they came from.

A model or data cell gets the values in its YAML ``params:``: only the text of each changed value
is replaced (found by the positions YAML's composer records), a new param is added as one line in
the block's own style, so layout, quoting, comments and key order stay as written; a code cell
gets them as the new defaults of its keyword-only params. Each pinned cell gets a ``# nux pin:``
comment line and a ``nux.pin`` entry in its cell metadata (study, trial, objective values, the
held-out figures when the study measured them on that trial, params). The notebook is rewritten
with its JSON's own key order, so the git diff of a pin is the changed values, the comment lines
and the pin records.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from nux_kernel.codecell import split_options
from nux_kernel.compiler import compile_notebook
from nux_kernel.drafts import _USES_LINE
from nux_kernel.notebook import HEADER
from nux_kernel.tune.ingests import INGEST_SEP, tuned_ingests
from nux_kernel.tune.space import split_name
from nux_kernel.tune.storage import record
from nux_runtime.errors import NuxError, Problem

__all__ = ["pin_trial", "trial_overrides"]

PIN_MARK = "# nux pin:"


def _fail(message: str, fix: str, cell: str | None = None, stage: str | None = None
          ) -> NuxError:
    return NuxError(problems=[Problem(code="pin", message=message, fix=fix, cell=cell,
                                      stage=stage)])


def trial_overrides(trial: FrozenTrial) -> dict[str, dict[str, Any]]:
    """Stage -> params of a trial (upstream stages pinned by a staged study included)."""
    recorded = record(trial).get("overrides")
    if isinstance(recorded, dict):
        return {str(k): dict(v) for k, v in recorded.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, value in trial.params.items():
        stage, param = split_name(name)
        out.setdefault(stage, {})[param] = value
    return out


def _provenance(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    names = study.user_attrs.get("objectives") or [f"objective{i}" for i in
                                                    range(len(trial.values or []))]
    return {"study": study.study_name, "trial": trial.number,
            "values": dict(zip(names, trial.values or [], strict=False)),
            "feasible": all(c <= 0 for c in record(trial).get("constraints", [])),
            "pinned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **_holdout(study, trial)}


def _holdout(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    """The study's held-out figures when they were measured on the trial being pinned."""
    held = study.user_attrs.get("holdout")
    if not isinstance(held, dict) or held.get("trial") != trial.number:
        return {}
    keep = ("cases", "pass_rate", "quality", "error_rate", "p95_ms")
    return {"holdout": {k: held[k] for k in keep if k in held}
            | {"tuning_pass_rate": (held.get("tuning") or {}).get("pass_rate")}}


def _comment(prov: Mapping[str, Any]) -> str:
    scores = ", ".join(f"{k} {v:.4g}" for k, v in prov["values"].items())
    return f"{PIN_MARK} study {prov['study']}, trial {prov['trial']} ({scores})"


def _scalar(value: Any, style: str | None) -> str:
    """``value`` as YAML flow text, in the quoting style the old value was written in."""
    if isinstance(value, str) and style == '"':
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and style == "'":
        return "'" + value.replace("'", "''") + "'"
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _block(value: Any, column: int, newline: bool) -> str:
    """``value`` as block YAML for a block node that starts at ``column`` (its first line is
    already indented), ending with a newline when the node it replaces did."""
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=False, width=1 << 20,
                          allow_unicode=True).removesuffix("\n")
    indent = " " * column
    return "\n".join(ln if i == 0 else indent + ln
                     for i, ln in enumerate(text.split("\n"))) + ("\n" if newline else "")


def _line_end(text: str, index: int) -> int:
    """Where the line holding the end of a node (ending at ``index``) ends."""
    if index and text[index - 1] == "\n":  # a block node ends at the start of the next line
        return index - 1
    end = text.find("\n", index)
    return len(text) if end < 0 else end


def _pin_yaml(lines: list[str], params: Mapping[str, Any], comment: str, stage: str, cell: str
              ) -> list[str]:
    """Set the top-level ``params:`` entries of a YAML cell body (lines after the header),
    editing only the text of each changed value."""
    lines = [ln for ln in lines if not ln.startswith(PIN_MARK)]
    text = "\n".join(lines)
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise _fail("the cell body is not valid YAML", "fix the cell first", cell, stage
                    ) from None
    if not isinstance(data, dict) or not isinstance(root, yaml.MappingNode):
        raise _fail("the cell body is not a YAML mapping", "fix the cell first", cell, stage)
    block = next((v for k, v in root.value if k.value == "params"), None)
    if block is None:
        entries = "".join(f"\n  {k}: {_scalar(v, None)}" for k, v in params.items())
        after = next((v for k, v in root.value if k.value == "inputs"), None)
        at = _line_end(text, after.end_mark.index) if after is not None else len(text)
        head = text[:at] if at else ""
        text = head + ("\n" if head else "") + f"{comment}\nparams:{entries}" + text[at:]
        return text.split("\n")
    if not isinstance(block, yaml.MappingNode):
        raise _fail("`params:` is not a mapping", "write `params: {name: value}`", cell, stage)
    written = data.get("params") or {}
    edits: list[tuple[int, int, str]] = []
    added: list[str] = []
    for name, value in params.items():
        node = next((v for k, v in block.value if k.value == name), None)
        if node is None:
            added.append(name)
        elif written.get(name) != value or type(written.get(name)) is not type(value):
            if (isinstance(node, yaml.CollectionNode) and not node.flow_style
                    and isinstance(value, list | dict) and value):
                new = _block(value, node.start_mark.column,
                             text[node.end_mark.index - 1:node.end_mark.index] == "\n")
            else:
                new = _scalar(value, node.style if isinstance(node, yaml.ScalarNode) else None)
            edits.append((node.start_mark.index, node.end_mark.index, new))
    if added:
        if block.flow_style:
            close = block.end_mark.index - 1  # the closing brace
            extra = "".join(f", {k}: {_scalar(params[k], None)}" for k in added)
            edits.append((close, close, extra if block.value else extra[2:]))
        else:
            indent = " " * block.start_mark.column
            eol = _line_end(text, block.value[-1][1].end_mark.index)
            extra = "".join(f"\n{indent}{k}: {_scalar(params[k], None)}" for k in added)
            edits.append((eol, eol, extra))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    out = text.split("\n")
    line = next((i for i, ln in enumerate(out) if ln.startswith("params:")), 0)
    return [*out[:line], comment, *out[line:]]


def _pin_code(lines: list[str], params: Mapping[str, Any], comment: str, stage: str, cell: str
              ) -> list[str]:
    """New keyword-only defaults in a code cell's function (lines after the header)."""
    body = "\n".join(ln for ln in lines if not ln.startswith(PIN_MARK))
    options, code, n_options = split_options(body)
    code_lines = code.split("\n")
    tree = ast.parse(code)
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    fn = next((f for f in functions if f.name == stage), functions[0] if len(functions) == 1
              else None)
    if fn is None:
        raise _fail("the cell has no stage function", f"define `def {stage}(...)`", cell, stage)
    defaults = dict(zip((a.arg for a in fn.args.kwonlyargs), fn.args.kw_defaults, strict=True))
    edits = []
    for name, value in params.items():
        node = defaults.get(name)
        if node is None:
            raise _fail(f"param {name!r} is not a keyword-only param of {fn.name}()",
                        f"declare it as `*, {name}=...`", cell, stage)
        edits.append((node, repr(value)))
    for node, text in sorted(edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True):
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        head = code_lines[first][: node.col_offset]
        tail = code_lines[last][node.end_col_offset or 0:]
        code_lines[first:last + 1] = [head + text + tail]
    option_lines = options.split("\n")[:n_options] if n_options else []
    return [*(f"#| {ln}" if ln else "#|" for ln in option_lines), comment, *code_lines]


def pin_trial(notebook_path: str | Path, study: optuna.Study, trial_number: int
              ) -> dict[str, Any]:
    """Write trial ``trial_number``'s params into the notebook; its provenance record.

    The params of a tuned ingest (the pseudo-stage ``<collection>:<stage>``) go into the cell of
    the ingest notebook that fills the collection; ``prov["notebooks"]`` lists every notebook
    written. Nothing is written unless every notebook can be.
    """
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == trial_number), None)
    if trial is None:
        raise _fail(f"study {study.study_name!r} has no trial {trial_number}",
                    "pick a trial number from `nux tune --show`")
    if trial.state != TrialState.COMPLETE:
        raise _fail(f"trial {trial_number} is {trial.state.name.lower()}, not complete",
                    "pin a complete trial (see `nux tune --show`)")
    overrides = trial_overrides(trial)
    prov = {**_provenance(study, trial), "params": overrides}
    path = Path(notebook_path)
    own = {k: v for k, v in overrides.items() if INGEST_SEP not in k}
    edits = [(path, _pinned(path, own, prov))]
    outside = {k: v for k, v in overrides.items() if INGEST_SEP in k}
    if outside:
        ingests = tuned_ingests(compile_notebook(path), path.parent, path)
        by_notebook: dict[Path, dict[str, dict[str, Any]]] = {}
        for key, params in outside.items():
            tuned = ingests.get(key)
            if tuned is None:
                raise _fail(f"the trial tuned {key!r}, which no ingest notebook beside "
                            f"{path.name} tunes any more",
                            "pin a trial of the current study, or restore the ingest cell's "
                            "`tune:`")
            by_notebook.setdefault(tuned.source.notebook, {})[tuned.stage.id] = params
        for other, params in by_notebook.items():
            edits.append((other, _pinned(other, params, {**prov, "workbook": path.name})))
    for target, text in edits:
        target.write_text(text, encoding="utf-8")
    prov["notebooks"] = [str(target) for target, _ in edits]
    return prov


def _pinned(path: Path, overrides: Mapping[str, Mapping[str, Any]], prov: Mapping[str, Any]
            ) -> str:
    """The notebook at ``path`` with ``overrides`` written into its cells, as text."""
    comment = _comment(prov)
    raw = path.read_text(encoding="utf-8")
    nbformat.validate(nbformat.reads(raw, as_version=4))
    nb = json.loads(raw)  # the JSON itself, in its own key order
    pinned: set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        first, _, rest = source.partition("\n")
        match = HEADER.match(first.rstrip())
        args = (match.group("args") or "").split() if match else []
        if len(args) != 2 or args[1] not in overrides:
            continue
        kind, stage = args
        params = overrides[stage]
        lines = rest.split("\n")
        cell_id = str(cell.get("id", stage))
        first_code = next((ln for ln in lines if ln.strip() and not ln.startswith("#")), "")
        if kind != "code" or _USES_LINE.match(first_code):
            new = _pin_yaml(lines, params, comment, stage, cell_id)
        else:
            new = _pin_code(lines, params, comment, stage, cell_id)
        text = "\n".join([first, *new])
        cell["source"] = text.splitlines(keepends=True) if isinstance(
            cell.get("source"), list) else text
        cell.setdefault("metadata", {}).setdefault("nux", {})["pin"] = {**prov,
                                                                        "params": params}
        pinned.add(stage)
    missing = sorted(set(overrides) - pinned)
    if missing:
        raise _fail(f"no cell in {path.name} defines stage(s) {', '.join(missing)}",
                    "pin into the notebook the study was run on")
    indent = 1 if raw.startswith("{\n \"") else 2
    return json.dumps(nb, indent=indent, ensure_ascii=False) + "\n"
