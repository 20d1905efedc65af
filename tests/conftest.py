"""Shared test set-up. Fixtures that start real services live in tests/fixtures/, one module
per service, and are registered here."""

from __future__ import annotations

import os

# Nothing in the suite may reach a model hub: every model comes from a package on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins: list[str] = [
    "tests.fixtures.workbooks",
    "tests.fixtures.ray_serve",
    "tests.fixtures.models",
    "tests.fixtures.postgres",
    "tests.fixtures.llm_server",
]
