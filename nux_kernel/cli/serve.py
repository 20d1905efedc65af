"""``nux serve`` (the production app on a local Ray), ``nux replay`` and ``nux api-key``."""

from __future__ import annotations

import json
import math
import os
import secrets
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from nux_kernel.cli.main import err, load_spec, main, out, user_errors
from nux_kernel.executor import Executor
from nux_runtime.errors import NuxError, Problem
from nux_runtime.serve.auth import hash_key
from nux_runtime.spec import WorkbookSpec, canonical_json
from nux_runtime.trace import preview


def _cpus_needed(spec: WorkbookSpec, stage_cpus: float | None) -> float:
    per_stage = [(s.resources.num_cpus if stage_cpus is None else stage_cpus)
                 * max(1, s.scale.max_replicas) for s in spec.served.stages]
    return sum(per_stage) + 1.0


def _check_address(host: str, port: int) -> None:
    """Fail before Ray starts when the HTTP address cannot be bound (in use, no such host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        raise NuxError(problems=[Problem(
            code="serve-address", field="port",
            message=f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            fix="choose a free --port (or stop what listens there) and a local --host")]
        ) from None


@main.command()
@click.argument("workbook", type=click.Path(dir_okay=False))
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535),
              help="HTTP port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--stage-cpus", type=float, help="CPUs per stage replica (default: the spec's).")
@click.option("--semantic-cache/--no-semantic-cache", default=False, show_default=True,
              help="Reuse answers of near-duplicate requests (loads MiniLM in the ingress).")
@click.option("--keys-env", default="NUX_API_KEY_HASHES", show_default=True,
              help="Environment variable with comma-separated sha256 digests of API keys.")
@click.option("--request-log", type=click.Path(dir_okay=False),
              help="Write requests and answers as JSONL (for `nux replay`), redacted, mode 0600.")
@click.option("--request-log-verbatim", is_flag=True,
              help="Keep the request log's inputs and answers unredacted (personal data!).")
@click.option("--redis-url", metavar="URL",
              help="Share the rate limit and caches through this Redis (default: NUX_REDIS_URL).")
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def serve(workbook: str, port: int, host: str, stage_cpus: float | None, semantic_cache: bool,
          keys_env: str, request_log: str | None, request_log_verbatim: bool,
          redis_url: str | None, catalog: str | None) -> None:
    """Serve a workbook as its production Ray Serve app on a local Ray (Ctrl-C or SIGTERM stops
    it, with every Ray process it started).

    The spec is frozen to .nux/serve/spec.json beside the workbook; the app is the one the
    exported Serve config runs: POST /v1/run, /v1/run/stream, /v1/feedback, GET /healthz,
    /metrics (Ray's metrics of every replica) and /openapi.json.
    """
    spec, base_dir = load_spec(workbook, catalog)
    _check_address(host, port)
    spec_path = base_dir / ".nux" / "serve" / "spec.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(spec.to_json(), encoding="utf-8")
    args: dict[str, Any] = {
        "spec_path": str(spec_path), "base_dir": str(base_dir), "stage_cpus": stage_cpus,
        "auth": {"keys_env": keys_env}, "semantic_cache": {"enabled": semantic_cache},
        "request_log": request_log, "request_log_verbatim": request_log_verbatim,
        "log_path": str(spec_path.parent / "serve.log"),
        "shared_state": {"redis_url": redis_url},
    }
    from ray import serve as ray_serve

    from nux_runtime.serve.app import build_app
    from nux_runtime.serve.local import start_local, stop_local

    app = build_app(args)
    if request_log:
        how = ("VERBATIM: personal data is kept" if request_log_verbatim
               else "redacted (--request-log-verbatim keeps it unredacted)")
        err.print(f"request log {request_log}: {how}; file mode 0600 (owner only)",
                  markup=False)
    num_cpus = max(os.cpu_count() or 1, math.ceil(_cpus_needed(spec, stage_cpus)))
    # Replicas report metrics every 2 s (Ray's default is 10 s): /metrics follows the traffic.
    os.environ.setdefault("RAY_metrics_report_interval_ms", "2000")
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        if signum == signal.SIGINT or not started.is_set():
            raise KeyboardInterrupt

    started = threading.Event()
    # Before Ray starts (its own handler would print a crash report) and again after it.
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        start_local(num_cpus, port=port, host=host)
        for s in previous:
            signal.signal(s, on_signal)
        started.set()
        ray_serve.run(app, name=spec.name, route_prefix="/")
        out.print(f"serving {spec.name} (spec {spec.hash[:12]}) at http://{host}:{port}  "
                  f"[POST /v1/run, /v1/run/stream; GET /openapi.json]  Ctrl-C stops",
                  markup=False)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, also while the app is still starting
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stop_local()
    err.print("stopped", markup=False)


def _read_log(path: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise NuxError(problems=[Problem(code="replay-file", message=f"cannot read {path}: "
                                         f"{exc.strerror}", fix="check the path")]) from None
    problems = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(code="replay-file", message=f"{path}:{number}: not JSON "
                                    f"({exc.msg})", fix="give the request log `nux serve "
                                    "--request-log` or the app's `request_log` wrote"))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("inputs"), dict):
            problems.append(Problem(code="replay-file", message=f"{path}:{number}: no `inputs` "
                                    "object", fix="each line needs {\"inputs\": {...}, "
                                    "\"output\": ...}"))
            continue
        record.setdefault("request_id", f"line-{number}")
        records.append(record)
    if problems:
        raise NuxError(problems=problems)
    return records


@main.command()
@click.argument("requests", type=click.Path(dir_okay=False))
@click.option("--against", "workbook", required=True, type=click.Path(dir_okay=False),
              help="The workbook version to replay the requests on.")
@click.option("--concurrency", default=4, show_default=True, help="Requests run at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def replay(requests: str, workbook: str, concurrency: int, as_json: bool,
           catalog: str | None) -> None:
    """Re-run logged production requests on a workbook and report the answers that changed.

    Exits 1 when any answer changed or failed: the regression gate before a rollout.
    """
    records = _read_log(requests)
    spec, base_dir = load_spec(workbook, catalog)
    executor = Executor(spec, base_dir=base_dir, cache=False)
    try:
        results = executor.run_many([r["inputs"] for r in records], concurrency=concurrency)
    finally:
        executor.close()
    rows = []
    for record, result in zip(records, results, strict=True):
        if not result.ok:
            causes = "; ".join(e.cause for e in result.errors) or "no output"
            # An answer a fallback gave in production that still fails is no regression.
            status = "still-failing" if record.get("fallback") else "failed"
            rows.append({"request_id": record["request_id"], "status": status,
                         "before": record.get("output"), "after": None, "detail": causes})
            continue
        same = canonical_json(record.get("output")) == canonical_json(result.output)
        rows.append({"request_id": record["request_id"],
                     "status": "same" if same else "changed",
                     "before": record.get("output"), "after": result.output, "detail": ""})
    changed = [r for r in rows if r["status"] in ("changed", "failed")]
    if as_json:
        click.echo(json.dumps({"workbook": spec.name, "spec_hash": spec.hash,
                               "requests": len(rows), "changed": len(changed), "rows": rows},
                              indent=2, default=str))
    else:
        table = Table(title=f"replay of {len(rows)} requests on {spec.name} "
                      f"(spec {spec.hash[:12]})", title_justify="left")
        for column in ("request", "status", "before", "after"):
            table.add_column(column, overflow="fold")
        for row in changed:
            after = row["detail"] or preview(row["after"])
            table.add_row(row["request_id"], row["status"], preview(row["before"]), after)
        if changed:
            out.print(table)
        out.print(f"{len(changed)} of {len(rows)} answers changed", markup=False)
    sys.exit(1 if changed else 0)


@main.command(name="api-key")
@click.option("--hash", "existing", metavar="KEY", help="Print the digest of this key.")
def api_key(existing: str | None) -> None:
    """Make an API key for a served workbook: the key for the client, the digest for the app.

    The app stores digests only (NUX_API_KEY_HASHES or a mounted Secret file).
    """
    key = existing or f"nux_{secrets.token_urlsafe(24)}"
    if existing is None:
        click.echo(f"key:    {key}")
    click.echo(f"sha256: {hash_key(key)}")
