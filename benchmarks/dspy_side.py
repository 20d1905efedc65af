"""DSPy's side of the held-out benchmark: run in its own virtualenv by ``bench_heldout``.

``python dspy_side.py JOB.json RESULT.json`` (with ``build/bench-venvs/dspy/bin/python``): the
same chain as the flagship (retrieve, then answer), the same local gemma-3-270m served on
loopback by llama-cpp-python's OpenAI-compatible server, the same split of the same bank.

The module retrieves with the passages NUX's own retrieve and context stages return for the
question (the same Qdrant collection, MiniLM embedder and ``top_k``: DSPy's virtualenv holds
neither Qdrant nor torch, so the benchmark looks them up once and hands them over), then
predicts with ``dspy.Predict("context, question -> answer")``. ``BootstrapFewShotWithRandomSearch``
optimizes it on the tuning part: its candidate programs are run in the order DSPy runs them
(seeds -3, -2, -1, 0, 1, ...) until the model calls the server counted reach the budget NUX's tune
used; the best candidate is then scored on the held-out part with the bench's criterion (the
expected text appears in the answer, ignoring case).

This file imports only the standard library and DSPy: it never runs in the project's venv.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any


def _count(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return int(json.load(answer)["completions"])


def _contains(expected: str, answer: Any) -> bool:
    return expected.casefold() in str(answer or "").casefold()


def main(job_path: str, result_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    result: dict[str, Any] = {"ok": False}
    try:
        result.update(_run(job))
        result["ok"] = True
    except Exception as exc:  # the concrete failure is the benchmark's finding
        result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        result["traceback"] = traceback.format_exc()[-4000:]
    Path(result_path).write_text(json.dumps(result, indent=2, default=str))
    return 0


class OutOfTime(Exception):
    """The optimizer's wall-time cap passed: the candidate running is discarded."""


def _run(job: dict[str, Any]) -> dict[str, Any]:
    import dspy
    from dspy.teleprompt import BootstrapFewShotWithRandomSearch

    deadline = time.monotonic() + float(job.get("time_cap_s", 1e9))
    optimizing = True
    parsed = {"ok": 0, "failed": 0}
    examples: list[str] = []

    class CappedLM(dspy.LM):  # type: ignore[misc]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if optimizing and time.monotonic() > deadline:
                raise OutOfTime("the optimizer's time cap passed")
            return super().__call__(*args, **kwargs)

    class CountingAdapter(dspy.ChatAdapter):  # type: ignore[misc]
        def parse(self, signature: Any, completion: str) -> Any:
            try:
                value = super().parse(signature, completion)
            except Exception:
                parsed["failed"] += 1
                if len(examples) < 3:
                    examples.append(completion[:200])
                raise
            parsed["ok"] += 1
            return value

    # a fresh run: no answers from an earlier run's disk cache; DSPy's memory cache stays on,
    # as it is by default (the server counts only the calls that reach the model)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    lm = CappedLM(f"openai/{job['model']}", api_base=job["base_url"] + "/v1",
                  api_key=job["api_key"], model_type=job.get("model_type", "chat"),
                  temperature=job.get("temperature", 0.0), max_tokens=job["max_tokens"],
                  stop=job.get("stop"), num_retries=0)
    dspy.configure(lm=lm, adapter=CountingAdapter(use_json_adapter_fallback=False))
    contexts: dict[str, str] = {c["question"]: c["context"] for c in job["cases"]}

    class RAG(dspy.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.answer = dspy.Predict("context, question -> answer")

        def forward(self, question: str) -> Any:
            context = contexts[question]  # the retrieve step: the same collection and top_k
            return self.answer(context=context, question=question)

    def example(case: dict[str, Any]) -> Any:
        return dspy.Example(question=case["question"], answer=case["expected"]).with_inputs(
            "question")

    def metric(gold: Any, pred: Any, trace: Any = None) -> bool:
        return _contains(str(gold.answer), getattr(pred, "answer", ""))

    train = [example(c) for c in job["cases"] if c["split"] != "holdout"]
    held = [c for c in job["cases"] if c["split"] == "holdout"]
    budget = int(job["budget"])
    count_url = job["count_url"]

    start_calls = _count(count_url)
    started = time.perf_counter()
    optimizer = BootstrapFewShotWithRandomSearch(
        metric=metric, max_bootstrapped_demos=job.get("max_bootstrapped_demos", 4),
        max_labeled_demos=job.get("max_labeled_demos", 4),
        num_candidate_programs=job.get("max_candidates", 16), num_threads=1, max_errors=10_000)
    candidates: list[dict[str, Any]] = []
    best: tuple[float, int, Any] | None = None
    stopped = "the candidate programs ran out"
    for seed in range(-3, int(job.get("max_candidates", 16))):
        if _count(count_url) - start_calls >= budget:
            stopped = "the budget of model calls was spent"
            break
        program = optimizer.compile(RAG(), trainset=train, restrict={seed})
        if time.monotonic() > deadline:  # cut short: its score is not a score
            stopped = f"the time cap ({job.get('time_cap_s')} s) passed during seed {seed}"
            break
        score = float(program.candidate_programs[0]["score"])
        candidates.append({"seed": seed, "score": score, "demos": len(program.answer.demos),
                           "calls_after": _count(count_url) - start_calls})
        if best is None or score > best[0]:
            best = (score, seed, program)
    optimizing = False
    tuning_calls = _count(count_url) - start_calls
    tuning_s = time.perf_counter() - started
    tuning_parsed = dict(parsed)
    # no candidate finished: the held-out part is answered by the unoptimized module
    chosen = best[2] if best is not None else RAG()

    before_eval = _count(count_url)
    passed = 0
    failures: list[str] = []
    answers: list[dict[str, Any]] = []
    for case in held:
        try:
            pred = chosen(question=case["question"])
            answer = str(getattr(pred, "answer", ""))
        except Exception as exc:  # an adapter that cannot parse the model's output
            answer = ""
            failures.append(f"{type(exc).__name__}: {str(exc)[:300]}")
        ok = _contains(case["expected"], answer)
        passed += ok
        answers.append({"question": case["question"], "expected": case["expected"],
                        "answer": answer, "passed": ok})
    return {"holdout_pass_rate": passed / len(held) if held else 0.0,
            "holdout_cases": len(held), "tuning_calls": tuning_calls,
            "holdout_calls": _count(count_url) - before_eval, "tuning_s": tuning_s,
            "stopped": stopped, "candidates": candidates,
            "best_seed": None if best is None else best[1],
            "best_score": None if best is None else best[0],
            "parsed_while_tuning": tuning_parsed,
            "parsed_held_out": {k: parsed[k] - tuning_parsed[k] for k in parsed},
            "unparsed_examples": examples, "holdout_failures": failures,
            "holdout_answers": answers, "dspy_version": dspy.__version__}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
