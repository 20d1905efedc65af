"""``llm.openai``: any OpenAI-compatible endpoint (vLLM, TGI, llama.cpp server, hosted APIs).

Speaks the OpenAI HTTP API over httpx: ``/v1/chat/completions`` (``mode: chat``, few-shot
examples as alternating user/assistant turns) or ``/v1/completions`` (``mode: completion``, the
few-shot prompt of a base model). The API key is read from the environment variable that
``api_key_env`` names (a Kubernetes secret in production), never from the notebook. Timeouts,
refused connections, 429 and 5xx answers are retried ``retries`` times with exponential backoff;
token counts come from the server's ``usage``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from nux_runtime.components.base import Component, RuntimeContext, StageResult, shared
from nux_runtime.components.fewshot import build_prompt, chat_messages
from nux_runtime.errors import NuxError, StageError
from nux_runtime.spec import StageSpec

__all__ = ["OpenAIStage", "get_http_client"]

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def get_http_client(base_url: str) -> Any:
    """The process-wide httpx client for an endpoint (pooled connections, thread-safe)."""
    try:
        import httpx
    except ImportError:
        raise NuxError("httpx is not installed; install `nux-runtime[llm]`") from None
    return shared("httpx", base_url.rstrip("/"),
                  lambda: httpx.Client(base_url=base_url.rstrip("/") + "/"))


class OpenAIStage(Component):
    """Completes the stage's prompt on an OpenAI-compatible server."""

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        base_url = self.params.get("base_url")
        if not base_url:
            raise StageError(stage.id, "`base_url` is not set", category="input")
        try:
            self.client = get_http_client(str(base_url))
        except NuxError as exc:
            raise StageError(stage.id, str(exc), category="resource") from None

    # -- request ------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        env_name = self.params.get("api_key_env")
        if not env_name:
            return {}
        key = self.context.env.get(str(env_name))
        if not key:
            raise StageError(
                self.stage.id, f"the environment variable {env_name} (api_key_env) is not set; "
                "export it, or mount the secret that holds the API key", category="resource")
        return {"Authorization": f"Bearer {key}"}

    def _messages(self, inputs: Mapping[str, Any]) -> list[dict[str, str]]:
        return chat_messages(self.stage, self.params, inputs)

    def _body(self, inputs: Mapping[str, Any], *, stream: bool) -> tuple[str, dict[str, Any]]:
        stop = self.params.get("stop")
        body: dict[str, Any] = {
            "model": str(self.params["model"]),
            "max_tokens": int(self.params.get("max_tokens", 64)),
            "temperature": float(self.params.get("temperature", 0.0)),
            "top_p": float(self.params.get("top_p", 1.0)),
            "stream": stream,
        }
        if stop:
            body["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if self.params.get("seed") is not None:
            body["seed"] = int(self.params["seed"])
        if self.params.get("mode", "chat") == "completion":
            body["prompt"] = build_prompt(self.stage, self.params, inputs)
            return "v1/completions", body
        body["messages"] = self._messages(inputs)
        return "v1/chat/completions", body

    def _send(self, path: str, body: dict[str, Any], *, stream: bool) -> Any:
        import httpx

        headers = self._headers()
        retries = int(self.params.get("retries", 2))
        backoff = float(self.params.get("backoff_s", 0.5))
        timeout = httpx.Timeout(float(self.params.get("timeout_s", 30.0)))
        attempt = 0
        while True:
            problem: StageError
            try:
                request = self.client.build_request("POST", path, json=body, headers=headers,
                                                    timeout=timeout)
                response = self.client.send(request, stream=stream)
                if response.status_code < 400:
                    return response
                if stream:
                    response.read()
                problem = self._http_error(response)
                response.close()
                if response.status_code not in _RETRY_STATUS:
                    raise problem
            except httpx.TimeoutException:
                problem = StageError(self.stage.id, f"{self.client.base_url} did not answer "
                                     f"within timeout_s ({timeout.read} s)", category="timeout")
            except httpx.TransportError as exc:
                problem = StageError(self.stage.id, f"cannot reach {self.client.base_url}: "
                                     f"{exc}", category="transient")
            if attempt >= retries:
                if attempt:
                    problem = StageError(self.stage.id, f"{problem.cause} (after {attempt + 1} "
                                         "attempts)", category=problem.category)
                raise problem
            time.sleep(backoff * 2**attempt)
            attempt += 1

    def _http_error(self, response: Any) -> StageError:
        try:
            detail = response.json()
            error = detail.get("error", detail) if isinstance(detail, dict) else detail
            message = error.get("message", error) if isinstance(error, dict) else error
        except ValueError:
            message = response.text[:300]
        status = response.status_code
        category = {401: "resource", 403: "resource", 404: "resource"}.get(
            status, "transient" if status in _RETRY_STATUS else "input")
        fix = " (check the API key in api_key_env)" if status in (401, 403) else ""
        return StageError(self.stage.id, f"{self.client.base_url} answered {status}: "
                          f"{message}{fix}", category=category)

    # -- the component --------------------------------------------------------------------------

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        path, body = self._body(inputs, stream=False)
        response = self._send(path, body, stream=False)
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] if "message" in choice else choice["text"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise StageError(self.stage.id, f"the server's answer is not an OpenAI completion "
                             f"({type(exc).__name__}: {exc})") from None
        usage = data.get("usage") or {}
        return StageResult(
            str(text or "").strip(),
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            meta={"finish_reason": choice.get("finish_reason"), "model": data.get("model")},
        )

    def stream(self, inputs: Mapping[str, Any]) -> Iterator[str]:
        """Yield the answer's text as the server streams it (server-sent events)."""
        path, body = self._body(inputs, stream=True)
        response = self._send(path, body, stream=True)
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[len("data:"):].strip()
                if payload == "[DONE]":
                    break
                choice = (json.loads(payload).get("choices") or [{}])[0]
                piece = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                if piece:
                    yield str(piece)
        finally:
            response.close()
