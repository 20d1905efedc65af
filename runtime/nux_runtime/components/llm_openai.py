"""``llm.openai``: any OpenAI-compatible endpoint (vLLM, TGI, llama.cpp server, hosted APIs).

Speaks the OpenAI API through the official ``openai`` SDK: ``/v1/chat/completions``
(``mode: chat``, few-shot examples as alternating user/assistant turns) or ``/v1/completions``
(``mode: completion``, the few-shot prompt of a base model). ``base_url`` is the server's root;
the ``/v1`` is added here (the compiler rejects a ``base_url`` that already ends in ``/v1``).

The SDK does the transport: one pooled client per endpoint and process (:func:`get_client`,
through :func:`~nux_runtime.components.base.shared`), ``timeout_s`` per request, and its
retries (``max_retries`` = ``retries``) of timeouts, dropped or refused connections, 408, 409,
429 and 5xx answers, waiting what the server's ``Retry-After`` asks or else an exponential
backoff with jitter; it parses the server-sent events of a stream. A stream asks for
``stream_options.include_usage``: a server that sends the final usage chunk gives the streamed
answer the token counts of a plain call (llama.cpp's server ignores the option; the stream is
then counted one token per piece). Token counts of a plain call come from ``usage``; the price
is the caller's, from the stage's cost model.

What the SDK does not offer, and is done here: its first retry delay is a constant (0.5 s,
doubling), so ``backoff_s`` rescales the SDK's computed delay (not a delay the server asked
for) by overriding its retry-delay hook; and the SDK reads ``OPENAI_API_KEY`` from the
environment by default, so every request sets ``Authorization`` itself from the variable
``api_key_env`` names (a Kubernetes secret in production), or omits it, and never sends
another key. SDK errors become :class:`~nux_runtime.errors.StageError` with the categories
the stage-call policy reads (``timeout``, ``transient``, ``resource``, ``input``).
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, cast

from nux_runtime.components.base import Component, RuntimeContext, StageResult, shared
from nux_runtime.components.fewshot import build_prompt, chat_messages
from nux_runtime.errors import NuxError, StageError
from nux_runtime.spec import StageSpec

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["OpenAIStage", "get_client"]

#: The SDK's first retry delay (``openai._constants.INITIAL_RETRY_DELAY``), which ``backoff_s``
#: replaces.
SDK_FIRST_DELAY = 0.5
#: The key the shared client is built with: never sent, every request sets its own header.
_UNSENT_KEY = "set-per-request"


@functools.cache
def _client_type() -> type[openai.OpenAI]:
    try:
        import openai
    except ImportError:
        raise NuxError("the openai SDK is not installed; install `nux-runtime[openai]`") from None

    class Client(openai.OpenAI):
        """The SDK client, with the first retry delay set by ``backoff_s``."""

        backoff_s: float = SDK_FIRST_DELAY

        def _calculate_retry_timeout(self, remaining_retries: int, options: Any,
                                     response_headers: Any = None) -> float:
            delay = super()._calculate_retry_timeout(remaining_retries, options,
                                                     response_headers)
            asked = response_headers is not None and (
                "retry-after" in response_headers or "retry-after-ms" in response_headers)
            return delay if asked else delay * self.backoff_s / SDK_FIRST_DELAY

    return Client


def get_client(base_url: str) -> openai.OpenAI:
    """The process-wide SDK client of an endpoint's root (pooled connections, thread-safe);
    stages take copies with their own timeout and retries that share its connection pool."""
    root = base_url.rstrip("/")
    client_type = _client_type()
    return shared("openai", root, lambda: client_type(base_url=f"{root}/v1", api_key=_UNSENT_KEY,
                                                      max_retries=0))


class OpenAIStage(Component):
    """Completes the stage's prompt on an OpenAI-compatible server."""

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        base_url = self.params.get("base_url")
        if not base_url:
            raise StageError(stage.id, "`base_url` is not set; write the server's root, e.g. "
                             "`base_url: http://vllm:8000`", category="input")
        self.root = str(base_url).rstrip("/")
        try:
            self.base = get_client(self.root)
        except NuxError as exc:
            raise StageError(stage.id, str(exc), category="resource") from None
        self._clients: dict[tuple[int, float, float], openai.OpenAI] = {}

    # -- request ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, Any]:
        from openai import omit

        env_name = self.params.get("api_key_env")
        if not env_name:
            return {"Authorization": omit}
        key = self.context.env.get(str(env_name))
        if not key:
            raise StageError(
                self.stage.id, f"the environment variable {env_name} (api_key_env) is not set; "
                "export it, or mount the secret that holds the API key", category="resource")
        return {"Authorization": f"Bearer {key}"}

    def _retries(self) -> int:
        return int(self.params.get("retries", 2))

    def _timeout(self) -> float:
        return float(self.params.get("timeout_s", 30.0))

    def _client(self) -> openai.OpenAI:
        """A copy of the shared client with this stage's retries, timeout and backoff."""
        config = (self._retries(), self._timeout(), float(self.params.get("backoff_s", 0.5)))
        if config not in self._clients:
            client = self.base.with_options(max_retries=config[0], timeout=config[1])
            client.backoff_s = config[2]  # type: ignore[attr-defined]
            self._clients[config] = client
        return self._clients[config]

    def _messages(self, inputs: Mapping[str, Any]) -> list[dict[str, str]]:
        return chat_messages(self.stage, self.params, inputs)

    def _chat(self) -> bool:
        return self.params.get("mode", "chat") != "completion"

    def _create(self, inputs: Mapping[str, Any], *, stream: bool) -> Any:
        stop = self.params.get("stop")
        body: dict[str, Any] = {
            "model": str(self.params["model"]),
            "max_tokens": int(self.params.get("max_tokens", 64)),
            "temperature": float(self.params.get("temperature", 0.0)),
            "top_p": float(self.params.get("top_p", 1.0)),
            "extra_headers": self._headers(),
        }
        if stop:
            body["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if self.params.get("seed") is not None:
            body["seed"] = int(self.params["seed"])
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        client = self._client()
        if self._chat():
            messages = cast("list[ChatCompletionMessageParam]", self._messages(inputs))
            return client.chat.completions.create(messages=messages, **body)
        return client.completions.create(prompt=build_prompt(self.stage, self.params, inputs),
                                         **body)

    def _failure(self, exc: Exception) -> StageError:
        """The SDK's error as a StageError: what happened, and what to change."""
        import openai

        after = f" (after {self._retries() + 1} attempts)" if self._retries() else ""
        if isinstance(exc, openai.APITimeoutError):
            return StageError(self.stage.id, f"{self.root} did not answer within timeout_s "
                              f"({self._timeout()} s){after}; raise timeout_s or lower "
                              "max_tokens", category="timeout")
        if isinstance(exc, openai.APIConnectionError):
            return StageError(self.stage.id, f"cannot reach {self.root}: "
                              f"{exc.__cause__ or exc}{after}; check base_url and that the "
                              "server is running", category="transient")
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc, after)
        return StageError(self.stage.id, f"the server's answer is not an OpenAI completion "
                          f"({type(exc).__name__}: {exc})")

    def _status_error(self, exc: openai.APIStatusError, after: str) -> StageError:
        status = exc.status_code
        body = exc.body
        message = body.get("message", body) if isinstance(body, dict) else body
        if message is None:
            message = exc.response.text[:300]
        retried = status in (408, 409, 429) or status >= 500
        category = {401: "resource", 403: "resource", 404: "resource"}.get(
            status, "transient" if retried else "input")
        fix = {401: " (check the API key in api_key_env)",
               403: " (check the API key in api_key_env)",
               404: " (check base_url and model)"}.get(status, after if retried else "")
        return StageError(self.stage.id, f"{self.root} answered {status}: {message}{fix}",
                          category=category)

    # -- the component --------------------------------------------------------------------------

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        import openai

        try:
            answer = self._create(inputs, stream=False)
        except openai.OpenAIError as exc:
            raise self._failure(exc) from None
        try:
            choice = answer.choices[0]
            text = choice.message.content if self._chat() else choice.text
        except (AttributeError, IndexError, TypeError) as exc:
            raise StageError(self.stage.id, f"the server's answer is not an OpenAI completion "
                             f"({type(exc).__name__}: {exc})") from None
        usage = answer.usage
        return StageResult(
            str(text or "").strip(),
            tokens_in=int(getattr(usage, "prompt_tokens", 0) or 0),
            tokens_out=int(getattr(usage, "completion_tokens", 0) or 0),
            meta={"finish_reason": getattr(choice, "finish_reason", None),
                  "model": getattr(answer, "model", None)},
        )

    def stream(self, inputs: Mapping[str, Any]) -> Generator[str, None, StageResult | None]:
        """Yield the answer's text as the server streams it; return its token counts when the
        server sends the usage chunk (None otherwise: the caller counts the pieces)."""
        import openai

        pieces: list[str] = []
        usage: Any = None
        try:
            with self._create(inputs, stream=True) as chunks:
                for chunk in chunks:
                    usage = getattr(chunk, "usage", None) or usage
                    for choice in (chunk.choices or [])[:1]:
                        piece = (choice.delta.content if self._chat() else choice.text) or ""
                        if piece:
                            pieces.append(piece)
                            yield piece
        except openai.OpenAIError as exc:
            raise self._failure(exc) from None
        if usage is None:
            return None
        return StageResult("".join(pieces), tokens_in=int(usage.prompt_tokens or 0),
                           tokens_out=int(usage.completion_tokens or 0))
