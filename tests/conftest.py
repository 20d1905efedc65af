"""Shared test set-up. Fixtures that start real services live in tests/fixtures/, one module
per service, and are registered here."""

from __future__ import annotations

import os

from hypothesis import settings

# `make test` gates merges, so its property tests draw the same examples every run; `make fuzz`
# explores new ones (HYPOTHESIS_PROFILE=fuzz) and prints a reproducer for anything it finds.
settings.register_profile("gate", derandomize=True, database=None)
settings.register_profile("fuzz", max_examples=3000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gate"))

# Nothing in the suite may reach a model hub: every model comes from a package on disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins: list[str] = [
    "tests.fixtures.workbooks",
    "tests.fixtures.ray_serve",
    "tests.fixtures.models",
    "tests.fixtures.postgres",
    "tests.fixtures.redis",
    "tests.fixtures.llm_server",
    "tests.fixtures.export_venv",
]
