"""llm.openai against a real OpenAI-compatible server (llama_cpp.server on loopback serving
gemma-3-270m): the contract, chat and completion modes, streaming, keys, retries, timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from nux_kernel import Executor, Workbook
from nux_kernel.testing import ComponentContract
from nux_runtime.components.base import RuntimeContext
from nux_runtime.components.llm_local import LocalLLMStage
from nux_runtime.components.llm_openai import OpenAIStage, get_http_client
from tests.fixtures.llm_server import LLMServer

pytestmark = pytest.mark.slow

CAPITALS = [
    {"question": "What is the capital of France?", "output": "Paris"},
    {"question": "What is the capital of Japan?", "output": "Tokyo"},
]
COMPLETION: dict[str, Any] = {
    "mode": "completion", "template": "Q: {question}\nA:", "few_shot": CAPITALS,
    "stop": ["\n"], "max_tokens": 12, "temperature": 0.7, "seed": 11,
}


def server_params(server: LLMServer, **params: Any) -> dict[str, Any]:
    return {"base_url": server.base_url, "model": server.model,
            "api_key_env": server.api_key_env, **params}


class TestOpenAIContract(ComponentContract):
    component = "llm.openai"
    inputs: ClassVar[Any] = {"question": "string"}
    cases: ClassVar[Any] = [{"question": "What is the capital of Italy?"},
                            {"question": "What is the capital of Germany?"}]
    bad_params: ClassVar[Any] = {"retries": 99}
    failing_case: ClassVar[Any] = {"question": "word " * 3000}
    failing_cause = "maximum context length is 2048 tokens"
    failing_category = "input"
    counts_tokens = True

    @pytest.fixture
    def workbook_dir(self, tmp_path: Path, llm_server: LLMServer) -> Path:
        self.params = server_params(llm_server, **COMPLETION)
        return tmp_path


def stage_of(tmp_path: Path, server: LLMServer, uses: str = "llm.openai", **params: Any) -> Any:
    wb = Workbook("qa", inputs={"question": "string"}, output="answer")
    if uses == "llm.openai":
        params = server_params(server, **params)
    wb.model("answer", uses=uses, inputs=["question"], params=params)
    return wb.compile().stage("answer")


def test_completion_mode_gives_the_local_model_answer(tmp_path: Path,
                                                      llm_server: LLMServer) -> None:
    greedy = {**COMPLETION, "temperature": 0.0}
    remote = OpenAIStage(stage_of(tmp_path, llm_server, **greedy), RuntimeContext(tmp_path))
    local_params = {k: v for k, v in greedy.items() if k != "mode"}
    local = LocalLLMStage(stage_of(tmp_path, llm_server, "llm.local/gemma-3-270m",
                                   **local_params), RuntimeContext(tmp_path))
    question = {"question": "What is the capital of Italy?"}
    over_http, in_process = remote(question), local(question)
    assert over_http.value == in_process.value == "Rome"
    assert over_http.tokens_in == in_process.tokens_in
    assert over_http.tokens_out == in_process.tokens_out


def test_chat_mode_sends_few_shot_turns(tmp_path: Path, llm_server: LLMServer) -> None:
    stage = OpenAIStage(stage_of(tmp_path, llm_server, template="{question}", few_shot=CAPITALS,
                                 system="Answer with one word.", max_tokens=8),
                        RuntimeContext(tmp_path))
    messages = stage._messages({"question": "What is the capital of Italy?"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant",
                                             "user"]
    result = stage({"question": "What is the capital of Italy?"})
    assert result.value and result.tokens_in > 0 and 0 < result.tokens_out <= 8


def test_stream_yields_the_same_text_as_a_call(tmp_path: Path, llm_server: LLMServer) -> None:
    stage = OpenAIStage(stage_of(tmp_path, llm_server, **{**COMPLETION, "max_tokens": 16}),
                        RuntimeContext(tmp_path))
    question = {"question": "What is the capital of Spain?"}
    pieces = list(stage.stream(question))
    assert pieces and "".join(pieces).strip() == stage(question).value


def run(tmp_path: Path, server: LLMServer, **params: Any) -> Any:
    wb = Workbook("qa", inputs={"question": "string"}, output="answer")
    wb.model("answer", uses="llm.openai", inputs=["question"],
             params={**server_params(server), **COMPLETION, **params})
    return Executor(wb.compile(), base_dir=tmp_path, cache=False).run({"question": "Hi?"})


def test_the_key_comes_from_the_environment(tmp_path: Path, llm_server: LLMServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    [unset] = run(tmp_path, llm_server, api_key_env="NUX_TEST_UNSET_KEY").errors
    assert unset.category == "resource" and "NUX_TEST_UNSET_KEY" in unset.cause
    monkeypatch.setenv("NUX_TEST_WRONG_KEY", "not-the-key")
    [wrong] = run(tmp_path, llm_server, api_key_env="NUX_TEST_WRONG_KEY").errors
    assert wrong.category == "resource" and "401" in wrong.cause and "api_key_env" in wrong.cause


def test_the_key_cannot_be_written_in_the_notebook(tmp_path: Path, llm_server: LLMServer) -> None:
    from nux_runtime.errors import PolicyError

    with pytest.raises(PolicyError) as info:
        run(tmp_path, llm_server, api_key=llm_server.api_key)
    assert any(p.field == "params.api_key" for p in info.value.problems)


def test_a_refused_connection_is_retried_then_reported(tmp_path: Path,
                                                       llm_server: LLMServer) -> None:
    with socket_closed_port() as port:
        base_url = f"http://127.0.0.1:{port}"
        result = run(tmp_path, llm_server, base_url=base_url, retries=2, backoff_s=0.01)
    [error] = result.errors
    assert error.category == "transient" and "after 3 attempts" in error.cause
    assert base_url in error.cause


def test_a_slow_server_times_out(tmp_path: Path, llm_server: LLMServer) -> None:
    result = run(tmp_path, llm_server, timeout_s=0.1, retries=0, max_tokens=400, stop=["\x00"],
                 temperature=1.0)
    [error] = result.errors
    assert error.category == "timeout" and "timeout_s" in error.cause


def test_a_dropped_connection_is_retried_and_succeeds(tmp_path: Path, llm_server: LLMServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    client = get_http_client(llm_server.base_url)
    original = client.send
    calls: list[str] = []

    def flaky(request: httpx.Request, **kwargs: Any) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:  # failure injection: the first attempt loses its connection
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return original(request, **kwargs)

    monkeypatch.setattr(client, "send", flaky)
    result = run(tmp_path, llm_server, retries=2, backoff_s=0.01)
    assert result.ok, result.errors
    assert calls == ["/v1/completions", "/v1/completions"]


class socket_closed_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None
