"""The stage-call policy's rules that the parity test does not walk through: which calls get
a timeout, and what counts as transient."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nux_kernel import Workbook
from nux_runtime.errors import StageError
from nux_runtime.stagecall import DEFAULT_TIMEOUT_S, Outcome, StagePolicy, classify


def test_an_ingest_has_no_default_timeout_a_served_stage_has(tmp_path: Path) -> None:
    wb = Workbook("mixed", base_dir=tmp_path, inputs={"question": "string"}, output="echo")
    wb.data("ingest", uses="qdrant.ingest", params={"collection": "docs", "folder": "docs"})
    wb.code("echo", "def echo(question: str) -> str:\n    return question\n", timeout_s=2.5)
    wb.code("plain", "def plain(question: str) -> str:\n    return question\n")
    spec = wb.compile()
    policy = StagePolicy(spec.output)
    assert policy.timeout_s(spec.by_id["ingest"]) is None  # a job in production
    assert policy.timeout_s(spec.by_id["echo"]) == 2.5
    assert policy.timeout_s(spec.by_id["plain"]) == DEFAULT_TIMEOUT_S


def test_a_wrapped_connection_error_is_transient_and_retried(tmp_path: Path) -> None:
    err = StageError("s", "ConnectionError: reset")
    err.__cause__ = ConnectionError("reset")
    assert classify(err) == "transient"
    assert classify(StageError("s", "ValueError: no")) == "error"

    wb = Workbook("one", base_dir=tmp_path, inputs={"q": "string"}, output="s")
    wb.code("s", "def s(q: str) -> str:\n    return q\n", retries=2)
    spec = wb.compile()
    answers = [Outcome(ok=False, category="transient", cause="reset"),
               Outcome(ok=False, category="error", cause="broken"),
               Outcome(ok=True, value="never asked")]
    asked: list[int] = []

    async def attempt(number: int) -> Outcome:
        asked.append(number)
        return answers[number]

    outcome = asyncio.run(StagePolicy(spec.output).call(spec.by_id["s"], attempt))
    assert asked == [0, 1]  # a non-transient error ends the retries
    assert outcome == answers[1]
