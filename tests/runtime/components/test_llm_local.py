"""llm.local/gemma-3-270m: the contract, few-shot prompts, streaming, tokens and failures."""

from __future__ import annotations

import os
import subprocess
import sys
from itertools import takewhile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from nux_kernel import Executor, Workbook
from nux_kernel.testing import ComponentContract
from nux_runtime.components.base import RuntimeContext
from nux_runtime.components.llm_local import LocalLLMStage, get_llama, llama_lock
from nux_runtime.components.llm_prefill import (
    MIN_BATCH,
    PREFILL_BLOCK,
    PROBE_TEXT,
    REUSE_STEP,
    complete,
    prefill_state,
    probe_logits,
    prompt_tokens,
    split_invariant,
)
from nux_runtime.errors import StageError
from nux_runtime.spec import StageSpec

pytestmark = pytest.mark.slow

CAPITALS = [
    {"question": "What is the capital of France?", "output": "Paris"},
    {"question": "What is the capital of Japan?", "output": "Tokyo"},
]
PARAMS: dict[str, Any] = {
    "template": "Q: {question}\nA:", "few_shot": CAPITALS, "max_tokens": 12,
    "temperature": 0.7, "seed": 11,
}


class TestGemmaContract(ComponentContract):
    component = "llm.local/gemma-3-270m"
    inputs: ClassVar[Any] = {"question": "string"}
    params: ClassVar[Any] = PARAMS
    cases: ClassVar[Any] = [{"question": "What is the capital of Italy?"},
             {"question": "What is the capital of Germany?"}]
    bad_params: ClassVar[Any] = {"temperature": 3.5}
    failing_case: ClassVar[Any] = {"question": "word " * 3000}
    failing_cause = "context window"
    failing_category = "input"
    counts_tokens = True


def stage_of(tmp_path: Path, **params: Any) -> StageSpec:
    wb = Workbook("qa", inputs={"question": "string"}, output="answer", base_dir=tmp_path)
    wb.model("answer", uses="llm.local/gemma-3-270m", inputs=["question"],
             params={**PARAMS, **params})
    return wb.compile().stage("answer")


def test_few_shot_base_model_answers_on_one_line(tmp_path: Path, gemma: Any) -> None:
    stage = LocalLLMStage(stage_of(tmp_path, temperature=0.0), RuntimeContext(tmp_path))
    prompt, tokens = stage.prompt({"question": "What is the capital of Italy?"})
    assert prompt == ("Q: What is the capital of France?\nA: Paris\n\n"
                      "Q: What is the capital of Japan?\nA: Tokyo\n\n"
                      "Q: What is the capital of Italy?\nA:")
    result = stage({"question": "What is the capital of Italy?"})
    assert result.value == "Rome"
    assert "\n" not in result.value
    # token counts come from the model's own tokenizer
    assert result.tokens_in == len(tokens) == len(gemma.tokenize(prompt.encode(), add_bos=True))
    assert 0 < result.tokens_out <= 12


def test_registry_prompt_is_rendered(tmp_path: Path, gemma: Any) -> None:
    wb = Workbook("qa", inputs={"question": "string"}, output="answer",
                  prompts={"qa@1": "Question: {question}\nAnswer:"}, base_dir=tmp_path)
    params = {k: v for k, v in PARAMS.items() if k != "template"}
    wb.model("answer", uses="llm.local/gemma-3-270m", inputs=["question"],
             params={**params, "prompt": "qa@1"})
    stage = LocalLLMStage(wb.compile().stage("answer"), RuntimeContext(tmp_path))
    prompt, _ = stage.prompt({"question": "Who?"})
    assert prompt.endswith("Question: Who?\nAnswer:")
    assert prompt.startswith("Question: What is the capital of France?\nAnswer: Paris\n\n")


def test_stream_yields_the_same_text_as_a_call(tmp_path: Path, gemma: Any) -> None:
    stage = LocalLLMStage(stage_of(tmp_path, max_tokens=16), RuntimeContext(tmp_path))
    inputs = {"question": "What is the capital of Spain?"}
    pieces = list(stage.stream(inputs))
    assert len(pieces) >= 1
    assert "".join(pieces).strip() == stage(inputs).value


def last_logits(llama: Any) -> Any:
    """The logits llama.cpp computed for the context's last evaluated position."""
    import llama_cpp

    row = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llama.n_vocab(),)).copy()


#: enough solved examples for a prompt of several prefill blocks
HANDBOOK = [
    {"question": f"How many days of leave does a level {n} engineer get in year {n + 1}?",
     "output": f"{20 + n} days, plus {n} days carried over from the year before."}
    for n in range(1, 9)
]


@pytest.fixture(params=["split-invariant kernels", "fixed blocks"])
def prefill_mode(request: Any, gemma: Any) -> Any:
    """Each way a prompt reaches the context: what the probe found on this machine's kernels,
    and the fixed blocks any other model gets."""
    record = prefill_state(gemma)
    with llama_lock(gemma):
        invariant = split_invariant(gemma)
    if request.param == "split-invariant kernels" and not invariant:
        pytest.skip("this machine's llama.cpp kernels are not split-invariant")
    saved = record.invariant
    record.invariant = request.param == "split-invariant kernels"
    record.keepable, record.after = 0, ()
    yield record
    record.invariant = saved
    record.keepable, record.after = 0, ()


def test_an_answer_depends_on_its_prompt_alone(tmp_path: Path, gemma: Any,
                                               prefill_mode: Any) -> None:
    """The model's view of a prompt is the same whatever ran before it: the prompt's last
    position gets bit-identical logits after nothing, after itself, after prompts sharing
    prefixes of several lengths with it (which llama-cpp-python alone would partly keep), and
    after another stage's prompt."""
    stage = LocalLLMStage(stage_of(tmp_path, temperature=0.0, max_tokens=1, few_shot=HANDBOOK),
                          RuntimeContext(tmp_path))
    other = LocalLLMStage(stage_of(tmp_path, temperature=0.0, max_tokens=3,
                                   few_shot=HANDBOOK[:3]), RuntimeContext(tmp_path))
    question = {"question": "How many days of leave does a level 4 engineer get in year 9?"}
    _, tokens = stage.prompt(question)
    assert len(tokens) > 3 * PREFILL_BLOCK

    def logits_after(*before: Any) -> Any:
        for call in before:
            call()
        stage(question)  # one token written: the context's logits are the prompt's last
        return last_logits(gemma)

    gemma.reset()
    alone = logits_after()
    histories = [
        [lambda: stage(question)],
        [lambda: stage({"question": "How many days of leave does a level 4 engineer get?"})],
        [lambda: stage({"question": "How many days"})],
        [lambda: stage({"question": "How many days of leave does a level 4 engineer"})],
        [lambda: stage({"question": "What is the capital of France?"}), lambda: stage(question)],
        [lambda: other(question)],
        [lambda: other({"question": "What is the capital of France?"}), lambda: stage(question)],
        # the prompt's first tokens alone: too short for a batch of their own, then cut off
        # the row groups
        [lambda: complete(gemma, tokens[:MIN_BATCH - 2], max_tokens=1)],
        [lambda: complete(gemma, tokens[:5 * MIN_BATCH + 1], max_tokens=2)],
    ]
    for number, before in enumerate(histories):
        assert np.array_equal(logits_after(*before), alone), f"history {number}"
    # a call that is not NUX's leaves the context in a state the next call does not trust
    gemma.create_completion(stage.prompt(question)[0][:-40], max_tokens=1)
    assert np.array_equal(logits_after(), alone)


def test_a_prompt_keeps_what_it_shares_with_the_call_before(tmp_path: Path, gemma: Any,
                                                            prefill_mode: Any) -> None:
    """How much of the context a prompt keeps: a multiple of REUSE_STEP of what it shares
    with the previous prompt on split-invariant kernels, whole blocks otherwise; nothing after
    a call that is not NUX's."""
    stage = LocalLLMStage(stage_of(tmp_path, temperature=0.0, max_tokens=2, few_shot=HANDBOOK),
                          RuntimeContext(tmp_path))
    first = {"question": "How many days of leave does a level 4 engineer get in year 9?"}
    second = {"question": "How many days of leave does a level 7 engineer get in year 2?"}
    pairs = zip(stage.prompt(first)[1], stage.prompt(second)[1], strict=False)
    shared_tokens = sum(1 for _ in takewhile(lambda pair: pair[0] == pair[1], pairs))
    step = REUSE_STEP if prefill_mode.invariant else PREFILL_BLOCK
    stage(first)
    stage(second)
    assert prefill_mode.kept == shared_tokens // step * step > 0
    stage(second)  # the same prompt again keeps all but its final batch
    assert prefill_mode.kept >= len(stage.prompt(second)[1]) - (MIN_BATCH + REUSE_STEP
                                                               if prefill_mode.invariant
                                                               else PREFILL_BLOCK)
    gemma.create_completion(stage.prompt(first)[0], max_tokens=1)
    stage(first)
    assert prefill_mode.kept == 0


def test_a_split_off_the_row_groups_changes_the_arithmetic(gemma: Any) -> None:
    """Why batches start at a multiple of REUSE_STEP and hold at least MIN_BATCH tokens: on
    this machine's kernels a prompt split otherwise gets other logits than the same prompt
    whole, and the probe that decides how prompts are split tells them apart."""
    n = len(prompt_tokens(gemma, PROBE_TEXT))
    with llama_lock(gemma):
        if not split_invariant(gemma):
            pytest.skip("this machine's llama.cpp kernels are not split-invariant")
        whole = probe_logits(gemma, ())
        assert np.array_equal(probe_logits(gemma, (MIN_BATCH, 3 * MIN_BATCH)), whole)
        off_the_groups = (n - MIN_BATCH - 1) // REUSE_STEP * REUSE_STEP + 1
        assert not np.array_equal(probe_logits(gemma, (off_the_groups,)), whole)
        too_short = (5 * MIN_BATCH, 5 * MIN_BATCH + REUSE_STEP)
        assert not np.array_equal(probe_logits(gemma, too_short), whole)


def test_a_context_too_small_for_the_probe_gets_the_fixed_blocks(gemma: Any) -> None:
    small = get_llama(n_ctx=len(prompt_tokens(gemma, PROBE_TEXT)) - 1)
    with llama_lock(small):
        assert not split_invariant(small)
        answer = complete(small, prompt_tokens(small, "Q: What is the capital of France?\nA:"),
                          max_tokens=3, temperature=0.0, stop=["\n"])
    assert answer["usage"]["completion_tokens"] >= 1


def test_seed_fixes_sampling_and_changes_it(tmp_path: Path, gemma: Any) -> None:
    inputs = {"question": "Write a word about the sea."}
    answers = {
        seed: LocalLLMStage(stage_of(tmp_path, temperature=1.5, seed=seed, few_shot=[]),
                            RuntimeContext(tmp_path))(inputs).value
        for seed in (1, 2, 3, 1)
    }
    again = LocalLLMStage(stage_of(tmp_path, temperature=1.5, seed=1, few_shot=[]),
                          RuntimeContext(tmp_path))(inputs).value
    assert again == answers[1]
    assert len(set(answers.values())) > 1, "different seeds should sample differently"


def test_the_model_is_loaded_once_per_process(tmp_path: Path, gemma: Any) -> None:
    one = LocalLLMStage(stage_of(tmp_path, max_tokens=5), RuntimeContext(tmp_path))
    two = LocalLLMStage(stage_of(tmp_path, max_tokens=7), RuntimeContext(tmp_path))
    assert one.llama is two.llama is gemma is get_llama()


def test_a_missing_model_file_is_a_resource_error(tmp_path: Path, gemma: Any) -> None:
    spec = stage_of(tmp_path)
    spec = StageSpec.model_validate(
        {**spec.model_dump(), "params": {**spec.params, "model": "models/absent.gguf"}})
    with pytest.raises(StageError) as info:
        LocalLLMStage(spec, RuntimeContext(tmp_path))
    assert info.value.stage == "answer"
    assert info.value.category == "resource"
    assert "absent.gguf" in info.value.cause and "does not exist" in info.value.cause


def test_overlong_prompt_through_the_executor_leaves_other_stages(tmp_path: Path,
                                                                   gemma: Any) -> None:
    wb = Workbook("two", inputs={"question": "string"}, output=["answer"])
    wb.model("answer", uses="llm.local/gemma-3-270m", inputs=["question"], params=PARAMS)
    wb.code("length", "def length(question: str) -> int:\n    return len(question)\n")
    executor = Executor(wb.compile(), base_dir=tmp_path, cache=False)
    result = executor.run({"question": "token " * 2500}, targets=["answer", "length"])
    [error] = result.errors
    assert error.stage == "answer" and error.category == "input"
    assert "2048" in error.cause and "n_ctx" in error.cause
    assert result.walk.outcomes["length"].value == len("token " * 2500)


def test_llama_threads_follow_the_replica_and_the_container_not_the_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nux_runtime.components import llm_local
    from nux_runtime.components.llm_local import llama_threads, threads_per_core, usable_cpus

    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert usable_cpus(quota) == affinity
    quota.write_text("50000 100000\n")  # half a CPU: at least one
    assert usable_cpus(quota) == 1.0
    cpus = max(1, int(usable_cpus()))
    per_core = threads_per_core()
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")  # what a Serve replica of one CPU sets
    assert llama_threads() == (1, 1)
    monkeypatch.setenv("OMP_THREAD_LIMIT", "64")  # never more than the process may use
    assert llama_threads() == (max(1, cpus // per_core), cpus)
    monkeypatch.delenv("OMP_THREAD_LIMIT")
    assert llama_threads() == (max(1, cpus // per_core), cpus)
    # a replica of 4 CPUs: 4 generation threads on cores without SMT, 2 on hyperthreads
    monkeypatch.setattr(llm_local, "usable_cpus", lambda: 4.0)
    monkeypatch.setattr(llm_local, "threads_per_core", lambda: 1)
    assert llama_threads() == (4, 4)
    monkeypatch.setattr(llm_local, "threads_per_core", lambda: 2)
    assert llama_threads() == (2, 4)


def test_threads_per_core_reads_the_cpus_this_process_may_use(tmp_path: Path) -> None:
    from nux_runtime.components.llm_local import threads_per_core

    def topology(siblings: str) -> Path:
        root = tmp_path / siblings.replace(",", "_")
        for cpu in os.sched_getaffinity(0):
            folder = root / f"cpu{cpu}" / "topology"
            folder.mkdir(parents=True)
            (folder / "thread_siblings_list").write_text(f"{siblings}\n")
        return root

    assert threads_per_core(topology("0-1")) == 2  # hyperthreads: two CPUs a core
    assert threads_per_core(topology("0,64")) == 2
    assert threads_per_core(topology("3")) == 1  # no SMT
    assert threads_per_core(tmp_path / "absent") == 2  # unreadable: llama-cpp-python's guess


def test_a_replica_of_one_cpu_loads_the_model_with_one_thread(tmp_path: Path) -> None:
    # a fresh process, as a replica is: the limit the replica sets reaches llama.cpp
    code = ("from nux_runtime.serve.stage import openmp_policy\n"
            "openmp_policy(1.0)\n"
            "from nux_runtime.components.llm_local import get_llama\n"
            "llama = get_llama()\n"
            "print(llama.context_params.n_threads, llama.context_params.n_threads_batch)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "1"]
