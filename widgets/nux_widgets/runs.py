"""Running a workbook from the browser: one request through the playground executor, or a
batch of requests (the test bank) as a background job.

Executors are kept per workbook hash, so a component (a loaded model, an open vector store) is
built once and reused by every run of the same workbook; the stage cache beside the workbook
answers stages whose spec and inputs did not change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from nux_kernel.evaluate.bank import resolve_bank
from nux_kernel.executor import Executor, RunResult, write_traces
from nux_runtime.errors import NuxError, Problem, WorkbookError
from nux_runtime.spec import WorkbookSpec
from nux_widgets.jobs import JobContext
from nux_widgets.workbooks import check

__all__ = ["ExecutorPool", "batch_job", "check_inputs", "compiled", "result_payload", "run_payload"]


class ExecutorPool:
    """At most ``size`` executors, one per workbook hash, least recently used closed first."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._executors: OrderedDict[str, Executor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: WorkbookSpec, base_dir: Path) -> Executor:
        key = f"{spec.hash}:{base_dir}"
        with self._lock:
            executor = self._executors.pop(key, None) or Executor(spec, base_dir=base_dir)
            self._executors[key] = executor
            while len(self._executors) > self.size:
                _, old = self._executors.popitem(last=False)
                old.close()
            return executor

    def close(self) -> None:
        with self._lock:
            for executor in self._executors.values():
                executor.close()
            self._executors.clear()


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


def run_payload(pool: ExecutorPool, root: Path, body: dict[str, Any]) -> dict[str, Any]:
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
    result = pool.get(spec, base_dir).run(inputs, targets=targets)
    write_traces(base_dir / ".nux" / "runs" / f"{result.run_id}.jsonl", [result])
    return {**result_payload(result), "hash": spec.hash,
            "stages": {s.id: s.hash for s in spec.stages}}


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


def batch_job(pool: ExecutorPool, root: Path) -> Any:
    """The ``run-batch`` job: every case (or the test bank) through the workbook, one by one."""

    def run(ctx: JobContext, body: dict[str, Any]) -> dict[str, Any]:
        spec, base_dir = compiled(root, body)
        cases = _cases(base_dir, spec, body)
        executor = pool.get(spec, base_dir)
        results: list[dict[str, Any]] = []
        for index, case in enumerate(cases):
            if ctx.stopping:
                break
            result = executor.run(case)
            results.append(result_payload(result))
            ctx.report(case=index + 1, total=len(cases), ok=result.ok,
                       latency_ms=result.latency_ms)
        passed = sum(1 for r in results if r["ok"])
        return {"cases": len(cases), "ran": len(results), "ok": passed, "results": results}

    return run
