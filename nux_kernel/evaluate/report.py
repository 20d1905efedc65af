"""Reports of an evaluation: the terminal tables and a self-contained HTML file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from nux_kernel.evaluate.run import EvalReport

__all__ = ["print_report", "write_html"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str,
                                                           ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_report(report: EvalReport, console: Console, *, cases: bool = True) -> None:
    """Per-case table (failures first), criteria table, aggregates and the verdicts."""
    s = report.summary
    names = list(s["criteria"])
    if cases:
        table = Table(title=f"{report.workbook}: {s['cases']} cases", title_justify="left")
        rows = []
        for c in sorted(report.cases, key=lambda c: c.passed):
            cells = [("ok " if sc.passed else "FAIL ") + f"{sc.value:.2f}"
                     for sc in (c.scores[n] for n in names)]
            actual = _short(c.actual) if c.ok else f"error: {_short(c.error)}"
            rows.append((c.case.id[:24], actual, _short(c.case.expected), cells,
                         f"{c.latency_ms:.1f}"))
        # one line per case: ids, scores and times whole, the texts cut to what is left (the
        # HTML report has them in full)
        fixed = ["case", *names, "ms"]
        widths = [max([cell_len(h), *(cell_len(v) for v in column)]) for h, column in zip(
            fixed, [[r[0] for r in rows], *([r[3][i] for r in rows] for i in range(len(names))),
                    [r[4] for r in rows]], strict=True)]
        room = max(16, console.width - sum(widths) - 3 * (len(fixed) + 2) - 1) // 2
        table.add_column("case", no_wrap=True, min_width=widths[0])
        for column in ("actual", "expected"):
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=room)
        for column, width in zip(fixed[1:], widths[1:], strict=True):
            table.add_column(column, no_wrap=True, min_width=width,
                             justify="right" if column == "ms" else "left")
        for case_id, actual, expected, cells, ms in rows:
            table.add_row(case_id, actual, expected, *cells, ms)
        console.print(table)
    crit = Table(title="criteria", title_justify="left")
    for column in ("criterion", "type", "pass rate", "mean score"):
        crit.add_column(column)
    for name, agg in s["criteria"].items():
        crit.add_row(name, agg["type"], f"{agg['pass_rate']:.1%}", f"{agg['mean']:.3f}")
    if names:
        console.print(crit)
    lat = s["latency_ms"]
    tokens = s["tokens_per_request"]
    # short lines that a narrow terminal shows whole
    for line in (
            f"pass rate {s['pass_rate']:.1%}  quality {s['quality']:.3f}  errors "
            f"{s['error_rate']:.1%}",
            f"latency p50/p95/p99 {lat['p50']:.1f}/{lat['p95']:.1f}/{lat['p99']:.1f} ms",
            f"tokens/request {tokens['in']:.1f}/{tokens['out']:.1f}  cost/request "
            f"${s['cost_per_request']:.6f}  cache hits {s['cache_hits']}/{s['stage_runs']}"):
        console.print(line, markup=False)
    if s.get("served_ms") is not None:
        console.print(f"served (with the cache) p50/p95 {s['served_ms']['p50']:.1f}/"
                      f"{s['served_ms']['p95']:.1f} ms; component loading "
                      f"{s.get('cold_start_ms', 0.0):.0f} ms (not in the latencies above)",
                      markup=False)
    for name, part in (s.get("splits") or {}).items():
        console.print(f"{'held-out' if name == 'holdout' else 'tuning'} part: {part['cases']} "
                      f"cases, pass rate {part['pass_rate']:.1%}, quality {part['quality']:.3f}",
                      markup=False)
    for v in report.verdicts:
        mark = "PASS" if v.passed else "FAIL"
        console.print(f"{mark} {v.name} = {_fmt(v.value)} (needs {v.op} {_fmt(v.threshold)})",
                      markup=False)
    if report.verdicts:
        console.print("PASS" if report.passed else "FAIL", markup=False)


_TEMPLATES = Environment(loader=PackageLoader("nux_kernel.evaluate", "templates"),
                        autoescape=select_autoescape(["html", "j2"], default=True),
                        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_TEMPLATES.filters["number"] = _fmt
_TEMPLATES.filters["shown"] = lambda value: value if isinstance(value, str) else json.dumps(
    value, indent=1, default=str, ensure_ascii=False)


def write_html(report: EvalReport, path: str | Path) -> Path:
    """One HTML page (``templates/report.html.j2``, autoescaped): verdicts, aggregates, and per
    case inputs, expected, actual, scores and per-stage traces."""
    s = report.summary
    lat = s["latency_ms"]
    aggregates = [
        ("pass rate", f"{s['pass_rate']:.1%}"), ("quality", f"{s['quality']:.3f}"),
        ("error rate", f"{s['error_rate']:.1%}"),
        ("latency p50 / p95 / p99", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms"),
        ("tokens per request (in / out)", f"{s['tokens_per_request']['in']:.1f} / "
         f"{s['tokens_per_request']['out']:.1f}"),
        ("cost per request", f"${s['cost_per_request']:.6f}"),
        ("cache hits", f"{s['cache_hits']} of {s['stage_runs']} stage runs")]
    aggregates += [(f"{n} ({a['type']})", f"pass {a['pass_rate']:.1%}, mean {a['mean']:.3f}")
                   for n, a in s["criteria"].items()]
    page = _TEMPLATES.get_template("report.html.j2").render(
        report=report, summary=s, criteria=list(s["criteria"]), aggregates=aggregates,
        started=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.started_at)))
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(page + "\n", encoding="utf-8")
    return p
