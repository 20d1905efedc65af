"""How a prompt reaches the local model's context so that its answer depends on it alone.

llama-cpp-python keeps the previous call's tokens in the context and evaluates only what follows
the longest prefix a new prompt shares with them. llama.cpp's arithmetic depends on how a prompt
is split into batches, so with that reuse alone the same prompt could get a different greedy
answer on another replica, in another order or in another trial. Every call into a shared model
goes through :func:`complete` (or :func:`complete_stream`), which decides what to keep and how to
split the rest so that a prompt's logits are the same whatever ran before, bit for bit:

- **Split-invariant kernels.** llama.cpp's CPU kernels take a batch's tokens in groups of
  :data:`REUSE_STEP` rows for their quantized matrix products; measured, a row's result does not
  depend on where its batch starts as long as every batch starts at a multiple of
  :data:`REUSE_STEP` and holds at least :data:`MIN_BATCH` tokens. There a prompt keeps any
  multiple of :data:`REUSE_STEP` tokens the context holds from NUX's previous call (never the
  tokens that call generated one at a time) and evaluates the rest in batches of at least
  :data:`MIN_BATCH`: about what llama-cpp-python keeps.
- **Anything else.** A prompt is evaluated in blocks of :data:`PREFILL_BLOCK` tokens from its
  start, then its final (partial) block, and keeps only whole blocks. The same split every time,
  whatever the kernels do; a shared few-shot prefix keeps only its whole blocks.

Which one a model gets is decided once per loaded model by :func:`split_invariant`, which
evaluates a fixed probe text whole and split at several points and compares the logits.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from nux_runtime.components.base import shared

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = [
    "MIN_BATCH",
    "PREFILL_BLOCK",
    "REUSE_STEP",
    "complete",
    "complete_stream",
    "prefill_state",
    "probe_logits",
    "prompt_tokens",
    "split_invariant",
]

#: With split-invariant kernels, a kept prefix is a multiple of this many tokens (the row group
#: of llama.cpp's quantized CPU matrix products) ...
REUSE_STEP = 4
#: ... and every batch evaluated holds at least this many (a batch of 4 to 7 tokens changes
#: the arithmetic).
MIN_BATCH = 8
#: Otherwise a prompt is evaluated in blocks of this many tokens from its start (a smaller block
#: costs prompt speed on CPU, a larger one keeps less of what consecutive prompts share).
PREFILL_BLOCK = 64

#: The probe :func:`split_invariant` evaluates: ordinary prose, long enough for several batches.
PROBE_TEXT = (
    "Question: How many days of annual leave does a new engineer get?\n"
    "Answer: 25 days, plus public holidays.\n\n"
    "Context: Expenses over 50 EUR need a receipt and a manager's approval within 30 days. "
    "Travel is booked through the portal; hotels up to 180 EUR a night in capital cities.\n"
    "Question: What is the hotel limit in Lisbon?\nAnswer:"
)
#: Where the probe is split, besides whole: short and long batches, starts off any block size.
PROBE_SPLITS = ((8, 20), (12, 44), (36,), (MIN_BATCH * 2, 48, 60))


class _Prefilled:
    """What NUX last left in a model's context: how many leading tokens a later call may keep,
    every token the context held when that call ended, whether the model's kernels are
    split-invariant, and the batch prompt tokens go in."""

    def __init__(self, capacity: int) -> None:
        import llama_cpp

        self.keepable = 0
        self.after: tuple[int, ...] = ()
        self.kept = 0  #: tokens the last call kept from the context (what a test can observe)
        self.invariant: bool | None = None
        self.capacity = capacity
        self.batch = llama_cpp.llama_batch_init(capacity, 0, 1)

    def decode(self, llama: Llama, tokens: Sequence[int], start: int, *,
               logits: bool = False) -> None:
        """Evaluate ``tokens`` at positions ``start``... in one batch; logits for the last one
        only when asked."""
        import llama_cpp

        batch = self.batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = logits and i == len(tokens) - 1
        if llama_cpp.llama_decode(llama.ctx, batch) != 0:
            raise RuntimeError(f"llama_decode failed on the prompt's tokens from {start}")
        llama.input_ids[start:start + len(tokens)] = tokens
        llama.n_tokens = start + len(tokens)

    def close(self) -> None:
        import llama_cpp

        llama_cpp.llama_batch_free(self.batch)


def prefill_state(llama: Llama) -> _Prefilled:
    """The record of what NUX left in ``llama``'s context (one per loaded model)."""
    return shared("llama-prefill", id(llama), lambda: _Prefilled(int(llama.n_batch)))


def prompt_tokens(llama: Llama, text: str) -> list[int]:
    """The tokens the model reads for a prompt: its BOS token, then ``text`` with the model's
    own markup (``<start_of_turn>`` and the like) read as its special tokens, as
    llama-cpp-python reads a text prompt."""
    return list(llama.tokenize(text.encode("utf-8"), add_bos=True, special=True))


def _held(llama: Llama) -> tuple[int, ...]:
    return tuple(int(t) for t in llama.input_ids[:llama.n_tokens])


def _clear(llama: Llama) -> None:
    import llama_cpp

    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
    llama.n_tokens = 0


def probe_logits(llama: Llama, splits: Sequence[int]) -> Any:
    """The last logits of :data:`PROBE_TEXT` evaluated from an empty context in batches split
    at ``splits``. Hold the model's lock; the next call keeps nothing of the probe."""
    import numpy as np
    from llama_cpp import llama_get_logits_ith

    record = prefill_state(llama)
    record.keepable, record.after = 0, ()
    tokens = prompt_tokens(llama, PROBE_TEXT)
    _clear(llama)
    bounds = [0, *splits, len(tokens)]
    for start, end in pairwise(bounds):
        record.decode(llama, tokens[start:end], start, logits=end == len(tokens))
    return np.ctypeslib.as_array(llama_get_logits_ith(llama.ctx, -1),
                                 shape=(int(llama.n_vocab()),)).copy()


def split_invariant(llama: Llama) -> bool:
    """Whether ``llama``'s kernels give a row the same result wherever its batch starts: the
    probe's last logits, evaluated whole and split at each of :data:`PROBE_SPLITS`, are
    bit-identical. Decided once per model; hold its lock."""
    import numpy as np

    record = prefill_state(llama)
    if record.invariant is None and len(prompt_tokens(llama, PROBE_TEXT)) > min(
            int(llama.n_ctx()), record.capacity):
        record.invariant = False  # a context too small for the probe: the fixed blocks
    if record.invariant is None:
        whole = probe_logits(llama, ())
        record.invariant = all(np.array_equal(probe_logits(llama, splits), whole)
                               for splits in PROBE_SPLITS)
    return record.invariant


def _batches(start: int, end: int, capacity: int) -> list[tuple[int, int]]:
    """``start``..``end`` in as few batches as ``capacity`` allows, each but the last a
    multiple of :data:`REUSE_STEP` long, none much shorter than the others."""
    length = end - start
    if length <= 0:
        return []
    pieces = -(-length // capacity)
    size = -(-length // pieces // REUSE_STEP) * REUSE_STEP
    bounds = [*range(start, end, size), end]
    return list(pairwise(bounds))


def _prefill(llama: Llama, tokens: Sequence[int]) -> _Prefilled:
    """Evaluate ``tokens`` up to their final batch (no logits), keeping what the context holds
    from NUX's previous call where that gives the same logits; llama-cpp-python evaluates the
    final batch. Call it holding the model's lock."""
    import llama_cpp

    n_ctx = int(llama.n_ctx())
    if len(tokens) > n_ctx:  # llama-cpp-python's own check, before anything is evaluated
        raise ValueError(f"Requested tokens ({len(tokens)}) exceed context window of {n_ctx}")
    invariant = split_invariant(llama)
    record = prefill_state(llama)
    held = _held(llama)
    keepable = record.keepable if held == record.after else 0  # another caller since: none
    common = int(llama.longest_token_prefix(held, tokens))  # llama-cpp-python's own count
    n = len(tokens)
    if invariant:
        step, final = REUSE_STEP, max(0, n - MIN_BATCH) // REUSE_STEP * REUSE_STEP
    else:  # the final block starts at the last multiple of the block below the end
        step, final = PREFILL_BLOCK, (n - 1) // PREFILL_BLOCK * PREFILL_BLOCK
    keep = min(common, keepable, final) // step * step
    record.keepable, record.after, record.kept = 0, (), 0
    memory = llama_cpp.llama_get_memory(llama.ctx)
    if not llama_cpp.llama_memory_seq_rm(memory, -1, keep, -1):  # a model that cannot drop a part
        _clear(llama)
        keep = 0
    llama.n_tokens = keep
    if invariant:
        if final - keep < MIN_BATCH:  # too short for a batch of its own: the final batch takes it
            final = keep
        spans = _batches(keep, final, record.capacity)
    else:
        spans = [(start, start + PREFILL_BLOCK) for start in range(keep, final, PREFILL_BLOCK)]
    for start, end in spans:
        record.decode(llama, tokens[start:end], start)
    record.kept = keep
    # what the next call may keep: the rows evaluated in whole row groups of batches long
    # enough (not the final batch's last few rows, nor the generated tokens, evaluated one at
    # a time), or the whole blocks
    if invariant and n - final >= MIN_BATCH:
        record.keepable = n // REUSE_STEP * REUSE_STEP
    else:
        record.keepable = final
    return record


def complete(llama: Llama, tokens: Sequence[int], **options: Any) -> Any:
    """``llama.create_completion`` on prompt ``tokens``, the same answer whatever the model
    ran before. Call it holding the model's lock."""
    record = _prefill(llama, tokens)
    # only the final batch follows the evaluated tokens: llama-cpp-python keeps those (its
    # longest common prefix) and evaluates that batch in one go, writing its logits
    response = llama.create_completion(list(tokens), **options)
    record.after = _held(llama)
    return response


def complete_stream(llama: Llama, tokens: Sequence[int], **options: Any
                    ) -> Generator[Any, None, None]:
    """:func:`complete`, streamed: the chunks of ``create_completion(..., stream=True)``. Hold
    the model's lock until the iterator is done or closed."""
    record = _prefill(llama, tokens)
    try:
        yield from llama.create_completion(list(tokens), stream=True, **options)
    finally:
        record.after = _held(llama)
