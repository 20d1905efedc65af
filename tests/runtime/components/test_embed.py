"""embed.local/minilm: the contract, and what an embedding must be."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from nux_kernel import Executor, Workbook
from nux_kernel.testing import ComponentContract
from nux_runtime.components.embed import Embedder, get_embedder

pytestmark = pytest.mark.slow


class TestMiniLMContract(ComponentContract):
    component = "embed.local/minilm"
    inputs: ClassVar[Any] = {"text": "string"}
    params: ClassVar[Any] = {"batch_size": 16}
    cases: ClassVar[Any] = [{"text": "The cat sleeps on the mat."},
                            {"text": "Quarterly revenue rose 4%."}]
    bad_params: ClassVar[Any] = {"batch_size": 0}
    # the stage itself refuses a value that is not text (the workbook input admits anything)
    failing_inputs: ClassVar[Any] = {"text": {}}
    failing_case: ClassVar[Any] = {"text": 42}
    failing_cause = "must be a string"
    failing_category = "input"
    counts_tokens = True


def test_vectors_are_normalized_float32_of_the_model_dimension(minilm: Embedder) -> None:
    vectors = minilm.embed(["alpha", "beta gamma", "delta " * 300])
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, minilm.dimension) == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


def test_batching_does_not_change_vectors(minilm: Embedder) -> None:
    texts = [f"document number {i} about topic {i % 3}" for i in range(10)]
    together = minilm.embed(texts, batch_size=4)
    alone = np.vstack([minilm.embed([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_similar_texts_are_closer(minilm: Embedder) -> None:
    a, b, c = minilm.embed(["How do I reset my password?", "I forgot my password, how to change it",
                            "The train to Lyon leaves at noon."])
    assert float(a @ b) > float(a @ c) + 0.2


def test_one_embedder_per_process(minilm: Embedder) -> None:
    assert get_embedder("minilm") is minilm


def test_a_list_input_gives_a_list_of_vectors(tmp_path: Path, minilm: Embedder) -> None:
    wb = Workbook("vectors", inputs={"texts": {"type": "array", "items": {"type": "string"}}},
                  output="vec")
    wb.model("vec", uses="embed.local/minilm", inputs=["texts"])
    result = Executor(wb.compile(), base_dir=tmp_path, cache=False).run(
        {"texts": ["one", "two", "three"]})
    assert result.ok, result.errors
    assert len(result.output) == 3 and all(len(v) == 384 for v in result.output)
    assert np.allclose(np.array(result.output[1], dtype=np.float32), minilm.embed(["two"])[0],
                       atol=1e-6)
    assert result.traces["vec"].tokens_in == minilm.count_tokens(["one", "two", "three"])
