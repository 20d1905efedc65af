"""Tuning quality on the held-out part of the flagship's bank, and against DSPy.

The flagship ``examples/rag_qa`` (retrieve from the ingested handbook, build the context, answer
with gemma-3-270m, a base model prompted with few-shot examples) is copied into a temporary
folder and its handbook ingested there. Its bank holds 40 cases, 10 of them ``split: holdout``:
``nux tune`` searches on the other 30 and scores its best trial on those 10 once, at the end.
Every figure below is the pass rate of the ``correct`` criterion (the expected text appears in
the answer, ignoring case) on those 10 held-out cases, all measured in the same run:

- the workbook as shipped (what ``nux eval`` reports for the held-out part);
- after ``nux tune`` at its default budget (20 trials, default objectives and pruning) over the
  cells' own ``tune:`` entries, the held-out figure the study records;
- the same tune with few-shot demos (``few_shot: {demos: [0, 4]}``) and the ingest's chunking
  (``chunk_size``, ``chunk_overlap``, ``splitter`` in ``ingest.ipynb``) added to the search space,
  or why it could not run;
- the ceiling: the tuned context and answer stages given, for each held-out case, the corpus
  document that holds the expected answer (cut by the context stage as it cuts retrieved
  chunks), so the figure loses nothing to retrieval; tuned / ceiling should be at least 0.85;
- DSPy on the same chain, model and split: ``benchmarks/dspy_side.py`` in its own virtualenv
  (``build/bench-venvs/dspy``, created here on first use), gemma served on loopback by
  llama-cpp-python's OpenAI-compatible server, ``BootstrapFewShotWithRandomSearch`` on the
  tuning part at the model-call budget NUX's tune used, then scored on the held-out part.

Model calls are counted where the model runs: NUX's as executions of the ``llm.local`` component
(a stage-cache hit is no call), DSPy's as completions the server answered (DSPy's in-memory cache
on, its disk cache off, so no earlier run answers for it). The wall-time ratio of NUX tuning to a
hand-written Optuna loop is ``bench_tune``'s.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml

from benchmarks.bench_tune import flagship
from benchmarks.report import Row
from nux_kernel.compiler import compile_notebook
from nux_kernel.evaluate import evaluate_workbook, resolve_bank
from nux_kernel.evaluate.bank import Case, holdout_part
from nux_kernel.executor import Executor
from nux_kernel.tune import apply_params, tune_workbook
from nux_kernel.tune.storage import record
from nux_runtime.components.documents import find_documents, load_text
from nux_runtime.errors import NuxError
from nux_runtime.spec import WorkbookSpec

TOPIC = "heldout"
SEED = 7
TRIALS = 20  # `nux tune`'s default budget
RATIO_GOAL = 0.85
ROOT = Path(__file__).resolve().parent.parent
DSPY_VENV = ROOT / "build" / "bench-venvs" / "dspy"
DSPY_VERSION = "3.4.1"
# what DSPy's install may never pull: torch or a CUDA build (an impossible version: resolving
# fails instead)
DSPY_CONSTRAINTS = ("torch<0", "triton<0", "nvidia-cuda-runtime-cu12<0", "nvidia-cublas-cu12<0")
# DSPy's adapters write field markers around the answer ("[[ ## answer ## ]]\n...\n\n[[ ## completed
# ## ]]"), so its calls need more than the flagship's one line; they stop at the closing marker.
# A base model is a completion model: DSPy's "text" model type sends one prompt, as NUX does.
DSPY_MAX_TOKENS = 40
DSPY_STOP = ["[[ ## completed ## ]]"]
DSPY_MODEL_TYPE = "text"
# On 2 shared cores a DSPy call (its prompt spells out the signature) takes tens of seconds: the
# optimizer stops starting candidate programs after this, whatever is left of its budget
DSPY_TIME_CAP_S = float(os.environ.get("NUX_BENCH_DSPY_CAP_S", "1200"))
MODEL_ALIAS = "gemma-3-270m"


def _log(message: str) -> None:
    print(f"[heldout] {message}", file=sys.stderr, flush=True)


# -- the copy's notebooks, edited ---------------------------------------------------------

def _edit_cell(notebook: Path, cell_id: str, edit: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite a ``%%nux`` YAML cell of ``notebook``: its header kept, its body edited."""
    raw = json.loads(notebook.read_text(encoding="utf-8"))
    cell = next(c for c in raw["cells"] if c.get("id") == cell_id)
    text = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    header, _, body = text.partition("\n")
    data = yaml.safe_load(body) or {}
    edit(data)
    cell["source"] = header + "\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    notebook.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


# -- counting model calls -------------------------------------------------------------------

@dataclass
class ModelCalls:
    """Completions of the local model (``llm.local`` executions) while counting."""

    count: int = 0
    marks: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self) -> None:
        with self._lock:
            self.count += 1


@contextlib.contextmanager
def counting_model_calls() -> Iterator[ModelCalls]:
    """Count every call into the ``llm.local`` component (the stage cache answers the rest)."""
    from nux_runtime.components.llm_local import LocalLLMStage

    calls = ModelCalls()
    original_call, original_stream = LocalLLMStage.__call__, LocalLLMStage.stream

    def call(self: LocalLLMStage, inputs: Mapping[str, Any]) -> Any:
        calls.add()
        return original_call(self, inputs)

    def stream(self: LocalLLMStage, inputs: Mapping[str, Any]) -> Any:
        calls.add()
        return original_stream(self, inputs)

    setattr(LocalLLMStage, "__call__", call)  # noqa: B010 (the class attribute, not an instance's)
    setattr(LocalLLMStage, "stream", stream)  # noqa: B010
    try:
        yield calls
    finally:
        setattr(LocalLLMStage, "__call__", original_call)  # noqa: B010
        setattr(LocalLLMStage, "stream", original_stream)  # noqa: B010


# -- NUX ------------------------------------------------------------------------------------

def _holdout_rate(report_summary: Mapping[str, Any]) -> float:
    return float(report_summary["splits"]["holdout"]["pass_rate"])


@dataclass
class Tuned:
    """What one ``nux tune`` run gave."""

    holdout: dict[str, Any]
    overrides: dict[str, dict[str, Any]]
    params: list[str]
    tuning_calls: int
    holdout_calls: int
    wall_s: float


def _notebook_arg(notebook: Path) -> dict[str, Any]:
    """``notebook=`` where ``tune_workbook`` takes it (it finds the ingest workbooks by it), as
    ``nux tune`` passes the notebook it compiled."""
    return ({"notebook": notebook}
            if "notebook" in inspect.signature(tune_workbook).parameters else {})


def _tune(spec: WorkbookSpec, base: Path, name: str) -> Tuned:
    """``nux tune`` at its defaults through the CLI's own entry point; the calls it made."""
    shutil.rmtree(base / ".nux" / "cache", ignore_errors=True)  # no answer from an earlier row
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with counting_model_calls() as calls:

        def on_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            calls.marks["trials"] = calls.count
            _log(f"{name}: trial {trial.number} {trial.state.name.lower()} "
                 f"{trial.values or ''} ({calls.count} model calls)")

        start = time.perf_counter()
        study = tune_workbook(spec, base_dir=base, trials=TRIALS, seed=SEED,
                              storage=f"sqlite:///{base / '.nux' / 'bench-heldout.db'}",
                              study_name=f"{name}-{time.time_ns()}", on_trial=on_trial,
                              **_notebook_arg(base / "rag_qa.ipynb"))
        wall = time.perf_counter() - start
    held = study.user_attrs.get("holdout")
    if not isinstance(held, dict):
        raise RuntimeError("the study recorded no held-out figure")
    best = study.trials[int(held["trial"])]
    params = sorted({p for t in study.trials for p in t.params})
    tuning = calls.marks.get("trials", 0)
    return Tuned(holdout=held, overrides=dict(record(best).get("overrides", {})),
                 params=params, tuning_calls=tuning, holdout_calls=calls.count - tuning,
                 wall_s=wall)


def _with_search_space(base: Path) -> None:
    """Few-shot demos on the answer cell, chunking on the ingest cell: the tune's new space."""

    def answer(data: dict[str, Any]) -> None:
        data.setdefault("tune", {})["few_shot"] = {"demos": [0, 4]}

    def ingest(data: dict[str, Any]) -> None:
        data.setdefault("tune", {}).update({
            "chunk_size": {"int": [64, 256], "step": 64},
            "chunk_overlap": {"int": [0, 32], "step": 16},
            "splitter": {"choice": ["sentence", "recursive"]}})

    _edit_cell(base / "rag_qa.ipynb", "answer", answer)
    _edit_cell(base / "ingest.ipynb", "ingest", ingest)


# -- the ceiling ----------------------------------------------------------------------------

GOLD_RETRIEVE = (
    "%%nux code retrieve\n"
    "def retrieve(document: str) -> list[dict]:\n"
    "    return [{\"text\": document}]\n")


def gold_document(question: str, expected: str, documents: Mapping[str, str]) -> str:
    """The name of the corpus document that holds ``expected``: of those that do, the one
    sharing most words with the question (ties: the first name)."""
    holders = [n for n, text in documents.items() if expected.casefold() in text.casefold()]
    if not holders:
        raise ValueError(f"no corpus document holds {expected!r}")
    words = {w.strip("?.,").casefold() for w in question.split() if len(w) > 3}

    def overlap(name: str) -> int:
        hay = (name + " " + documents[name]).casefold()
        return sum(w in hay for w in words)

    return max(sorted(holders), key=overlap)


def _ceiling(base: Path, overrides: Mapping[str, Mapping[str, Any]],
             cases: list[Case]) -> tuple[float, dict[str, str]]:
    """The held-out pass rate with the gold document as the only retrieved chunk."""
    documents = {d.path.name: load_text(d.path) for d in find_documents(base / "corpus")}
    notebook = base / "ceiling.ipynb"
    raw = json.loads((base / "rag_qa.ipynb").read_text(encoding="utf-8"))
    raw["metadata"]["nux"]["inputs"]["document"] = {"type": "string"}
    raw["metadata"]["nux"]["name"] = "rag-qa-ceiling"
    cell = next(c for c in raw["cells"] if c.get("id") == "retrieve")
    cell["source"] = GOLD_RETRIEVE
    notebook.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    spec = apply_params(compile_notebook(notebook),
                        {k: dict(v) for k, v in overrides.items() if k != "retrieve"})
    chosen = {c.id: gold_document(str(c.inputs["question"]), str(c.expected), documents)
              for c in cases}
    gold = [{"id": c.id, "inputs": {**c.inputs, "document": documents[chosen[c.id]]},
             "expected": c.expected, "split": "tune"} for c in cases]
    report = evaluate_workbook(spec, base_dir=base, cases=gold, cache=False)
    return float(report.summary["pass_rate"]), chosen


# -- DSPy -----------------------------------------------------------------------------------

def _dspy_python() -> Path:
    """DSPy's own virtualenv (created and installed on first use): its interpreter."""
    python = DSPY_VENV / "bin" / "python"
    probe = [str(python), "-c", f"import dspy; assert dspy.__version__ == {DSPY_VERSION!r}"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    _log(f"installing dspy {DSPY_VERSION} into {DSPY_VENV}")
    DSPY_VENV.parent.mkdir(parents=True, exist_ok=True)
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--clear", str(DSPY_VENV)], check=True)
    constraints = DSPY_VENV / "constraints.txt"
    constraints.write_text("\n".join(DSPY_CONSTRAINTS) + "\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", f"dspy=={DSPY_VERSION}",
                           "--constraint", str(constraints)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip install dspy=={DSPY_VERSION} failed: {done.stderr[-500:]}")
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_counting(port: int, api_key: str) -> None:
    """llama-cpp-python's OpenAI-compatible server for gemma-3-270m, counting the completions
    it answers (``GET /bench/completions``); runs until killed."""
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from nux_runtime.components.llm_local import DEFAULT_N_CTX, model_file

    app = create_app(server_settings=ServerSettings(host="127.0.0.1", port=port,
                                                    api_key=api_key),
                     model_settings=[ModelSettings(model=str(model_file()),
                                                   model_alias=MODEL_ALIAS, n_ctx=DEFAULT_N_CTX,
                                                   verbose=False)])
    answered = {"completions": 0}

    async def count(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        if request.url.path.endswith("completions") and response.status_code == 200:
            answered["completions"] += 1
        return response

    async def completions() -> JSONResponse:
        return JSONResponse(answered)

    app.middleware("http")(count)
    app.add_api_route("/bench/completions", completions, methods=["GET"])

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


@contextlib.contextmanager
def counting_server(log: Path) -> Iterator[tuple[str, str]]:
    """The counting server on a free loopback port: (base URL, API key)."""
    import httpx

    port, key = _free_port(), secrets.token_hex(16)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_heldout", "serve",
                                 str(port), key], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("llama_cpp.server exited: "
                                       + log.read_text(errors="replace")[-1000:])
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{base_url}/bench/completions", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start within 120 s")
                time.sleep(0.3)
            yield base_url, key
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _contexts(spec: WorkbookSpec, base: Path, cases: list[Case]) -> dict[str, str]:
    """What the shipped retrieve and context stages hand the answer stage, per question."""
    executor = Executor(spec, base_dir=base, cache=False)
    try:
        return {str(c.inputs["question"]): str(executor.run(
            c.inputs, targets=["context"]).walk.outcomes["context"].value) for c in cases}
    finally:
        executor.close()


def _dspy(spec: WorkbookSpec, base: Path, cases: list[Case], budget: int) -> dict[str, Any]:
    """DSPy's run in its own venv: its result, or ``{"ok": False, "error": ...}``."""
    try:
        python = _dspy_python()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        return {"ok": False, "error": f"no DSPy virtualenv: {exc}"}
    contexts = _contexts(spec, base, cases)
    answer = spec.stage("answer").params
    job_path, result_path = base / "dspy-job.json", base / "dspy-result.json"
    with counting_server(base / "llm-server.log") as (base_url, key):
        job = {"model": MODEL_ALIAS, "base_url": base_url, "api_key": key,
               "count_url": f"{base_url}/bench/completions", "model_type": DSPY_MODEL_TYPE,
               "temperature": float(answer.get("temperature", 0.0)),
               "max_tokens": DSPY_MAX_TOKENS, "stop": DSPY_STOP, "budget": budget,
               "time_cap_s": DSPY_TIME_CAP_S,
               "max_bootstrapped_demos": 4, "max_labeled_demos": 4, "max_candidates": 16,
               "cases": [{"id": c.id, "question": c.inputs["question"],
                          "expected": str(c.expected), "split": c.split,
                          "context": contexts[str(c.inputs["question"])]} for c in cases]}
        job_path.write_text(json.dumps(job))
        with (base / "dspy-side.log").open("wb") as out:
            subprocess.run([str(python), str(ROOT / "benchmarks" / "dspy_side.py"),
                            str(job_path), str(result_path)], stdout=out,
                           stderr=subprocess.STDOUT, check=False, timeout=3 * 3600,
                           # the bundled model-price map: DSPy fetches none at run time
                           env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "true"})
    if not result_path.exists():
        tail = (base / "dspy-side.log").read_text(errors="replace")[-500:]
        return {"ok": False, "error": f"dspy_side.py wrote no result: {tail}"}
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def _dspy_unparsed(result: Mapping[str, Any]) -> str | None:
    """Why DSPy could not drive the model, when no answer of the run could be parsed."""
    if not result.get("ok"):
        return None
    tuning, held = result["parsed_while_tuning"], result["parsed_held_out"]
    if tuning["ok"] or held["ok"]:
        return None
    sample = " | ".join(repr(e[:80]) for e in result.get("unparsed_examples", [])[:2])
    return (f"its ChatAdapter parsed none of the model's {tuning['failed'] + held['failed']} "
            f"completions (AdapterParseError: no `[[ ## answer ## ]]` field; the base model "
            f"continues the prompt instead, e.g. {sample}); "
            f"{result['tuning_calls']} calls while optimizing, stopped: {result['stopped']}")


# -- rows -----------------------------------------------------------------------------------

def _missing(name: str, why: str, unit: str = "") -> Row:
    """A row that could not be measured: the reason in place of a figure."""
    return Row(TOPIC, f"{name} — not measured: {why}", float("nan"), unit)


def run() -> list[Row]:
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        spec, base = flagship(Path(tmp))  # the example copied, its handbook ingested
        cases = resolve_bank(spec, base)
        held = holdout_part(cases)
        label = f"held-out pass rate ({len(held)} of {len(cases)} cases)"

        # a) the workbook as shipped
        shipped = evaluate_workbook(spec, base_dir=base, cache=False)
        shipped_rate = _holdout_rate(shipped.summary)
        _log(f"shipped: held-out {shipped_rate}, tuning part "
             f"{shipped.summary['splits']['tune']['pass_rate']}")
        rows.append(Row(TOPIC, f"{label}: the workbook as shipped (nux eval)", shipped_rate,
                        "", goal="reported"))

        # b) nux tune at its default budget over the cells' own tune: entries
        tuned = _tune(spec, base, "params")
        tuned_rate = float(tuned.holdout["pass_rate"])
        _log(f"params only: {tuned.holdout} over {tuned.params}, best {tuned.overrides}; "
             f"{tuned.tuning_calls} model calls tuning, {tuned.holdout_calls} held-out; "
             f"{tuned.wall_s:.1f} s")
        rows.append(Row(TOPIC, f"{label}: nux tune, {TRIALS} trials, the cells' params",
                        tuned_rate, "", "the workbook as shipped", shipped_rate, "reported"))
        rows.append(Row(TOPIC, f"nux tune, {TRIALS} trials, the cells' params: model calls "
                        "while tuning", tuned.tuning_calls, "calls", goal="reported"))

        # d) the ceiling: the tuned chain given the document that holds the answer
        ceiling, chosen = _ceiling(base, tuned.overrides, held)
        _log(f"ceiling {ceiling} with {chosen}")
        rows.append(Row(TOPIC, f"{label}: ceiling (the tuned answer stage given the document "
                        "that holds the answer)", ceiling, "", "the workbook as shipped",
                        shipped_rate, "reported"))
        rows.append(Row(TOPIC, f"{label}: nux tune (cells' params) / ceiling", tuned_rate, "",
                        "ceiling", ceiling, f">= {RATIO_GOAL} of the ceiling",
                        ceiling > 0 and tuned_rate / ceiling >= RATIO_GOAL))

        # f) DSPy on the same chain, model and split, at NUX's budget of model calls
        result = _dspy(spec, base, cases, tuned.tuning_calls)
        _log(f"dspy: {json.dumps({k: v for k, v in result.items() if k != 'traceback'})}")
        unparsed = _dspy_unparsed(result)
        if unparsed:
            rows.append(_missing(f"{label}: DSPy", unparsed))
        elif result.get("ok"):
            ran = (f"{len(result['candidates'])} candidate programs, stopped: "
                   f"{result['stopped']}; answers parsed "
                   f"{result['parsed_while_tuning']['ok'] + result['parsed_held_out']['ok']}, "
                   f"unparsed {result['parsed_while_tuning']['failed']}"
                   f" + {result['parsed_held_out']['failed']}")
            rows.append(Row(TOPIC, f"{label}: DSPy BootstrapFewShotWithRandomSearch ({ran})",
                            float(result["holdout_pass_rate"]), "",
                            "nux tune (cells' params)", tuned_rate, "reported"))
            rows.append(Row(TOPIC, "DSPy BootstrapFewShotWithRandomSearch: model calls while "
                            "optimizing", float(result["tuning_calls"]), "calls",
                            "nux tune (cells' params)", tuned.tuning_calls,
                            "the same budget (within one candidate program)"))
        else:
            rows.append(_missing(f"{label}: DSPy", str(result.get("error"))))

        # c) demos and chunking in the search space (last: it edits the notebooks)
        rows[3:3] = _demos_and_chunking(base, label, shipped_rate, ceiling, tuned.tuning_calls)
    _log(f"wall time {time.perf_counter() - started:.0f} s")
    return rows


def _demos_and_chunking(base: Path, label: str, shipped_rate: float, ceiling: float,
                        params_calls: int) -> list[Row]:
    """Rows c): the held-out pass rate, model calls and ratio to the ceiling of a tune whose
    space adds few-shot demos and the ingest's chunking to the cells' params."""
    name = f"{label}: nux tune, {TRIALS} trials, params + few-shot demos + chunking"
    _with_search_space(base)
    try:
        compile_notebook(base / "ingest.ipynb")
        spec = compile_notebook(base / "rag_qa.ipynb")
    except NuxError as exc:
        return [_missing(name, "compiling rejects the tune entries: " + "; ".join(
            p.message for p in exc.problems)[:300])]
    try:
        tuned = _tune(spec, base, "demos-chunking")
    except NuxError as exc:
        return [_missing(name, "nux tune refused: " + "; ".join(
            p.message for p in exc.problems)[:300])]
    searched = " ".join(tuned.params)
    lacking = [what for what, key in (("few-shot demos", "few_shot"), ("chunking", "chunk_"))
               if key not in searched]
    _log(f"demos+chunking: {tuned.holdout} over {tuned.params}, best {tuned.overrides}; "
         f"{tuned.tuning_calls} model calls tuning; {tuned.wall_s:.1f} s")
    if lacking:
        return [_missing(name, f"the tune searched no {' and no '.join(lacking)} "
                         f"(its params: {', '.join(tuned.params)})")]
    rate = float(tuned.holdout["pass_rate"])
    space = "params + few-shot demos + chunking"
    return [
        Row(TOPIC, name, rate, "", "the workbook as shipped", shipped_rate, "reported"),
        Row(TOPIC, f"nux tune, {TRIALS} trials, {space}: model calls while tuning",
            tuned.tuning_calls, "calls", "nux tune (cells' params)", params_calls, "reported"),
        Row(TOPIC, f"{label}: nux tune ({space}) / ceiling", rate, "", "ceiling", ceiling,
            f">= {RATIO_GOAL} of the ceiling", ceiling > 0 and rate / ceiling >= RATIO_GOAL),
    ]


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    serve_counting(int(sys.argv[2]), sys.argv[3])
