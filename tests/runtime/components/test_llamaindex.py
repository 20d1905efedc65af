"""llamaindex.retriever over a collection qdrant.ingest wrote: the contract, the LlamaIndex
objects it exposes, and agreement with qdrant.search."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from llama_index.core.retrievers import BaseRetriever

from nux_kernel import Workbook
from nux_kernel.testing import ComponentContract
from nux_runtime.components.base import RuntimeContext
from nux_runtime.components.llamaindex_retriever import LlamaIndexRetriever
from tests.runtime.components.test_qdrant import copy_handbook, ingest, search

pytestmark = pytest.mark.slow


class TestLlamaIndexContract(ComponentContract):
    component = "llamaindex.retriever"
    inputs: ClassVar[Any] = {"question": "string"}
    params: ClassVar[Any] = {"collection": "handbook", "top_k": 3}
    cases: ClassVar[Any] = [{"question": "How do I reset my password?"},
                            {"question": "When does the office open?"}]
    bad_params: ClassVar[Any] = {"metric": "manhattan"}
    failing_params: ClassVar[Any] = {"collection": "absent"}
    failing_cause = "collection 'absent' does not exist"
    failing_category = "resource"
    counts_tokens = True

    @pytest.fixture
    def workbook_dir(self, tmp_path: Path) -> Path:
        copy_handbook(tmp_path)
        ingest(tmp_path, chunk_size=64, chunk_overlap=8)
        return tmp_path


def retriever_stage(base_dir: Path, **params: Any) -> LlamaIndexRetriever:
    wb = Workbook("li", inputs={"question": "string"}, output="find")
    wb.data("find", uses="llamaindex.retriever", inputs=["question"],
            params={"collection": "handbook", **params})
    return LlamaIndexRetriever(wb.compile().stage("find"), RuntimeContext(base_dir))


@pytest.mark.parametrize("metric", ["cosine", "euclid"])
def test_agrees_with_qdrant_search(tmp_path: Path, metric: str) -> None:
    copy_handbook(tmp_path)
    ingest(tmp_path, chunk_size=64)
    question = "How many days of holiday do employees get?"
    ours = search(tmp_path, question, top_k=4, metric=metric)
    theirs = retriever_stage(tmp_path, top_k=4, metric=metric)({"question": question}).value
    assert [h["id"] for h in theirs] == [h["id"] for h in ours]
    assert [h["text"] for h in theirs] == [h["text"] for h in ours]
    assert [h["score"] for h in theirs] == pytest.approx([h["score"] for h in ours], abs=1e-5)


def test_exposes_a_llamaindex_retriever_with_filters(tmp_path: Path) -> None:
    copy_handbook(tmp_path)
    ingest(tmp_path, chunk_size=64)
    stage = retriever_stage(tmp_path, top_k=10, filter={"source": "office.html"})
    retriever = stage.retriever()
    assert isinstance(retriever, BaseRetriever)
    nodes = retriever.retrieve("parking")
    assert nodes and {n.node.metadata["source"] for n in nodes} == {"office.html"}
