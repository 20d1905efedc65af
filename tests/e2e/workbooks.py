"""The workbooks NUX ships: every template and example, where it lives and how to prepare it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
EXAMPLES = ROOT / "examples"


@dataclass(frozen=True)
class Shipped:
    """One shipped workbook: its folder, its notebook, the batch workbook that ingests its
    documents (if any) and the catalog components it relies on."""

    name: str
    folder: Path
    notebook: str
    ingest: str | None = None
    components: tuple[str, ...] = field(default=())

    @property
    def path(self) -> Path:
        return self.folder / self.notebook

    def copy_to(self, target: Path) -> Path:
        """Copy the folder (without run state) and return the copied notebook."""
        shutil.copytree(self.folder, target,
                        ignore=shutil.ignore_patterns(".nux", "__pycache__", "demo.sh"))
        return target / self.notebook


SHIPPED = (
    Shipped("rag-qa", TEMPLATES / "rag-qa", "rag_qa.ipynb", "ingest.ipynb",
            ("qdrant.ingest", "qdrant.search", "llm.local/gemma-3-270m")),
    Shipped("extract-json", TEMPLATES / "extract-json", "extract_json.ipynb",
            components=("llm.local/gemma-3-270m",)),
    Shipped("classify-route", TEMPLATES / "classify-route", "classify_route.ipynb",
            components=("embed.local/minilm", "llm.local/gemma-3-270m")),
    Shipped("summarize", TEMPLATES / "summarize", "summarize.ipynb",
            components=("llm.local/gemma-3-270m",)),
    Shipped("sql-qa", TEMPLATES / "sql-qa", "sql_qa.ipynb",
            components=("sql.query", "llm.local/gemma-3-270m")),
    Shipped("examples/rag_qa", EXAMPLES / "rag_qa", "rag_qa.ipynb", "ingest.ipynb",
            ("qdrant.ingest", "qdrant.search", "llm.local/gemma-3-270m")),
)
TEMPLATE_NAMES = tuple(s.name for s in SHIPPED if s.folder.parent == TEMPLATES)
INGEST_NOTEBOOKS = tuple(s.folder / s.ingest for s in SHIPPED if s.ingest)
