"""Workbooks the export tests compile: built with `Workbook`, or the shipped templates."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nux_kernel import Workbook, compile_notebook
from nux_kernel.datasources import WorkbookSources, find_sources
from nux_runtime.spec import WorkbookSpec

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "templates"
# Workbook folders with their data: a served notebook, its ingest notebook, the documents.
ASSETS = Path(__file__).resolve().parent / "assets"
Exportable = WorkbookSpec | tuple[WorkbookSpec, WorkbookSources]

CLEAN = "def clean(question: str) -> str:\n    return question.strip()\n"
SHOUT = (
    "def shout(clean: str, *, times: int = 2) -> str:\n"
    "    return (clean.upper() + '!') * times\n"
)


def faq(base_dir: Path | None = None) -> Workbook:
    """Code and text.template stages, a tunable param, a test bank that passes."""
    wb = Workbook("faq-bot", inputs={"question": "string"}, output="answer",
                  description="Answers a question by shouting it back.",
                  criteria=[{"name": "has_q", "type": "contains", "value": "Q:"}],
                  acceptance={"pass_rate": 1.0}, test_bank="cases.jsonl", base_dir=base_dir)
    wb.code("clean", CLEAN)
    wb.code("shout", SHOUT, tune={"times": {"int": [1, 3]}},
            scale={"min_replicas": 1, "max_replicas": 3})
    wb.template("answer", inputs=["clean", "shout"], template="Q: {clean}\nA: {shout}",
                resources={"num_cpus": 1, "memory_mb": 512})
    return wb


def gpu(base_dir: Path | None = None) -> Workbook:
    """One stage needs a GPU (and asks to scale to zero, which a GPU stage does not)."""
    wb = Workbook("gpu-bot", inputs={"question": "string"}, output="answer", base_dir=base_dir)
    wb.code("clean", CLEAN, resources={"num_gpus": 1},
            scale={"min_replicas": 0, "max_replicas": 2})
    wb.template("answer", inputs=["clean"], template="Q: {clean}")
    return wb


def rag(base_dir: Path | None = None) -> Workbook:
    """Retrieval from a Qdrant collection: production points it at a Qdrant server."""
    wb = Workbook("rag-bot", inputs={"question": "string"}, output="answer", base_dir=base_dir)
    wb.data("retrieve", uses="qdrant.search", inputs=["question"],
            params={"collection": "handbook", "top_k": 2})
    wb.code("context", "def context(retrieve: list) -> str:\n"
                       "    return ' '.join(hit['text'] for hit in retrieve)\n")
    wb.template("answer", inputs=["question", "context"],
                template="Context: {context}\nQ: {question}\nA:")
    return wb


def scored(base_dir: Path | None = None) -> Workbook:
    """A chain scored by metric cells: ``gold_answer`` reads the ``expected`` input (fed from the
    test bank), ``score_close`` reads it and the answer, ``score_long`` reads the answer and the
    ``question`` the chain reads too. Only ``clean`` and ``answer`` serve a request."""
    wb = Workbook("scored-bot", inputs={"question": "string", "expected": "string"},
                  output="answer", base_dir=base_dir, test_bank="cases.jsonl",
                  criteria=[{"type": "metric", "name": "close", "stage": "score_close"},
                            {"type": "metric", "name": "long", "stage": "score_long"},
                            {"type": "contains", "name": "has_a", "value": "A:"}],
                  acceptance={"close.mean": 0.5})
    wb.code("clean", CLEAN)
    wb.code("answer", "def answer(clean: str) -> str:\n    return 'A: ' + clean\n")
    wb.code("gold_answer", "def gold_answer(expected: str) -> str:\n"
                           "    return expected.strip().lower()\n")
    wb.code("score_close", "def score_close(answer: str, gold_answer: str) -> float:\n"
                           "    return 1.0 if gold_answer in answer.lower() else 0.0\n")
    wb.code("score_long", "def score_long(answer: str, question: str) -> bool:\n"
                          "    return len(answer) > len(question)\n")
    return wb


def template(name: str) -> Callable[[], WorkbookSpec]:
    def compile_template() -> WorkbookSpec:
        return compile_notebook(next((TEMPLATES / name).glob("*.ipynb")))

    return compile_template


def notebook(path: Path) -> tuple[WorkbookSpec, WorkbookSources]:
    """A saved workbook and what the export finds beside it (its ingest workbooks, files)."""
    spec = compile_notebook(path)
    return spec, find_sources(path, spec)


def rag_bot() -> tuple[WorkbookSpec, WorkbookSources]:
    """``rag()`` saved in tests/exporters/assets/rag-bot/ beside ``ingest.ipynb`` and its
    ``corpus/`` (two documents)."""
    return notebook(ASSETS / "rag-bot" / "rag.ipynb")


def built(name: str) -> tuple[WorkbookSpec, WorkbookSources | None]:
    """The spec of a ``GOLDEN`` workbook and its sources (None: built in Python, no data)."""
    made = GOLDEN[name]()
    return made if isinstance(made, tuple) else (made, None)


# The exported tree of each of these is held in tests/exporters/golden/<name>/.
# A new template is one more line here (then NUX_UPDATE_GOLDEN=1 writes its tree).
GOLDEN: dict[str, Callable[[], Exportable]] = {
    "faq-bot": lambda: faq().compile(),
    "gpu-bot": lambda: gpu().compile(),
    "rag-bot": rag_bot,
    "sql-qa": lambda: notebook(TEMPLATES / "sql-qa" / "sql_qa.ipynb"),
    "classify-route": template("classify-route"),
    "extract-json": template("extract-json"),
    "summarize": template("summarize"),
}
