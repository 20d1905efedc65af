"""nux_kernel: authoring workbooks. Compile notebooks to a frozen spec, check them against the
vetted catalog, run them in-process with a stage cache, and drive it all from the ``nux`` CLI or
from ``%%nux`` cells in Jupyter (``%load_ext nux_kernel``).
"""

from __future__ import annotations

from typing import Any

from nux_kernel.builder import Workbook
from nux_kernel.cache import StageCache
from nux_kernel.catalog import Catalog, CatalogEntry, load_catalog
from nux_kernel.compiler import check_workbook, compile_notebook, compile_workbook
from nux_kernel.executor import Executor, RunResult
from nux_kernel.notebook import WorkbookSource, read_notebook

__all__ = [
    "Catalog",
    "CatalogEntry",
    "Executor",
    "RunResult",
    "StageCache",
    "Workbook",
    "WorkbookSource",
    "check_workbook",
    "compile_notebook",
    "compile_workbook",
    "load_catalog",
    "load_ipython_extension",
    "read_notebook",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nux_kernel``: ``%%nux`` cells run as stages in this kernel."""
    from nux_kernel.magics import register

    register(ipython)
