"""Fixtures for the JupyterLab extension's tests: small workbooks built with the `Workbook`
builder, a real `jupyter lab` on 127.0.0.1 and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nux_kernel import Workbook


def build_workbook(folder: Path, name: str = "shout") -> Path:
    """clean -> shout -> answer (text.template): two code stages and a template stage."""
    wb = Workbook(name, inputs={"question": "string"}, output="answer", base_dir=folder)
    wb.code("clean", "def clean(question: str) -> str:\n    return question.strip()\n")
    wb.code("shout", "def shout(clean: str, *, times: int = 2) -> str:\n"
                     "    return clean.upper() * times\n", tune={"times": {"int": [1, 3]}})
    wb.template("answer", inputs=["clean", "shout"], template="Q: {clean}\nA: {shout}")
    return wb.save(folder / f"{name}.ipynb")



PREP = "def prep(question: str) -> str:\n    return question.strip()\n"
ANSWER = ("def answer(prep: str, *, k: int = 0, mode: str = 'a') -> str:\n"
          "    return f'{prep}|{k}|{mode}'\n")
CLOSENESS = ("def closeness(answer: str) -> float:\n"
             "    k = int(answer.split('|')[1])\n"
             "    return max(0.0, 1 - abs(k - 7) / 10)\n")


def build_knob(folder: Path, acceptance: dict[str, float] | None = None) -> Path:
    """A chain whose score peaks at k=7, with a test bank and a metric criterion."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bank.jsonl").write_text("".join(
        json.dumps({"inputs": {"question": f"q{i}"}}) + "\n" for i in range(4)))
    wb = Workbook("knob", inputs={"question": "string"}, output="answer",
                  criteria=[{"type": "metric", "name": "close", "stage": "closeness"}],
                  acceptance=acceptance, test_bank="bank.jsonl", base_dir=folder)
    wb.code("prep", PREP)
    wb.code("answer", ANSWER, tune={"k": {"int": [0, 10]}, "mode": {"choice": ["a", "b"]}})
    wb.code("closeness", CLOSENESS)
    return wb.save(folder / "knob.ipynb")


CHROMIUM = Path("/usr/bin/chromium")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RESULTS = Path(__file__).resolve().parents[2] / "widgets" / "ui-tests" / "test-results"


# Two handbook documents: enough for the flagship to answer a question, quick to ingest.
FLAGSHIP_CORPUS = ("office-tallinn.md", "annual-leave.md")


def copy_flagship(folder: Path, corpus: tuple[str, ...]) -> Path:
    """The flagship rag_qa workbooks with a part of their corpus (nothing ingested yet)."""
    source = EXAMPLES / "rag_qa"
    folder.mkdir(parents=True)
    for name in ("rag_qa.ipynb", "ingest.ipynb", "cases.jsonl"):
        shutil.copy(source / name, folder / name)
    shutil.copytree(source / "prompts", folder / "prompts")
    (folder / "corpus").mkdir()
    for name in corpus:
        shutil.copy(source / "corpus" / name, folder / "corpus" / name)
    return folder


@dataclass
class Lab:
    """A real `jupyter lab` on 127.0.0.1, serving ``root``."""

    url: str
    token: str
    root: Path

    def page_url(self, path: str) -> str:
        return f"{self.url}lab/tree/{path}?token={self.token}&reset"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab with the installed extension, its own config and settings folders."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    build_workbook(root / "books")
    build_knob(root / "knob")
    copy_flagship(root / "rag_qa", corpus=FLAGSHIP_CORPUS)
    copy_flagship(root / "rag_qa_empty", corpus=())
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(base / "config"),
           "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "HOME": str(base / "home")}
    (base / "home").mkdir()
    log = (base / "lab.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.user_settings_dir={base / 'settings'}",
         f"--LabApp.workspaces_dir={base / 'workspaces'}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.allow_root=True",
         "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {(base / 'lab.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}api/status?token={token}", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("jupyter lab did not start in 90 s") from None
                time.sleep(0.3)
        yield Lab(url=url, token=token, root=root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(lab: Lab) -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `make system-deps` (scripts/system-deps.sh)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Path:
    """Where a browser test saves its screenshots: widgets/ui-tests/test-results/<test>/."""
    folder = RESULTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
