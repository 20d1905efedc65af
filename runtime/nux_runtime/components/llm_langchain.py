"""``llm.langchain``: a vetted LangChain chat model or Runnable, named by import path.

``target`` is ``module:attribute``, one of the paths the catalog allow-lists (the catalog's
``enum``); the component imports it, builds it once from ``options`` (constructor keyword
arguments; an API key only ever comes from the environment variable ``api_key_env`` names) and
invokes it per request:

- a chat model receives the stage's few-shot prompt as messages (examples as user/assistant
  turns) and answers with its message text; tokens come from its ``usage_metadata``;
- any other Runnable receives the stage's inputs as a dict and answers with what it returns.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from nux_runtime.components.base import Component, RuntimeContext, StageResult
from nux_runtime.components.fewshot import chat_messages
from nux_runtime.errors import StageError
from nux_runtime.spec import StageSpec

__all__ = ["LangChainStage", "import_target"]

_SECRET_OPTIONS = frozenset({"api_key", "openai_api_key", "token", "password", "secret"})


def import_target(path: str) -> Any:
    """The object ``module:attribute`` names."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{path!r} is not `module:attribute`")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def _category(exc: Exception) -> str:
    """A StageError category from a client library's exception (its HTTP status or name)."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        if status in (401, 403, 404):
            return "resource"
        return "transient" if status == 429 or status >= 500 else "input"
    name = type(exc).__name__.lower()
    if "timeout" in name:
        return "timeout"
    return "transient" if "connection" in name else "error"


class LangChainStage(Component):
    """Invokes the LangChain object ``params.target`` names."""

    def __init__(self, stage: StageSpec, context: RuntimeContext) -> None:
        super().__init__(stage, context)
        self.runnable = self._build()
        from langchain_core.language_models import BaseChatModel

        self.is_chat = isinstance(self.runnable, BaseChatModel)

    def _build(self) -> Any:
        target = str(self.params.get("target", ""))
        options = dict(self.params.get("options") or {})
        leaked = sorted(_SECRET_OPTIONS & set(options))
        if leaked:
            raise StageError(self.stage.id, f"options may not carry {', '.join(leaked)}; put the "
                             "key in an environment variable and name it in api_key_env",
                             category="input")
        env_name = self.params.get("api_key_env")
        if env_name:
            key = self.context.env.get(str(env_name))
            if not key:
                raise StageError(self.stage.id, f"the environment variable {env_name} "
                                 "(api_key_env) is not set", category="resource")
            options["api_key"] = key
        try:
            factory = import_target(target)
        except ImportError as exc:
            raise StageError(self.stage.id, f"cannot import {target}: {exc}; install the package "
                             f"that provides {exc.name or 'it'}", category="resource") from None
        except (AttributeError, ValueError) as exc:
            raise StageError(self.stage.id, f"cannot find {target}: {exc}",
                             category="resource") from None
        try:
            runnable = factory(**options) if callable(factory) else factory
        except Exception as exc:
            raise StageError(self.stage.id, f"cannot build {target} from options: "
                             f"{type(exc).__name__}: {exc}", category="input") from None
        from langchain_core.runnables import Runnable

        if not isinstance(runnable, Runnable):
            raise StageError(self.stage.id, f"{target} is not a LangChain Runnable",
                             category="resource")
        return runnable

    def _request(self, inputs: Mapping[str, Any]) -> Any:
        if not self.is_chat:
            return dict(inputs)
        return [(m["role"], m["content"]) for m in chat_messages(self.stage, self.params, inputs)]

    def _config(self) -> dict[str, Any]:
        stop = self.params.get("stop")
        return {"stop": [stop] if isinstance(stop, str) else list(stop)} if stop else {}

    def __call__(self, inputs: Mapping[str, Any]) -> StageResult:
        request = self._request(inputs)
        try:
            answer = self.runnable.invoke(request, **(self._config() if self.is_chat else {}))
        except StageError:
            raise
        except Exception as exc:
            raise StageError(self.stage.id, f"{type(exc).__name__}: {exc}",
                             category=_category(exc)) from None
        if not self.is_chat:
            return StageResult(answer)
        usage = getattr(answer, "usage_metadata", None) or {}
        return StageResult(_text(answer.content).strip(),
                           tokens_in=int(usage.get("input_tokens", 0)),
                           tokens_out=int(usage.get("output_tokens", 0)))

    def stream(self, inputs: Mapping[str, Any]) -> Iterator[str]:
        """Yield the answer's text as the model streams it."""
        request = self._request(inputs)
        for chunk in self.runnable.stream(request, **(self._config() if self.is_chat else {})):
            piece = _text(getattr(chunk, "content", chunk))
            if piece:
                yield piece
