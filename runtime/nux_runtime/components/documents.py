"""Documents for ingestion: loading files from a folder and splitting them into chunks.

Loaders: ``.md`` and ``.txt`` are read as UTF-8 text, ``.html``/``.htm`` through BeautifulSoup's
text extraction, ``.pdf`` through pypdf when it is installed (the ``loaders`` extra). Splitters
measure chunks in the embedding model's own tokens, so a chunk never exceeds what the embedder
reads: ``sentence`` is LlamaIndex's ``SentenceSplitter`` (keeps sentences whole), ``recursive``
is LangChain's ``RecursiveCharacterTextSplitter`` (paragraphs, then lines, then words).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nux_runtime.errors import NuxError

__all__ = ["LOADERS", "Document", "file_digest", "find_documents", "load_text", "split_text"]


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def _read_html(path: Path) -> str:
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        raise NuxError(
            "reading .html needs beautifulsoup4; install `nux-runtime[loaders]`") from None
    soup = BeautifulSoup(path.read_bytes(), "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


def _read_pdf(path: Path) -> str:
    try:
        from pypdf import PdfReader
    except ImportError:
        raise NuxError("reading .pdf needs pypdf; install `nux-runtime[loaders]`") from None
    reader = PdfReader(str(path))
    return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages)


#: File suffix -> loader returning the file's plain text.
LOADERS: dict[str, Callable[[Path], str]] = {
    ".md": _read_text,
    ".markdown": _read_text,
    ".txt": _read_text,
    ".html": _read_html,
    ".htm": _read_html,
    ".pdf": _read_pdf,
}


@dataclass(frozen=True)
class Document:
    """A file found for ingestion: its path relative to the folder and its content digest."""

    source: str
    path: Path
    digest: str


_digests: dict[tuple[str, int, int, int], str] = {}


def file_digest(path: Path) -> str:
    """The sha256 of a file's bytes (memoized per inode, size and modification time, so an
    unchanged file is read once per process)."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _digests.get(key)
    if digest is None:
        digest = _digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def find_documents(folder: Path, suffixes: tuple[str, ...] | None = None) -> Iterator[Document]:
    """Every loadable file under ``folder`` (sorted, hidden files skipped)."""
    wanted = tuple(s.lower() for s in (suffixes or tuple(LOADERS)))
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix.lower() in wanted and path.suffix.lower() in LOADERS:
            yield Document(source=rel.as_posix(), path=path, digest=file_digest(path))


def load_text(path: Path) -> str:
    """The plain text of one file."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise NuxError(f"no loader for {path.suffix} files (loaders: {', '.join(LOADERS)})")
    return loader(path)


def split_text(text: str, *, splitter: str, chunk_size: int, chunk_overlap: int,
               tokenizer: Any) -> list[str]:
    """Chunks of ``text`` of at most ``chunk_size`` tokens of ``tokenizer`` (a HF tokenizer)."""
    if not text.strip():
        return []
    if splitter == "sentence":
        from llama_index.core.node_parser import SentenceSplitter

        def count(value: str) -> list[int]:
            return list(tokenizer.encode(value, add_special_tokens=False))

        chunks = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                  tokenizer=count).split_text(text)
    elif splitter == "recursive":
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        chunks = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            tokenizer, chunk_size=chunk_size, chunk_overlap=chunk_overlap).split_text(text)
    else:
        raise NuxError(f"unknown splitter {splitter!r}; use `sentence` or `recursive`")
    return [c.strip() for c in chunks if c.strip()]
