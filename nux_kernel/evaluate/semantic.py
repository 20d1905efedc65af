"""Semantic similarity: the cosine of the answer's and the expected answer's embeddings.

Embeds with the runtime's process-wide embedder (all-MiniLM-L6-v2 by default, ``model:`` picks
another vetted one); a case passes when the cosine reaches ``threshold`` (default 0.7). The score
is the cosine clipped to [0, 1]. All cases are embedded in one batch.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from nux_kernel.evaluate.criteria import CRITERIA_FIELD, Score, Scorer, Scoring, criterion_problem
from nux_runtime.errors import Problem
from nux_runtime.spec import Criterion, WorkbookSpec

__all__ = ["SemanticSimilarity"]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


class SemanticSimilarity(Scorer):
    """MiniLM cosine between the answer and the expected answer, over a threshold."""

    type = "semantic"
    params = ("model",)

    @classmethod
    def check(cls, criterion: Criterion, stages: Collection[str],
              where: str = CRITERIA_FIELD) -> list[Problem]:
        problems = super().check(criterion, stages, where)
        threshold = criterion.params.get("threshold", 0.7)
        if isinstance(threshold, int | float) and not 0.0 <= threshold <= 1.0:
            problems.append(criterion_problem(
                criterion, f"threshold {threshold} is not a cosine in [0, 1]",
                "write e.g. `threshold: 0.7`", where))
        return problems

    def __init__(self, criterion: Criterion, spec: WorkbookSpec, base_dir: Path) -> None:
        super().__init__(criterion, spec, base_dir)
        self.threshold = float(criterion.params.get("threshold", 0.7))
        self.model = str(criterion.params.get("model", "minilm"))

    def score(self, item: Scoring) -> Score:
        return self.score_many([item])[0]

    def score_many(self, items: Sequence[Scoring]) -> list[Score]:
        from nux_runtime.components.embed import get_embedder

        todo = [i for i, it in enumerate(items) if it.answered and it.case.expected is not None]
        scores = [Score(0.0, False, it.reason if not it.answered else
                        "the case has no `expected` answer") for it in items]
        if not todo:
            return scores
        embedder = get_embedder(self.model)
        texts = [_text(items[i].actual) for i in todo] + [_text(items[i].case.expected)
                                                          for i in todo]
        vectors = embedder.embed(texts)
        n = len(todo)
        for k, i in enumerate(todo):
            cosine = float(vectors[k] @ vectors[n + k])  # rows are L2-normalized
            value = min(1.0, max(0.0, cosine))
            scores[i] = Score(value, cosine >= self.threshold, f"cosine {cosine:.3f}")
        return scores
