"""``nux validate``, ``nux spec``, ``nux run`` and ``nux catalog``."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from jsonschema import Draft202012Validator
from rich.table import Table

from nux_kernel.catalog import load_catalog
from nux_kernel.cli.main import err, load_spec, main, out, user_errors
from nux_kernel.evaluate.bank import load_bank
from nux_kernel.executor import Executor, RunResult, write_traces
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import WorkbookSpec


@main.command()
@click.argument("workbook", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def validate(workbook: str, as_json: bool, catalog: str | None) -> None:
    """Check a workbook and report every problem at once (exit 2 when there are any)."""
    spec, _ = load_spec(workbook, catalog)
    if as_json:
        click.echo(json.dumps({"ok": True, "workbook": spec.name, "hash": spec.hash,
                               "stages": [s.id for s in spec.stages], "problems": []}, indent=2))
    else:
        out.print(f"{spec.name}: {len(spec.stages)} stages, no problems (spec {spec.hash[:12]})",
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


def print_run(result: RunResult) -> None:
    table = Table(title=f"run {result.run_id}", title_justify="left")
    for column in ("stage", "status", "latency ms", "tokens in/out", "cost", "cache"):
        table.add_column(column, no_wrap=True)
    table.add_column("output", overflow="fold", min_width=12)
    for trace in result.trace_list():
        status = trace.status if not trace.reason else f"{trace.status}: {trace.reason}"
        table.add_row(trace.stage, status, f"{trace.latency_ms:.1f}",
                      f"{trace.tokens_in}/{trace.tokens_out}", _money(trace.cost_usd),
                      "hit" if trace.cache_hit else "", trace.output_preview)
    out.print(table)
    tokens_in, tokens_out = result.tokens
    out.print(f"total {result.latency_ms:.1f} ms, tokens {tokens_in}/{tokens_out}, "
              f"cost {_money(result.cost_usd)}", markup=False)
    for error in result.errors:
        err.print(f"stage {error.stage} failed: {error.cause}", markup=False)
    if result.ok:
        answer = result.output
        out.print("output:", answer if isinstance(answer, str) else json.dumps(answer),
                  markup=False)


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
        click.echo(json.dumps([{"run_id": r.run_id, "ok": r.ok, "output": r.output,
                                "errors": [e.to_dict() for e in r.errors],
                                "traces": [t.to_dict() for t in r.trace_list()]}
                               for r in results], indent=2, default=str))
    else:
        for result in results:
            print_run(result)
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
        click.echo(json.dumps(cat.model_dump(mode="json"), indent=2, sort_keys=True))
        return
    table = Table(title=f"catalog {cat.name} {cat.version} ({cat.path})", title_justify="left")
    for column in ("component", "kind", "version", "params", "resources", "cost", "vetting"):
        table.add_column(column, overflow="fold")
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
        table.add_row(entry.id, entry.kind, entry.version, params, res, price,
                      f"{vet.owner} {vet.date}, data {'/'.join(vet.data_classes) or '-'}, "
                      f"egress {vet.egress}")
    out.print(table)


