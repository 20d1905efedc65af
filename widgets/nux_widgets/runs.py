"""Running a workbook from the browser: one request, or a batch of requests (the test bank) as
a background job, each in the workbook's worker process (:mod:`nux_widgets.workers`).

The server compiles the workbook and checks the request (neither runs the notebook's code); the
worker runs it. The worker keeps an executor per workbook hash, so a component (a loaded model,
an open vector store) is built once and reused by every run of the same workbook, and the stage
cache beside the workbook answers stages whose spec and inputs did not change. A run whose
worker crashes or hangs comes back failed on the stage it was running.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from nux_kernel.evaluate.bank import resolve_bank
from nux_kernel.executor import RunResult, write_traces
from nux_runtime.errors import NuxError, Problem, StageError, WorkbookError
from nux_runtime.spec import WorkbookSpec
from nux_runtime.trace import StageTrace
from nux_runtime.walker import graph_of
from nux_widgets.jobs import JobContext
from nux_widgets.workbooks import check, resolve_path
from nux_widgets.workers import WorkerContext, WorkerEnded, WorkerPool, WorkerProcess

__all__ = ["batch_job", "check_inputs", "compiled", "ended_payload", "result_payload",
           "run_in_worker", "run_one", "run_payload"]


def check_inputs(spec: WorkbookSpec, inputs: Any, where: str = "inputs") -> list[Problem]:
    """The request's inputs against the workbook's input schema, one problem per mistake."""
    if not isinstance(inputs, dict):
        return [Problem(code="input", message=f"{where} must be an object of name -> value",
                        fix=f"the workbook takes: {', '.join(spec.input_names) or 'none'}",
                        field="inputs")]
    names = ", ".join(spec.input_names) or "none"
    return [Problem(code="input", message=f"{where}: {error.message}",
                    fix=f"the workbook takes: {names}",
                    field=".".join(str(p) for p in error.absolute_path) or "inputs")
            for error in Draft202012Validator(spec.inputs).iter_errors(inputs)]


def compiled(root: Path, body: dict[str, Any]) -> tuple[WorkbookSpec, Path]:
    checked = check(root, body)
    if checked.spec is None:
        raise WorkbookError(problems=checked.problems)
    return checked.spec, checked.source.base_dir


def result_payload(result: RunResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "ok": result.ok,
        "output": result.walk.output,
        "latency_ms": result.latency_ms,
        "cost_usd": result.cost_usd,
        "tokens": list(result.tokens),
        "traces": [t.to_dict() for t in result.trace_list()],
        "errors": [e.to_dict() for e in result.errors],
    }


def run_in_worker(ctx: WorkerContext, args: dict[str, Any]) -> dict[str, Any]:
    """In the worker process: one request through the workbook's executor."""
    spec: WorkbookSpec = args["spec"]
    base_dir: Path = args["base_dir"]
    result = ctx.executor(spec, base_dir).run(args["inputs"], targets=args["targets"])
    if args["record"]:
        write_traces(base_dir / ".nux" / "runs" / f"{result.run_id}.jsonl", [result])
    return result_payload(result)


def ended_payload(spec: WorkbookSpec, targets: list[str] | None, ended: WorkerEnded,
                  reported: dict[str, dict[str, Any] | float], latency_ms: float
                  ) -> dict[str, Any]:
    """The record of a run whose worker ended first: the stages that finished as they
    reported, the stages it was running failed with what happened, the rest not run."""
    wanted = graph_of(spec).ancestors(spec.output if targets is None else targets)
    category = "timeout" if ended.how == "timeout" else "error"
    now = time.perf_counter()
    traces: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    running = {s for s, seen in reported.items() if isinstance(seen, float)}
    if not running:  # it ended between stages: name the first one that did not finish
        first = next((s.id for s in spec.stages if s.id in wanted and s.id not in reported),
                     None)
        running = {first} if first is not None else set()
    for stage in (s for s in spec.stages if s.id in wanted):
        seen = reported.get(stage.id)
        if isinstance(seen, dict):
            traces.append(seen)
        elif stage.id in running:
            cause = f"{ended.reason}, while running this stage"
            started = seen if isinstance(seen, float) else now
            traces.append(StageTrace(stage.id, "error", latency_ms=(now - started) * 1000.0,
                                     reason=cause).to_dict())
            errors.append(StageError(stage.id, cause, category=category).to_dict())
        else:
            traces.append(StageTrace(stage.id, "skipped", reason="not run: the worker process "
                                     "ended").to_dict())
    return {
        "run_id": uuid.uuid4().hex[:12],
        "ok": False,
        "output": None,
        "latency_ms": latency_ms,
        "cost_usd": sum(float(t.get("cost_usd") or 0.0) for t in traces),
        "tokens": [sum(int(t.get("tokens_in") or 0) for t in traces),
                   sum(int(t.get("tokens_out") or 0) for t in traces)],
        "traces": traces,
        "errors": errors,
    }


def run_one(worker: WorkerProcess, spec: WorkbookSpec, base_dir: Path, inputs: dict[str, Any],
            targets: list[str] | None, *, record: bool, timeout_s: float | None,
            ctx: JobContext | None = None) -> dict[str, Any]:
    """One request through the workbook's worker (blocking: call it from a thread)."""
    reported: dict[str, dict[str, Any] | float] = {}

    def on_event(event: dict[str, Any]) -> None:
        stage = event.get("stage")
        if isinstance(stage, str):
            trace = event.get("trace")
            reported[stage] = trace if isinstance(trace, dict) else time.perf_counter()

    start = time.perf_counter()
    try:
        return dict(worker.call(run_in_worker, {
            "spec": spec, "base_dir": base_dir, "inputs": inputs, "targets": targets,
            "record": record}, on_event=on_event, timeout_s=timeout_s,
            stop=ctx.stop_event if ctx is not None else None))
    except WorkerEnded as ended:
        payload = ended_payload(spec, targets, ended, reported,
                                (time.perf_counter() - start) * 1000.0)
        if record:
            path = base_dir / ".nux" / "runs" / f"{payload['run_id']}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                for trace in payload["traces"]:
                    fh.write(json.dumps({"run_id": payload["run_id"], **trace}) + "\n")
        return payload


def run_payload(pool: WorkerPool, root: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Run one request (blocking: call it from a worker thread) and describe every stage."""
    spec, base_dir = compiled(root, body)
    inputs = body.get("inputs", {})
    problems = check_inputs(spec, inputs)
    targets = body.get("targets") or None
    if targets is not None:
        if not isinstance(targets, list):
            targets = [targets]
        problems += [Problem(code="usage", message=f"no stage {t!r}",
                             fix=f"stages: {', '.join(spec.by_id)}")
                     for t in targets if t not in spec.by_id]
    if problems:
        raise NuxError(problems=problems)
    worker = pool.for_workbook(resolve_path(root, str(body["path"])))
    result = run_one(worker, spec, base_dir, inputs, targets, record=True,
                     timeout_s=pool.settings.run_timeout_s or None)
    return {**result, "hash": spec.hash, "stages": {s.id: s.hash for s in spec.stages}}


def _cases(base_dir: Path, spec: WorkbookSpec, body: dict[str, Any]) -> list[dict[str, Any]]:
    cases = body.get("cases")
    if cases is None:
        if not spec.test_bank:
            raise NuxError(problems=[Problem(
                code="test-bank", message="the workbook names no test bank and the request "
                "sends no cases", fix="set metadata.nux.test_bank or send `cases`")])
        cases = [case.inputs for case in resolve_bank(spec, base_dir)]
    if not isinstance(cases, list):
        raise NuxError(problems=[Problem(code="request", message="`cases` must be a list",
                                         fix="send a list of input objects")])
    problems = [p for i, case in enumerate(cases)
                for p in check_inputs(spec, case, f"case {i + 1}")]
    if problems:
        raise NuxError(problems=problems)
    return cases


def batch_job(pool: WorkerPool, root: Path) -> Any:
    """The ``run-batch`` job: every case (or the test bank) through the workbook's worker, one
    by one; a case that crashes or hangs the worker fails alone, and the next gets a fresh one."""

    def run(ctx: JobContext, body: dict[str, Any]) -> dict[str, Any]:
        spec, base_dir = compiled(root, body)
        cases = _cases(base_dir, spec, body)
        worker = pool.for_workbook(resolve_path(root, str(body["path"])))
        results: list[dict[str, Any]] = []
        for index, case in enumerate(cases):
            if ctx.stopping:
                break
            result = run_one(worker, spec, base_dir, case, None, record=False,
                             timeout_s=pool.settings.run_timeout_s or None, ctx=ctx)
            results.append(result)
            ctx.report(case=index + 1, total=len(cases), ok=result["ok"],
                       latency_ms=result["latency_ms"])
        passed = sum(1 for r in results if r["ok"])
        return {"cases": len(cases), "ran": len(results), "ok": passed, "results": results}

    return run
