"""``nux validate``, ``nux spec``, ``nux run`` and ``nux catalog``."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from jsonschema import Draft202012Validator
from rich.cells import cell_len
from rich.table import Table

from nux_kernel.catalog import load_catalog
from nux_kernel.cli.main import err, load_spec, main, out, sort_problems, user_errors
from nux_kernel.compiler import check_workbook
from nux_kernel.evaluate.bank import load_bank
from nux_kernel.evaluate.run import prepare_evaluation
from nux_kernel.executor import Executor, RunResult, write_traces
from nux_kernel.notebook import read_notebook
from nux_runtime.errors import NuxError, Problem, StageError, WorkbookError
from nux_runtime.spec import WorkbookSpec


def _evaluation_problems(spec: WorkbookSpec, base_dir: Path, warnings: list[Problem]
                         ) -> list[Problem]:
    """What ``nux eval`` would refuse before running a case (the same checks, run by the same
    code: the test bank and its cases, the acceptance keys, every criterion built)."""
    if not spec.test_bank and (spec.criteria or spec.acceptance):
        warnings.append(Problem(
            code="test-bank", message="the workbook has criteria but names no test bank, so "
            "`nux eval` has nothing to score", fix="set metadata.nux.test_bank to a .jsonl or "
            ".csv file beside the workbook", field="metadata.nux.test_bank"))
    try:
        _, scorers = prepare_evaluation(spec, base_dir, None if spec.test_bank else [])
    except NuxError as exc:
        return exc.problems
    for scorer in scorers:
        scorer.close()
    return []


@main.command()
@click.argument("workbook", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def validate(workbook: str, as_json: bool, catalog: str | None) -> None:
    """Check a workbook and report every problem at once (exit 2 when there are any).

    Checks what compiling, running and ``nux eval`` check before anything runs; warnings (an
    API key unset in this shell) are printed and do not fail the check.
    """
    source = read_notebook(workbook)
    warnings: list[Problem] = []
    spec, problems = check_workbook(source, load_catalog(catalog), warnings)
    if spec is not None:
        problems = _evaluation_problems(spec, source.base_dir, warnings)
    order = {c.cell: c.index for c in source.cells}
    problems, warnings = sort_problems(problems, order), sort_problems(warnings, order)
    if as_json:
        click.echo(json.dumps({"ok": not problems, "workbook": spec.name if spec else None,
                               "hash": spec.hash if spec and not problems else None,
                               "stages": [s.id for s in spec.stages] if spec else [],
                               "evaluation_only": {
                                   "stages": list(spec.evaluation_stages) if spec else [],
                                   "inputs": list(spec.evaluation_inputs) if spec else []},
                               "problems": [p.to_dict() for p in problems],
                               "warnings": [w.to_dict() for w in warnings]},
                              indent=2, ensure_ascii=False))
        sys.exit(2 if problems else 0)
    for warning in warnings:
        err.print(f"warning: {warning.render()}", markup=False)
    if problems:
        raise WorkbookError(problems=problems)
    assert spec is not None
    noun = "warning" if len(warnings) == 1 else "warnings"
    evaluation = spec.evaluation_stages
    only = (f" ({len(evaluation)} for evaluation only, not served: {', '.join(evaluation)})"
            if evaluation else "")
    out.print(f"{spec.name}: {len(spec.stages)} stages{only}, no problems"
              f"{f', {len(warnings)} {noun}' if warnings else ''} (spec {spec.hash[:12]})",
              markup=False)


@main.command()
@click.argument("workbook", type=click.Path(dir_okay=False))
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def spec(workbook: str, catalog: str | None) -> None:
    """Print the compiled, frozen WorkbookSpec as JSON."""
    compiled, _ = load_spec(workbook, catalog)
    click.echo(compiled.to_json(), nl=False)


def _coerce(spec: WorkbookSpec, name: str, raw: str) -> Any:
    schema = spec.inputs.get("properties", {}).get(name, {})
    if schema.get("type") == "string":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _check_inputs(spec: WorkbookSpec, inputs: dict[str, Any], where: str) -> list[Problem]:
    validator = Draft202012Validator(spec.inputs)
    problems = []
    for error in validator.iter_errors(inputs):
        field = ".".join(str(p) for p in error.absolute_path) or "inputs"
        names = ", ".join(spec.input_names) or "none"
        problems.append(Problem(code="input", message=f"{where}: {error.message}",
                                fix=f"the workbook takes: {names}", field=field))
    return problems


def _money(value: float) -> str:
    if not value:
        return "-"
    return f"${value:.4f}" if value >= 1e-4 else f"${value:.1e}"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str,
                                                           ensure_ascii=False)


def print_run(result: RunResult, *, targets: Sequence[str] = ()) -> None:
    """One line per stage (values cut to the terminal's width, never wrapped), the totals,
    then every failure and skip with its reason, and the answer."""
    traces = result.trace_list()
    rows = [[trace.stage, trace.status, f"{trace.latency_ms:.1f}",
             f"{trace.tokens_in}/{trace.tokens_out}", _money(trace.cost_usd),
             "hit" if trace.cache_hit else ""] for trace in traces]
    headers = ["stage", "status", "ms", "tokens", "cost", "cache"]
    # tokens and cost are left out when no stage has any (a chain of code stages)
    empty = {"tokens": "0/0", "cost": "-"}
    keep = [i for i, h in enumerate(headers)
            if h not in empty or any(r[i] != empty[h] for r in rows)]
    headers = [headers[i] for i in keep]
    rows = [[r[i] for i in keep] for r in rows]
    widths = [max(cell_len(h), *(cell_len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    # every column but the output keeps its whole width (a very long stage id is cut); the
    # output gets what is left
    widths[0] = min(widths[0], max(12, out.width - sum(widths[1:]) - 3 * (len(headers) + 1)
                                   - 9))
    room = max(8, out.width - sum(widths) - 3 * (len(headers) + 1) - 1)
    table = Table(title=f"run {result.run_id}", title_justify="left")
    for header, width in zip(headers, widths, strict=True):
        table.add_column(header, no_wrap=True, min_width=width, max_width=width,
                         overflow="ellipsis",
                         justify="right" if header in ("ms", "tokens", "cost") else "left")
    table.add_column("output", no_wrap=True, overflow="ellipsis", max_width=room)
    for row, trace in zip(rows, traces, strict=True):
        table.add_row(*row, trace.output_preview)
    out.print(table)
    tokens_in, tokens_out = result.tokens
    out.print(f"total {result.latency_ms:.1f} ms, tokens {tokens_in}/{tokens_out}, "
              f"cost {_money(result.cost_usd)}", markup=False)
    for trace in traces:
        if trace.reason:
            err.print(f"stage {trace.stage} {'failed' if trace.status == 'error' else trace.status}"
                      f": {trace.reason}", markup=False)
    if targets:
        return
    try:
        answer = result.output
    except StageError as exc:
        if not result.errors:
            err.print(f"no answer: stage {exc.stage}: {exc.cause}", markup=False)
        return
    out.print("output:", _text(answer), markup=False)


@main.command()
@click.argument("workbook", type=click.Path(dir_okay=False))
@click.option("--input", "-i", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A workbook input (repeat for each).")
@click.option("--inputs", "inputs_file", type=click.Path(dir_okay=False),
              help="A JSONL or CSV file of requests (a test bank: one object per line, or "
                   "{\"inputs\": {...}}).")
@click.option("--no-cache", is_flag=True, help="Bypass the stage cache.")
@click.option("--stage", "targets", multiple=True, help="Run only up to this stage.")
@click.option("--trace", "trace_path", type=click.Path(dir_okay=False),
              help="JSONL trace file (default .nux/runs/<run id>.jsonl beside the workbook).")
@click.option("--concurrency", default=4, show_default=True, help="Requests run at once.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def run(workbook: str, pairs: tuple[str, ...], inputs_file: str | None, no_cache: bool,
        targets: tuple[str, ...], trace_path: str | None, concurrency: int, as_json: bool,
        catalog: str | None) -> None:
    """Run a workbook in this process on one request or a batch."""
    compiled, base_dir = load_spec(workbook, catalog)
    if pairs and inputs_file:
        raise NuxError(problems=[Problem(code="usage", message="--input and --inputs together",
                                         fix="give one request with --input, or a file")])
    cases: list[dict[str, Any]] = []
    if inputs_file:
        cases = [case.inputs for case in load_bank(inputs_file, compiled.input_names)]
    else:
        single: dict[str, Any] = {}
        for pair in pairs:
            name, sep, raw = pair.partition("=")
            if not sep:
                raise NuxError(problems=[Problem(code="usage", message=f"--input {pair!r}",
                                                 fix="write --input name=value")])
            single[name] = _coerce(compiled, name, raw)
        cases = [single]
    problems = [p for i, case in enumerate(cases)
                for p in _check_inputs(compiled, case, f"request {i + 1}" if inputs_file
                                       else "input")]
    for target in targets:
        if target not in compiled.by_id:
            problems.append(Problem(code="usage", message=f"no stage {target!r}",
                                    fix=f"stages: {', '.join(compiled.by_id)}"))
    if problems:
        raise NuxError(problems=problems)
    executor = Executor(compiled, base_dir=base_dir, cache=not no_cache)
    try:
        if len(cases) == 1:
            results = [executor.run(cases[0], targets=targets or None)]
        else:
            results = executor.run_many(cases, concurrency=concurrency)
    finally:
        executor.close()
    default = base_dir / ".nux" / "runs" / f"{results[0].run_id}.jsonl"
    path = write_traces(trace_path or default, results)
    if as_json:
        click.echo(json.dumps([{"run_id": r.run_id, "ok": r.ok, "output": r.walk.output,
                                "errors": [e.to_dict() for e in r.errors],
                                "traces": [t.to_dict() for t in r.trace_list()]}
                               for r in results], indent=2, default=str, ensure_ascii=False))
    else:
        for result in results:
            print_run(result, targets=targets)
        err.print(f"traces: {path}", markup=False)
    if targets:
        failed = any(o.status == "error" for r in results for o in r.walk.outcomes.values())
    else:
        failed = not all(r.ok for r in results)
    sys.exit(1 if failed else 0)


@main.command(name="catalog")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@click.option("--catalog", "path", type=click.Path(dir_okay=False), help="Catalog file.")
@user_errors
def catalog_cmd(as_json: bool, path: str | None) -> None:
    """List the vetted components: kind, params, resources, cost and vetting record."""
    cat = load_catalog(path)
    if as_json:
        click.echo(json.dumps(cat.model_dump(mode="json"), indent=2, sort_keys=True,
                          ensure_ascii=False))
        return
    out.print(f"catalog {cat.name} {cat.version} ({cat.path})", markup=False)
    width = max(40, out.width)
    for entry in cat.components.values():
        params = ", ".join(entry.params) or ("free" if entry.free_params else "-")
        res = f"cpu {entry.resources.num_cpus:g}" + (
            f", gpu {entry.resources.num_gpus:g}" if entry.resources.num_gpus else "")
        cost = entry.cost
        price = ", ".join(part for part in (
            f"in ${cost.input_per_1k:g}/1K" if cost.input_per_1k else "",
            f"out ${cost.output_per_1k:g}/1K" if cost.output_per_1k else "",
            f"${cost.replica_hour:g}/replica-h" if cost.replica_hour else "") if part) or "-"
        vet = entry.vetting
        out.print("", markup=False)
        out.print(textwrap.shorten(f"{entry.id} ({entry.kind} {entry.version}): {res}, cost "
                                   f"{price}", width, placeholder=" …"), markup=False)
        for label, text in (
                ("params", params),
                ("vetted", f"{vet.owner} {vet.date}, data {'/'.join(vet.data_classes) or '-'}, "
                           f"egress {vet.egress}")):
            out.print(textwrap.fill(text, width, initial_indent=f"  {label}: ",
                                    subsequent_indent=" " * (len(label) + 4),
                                    break_on_hyphens=False), markup=False)
