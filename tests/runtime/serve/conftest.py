"""Served workbooks for the serve tests: built with the `Workbook` builder, deployed once.

``support`` is a workbook of code and template stages that exercises every production habit
(auth, caches, retries, timeouts, fallbacks, response validation); ``chat`` answers with the local
gemma model (streaming) behind a semantic cache and a tight rate limit. Each is deployed once per
session on the shared Ray Serve and reused by every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from nux_kernel import Workbook
from nux_kernel.catalog import default_catalog_path, load_catalog
from nux_runtime.serve.auth import hash_key
from nux_runtime.spec import WorkbookSpec
from tests.fixtures.ray_serve import ServeCluster

SUPPORT_KEY = "nux-test-support-key-0001"
CHAT_KEY = "nux-test-chat-key-0001"
LIMITED_KEY = "nux-test-limited-key-0001"

# An organization catalog that also vets `time` for code cells (the slow and flaky stages).
CLEAN = '''def clean(question: str) -> str:
    return " ".join(question.split())
'''
TOPIC = '''def topic(clean: str) -> str:
    return "billing" if "refund" in clean.lower() else "general"
'''
LOOKUP = '''import time

_calls = {"flaky": 0}


def lookup(clean: str, tier: str) -> str:
    if "explode" in clean:
        raise ValueError("the lookup table has no row for this question")
    if clean.startswith("flaky"):
        _calls["flaky"] += 1
        if _calls["flaky"] % 2 == 1:
            raise ConnectionError("the lookup service reset the connection")
    if clean.startswith("slow"):
        time.sleep(2.5)
    return f"{tier}:{len(clean.split())} words"
'''
CANNED = '''def canned(clean: str) -> str:
    return "no lookup"
'''
ANSWER = '''def answer(clean: str, topic: str, lookup: str) -> str:
    if "gibberish" in clean:
        return "???"
    return f"Answer [{topic}] {clean} ({lookup})"
'''
APOLOGY = '''def apology(clean: str) -> str:
    if "crash" in clean:
        raise RuntimeError("the apology service is down")
    return f"Sorry, I cannot answer: {clean}"
'''


def support_workbook(base_dir: Path, *, answer_source: str = ANSWER,
                     name: str = "support") -> Workbook:
    wb = Workbook(
        name, base_dir=base_dir, output="answer",
        inputs={"type": "object", "required": ["question", "tier"], "properties": {
            "question": {"type": "string", "minLength": 1, "maxLength": 500},
            "tier": {"type": "string", "enum": ["free", "pro"]}}},
        criteria=[{"type": "regex", "name": "starts-well", "pattern": "^(Answer|Sorry)"}])
    wb.code("clean", CLEAN)
    wb.code("topic", TOPIC)
    wb.code("lookup", LOOKUP, retries=2, timeout_s=1.0, fallback="canned")
    wb.code("canned", CANNED)
    wb.code("answer", answer_source, fallback="apology")
    wb.code("apology", APOLOGY)
    return wb


def catalog_with_time(tmp: Path) -> Path:
    raw = yaml.safe_load(default_catalog_path().read_text())
    raw["allow_imports"] = [*raw["allow_imports"], "time"]
    path = tmp / "catalog.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def chat_workbook(base_dir: Path) -> Workbook:
    wb = Workbook("chat", base_dir=base_dir, output="reply", inputs={"question": "string"})
    wb.model("reply", uses="llm.local/gemma-3-270m", inputs=["question"],
             params={"template": "Question: {question}\nAnswer:", "max_tokens": 12,
                     "temperature": 0.0, "stop": ["\n\n"]})
    return wb


@dataclass
class Served:
    """A deployed workbook: its spec, its folder, its URL and a client with a valid key."""

    spec: WorkbookSpec
    base_dir: Path
    url: str
    key: str
    settings: dict[str, Any]

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)


def _write_keys(path: Path, *keys: str) -> Path:
    path.write_text("".join(hash_key(k) + "\n" for k in keys))
    return path


@pytest.fixture(scope="session")
def support_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return catalog_with_time(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="session")
def support(ray_serve: ServeCluster, tmp_path_factory: pytest.TempPathFactory,
            support_catalog: Path) -> Served:
    from nux_runtime.serve.app import build_app

    base = tmp_path_factory.mktemp("support")
    spec = support_workbook(base).compile(load_catalog(support_catalog))
    (base / "spec.json").write_text(spec.to_json())
    settings = {
        "spec_path": str(base / "spec.json"), "base_dir": str(base), "stage_cpus": 0.1,
        "ingress_cpus": 0.1, "auth": {"keys_file": str(_write_keys(base / "keys", SUPPORT_KEY))},
        "rate_limit": {"rate_per_s": 500, "burst": 1000}, "online_eval": {"sample_rate": 1.0},
        "log_path": str(base / "serve.log"), "request_log": str(base / "requests.jsonl"),
        "log_stages": True,
    }
    url = ray_serve.deploy(build_app(settings), "support")
    return Served(spec, base, url, SUPPORT_KEY, settings)


@pytest.fixture(scope="session")
def chat(ray_serve: ServeCluster, tmp_path_factory: pytest.TempPathFactory) -> Served:
    from nux_runtime.serve.app import build_app

    base = tmp_path_factory.mktemp("chat")
    spec = chat_workbook(base).compile()
    (base / "spec.json").write_text(spec.to_json())
    settings = {
        "spec_path": str(base / "spec.json"), "base_dir": str(base), "stage_cpus": 0.25,
        "ingress_cpus": 0.1,
        "auth": {"keys_file": str(_write_keys(base / "keys", CHAT_KEY, LIMITED_KEY))},
        "rate_limit": {"rate_per_s": 0.2, "burst": 10},
        "semantic_cache": {"enabled": True, "threshold": 0.9, "ttl_s": 600},
    }
    url = ray_serve.deploy(build_app(settings), "chat")
    return Served(spec, base, url, CHAT_KEY, settings)


@pytest.fixture
def api(support: Served) -> Iterator[httpx.Client]:
    with support.client() as client:
        yield client
