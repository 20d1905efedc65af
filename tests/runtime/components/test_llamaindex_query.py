"""llamaindex.query: a LlamaIndex query engine over a collection qdrant.ingest wrote, answering
with the local gemma model: the contract, its sources, its token counts, the LlamaIndex engine it
exposes, a workbook run through `nux run`, and its errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMCompletionEndEvent
from llama_index.core.query_engine import RetrieverQueryEngine
from pydantic import Field

from nux_kernel import Executor, Workbook
from nux_kernel.cli import main
from nux_kernel.testing import ComponentContract
from nux_runtime.components.base import RuntimeContext
from nux_runtime.components.llamaindex_query import LlamaIndexQuery
from nux_runtime.components.qdrant_store import ensure_collection, store_client
from nux_runtime.errors import StageError
from tests.runtime.components.test_llamaindex import retriever_stage
from tests.runtime.components.test_qdrant import copy_handbook, ingest, search

pytestmark = pytest.mark.slow

OFFICE = "When does the office open?"
PARAMS: dict[str, Any] = {"collection": "handbook", "top_k": 2, "max_tokens": 16}


@pytest.fixture
def handbook(tmp_path: Path, gemma: Any) -> Path:
    """A workbook folder whose local store holds the handbook collection (model loaded)."""
    copy_handbook(tmp_path)
    ingest(tmp_path, chunk_size=64, chunk_overlap=8)
    return tmp_path


class TestLlamaIndexQueryContract(ComponentContract):
    component = "llamaindex.query"
    inputs: ClassVar[Any] = {"question": "string"}
    params: ClassVar[Any] = PARAMS
    cases: ClassVar[Any] = [{"question": OFFICE}, {"question": "How do I reset my password?"}]
    bad_params: ClassVar[Any] = {"response_mode": "tree_summarize"}
    failing_case: ClassVar[Any] = {"question": "word " * 3000}
    failing_cause = "context window"
    failing_category = "input"
    counts_tokens = True

    @pytest.fixture
    def workbook_dir(self, handbook: Path) -> Path:
        return handbook


def query_stage(base_dir: Path, **params: Any) -> LlamaIndexQuery:
    wb = Workbook("li-qa", inputs={"question": "string"}, output="answer")
    wb.model("answer", uses="llamaindex.query", inputs=["question"],
             params={**PARAMS, **params})
    return LlamaIndexQuery(wb.compile().stage("answer"), RuntimeContext(base_dir))


class Completions(BaseEventHandler):
    """Records the completions LlamaIndex reports through its instrumentation."""

    events: list[LLMCompletionEndEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Completions"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, LLMCompletionEndEvent):
            self.events.append(event)


def test_answers_from_the_collection_with_the_retrievers_sources(handbook: Path) -> None:
    wb = Workbook("li-qa", inputs={"question": "string"}, output="answer")
    wb.model("answer", uses="llamaindex.query", inputs=["question"],
             params={**PARAMS, "top_k": 3})
    result = Executor(wb.compile(), base_dir=handbook, cache=False).run({"question": OFFICE})
    assert result.ok, [e.to_dict() for e in result.errors]
    answer, sources = result.output["answer"], result.output["sources"]
    assert "8 am" in answer and "\n" not in answer
    # the context it answered from is what llamaindex.retriever and qdrant.search find
    retrieved = retriever_stage(handbook, top_k=3)({"question": OFFICE}).value
    assert [s["id"] for s in sources] == [h["id"] for h in retrieved]
    assert [s["text"] for s in sources] == [h["text"] for h in retrieved]
    assert [s["score"] for s in sources] == pytest.approx([h["score"] for h in retrieved],
                                                          abs=1e-5)
    assert sources[0]["source"] == "office.html"
    assert [h["id"] for h in search(handbook, OFFICE, top_k=3)] == [s["id"] for s in sources]
    trace = result.traces["answer"]
    assert trace.tokens_in > 0 and 0 < trace.tokens_out <= 16
    # priced on the compute the answer took (the trace's latency adds the call's overhead)
    priced = wb.compile().stage("answer").cost.cost(trace.tokens_in, trace.tokens_out,
                                                    trace.compute_ms / 1000.0)
    assert trace.cost_usd == pytest.approx(priced) and trace.cost_usd > 0


def test_tokens_are_summed_over_every_model_call(handbook: Path, gemma: Any) -> None:
    stage = query_stage(handbook, response_mode="refine", top_k=2)
    handler = Completions()
    dispatcher = get_dispatcher()
    dispatcher.add_event_handler(handler)
    try:
        result = stage({"question": OFFICE})
    finally:
        dispatcher.event_handlers.remove(handler)
    # refine: one call per retrieved chunk, the second shown the first one's answer
    assert result.meta["llm_calls"] == len(handler.events) == 2
    first, second = (e.prompt for e in handler.events)
    assert first.endswith(f"Question: {OFFICE}\nAnswer:")
    assert handler.events[0].response.text in second
    # the few-shot examples come first; each chunk is shown without its payload
    assert first.startswith("Context: The library opens at 9 am")
    assert "digest" not in first and "The office opens at 8 am" in first
    prompt_tokens = [len(gemma.tokenize(e.prompt.encode(), add_bos=True, special=False))
                     for e in handler.events]
    assert result.tokens_in == sum(prompt_tokens)
    assert result.tokens_out == sum(e.response.raw["usage"]["completion_tokens"]
                                    for e in handler.events)
    assert result.value["answer"] == handler.events[-1].response.text


def test_exposes_the_llamaindex_query_engine(handbook: Path) -> None:
    stage = query_stage(handbook)
    engine = stage.query_engine()
    assert isinstance(engine, RetrieverQueryEngine)
    response = engine.query(OFFICE)
    ours = stage({"question": OFFICE}).value
    assert str(response).strip() == ours["answer"]
    assert [n.node.node_id for n in response.source_nodes] == [s["id"] for s in ours["sources"]]


def test_nux_run_answers_through_a_saved_workbook(handbook: Path) -> None:
    wb = Workbook("handbook-qa", inputs={"question": "string"}, output="answer")
    wb.code("clean", "def clean(question: str) -> str:\n    return question.strip()\n")
    wb.model("answer", uses="llamaindex.query", inputs=["clean"],
             params={**PARAMS, "response_mode": "simple_summarize"})
    path = wb.save(handbook / "qa.ipynb")
    result = CliRunner().invoke(main, ["run", str(path), "-i", f"question=  {OFFICE} ",
                                       "--json", "--no-cache"])
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)
    assert "8 am" in run["output"]["answer"]
    assert run["output"]["sources"][0]["source"] == "office.html"
    answer_trace = next(t for t in run["traces"] if t["stage"] == "answer")
    assert answer_trace["tokens_in"] > 0 and answer_trace["cost_usd"] > 0


@pytest.mark.parametrize(("collection", "cause"), [
    ("absent", "collection 'absent' does not exist; run a qdrant.ingest stage into it first"),
    ("empty", "collection 'empty' is empty; ingest documents into it first"),
])
def test_missing_or_empty_collection_is_a_stage_error(handbook: Path, collection: str,
                                                      cause: str) -> None:
    ensure_collection(store_client({}, RuntimeContext(handbook)), "empty", 384)
    wb = Workbook("li-qa", inputs={"question": "string"}, output="answer")
    wb.model("answer", uses="llamaindex.query", inputs=["question"],
             params={**PARAMS, "collection": collection})
    result = Executor(wb.compile(), base_dir=handbook, cache=False).run({"question": OFFICE})
    [error] = result.errors
    assert isinstance(error, StageError)
    assert (error.stage, error.category) == ("answer", "resource")
    assert cause in error.cause
    assert result.traces["answer"].status == "error"


def test_a_template_without_context_is_refused(handbook: Path) -> None:
    stage = query_stage(handbook, template="Question: {question}\nAnswer:", few_shot=[])
    with pytest.raises(StageError, match=r"must read \{context\}") as info:
        stage({"question": OFFICE})
    assert info.value.stage == "answer"


def test_the_llm_streams_what_it_completes(handbook: Path) -> None:
    llm = query_stage(handbook, max_tokens=8).llm()
    prompt = "Q: What is the capital of France?\nA: Paris\n\nQ: What is the capital of Italy?\nA:"
    pieces = list(llm.stream_complete(prompt))
    whole = llm.complete(prompt)
    assert len(pieces) >= 1 and pieces[-1].text.strip() == whole.text
    assert "".join(p.delta or "" for p in pieces) == pieces[-1].text
    streamed, completed = llm.calls
    assert streamed.tokens_in == completed.tokens_in > 0
    assert 0 < completed.tokens_out <= 8 and streamed.finish_reason == completed.finish_reason
