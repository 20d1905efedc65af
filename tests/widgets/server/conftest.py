"""pytest-jupyter's server fixtures, kept to this folder: they start and clean up a Jupyter
server (with the NUX extension enabled) around every test here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

from tests.widgets.conftest import build_workbook


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nux_widgets": True}}}


@pytest.fixture
def workbook(jp_root_dir: Path) -> Path:
    return build_workbook(jp_root_dir / "books")
