"""The stage cache across an LLM's ``max_tokens``: an answer that stopped on its own is the
answer for every larger budget, so tuning trials that differ only there reuse it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nux_kernel import Executor, Workbook
from nux_kernel.tune import apply_params

FEW_SHOT = [
    {"question": "What is the capital of France?", "output": "Paris"},
    {"question": "What is the capital of Japan?", "output": "Tokyo"},
]


def workbook(temperature: float = 0.0) -> Workbook:
    wb = Workbook("budget", inputs={"question": "string"}, output="answer")
    wb.model("answer", uses="llm.local/gemma-3-270m", inputs=["question"], params={
        "template": "Question: {question}\nAnswer:", "few_shot": FEW_SHOT, "max_tokens": 40,
        "temperature": temperature, "stop": ["\n"]})
    return wb


QUESTION = {"question": "What is the capital of Italy?"}


@pytest.mark.usefixtures("gemma")
def test_a_stopped_answer_serves_every_larger_budget(tmp_path: Path) -> None:
    spec = workbook().compile()
    executor = Executor(spec, base_dir=tmp_path)
    first = executor.run(QUESTION)
    used = first.traces["answer"].tokens_out
    assert first.ok and 0 < used < 40 and executor.executions == 1

    # a budget at least as large as what the answer used: no new generation, same answer
    for budget in (used, 39, 64):
        again = Executor(
            apply_params(spec, {"answer": {"max_tokens": budget}}), base_dir=tmp_path,
            cache=executor.cache).run(QUESTION)
        assert again.output == first.output
        assert again.traces["answer"].cache_hit
    assert executor.executions == 1

    # and it is exactly what the model writes under that budget from scratch
    fresh = Executor(apply_params(spec, {"answer": {"max_tokens": used}}), base_dir=tmp_path,
                     cache=False).run(QUESTION)
    assert fresh.output == first.output

    # a smaller budget cuts the answer short: that one is generated
    short = Executor(apply_params(spec, {"answer": {"max_tokens": 1}}), base_dir=tmp_path,
                     cache=executor.cache)
    result = short.run(QUESTION)
    assert not result.traces["answer"].cache_hit and short.executions == 1
    assert result.traces["answer"].tokens_out == 1


@pytest.mark.usefixtures("gemma")
def test_seeded_sampling_reuses_exactly_what_a_fresh_run_writes(tmp_path: Path) -> None:
    spec = workbook(temperature=0.9).compile()  # the catalog seeds sampling (seed: 0)
    executor = Executor(spec, base_dir=tmp_path)
    first = executor.run(QUESTION)
    used = first.traces["answer"].tokens_out
    for budget in (used, 41):
        changed = apply_params(spec, {"answer": {"max_tokens": budget}})
        reused = Executor(changed, base_dir=tmp_path, cache=executor.cache).run(QUESTION)
        fresh = Executor(changed, base_dir=tmp_path, cache=False).run(QUESTION)
        assert reused.traces["answer"].cache_hit
        assert reused.output == fresh.output == first.output
