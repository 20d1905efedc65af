"""LLM-as-judge: a vetted LLM grades each answer against a rubric.

The judge is a one-stage workbook compiled against the catalog like any other (so only a vetted
model can judge, within its vetted params): ``uses`` names the model (the local gemma-3-270m by
default). Its prompt shows the rubric, the request, the reference answer and the answer, with a
few solved examples, and asks for a score from 0 to ``scale``. The first number in the reply is
the score, bounded to [0, scale] and divided by it; a reply with no number scores 0 and says so.

A judge is itself a workbook, built and compiled like any other, so this module sits above the
builder and the compiler, outside ``nux_kernel.evaluate`` (which the compiler imports to check a
workbook's criteria); ``nux eval`` finds it, like every scorer, through ``nux.criteria``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from nux_kernel.builder import Workbook
from nux_kernel.evaluate.criteria import CRITERIA_FIELD, Score, Scorer, Scoring, criterion_problem
from nux_kernel.executor import Executor
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import Criterion, WorkbookSpec

__all__ = ["DEFAULT_JUDGE", "LLMJudge", "parse_score"]

DEFAULT_JUDGE = "llm.local/gemma-3-270m"
TEMPLATE = ("Rubric: {rubric}\nRequest: {request}\nReference answer: {expected}\n"
            "Answer: {answer}\nScore (0 to {scale}):")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_score(reply: str, scale: float) -> float | None:
    """The first number in ``reply`` bounded to [0, scale] and scaled to [0, 1]."""
    match = _NUMBER.search(reply)
    if match is None:
        return None
    return min(scale, max(0.0, float(match.group()))) / scale


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return " ".join(text.split())[:600]


def _examples(scale: float) -> list[dict[str, Any]]:
    top, low = f"{scale:g}", f"{scale * 0.1:g}"
    return [
        {"rubric": "The answer states the right capital city.", "request": "capital of France?",
         "expected": "Paris", "answer": "The capital of France is Paris.", "scale": f"{scale:g}",
         "output": top},
        {"rubric": "The answer states the right capital city.", "request": "capital of Italy?",
         "expected": "Rome", "answer": "Bananas are yellow.", "scale": f"{scale:g}",
         "output": low},
    ]


class LLMJudge(Scorer):
    """Scores each answer with a vetted LLM and a rubric prompt."""

    type = "judge"
    params = ("uses", "rubric", "scale", "max_tokens", "few_shot", "template")

    @classmethod
    def check(cls, criterion: Criterion, stages: Collection[str],
              where: str = CRITERIA_FIELD) -> list[Problem]:
        problems = super().check(criterion, stages, where)
        rubric = criterion.params.get("rubric")
        if not isinstance(rubric, str) or not rubric.strip():
            problems.append(criterion_problem(
                criterion, "a judge needs a `rubric`",
                "write e.g. `rubric: The answer is correct and concise.`", where))
        scale = criterion.params.get("scale", 10)
        if not isinstance(scale, int | float) or isinstance(scale, bool) or scale <= 0:
            problems.append(criterion_problem(criterion, "scale must be a number > 0",
                                              "write e.g. `scale: 10`", where))
        return problems

    def __init__(self, criterion: Criterion, spec: WorkbookSpec, base_dir: Path) -> None:
        super().__init__(criterion, spec, base_dir)
        p = criterion.params
        self.threshold = float(p.get("threshold", 0.5))
        self.scale = float(p.get("scale", 10))
        self.rubric = str(p["rubric"]).strip()
        wb = Workbook(f"{spec.name}-judge-{criterion.name}",
                      inputs=["rubric", "request", "expected", "answer", "scale"],
                      output="judge", base_dir=base_dir)
        wb.model("judge", uses=str(p.get("uses", DEFAULT_JUDGE)),
                 inputs=["rubric", "request", "expected", "answer", "scale"],
                 params={"template": str(p.get("template", TEMPLATE)),
                         "few_shot": p.get("few_shot", _examples(self.scale)),
                         "max_tokens": int(p.get("max_tokens", 4)), "stop": ["\n"],
                         "temperature": 0.0})
        try:
            self.judge_spec = wb.compile()
        except NuxError as exc:
            raise NuxError(problems=[Problem(
                code="criterion", message=f"criterion {criterion.name!r}: the judge model "
                f"cannot be used: {p_.message}", fix=p_.fix or "pick a vetted LLM (`nux catalog`)",
                field="metadata.nux.criteria") for p_ in exc.problems]) from None
        self._executor: Executor | None = None

    @property
    def executor(self) -> Executor:
        """The judge's executor, opened on first use (checking a workbook runs nothing)."""
        if self._executor is None:
            self._executor = Executor(self.judge_spec, base_dir=self.base_dir)
        return self._executor

    def score(self, item: Scoring) -> Score:
        return self.score_many([item])[0]

    def score_many(self, items: Sequence[Scoring]) -> list[Score]:
        scores = [Score(0.0, False, it.reason) for it in items]
        todo = [i for i, it in enumerate(items) if it.answered]
        requests = [{"rubric": self.rubric, "request": _text(items[i].case.inputs),
                     "expected": _text(items[i].case.expected), "answer": _text(items[i].actual),
                     "scale": f"{self.scale:g}"} for i in todo]
        for i, run in zip(todo, self.executor.run_many(requests, concurrency=1), strict=True):
            if not run.ok:
                reason = "; ".join(f"{e.stage}: {e.cause}" for e in run.errors)
                scores[i] = Score(0.0, False, f"the judge failed: {reason}")
                continue
            reply = str(run.output).strip()
            value = parse_score(reply, self.scale)
            if value is None:
                scores[i] = Score(0.0, False, f"the judge gave no score: {reply[:60]!r}")
            else:
                scores[i] = Score(value, value >= self.threshold, f"judge: {reply[:30]}")
        return scores

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close()
