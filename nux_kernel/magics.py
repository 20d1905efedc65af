"""``%%nux`` cells in a Jupyter kernel: ``%load_ext nux_kernel``.

Running a ``%%nux <kind> <id>`` cell compiles it together with every other stage cell this
kernel has seen (or loaded with ``%nux load wb.ipynb``), runs it on its upstream outputs through
the same executor and stage cache as ``nux run``, and shows its output and trace. The output is
also bound to a variable named after the stage. Editing and re-running a cell marks the stages
below it stale.

Each run is also shown as ``application/vnd.nux.run+json`` display data (every stage's trace
and the spec hash it ran with), which the JupyterLab extension's DAG panel reads, and its traces
are appended to ``.nux/runs/<run id>.jsonl`` beside the workbook, as ``nux run`` does.

Line magics::

    %nux load wb.ipynb           read the workbook's metadata and stage cells from disk
    %nux inputs question="..."   set the workbook inputs for cell runs
    %nux run [question="..."]    run the whole chain to the workbook's output stage
    %nux status                  list stages with their status (ok, stale, error, not run)
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import HTML, display

from nux_kernel.compiler import check_workbook
from nux_kernel.executor import Executor, RunResult, write_traces
from nux_kernel.notebook import CellSource, WorkbookSource, parse_header, read_notebook
from nux_runtime.errors import Problem
from nux_runtime.spec import WorkbookSpec
from nux_runtime.walker import graph_of

__all__ = ["RUN_MIME", "NuxMagics", "register", "run_record"]

RUN_MIME = "application/vnd.nux.run+json"


@dataclass
class Session:
    """What the kernel knows of the workbook: cells by stage id, inputs, last run hashes."""

    metadata: dict[str, Any] = field(default_factory=dict)
    cells: dict[str, CellSource] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)
    ran: dict[str, str] = field(default_factory=dict)  # stage -> spec hash of its last run
    status: dict[str, str] = field(default_factory=dict)
    executor: Executor | None = None

    def source(self, output: str | list[str]) -> WorkbookSource:
        meta = dict(self.metadata)
        meta.setdefault("name", "session")
        if "inputs" not in meta:
            meta["inputs"] = {k: _json_type(v) for k, v in self.inputs.items()}
        meta["output"] = output
        return WorkbookSource(metadata=meta, cells=list(self.cells.values()),
                              base_dir=self.base_dir)


def _json_type(value: Any) -> dict[str, Any]:
    for tp, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                     (list, "array"), (dict, "object")):
        if isinstance(value, tp):
            return {"type": name}
    return {}


def _problems_html(problems: list[Problem]) -> HTML:
    rows = "".join(f"<li><code>{p.code}</code> {_esc(p.render())}</li>" for p in problems)
    return HTML(f"<div class='nux-problems'><b>{len(problems)} problem(s)</b><ul>{rows}</ul>"
                "</div>")


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _trace_html(result: RunResult) -> HTML:
    head = "".join(f"<th>{h}</th>" for h in ("stage", "status", "latency ms", "tokens in/out",
                                             "cost $", "cache", "output"))
    rows = "".join(
        f"<tr><td>{t.stage}</td><td>{t.status}{': ' + _esc(t.reason) if t.reason else ''}</td>"
        f"<td>{t.latency_ms:.1f}</td><td>{t.tokens_in}/{t.tokens_out}</td>"
        f"<td>{t.cost_usd:.6f}</td><td>{'hit' if t.cache_hit else ''}</td>"
        f"<td>{_esc(t.output_preview)}</td></tr>"
        for t in result.trace_list())
    return HTML(f"<table class='nux-trace'><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>"
                "</table>")


def run_record(result: RunResult, spec: WorkbookSpec) -> dict[str, Any]:
    """A stage run as the DAG panel reads it: traces and the stage hashes they ran with."""
    record = {
        "run_id": result.run_id,
        "ok": result.ok,
        "latency_ms": result.latency_ms,
        "cost_usd": result.cost_usd,
        "traces": [t.to_dict() for t in result.trace_list()],
        "errors": [e.to_dict() for e in result.errors],
        "hash": spec.hash,
        "stages": {s.id: s.hash for s in spec.stages},
    }
    loaded: dict[str, Any] = json.loads(json.dumps(record, default=str))
    return loaded


@magics_class
class NuxMagics(Magics):
    """The ``%%nux`` cell magic and the ``%nux`` line magic."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.session = Session()

    @line_magic
    def nux(self, line: str) -> Any:
        words = shlex.split(line)
        if not words:
            print(__doc__)
            return None
        command, args = words[0], words[1:]
        if command == "load" and len(args) == 1:
            source = read_notebook(args[0])
            self.session.metadata = source.metadata
            self.session.base_dir = source.base_dir
            self.session.cells = {c.stage: c for c in source.cells}
            self.session.executor = None
            print(f"loaded {len(source.cells)} stage cells from {args[0]}")
            return None
        if command == "inputs":
            return dict(self.session.inputs) if self._set_inputs(args) else None
        if command == "run":
            if not self._set_inputs(args):
                return None
            if not self.session.cells:
                print("no stage cells yet: run %%nux cells or `%nux load wb.ipynb` first")
                return None
            output = self.session.metadata.get("output") or list(self.session.cells)[-1]
            return self._run(output if isinstance(output, list) else [str(output)])
        if command == "status":
            return {s: self.session.status.get(s, "not run") for s in self.session.cells}
        print(f"unknown %nux command {command!r}: use load, inputs, run or status")
        return None

    def _set_inputs(self, pairs: list[str]) -> bool:
        for pair in pairs:
            name, sep, raw = pair.partition("=")
            if not sep:
                print(f"write name=value, not {pair!r}")
                return False
            try:
                self.session.inputs[name] = json.loads(raw)
            except json.JSONDecodeError:
                self.session.inputs[name] = raw
        return True

    @cell_magic("nux")  # type: ignore[arg-type]
    def nux_cell(self, line: str, cell: str) -> Any:
        header = parse_header(f"%%nux {line}", cell="this cell")
        if isinstance(header, Problem):
            display(_problems_html([header]))
            return None
        kind, stage = header
        self.session.cells[stage] = CellSource(cell=stage, kind=kind, stage=stage, body=cell,
                                               index=len(self.session.cells))
        return self._run([stage])

    def _run(self, targets: list[str]) -> Any:
        """Run ``targets`` and what they read; show the trace, bind each stage's output to a
        variable named after it, and mark stale the stages below a changed one."""
        session = self.session
        spec, problems = check_workbook(session.source(targets))
        if spec is None:
            display(_problems_html(problems))
            for stage in targets:
                session.status[stage] = "error"
            return None
        if session.executor is None or session.executor.base_dir != session.base_dir:
            session.executor = Executor(spec, base_dir=session.base_dir)
        executor = session.executor
        executor.spec = spec
        graph = graph_of(spec)
        upstream = graph.ancestors(targets)
        changed = [s for s in upstream
                   if s in session.ran and session.ran[s] != spec.by_id[s].hash]
        result = executor.run(session.inputs, targets=targets)
        for sid, trace in result.traces.items():
            session.status[sid] = trace.status
            if trace.status == "ok":
                session.ran[sid] = spec.by_id[sid].hash
        stale = sorted((graph.descendants(changed) - upstream) & set(session.ran))
        for sid in stale:
            session.status[sid] = "stale"
        write_traces(session.base_dir / ".nux" / "runs" / f"{result.run_id}.jsonl", [result])
        display({"text/html": _trace_html(result).data, RUN_MIME: run_record(result, spec)},
                raw=True)
        if stale:
            print(f"stale (re-run them): {', '.join(stale)}")
        for error in result.errors:
            print(f"stage {error.stage} failed: {error.cause}")
        if self.shell is not None:
            for sid, outcome in result.walk.outcomes.items():
                if outcome.status == "ok" and sid in spec.by_id:
                    self.shell.user_ns[sid] = outcome.value
        if len(targets) == 1:
            target = result.walk.outcomes.get(targets[0])
            return target.value if target is not None and target.status == "ok" else None
        return result.output if result.ok else None


def register(ipython: Any) -> None:
    ipython.register_magics(NuxMagics)
