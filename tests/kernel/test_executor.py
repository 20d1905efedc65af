"""The playground executor: concurrency, failures, conditions, the stage cache, traces."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nux_kernel import Executor, Workbook


def test_independent_branches_run_concurrently(tmp_path: Path) -> None:
    # two branches that can only finish when both run at the same time: they meet at a barrier
    wb = Workbook("fan", inputs={"x": "integer", "barrier": {}}, output="join")
    for name, add in (("left", 1), ("right", 2)):
        wb.code(name, f"def {name}(x: int, barrier) -> int:\n"
                      f"    barrier.wait(timeout=20)\n    return x + {add}\n")
    wb.code("join", "def join(left: int, right: int) -> int:\n    return left * right\n")
    executor = Executor(wb.compile(), base_dir=tmp_path, cache=False)
    result = executor.run({"x": 1, "barrier": threading.Barrier(2)})
    assert result.ok, result.errors
    assert result.output == 2 * 3


def test_a_failing_stage_is_named_and_other_branches_are_kept(tmp_path: Path) -> None:
    wb = Workbook("fail", inputs={"x": "integer"}, output="join")
    wb.code("good", "def good(x: int) -> int:\n    return x + 1\n")
    wb.code("bad", "def bad(x: int) -> int:\n    return x // 0\n")
    wb.code("join", "def join(good: int, bad: int) -> int:\n    return good + bad\n")
    result = Executor(wb.compile(), base_dir=tmp_path, cache=False).run({"x": 1})
    assert not result.ok
    [error] = result.errors
    assert error.stage == "bad" and "ZeroDivisionError" in error.cause
    assert result.walk.outcomes["good"].value == 2
    assert result.traces["good"].status == "ok"
    assert result.traces["join"].status == "skipped"
    assert "upstream 'bad'" in result.traces["join"].reason


def routed() -> Workbook:
    wb = Workbook("route", inputs={"question": "string"}, output=["cheap", "large"])
    wb.code("route", "def route(question: str) -> str:\n"
                     "    return 'hard' if len(question) > 20 else 'easy'\n")
    wb.code("cheap", "def cheap(question: str) -> str:\n    return 'cheap:' + question\n",
            when="route == 'easy'")
    wb.code("large", "def large(question: str) -> str:\n    return 'large:' + question\n",
            when="route == 'hard'")
    wb.code("polish", "def polish(large: str) -> str:\n    return large.upper()\n")
    return wb


@pytest.mark.parametrize(("question", "answer", "skipped"), [
    ("short one", "cheap:short one", "large"),
    ("a much longer and harder question", "large:a much longer and harder question", "cheap"),
])
def test_conditional_stages_route_and_output_takes_first_not_skipped(
        tmp_path: Path, question: str, answer: str, skipped: str) -> None:
    executor = Executor(routed().compile(), base_dir=tmp_path, cache=False)
    result = executor.run({"question": question})
    assert result.ok
    assert result.output == answer
    assert result.traces[skipped].status == "skipped"
    assert result.traces[skipped].reason.startswith("when:")
    polished = executor.run({"question": question}, targets=["polish"])
    assert polished.traces["polish"].status == ("skipped" if skipped == "large" else "ok")


def chain(suffix: str, mid_body: str = "return a * 2") -> Workbook:
    wb = Workbook("cache", inputs={"x": "integer"}, output="c")
    wb.code("a", f"def a(x: int) -> int:\n    return x + 1  # {suffix}\n")
    wb.code("b", f"def b(a: int) -> int:\n    {mid_body}\n")
    wb.code("c", "def c(b: int) -> int:\n    return b + 100\n")
    return wb


def test_stage_cache_reuses_unchanged_stages_and_invalidates_edits(tmp_path: Path) -> None:
    first = Executor(chain("v1").compile(), base_dir=tmp_path)
    assert first.run({"x": 1}).output == 104
    assert first.executions == 3
    again = first.run({"x": 1})
    assert all(t.cache_hit for t in again.traces.values()) and first.executions == 3
    first.close()
    # a new process (new executor) reads the disk layer under .nux/cache
    second = Executor(chain("v1").compile(), base_dir=tmp_path)
    assert second.run({"x": 1}).output == 104 and second.executions == 0
    second.close()
    assert (tmp_path / ".nux" / "cache").is_dir()
    # editing b recomputes b and what it feeds, and reuses a
    edited = Executor(chain("v1", "return a * 3").compile(), base_dir=tmp_path)
    result = edited.run({"x": 1})
    assert result.output == 106
    assert {s: t.cache_hit for s, t in result.traces.items()} == {"a": True, "b": False,
                                                                  "c": False}
    edited.close()
    # editing a without changing its output recomputes a only
    comment = Executor(chain("v2", "return a * 3").compile(), base_dir=tmp_path)
    result = comment.run({"x": 1})
    assert {s: t.cache_hit for s, t in result.traces.items()} == {"a": False, "b": True,
                                                                  "c": True}
    comment.close()


def test_no_cache_recomputes(tmp_path: Path) -> None:
    executor = Executor(chain("v1").compile(), base_dir=tmp_path, cache=False)
    executor.run({"x": 1})
    executor.run({"x": 1})
    assert executor.executions == 6
    assert not (tmp_path / ".nux").exists()


def test_batch_runs_cases_and_prices_replica_time(tmp_path: Path) -> None:
    executor = Executor(chain("v1").compile(), base_dir=tmp_path, cache=False)
    results = executor.run_many([{"x": i} for i in range(10)], concurrency=4)
    assert [r.output for r in results] == [(i + 1) * 2 + 100 for i in range(10)]
    trace = results[0].traces["a"]
    assert trace.latency_ms > 0 and trace.cost_usd > 0  # catalog price per replica-hour
    assert len({r.run_id for r in results}) == 10


def test_code_stage_output_must_match_its_annotation(tmp_path: Path) -> None:
    wb = Workbook("typed", inputs={"x": "integer"}, output="a")
    wb.code("a", "def a(x: int) -> str:\n    return x\n")
    result = Executor(wb.compile(), base_dir=tmp_path, cache=False).run({"x": 1})
    [error] = result.errors
    assert error.stage == "a" and "return annotation" in error.cause


def test_template_stage_renders_inputs(tmp_path: Path) -> None:
    wb = Workbook("tpl", inputs={"question": "string"}, output="prompt")
    wb.template("prompt", inputs=["question"], template="Q: {question}\nA:")
    result = Executor(wb.compile(), base_dir=tmp_path, cache=False).run({"question": "why?"})
    assert result.output == "Q: why?\nA:"


def test_registry_prompts_are_pinned_into_the_spec(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "qa@1.txt").write_text("Question: {question}\nAnswer:")
    wb = Workbook("tpl", inputs={"question": "string"}, output="prompt", base_dir=tmp_path)
    wb.template("prompt", inputs=["question"], prompt="qa@1")
    spec = wb.compile()
    assert spec.stage("prompt").prompts == {"qa@1": "Question: {question}\nAnswer:"}
    (tmp_path / "prompts" / "qa@1.txt").write_text("changed on disk after compiling")
    result = Executor(spec, base_dir=tmp_path, cache=False).run({"question": "why?"})
    assert result.output == "Question: why?\nAnswer:"


def test_a_failing_stage_is_answered_by_its_fallback(tmp_path: Path) -> None:
    wb = Workbook("fallback", inputs={"x": "integer"}, output="answer")
    wb.code("risky", "def risky(x: int) -> int:\n    return 100 // x\n", fallback="safe")
    wb.code("safe", "def safe(x: int) -> int:\n    return -1\n")
    wb.code("answer", "def answer(risky: int) -> str:\n    return f'got {risky}'\n")
    executor = Executor(wb.compile(), base_dir=tmp_path, cache=False)
    assert executor.run({"x": 4}).output == "got 25"
    result = executor.run({"x": 0})
    assert result.ok and result.output == "got -1"
    assert "answered by fallback 'safe'" in result.traces["risky"].reason
    assert result.traces["safe"].status == "ok"


@pytest.mark.parametrize(("fallback", "code"), [("nope", "unknown-fallback"),
                                                ("after", "fallback-cycle")])
def test_fallback_must_name_an_independent_stage(fallback: str, code: str) -> None:
    wb = Workbook("fallback", inputs={"x": "integer"}, output="after")
    wb.code("risky", "def risky(x: int) -> int:\n    return x\n", fallback=fallback)
    wb.code("after", "def after(risky: int) -> int:\n    return risky\n")
    assert code in {p.code for p in wb.check()}


def test_a_hung_stage_times_out_and_holds_neither_other_calls_nor_the_exit(
        tmp_path: Path) -> None:
    # the stage threads are kept between calls, and a call that never returns keeps only its
    # own: the next calls run, and the interpreter exits without waiting for it
    code = f"""
import sys, time
from pathlib import Path
from nux_kernel import Executor, Workbook
wb = Workbook("hang", inputs={{"x": "integer"}}, output="out", base_dir=Path({str(tmp_path)!r}))
wb.code("out", "def out(x: int) -> int:\\n"
               "    while x < 0:\\n        x = x - 1\\n    return x + 1\\n", timeout_s=0.5)
executor = Executor(wb.compile(), base_dir={str(tmp_path)!r}, cache=False)
hung = executor.run({{"x": -1}})
print(hung.traces["out"].status, hung.traces["out"].reason)
print([executor.run({{"x": i}}).output for i in range(50)])
"""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    status, values = done.stdout.splitlines()
    assert status.startswith("error") and "timeout_s" in status
    assert values == str(list(range(1, 51)))
    assert time.monotonic() - start < 40  # the hung call never ends
