"""``llamaindex.query``: a LlamaIndex query engine answering from a NUX Qdrant collection.

The engine is LlamaIndex's ``RetrieverQueryEngine``: the retriever is the one
``llamaindex.retriever`` runs (the same ``VectorStoreIndex`` over the collection, the same MiniLM
query embeddings), and the response synthesizer writes with :class:`GemmaLLM`, a LlamaIndex
``CustomLLM`` on NUX's process-wide local model (:func:`get_llama`, every call through
:func:`~nux_runtime.components.llm_prefill.complete`, holding :func:`llama_lock`).
:meth:`LlamaIndexQuery.query_engine` hands the engine itself to code that already speaks
LlamaIndex.

The default model is a base model, so the QA prompt is few-shot in the shape of
:mod:`nux_runtime.components.fewshot`: the stage's template reads ``{context}`` and
``{question}``, each ``few_shot`` example gives both plus ``output``, and generation stops at the
end of the line. The refine prompt (``refine`` mode, and ``compact`` when the chunks need more
than one call) is the same QA prompt with the answer so far shown above the next chunk of context.
The stage answers ``{answer, sources: [{text, score, source, chunk, id}]}``; its tokens are the
sum over the model calls the engine made.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from pydantic import Field, PrivateAttr

from nux_runtime.components.base import RuntimeContext, StageResult
from nux_runtime.components.fewshot import build_prompt
from nux_runtime.components.llamaindex_retriever import LlamaIndexRetriever, node_hits
from nux_runtime.components.llm_local import DEFAULT_MODEL, llama_lock, stage_llama
from nux_runtime.components.llm_prefill import complete as complete_tokens
from nux_runtime.components.llm_prefill import complete_stream, prompt_tokens
from nux_runtime.components.qdrant_store import client_lock
from nux_runtime.components.template import template_text, template_variables
from nux_runtime.errors import StageError
from nux_runtime.spec import StageSpec

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["DEFAULT_TEMPLATE", "ChunkTextOnly", "GemmaLLM", "LlamaIndexQuery", "ModelCall"]

DEFAULT_TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"
RESPONSE_MODES = ("compact", "simple_summarize", "refine")
DEFAULT_MAX_TOKENS = 32


@dataclass(frozen=True)
class ModelCall:
    """One completion the engine asked for: the model's own token counts and why it stopped."""

    tokens_in: int
    tokens_out: int
    finish_reason: str | None


class GemmaLLM(CustomLLM):
    """A LlamaIndex completion LLM on a process-wide ``llama_cpp.Llama``.

    Calls hold the model's lock, refuse a prompt that leaves no room for ``max_tokens`` in the
    context window (naming ``stage``), and are recorded in :attr:`calls`.
    """

    stage: str = "llamaindex.query"
    model_name: str = DEFAULT_MODEL
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    seed: int | None = None
    stop: list[str] = Field(default_factory=lambda: ["\n"])

    _llama: Any = PrivateAttr()
    _lock: Any = PrivateAttr()
    _calls: list[ModelCall] = PrivateAttr(default_factory=list)

    def __init__(self, llama: Llama, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._llama = llama
        self._lock = llama_lock(llama)
        self._calls = []

    @classmethod
    def class_name(cls) -> str:
        return "NuxGemmaLLM"

    @property
    def calls(self) -> list[ModelCall]:
        """The completions made so far, in order."""
        return list(self._calls)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=int(self._llama.n_ctx()), num_output=self.max_tokens,
                           is_chat_model=False, model_name=self.model_name)

    def tokenize(self, text: str) -> list[int]:
        """The model's own tokens for ``text`` (what LlamaIndex packs context with)."""
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _options(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature,
                "seed": self.seed, "stop": list(self.stop)}

    def _check_fits(self, prompt: str) -> list[int]:
        """The prompt's tokens; a StageError when they leave no room for the answer."""
        tokens = prompt_tokens(self._llama, prompt)
        n_prompt = len(tokens)
        n_ctx = int(self._llama.n_ctx())
        if n_prompt + self.max_tokens > n_ctx:
            raise StageError(
                self.stage,
                f"the prompt is {n_prompt} tokens and max_tokens is {self.max_tokens}, more than "
                f"the model's context window of {n_ctx} tokens; shorten the question or the "
                "few_shot examples, lower top_k or max_tokens, or raise n_ctx", category="input")
        return tokens

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        tokens = self._check_fits(prompt)
        with self._lock:
            try:
                response: Any = complete_tokens(self._llama, tokens, **self._options())
            except ValueError as exc:  # llama.cpp's own context check
                raise StageError(self.stage, str(exc), category="input") from None
        choice = response["choices"][0]
        usage = response.get("usage") or {}
        self._calls.append(ModelCall(int(usage.get("prompt_tokens", 0)),
                                     int(usage.get("completion_tokens", 0)),
                                     choice.get("finish_reason")))
        return CompletionResponse(text=str(choice["text"]).strip(), raw=response)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any
                        ) -> CompletionResponseGen:
        tokens = self._check_fits(prompt)

        def pieces() -> CompletionResponseGen:
            text, finish = "", None
            with self._lock, closing(
                    complete_stream(self._llama, tokens, **self._options())) as chunks:
                for chunk in chunks:
                    piece = str(chunk["choices"][0]["text"])
                    finish = chunk["choices"][0].get("finish_reason") or finish
                    text += piece
                    yield CompletionResponse(text=text, delta=piece)
            # a stream reports no usage: the written text in the model's tokens
            self._calls.append(ModelCall(len(tokens), len(self.tokenize(text)), finish))

        return pieces()


class ChunkTextOnly(BaseNodePostprocessor):
    """Shows the model each chunk's text without its payload (source, chunk, digest)."""

    @classmethod
    def class_name(cls) -> str:
        return "NuxChunkTextOnly"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        for node in nodes:
            node.node.excluded_llm_metadata_keys = list(node.node.metadata)
        return nodes


def qa_templates(stage: StageSpec, params: Mapping[str, Any]) -> tuple[Any, Any]:
    """The few-shot LlamaIndex QA and refine prompts of a stage.

    The stage's template (``{context}``, ``{question}``) renders the ``few_shot`` examples; the
    query part keeps LlamaIndex's variables (``context_str``, ``query_str``; the refine prompt
    shows ``existing_answer`` above ``context_msg``).
    """
    from llama_index.core import PromptTemplate

    if not params.get("prompt") and not params.get("template"):
        params = {**params, "template": DEFAULT_TEMPLATE}
    missing = [name for name in ("context", "question")
               if name not in template_variables(template_text(stage, params))]
    if missing:
        names = " and ".join("{" + m + "}" for m in missing)
        raise StageError(stage.id, f"the template must read {names} (the retrieved chunks and "
                         "the question)", category="input")
    qa = build_prompt(stage, params, {"context": "{context_str}", "question": "{query_str}"})
    refine = build_prompt(stage, params, {"context": "{existing_answer}\n{context_msg}",
                                          "question": "{query_str}"})
    return PromptTemplate(qa), PromptTemplate(refine)


class LlamaIndexQuery(LlamaIndexRetriever):
    """Answers the stage's one text input with a LlamaIndex query engine over the collection."""

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        self._load()

    def _load(self) -> None:
        self.llama = stage_llama(self.stage, self.params, self.context)

    def reconfigure(self, params: Mapping[str, Any]) -> None:
        before = {k: self.params.get(k) for k in ("model", "n_ctx", "collection", "metric")}
        super().reconfigure(params)
        if any(self.params.get(k) != v for k, v in before.items()):
            self.collection = str(self.params["collection"])
            self._index = None
            self._load()

    def llm(self) -> GemmaLLM:
        """A LlamaIndex LLM with this stage's generation params (it records its own calls)."""
        seed = self.params.get("seed")
        return GemmaLLM(self.llama, stage=self.stage.id,
                        model_name=str(self.params.get("model", DEFAULT_MODEL)),
                        max_tokens=int(self.params.get("max_tokens", DEFAULT_MAX_TOKENS)),
                        temperature=float(self.params.get("temperature", 0.0)),
                        seed=None if seed is None else int(seed))

    def query_engine(self, llm: GemmaLLM | None = None) -> Any:
        """The LlamaIndex ``RetrieverQueryEngine`` this stage runs."""
        from llama_index.core import PromptHelper, get_response_synthesizer
        from llama_index.core.query_engine import RetrieverQueryEngine
        from llama_index.core.response_synthesizers import ResponseMode

        llm = llm or self.llm()
        mode = str(self.params.get("response_mode", "compact"))
        if mode not in RESPONSE_MODES:
            raise StageError(self.stage.id, f"response_mode {mode!r} is not one of "
                             f"{', '.join(RESPONSE_MODES)}", category="input")
        qa, refine = qa_templates(self.stage, self.params)
        helper = PromptHelper(context_window=llm.metadata.context_window,
                              num_output=llm.max_tokens, tokenizer=llm.tokenize)
        synthesizer = get_response_synthesizer(
            llm=llm, prompt_helper=helper, text_qa_template=qa, refine_template=refine,
            response_mode=ResponseMode(mode))
        return RetrieverQueryEngine(self.retriever(), response_synthesizer=synthesizer,
                                    node_postprocessors=[ChunkTextOnly()])

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        values = list(inputs.values())
        if len(values) != 1 or not isinstance(values[0], str) or not values[0].strip():
            raise StageError(self.stage.id, "answers exactly one non-empty text input (the "
                             "question)", category="input")
        query = QueryBundle(values[0])
        llm = self.llm()
        engine = self.query_engine(llm)
        # what engine.query() does, in two steps: retrieval holds the local store's lock (and
        # names a missing or empty collection), generation holds only the model's lock
        with nullcontext() if self.params.get("url") else client_lock(self.client):
            nodes = self._retrieve(query.query_str)
        nodes = ChunkTextOnly().postprocess_nodes(nodes, query)
        try:
            response = engine.synthesize(query, nodes)
        except ValueError as exc:
            if "context size" in str(exc):  # LlamaIndex found no room for any context
                raise StageError(
                    self.stage.id, "the question and few_shot examples leave no room for the "
                    f"retrieved context in the model's context window ({exc}); shorten them, "
                    "lower max_tokens or raise n_ctx", category="input") from None
            raise StageError(self.stage.id, f"the query engine refused the request: {exc}",
                             category="input") from None
        calls = llm.calls
        return StageResult(
            {"answer": str(response.response or "").strip(), "sources": node_hits(nodes)},
            tokens_in=sum(c.tokens_in for c in calls),
            tokens_out=sum(c.tokens_out for c in calls),
            meta={"llm_calls": len(calls), "finish_reasons": [c.finish_reason for c in calls]},
        )

