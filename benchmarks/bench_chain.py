"""The flagship chain served over HTTP: NUX's Serve app against the same chain written by hand as
a LangChain LCEL runnable behind FastAPI.

The chain is ``examples/rag_qa`` (copied to a temporary folder; its ``ingest.ipynb`` fills the
Qdrant collection ``handbook`` there): ``retrieve`` (qdrant.search: MiniLM + the local Qdrant
store) -> ``context`` (code) -> ``answer`` (gemma-3-270m on llama-cpp-python). NUX serves the
compiled spec through ``build_app`` on a private local Ray (``start_local``), as ``nux serve``
does; the baseline is what an engineer writes the LangServe way: an LCEL runnable (the same
search, the same context function, a ``FewShotPromptTemplate`` that renders the notebook's exact
prompt, a ``RunnableLambda`` completing it) behind one FastAPI route awaiting ``chain.ainvoke``,
run by uvicorn in its own process. Both sides load the same GGUF file, the same MiniLM folder
and read the same Qdrant store and collection, with the answer stage's params; one model
instance of each on both sides (every NUX stage pinned to one replica); no answer or stage cache
on either. Threads: torch on one thread on both sides (as Ray gives the retrieve replica, whose
stage asks for one CPU); llama.cpp all CPUs for the prompt on both sides, and for generation NUX
one thread per physical core of its replica's CPUs (llama.cpp's rule) where the baseline takes
llama-cpp-python's default, half the host's CPUs (the two are the same on a host with two
hyperthreads a core).

Measured in the same run, the two sides back to back at each concurrency (1, 4, 16), on a fixed
set of the flagship bank's questions: p50/p95 latency and throughput. Before measuring, the
rendered prompts are checked identical and the answers of both sides are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from operator import itemgetter
from pathlib import Path
from typing import Any

import httpx

from benchmarks.report import Row

TOPIC = "chain"
ROOT = Path(__file__).resolve().parent.parent
#: the first questions of the flagship bank, asked in this order by every measurement
QUESTIONS = 12
#: (concurrency, requests per side), each side's requests in ROUNDS rounds
LOADS = ((1, 12), (4, 24), (16, 48))
#: rounds per concurrency, the sides alternating N L | L N | N L: drift hits both alike
ROUNDS = 3




def one_replica_each(spec: Any) -> Any:
    """``spec`` with every stage on exactly one replica (one MiniLM, one gemma: as the baseline)."""
    from nux_runtime.spec import WorkbookSpec

    data = json.loads(spec.to_json())
    for stage in data["stages"]:
        stage["scale"].update(min_replicas=1, max_replicas=1)
    return WorkbookSpec.from_json(json.dumps(data))


def baseline_config(spec: Any, folder: Path) -> dict[str, Any]:
    """What the hand-written chain is given: the notebook's values, as plain data."""
    from nux_runtime.components.llm_local import model_file
    from nux_runtime.components.template import template_text

    retrieve, context, answer = (spec.stage(s) for s in ("retrieve", "context", "answer"))
    params = answer.params
    stop = params.get("stop", ["\n"])
    return {
        "store": str(folder / ".nux" / "qdrant"),
        "collection": retrieve.params["collection"],
        "top_k": int(retrieve.params.get("top_k", 4)),
        "max_chars": int(context.params.get("max_chars", 1000)),
        "template": template_text(answer, params),
        "few_shot": list(params.get("few_shot") or []),
        "gguf": str(model_file(str(params.get("model", "gemma-3-270m")))),
        "n_ctx": int(params.get("n_ctx", 2048)),
        "completion": {"max_tokens": int(params.get("max_tokens", 64)),
                       "temperature": float(params.get("temperature", 0.0)),
                       "top_p": float(params.get("top_p", 0.95)),
                       "stop": [stop] if isinstance(stop, str) else list(stop),
                       "seed": params.get("seed")},
    }


# -- the hand-written chain: LCEL behind FastAPI ---------------------------------------------
def join_context(retrieve: list[dict[str, Any]], max_chars: int) -> str:
    """The notebook's ``context`` cell, as its author would paste it."""
    parts: list[str] = []
    used = 0
    for hit in retrieve:
        text = " ".join(str(hit["text"]).split())
        if parts and used + len(text) > max_chars:
            break
        parts.append(text[:max_chars])
        used += len(text)
    return " ".join(parts)


def few_shot_prompt(config: dict[str, Any]) -> Any:
    """The answer prompt as LangChain writes it: solved examples, then the query."""
    from langchain_core.prompts import FewShotPromptTemplate, PromptTemplate

    template = config["template"]
    return FewShotPromptTemplate(
        examples=config["few_shot"], example_separator="\n\n", prefix="", suffix=template,
        input_variables=["context", "question"],
        example_prompt=PromptTemplate.from_template(template.rstrip() + " {output}"))


def lcel_chain(config: dict[str, Any]) -> Any:
    """retrieve | context | prompt | gemma, as one LCEL runnable."""
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough
    from llama_cpp import Llama
    from sentence_transformers import SentenceTransformer

    from nux_runtime.components.embed import model_path
    from nux_runtime.components.qdrant_store import METRICS, get_client

    embedder = SentenceTransformer(str(model_path("minilm")), device="cpu",
                                   local_files_only=True)
    store = get_client(path=config["store"], read_only=True)
    llama = Llama(model_path=config["gguf"], n_ctx=config["n_ctx"], verbose=False)
    store_lock, llama_lock = threading.Lock(), threading.Lock()

    def search(question: str) -> list[dict[str, Any]]:
        vector = embedder.encode([question], normalize_embeddings=True)[0].tolist()
        with store_lock:  # the local store is one in-process object
            found = store.query_points(config["collection"], query=vector,
                                       using=METRICS["cosine"], limit=config["top_k"],
                                       with_payload=True)
        return [dict(p.payload or {}) for p in found.points]

    def complete(prompt: Any) -> str:
        with llama_lock:  # one llama.cpp context decodes one sequence at a time
            out: Any = llama.create_completion(prompt.to_string(), **config["completion"])
        return str(out["choices"][0]["text"]).strip()

    return (RunnablePassthrough.assign(retrieve=itemgetter("question") | RunnableLambda(search))
            | RunnablePassthrough.assign(context=lambda x: join_context(x["retrieve"],
                                                                        config["max_chars"]))
            | few_shot_prompt(config)
            | RunnableLambda(complete))


def serve_baseline(config_path: str, port: int) -> None:
    """The baseline's process: uvicorn serving ``POST /v1/run`` over the LCEL chain."""
    import uvicorn
    from fastapi import FastAPI

    chain = lcel_chain(json.loads(Path(config_path).read_text()))
    app = FastAPI()

    @app.post("/v1/run")
    async def run(body: dict[str, Any]) -> dict[str, Any]:
        return {"output": await chain.ainvoke({"question": body["question"]})}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- measuring ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(url: str, questions: list[str], concurrency: int, total: int
                  ) -> tuple[list[float], float, list[str]]:
    """Latencies (s), throughput (req/s) and answers of ``total`` requests, ``concurrency`` at
    a time, cycling through ``questions``."""
    latencies: list[float] = []
    answers: list[str] = [""] * total
    counter = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            t0 = time.perf_counter()
            r = await client.post("/v1/run", json={"question": questions[i % len(questions)]})
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
            answers[i] = str(r.json()["output"])

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=600,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, total / (time.perf_counter() - start), answers


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000.0


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the baseline server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the baseline server did not start")


def _check_prompts(spec: Any, config: dict[str, Any], questions: list[str]) -> None:
    """The LCEL prompt renders exactly the prompt NUX's answer stage sends to the model."""
    from nux_runtime.components.fewshot import build_prompt

    answer = spec.stage("answer")
    prompt = few_shot_prompt(config)
    for question in questions:
        inputs = {"question": question, "context": "A context line."}
        if prompt.format(**inputs) != build_prompt(answer, answer.params, inputs):
            raise RuntimeError("the LCEL prompt differs from the notebook's answer prompt")


def _compare(nux_url: str, lcel_url: str, questions: list[str]) -> list[Row]:
    rows: list[Row] = []
    nux_answers = asyncio.run(measure(nux_url, questions, 1, len(questions)))[2]  # warm both
    lcel_answers = asyncio.run(measure(lcel_url, questions, 1, len(questions)))[2]
    same = sum(a == b for a, b in zip(nux_answers, lcel_answers, strict=True))
    print(f"chain: identical answers on {same}/{len(questions)} questions", file=sys.stderr)
    fairness = "one MiniLM + one gemma each side"
    for concurrency, total in LOADS:
        nux: list[float] = []
        lcel: list[float] = []
        nux_rps: list[float] = []
        lcel_rps: list[float] = []
        for round_ in range(ROUNDS):
            sides = [(nux_url, nux, nux_rps), (lcel_url, lcel, lcel_rps)]
            for url, latencies, rates in sides[::-1] if round_ % 2 else sides:
                lat, rps, _ = asyncio.run(measure(url, questions, concurrency, total // ROUNDS))
                latencies += lat
                rates.append(rps)
        p50, b50 = _p(nux, 0.5), _p(lcel, 0.5)
        rps, brps = statistics.mean(nux_rps), statistics.mean(lcel_rps)
        name = f"rag_qa over HTTP, concurrency {concurrency}, {fairness}"
        rows += [
            Row(TOPIC, f"p50 latency, {name}", p50, "ms", "LCEL + FastAPI", b50,
                "within 1.1x", p50 <= b50 * 1.1),
            Row(TOPIC, f"p95 latency, {name}", _p(nux, 0.95), "ms", "LCEL + FastAPI",
                _p(lcel, 0.95)),
            Row(TOPIC, f"throughput, {name}", rps, "req/s", "LCEL + FastAPI", brps,
                ">= baseline", rps >= brps),
        ]
    rows.append(Row(TOPIC, f"identical answers, {len(questions)} questions", same, "answers",
                    "questions asked", len(questions), "reported"))
    return rows


def run() -> list[Row]:
    from ray import serve

    from nux_runtime.serve.app import build_app
    from nux_runtime.serve.local import start_local, stop_local

    folder = Path(tempfile.mkdtemp(prefix="nux-bench-chain-"))
    from benchmarks.bench_tune import flagship  # the copy with the handbook ingested

    spec, target = flagship(folder)
    spec = one_replica_each(spec)
    (folder / "spec.json").write_text(spec.to_json())
    config = baseline_config(spec, target)
    (folder / "lcel.json").write_text(json.dumps(config))
    bank = (target / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["inputs"]["question"] for line in bank if line.strip()]
    questions = questions[:QUESTIONS]
    _check_prompts(spec, config, questions)

    lcel_port, serve_port = free_port(), free_port()
    # torch on one thread, as Ray gives NUX's retrieve replica (its stage asks for one CPU)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    baseline = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_chain", "--serve-baseline",
         str(folder / "lcel.json"), "--port", str(lcel_port)], cwd=folder, env=env)
    try:
        start_local(8, port=serve_port)
        serve.run(build_app({"spec_path": str(folder / "spec.json"), "base_dir": str(target),
                             "rate_limit": {"enabled": False}, "cache": {"enabled": False},
                             "semantic_cache": {"enabled": False}}),
                  name="nux", route_prefix="/nux")
        lcel_url = f"http://127.0.0.1:{lcel_port}"
        _wait_ready(lcel_url, baseline)
        return _compare(f"http://127.0.0.1:{serve_port}/nux", lcel_url, questions)
    finally:
        baseline.terminate()
        baseline.wait(30)
        stop_local()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve-baseline", metavar="CONFIG", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve_baseline(args.serve_baseline, args.port)
