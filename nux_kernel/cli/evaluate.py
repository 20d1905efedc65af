"""``nux eval``: run the workbook over its test bank and gate on its acceptance criteria.

Exit status: 0 when every acceptance threshold holds, 1 when one fails, 2 for a user error. A
collection the workbook reads that does not hold what its ingest workbook writes now (a changed
document, chunking settings ``nux pin`` wrote) is warned about: the scores are of the old data.
"""

from __future__ import annotations

import json
import sys
import time

import click
from rich.table import Table

from nux_kernel.catalog import load_catalog
from nux_kernel.cli.main import err, load_spec, main, out, user_errors
from nux_kernel.datasources import find_sources, stale_collections
from nux_kernel.evaluate import evaluate_workbook, load_bank
from nux_kernel.evaluate.history import Change, compare, previous_run, record_run
from nux_kernel.evaluate.report import print_report, write_html


@main.command(name="eval")
@click.argument("workbook", type=click.Path(dir_okay=False))
@click.option("--bank", type=click.Path(dir_okay=False),
              help="Test bank file (default: the workbook's metadata.nux.test_bank).")
@click.option("--concurrency", default=4, show_default=True, help="Cases run at once.")
@click.option("--no-cache", is_flag=True, help="Bypass the stage cache.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="HTML report (default .nux/reports/eval-<time>.html beside the workbook).")
@click.option("--compare", "compare_prev", is_flag=True,
              help="Show what improved and regressed since the previous run.")
@click.option("--cases/--no-cases", "show_cases", default=True, show_default=True,
              help="Print the per-case table.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def evaluate(workbook: str, bank: str | None, concurrency: int, no_cache: bool,
             html_path: str | None, compare_prev: bool, show_cases: bool, as_json: bool,
             catalog: str | None) -> None:
    """Score the workbook on its test bank; exit 1 when an acceptance threshold fails."""
    spec, base_dir = load_spec(workbook, catalog)
    cases = load_bank(bank, spec.input_names) if bank else None
    stale = stale_collections(find_sources(workbook, spec, catalog=load_catalog(catalog)))
    report = evaluate_workbook(spec, base_dir=base_dir, cases=cases, concurrency=concurrency,
                               cache=not no_cache)
    stored = record_run(report, base_dir)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report.started_at))
    page = write_html(report, html_path or base_dir / ".nux" / "reports" / f"eval-{stamp}.html")
    previous = previous_run(base_dir, spec.name, report.started_at) if compare_prev else None
    changes = compare(report, previous) if previous is not None else []
    if as_json:
        click.echo(json.dumps({"passed": report.passed, "summary": report.summary,
                               "html": str(page), "run": str(stored),
                               "stale_data": [p.to_dict() for p in stale],
                               "changes": [c.__dict__ for c in changes]}, indent=2,
                              default=str, ensure_ascii=False))
    else:
        print_report(report, out, cases=show_cases)
        if compare_prev:
            _print_changes(previous is not None, changes)
        err.print(f"report: {page}", markup=False)
        for problem in stale:
            err.print(f"warning: {problem.render()}", markup=False)
    sys.exit(0 if report.passed else 1)


def _print_changes(had_previous: bool, changes: list[Change]) -> None:
    if not had_previous:
        out.print("no previous run to compare with", markup=False)
        return
    if not changes:
        out.print("no change since the previous run", markup=False)
        return
    table = Table(title="since the previous run", title_justify="left")
    for column in ("what", "before", "after", "change"):
        table.add_column(column)
    for c in changes:
        table.add_row(c.name, _fmt(c.before), _fmt(c.after), c.verdict)
    out.print(table)



def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


__all__ = ["evaluate"]
