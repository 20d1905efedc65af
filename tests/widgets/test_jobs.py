"""The job runner on its own: queueing, stopping, and failures kept as problems."""

from __future__ import annotations

import threading
import time
from typing import Any

from nux_widgets.jobs import Job, JobContext, JobRunner


def _wait(job: Job) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while job.active and time.monotonic() < deadline:
        time.sleep(0.01)
    return job.to_dict()


def test_a_queued_job_stopped_before_it_starts_never_runs() -> None:
    release = threading.Event()
    ran: list[str] = []

    def blocking(ctx: JobContext, body: dict[str, Any]) -> dict[str, Any]:
        release.wait(5)
        ran.append(ctx.job_id)
        return {}

    runner = JobRunner({"block": blocking}, max_workers=1)
    first = runner.start("block", {})
    second = runner.start("block", {})
    assert runner.stop(second.id).status == "stopped"
    release.set()
    assert _wait(first)["status"] == "done"
    assert _wait(second)["status"] == "stopped"
    assert ran == [first.id]


def test_a_job_stops_between_steps_and_keeps_its_result() -> None:
    started = threading.Event()

    def steps(ctx: JobContext, body: dict[str, Any]) -> dict[str, Any]:
        done = 0
        while not ctx.stopping and done < 1000:
            done += 1
            ctx.report(step=done)
            started.set()
            time.sleep(0.005)
        return {"steps": done}

    runner = JobRunner({"steps": steps})
    job = runner.start("steps", {})
    started.wait(5)
    runner.stop(job.id)
    record = _wait(job)
    assert record["status"] == "stopped"
    assert 1 <= record["result"]["steps"] < 1000
    assert [e["seq"] for e in record["events"]] == list(range(1, record["last_seq"] + 1))


def test_an_unexpected_failure_is_a_problem_not_a_crash() -> None:
    def broken(ctx: JobContext, body: dict[str, Any]) -> dict[str, Any]:
        raise ZeroDivisionError("division by zero")

    runner = JobRunner({"broken": broken})
    record = _wait(runner.start("broken", {}))
    assert record["status"] == "error"
    assert record["problems"] == [{
        "code": "job-failed", "message": "broken job failed: ZeroDivisionError: division by zero",
        "fix": "see the Jupyter server log for details"}]
