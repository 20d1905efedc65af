"""Fixtures for the JupyterLab extension's tests: pytest-jupyter's server fixtures (kept to this
folder: they clean up a Jupyter server after every test) and small workbooks built with the
`Workbook` builder inside the server's root folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

from nux_kernel import Workbook


def build_workbook(folder: Path, name: str = "shout") -> Path:
    """clean -> shout -> answer (text.template): two code stages and a template stage."""
    wb = Workbook(name, inputs={"question": "string"}, output="answer", base_dir=folder)
    wb.code("clean", "def clean(question: str) -> str:\n    return question.strip()\n")
    wb.code("shout", "def shout(clean: str, *, times: int = 2) -> str:\n"
                     "    return clean.upper() * times\n", tune={"times": {"int": [1, 3]}})
    wb.template("answer", inputs=["clean", "shout"], template="Q: {clean}\nA: {shout}")
    return wb.save(folder / f"{name}.ipynb")


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    return {"ServerApp": {"jpserver_extensions": {"nux_widgets": True}}}


@pytest.fixture
def workbook(jp_root_dir: Path) -> Path:
    return build_workbook(jp_root_dir / "books")
