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
from nux_runtime.components.llm_openai import OpenAIStage
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


@pytest.mark.parametrize(("failure", "failures", "retries", "ok", "requests", "category"), [
    pytest.param(503, 1, 2, True, 2, None, id="503-then-answer"),
    pytest.param("drop", 1, 2, True, 2, None, id="dropped-then-answer"),
    pytest.param(429, 9, 1, False, 2, "transient", id="429-until-retries-run-out"),
    pytest.param(400, 9, 2, False, 1, "input", id="400-not-retried"),
])
def test_transient_failures_are_retried(tmp_path: Path, llm_server: LLMServer, failure: Any,
                                        failures: int, retries: int, ok: bool, requests: int,
                                        category: str | None) -> None:
    with FlakyProxy(llm_server.base_url, failure, failures) as proxy:
        result = run(tmp_path, llm_server, base_url=proxy.url, retries=retries, backoff_s=0.01)
    assert proxy.paths == ["/v1/completions"] * requests
    assert result.ok is ok, result.errors
    if not ok:
        [error] = result.errors
        assert error.category == category and f"{proxy.url} answered {failure}" in error.cause
        assert error.stage == "answer"
        assert (f"after {requests} attempts" in error.cause) is (requests > 1)


def test_a_stream_is_retried_and_carries_no_key_it_was_not_given(
        tmp_path: Path, llm_server: LLMServer) -> None:
    with FlakyProxy(llm_server.base_url, 503, 1) as proxy:
        stage = OpenAIStage(stage_of(tmp_path, llm_server, **{**COMPLETION, "retries": 1,
                                                               "backoff_s": 0.01,
                                                               "base_url": proxy.url}),
                            RuntimeContext(tmp_path))
        pieces = list(stage.stream({"question": "What is the capital of Spain?"}))
        assert pieces and proxy.keys == [f"Bearer {llm_server.api_key}"] * 2
        wb = Workbook("qa", inputs={"question": "string"}, output="answer")
        wb.model("answer", uses="llm.openai", inputs=["question"],
                 params={**COMPLETION, "base_url": proxy.url, "model": llm_server.model})
        [error] = Executor(wb.compile(), base_dir=tmp_path, cache=False).run(
            {"question": "Hi?"}).errors
    assert proxy.keys[2:] == [None]  # the SDK's own OPENAI_API_KEY lookup never applies
    assert error.category == "resource" and "401" in error.cause


def test_a_stream_with_a_usage_chunk_is_counted_as_a_call(tmp_path: Path,
                                                         llm_server: LLMServer) -> None:
    question = {"question": "What is the capital of Spain?"}
    with FlakyProxy(llm_server.base_url, add_usage=True) as proxy:
        stage = OpenAIStage(stage_of(tmp_path, llm_server, **{**COMPLETION, "temperature": 0.0,
                                                               "base_url": proxy.url}),
                            RuntimeContext(tmp_path))
        call = stage(question)
        pieces = stage.stream(question)
        streamed: list[str] = []
        with pytest.raises(StopIteration) as end:
            while True:
                streamed.append(next(pieces))
    assert proxy.stream_options == [{"include_usage": True}]
    counted = end.value.value
    assert "".join(streamed).strip() == call.value and counted.value == "".join(streamed)
    assert (counted.tokens_in, counted.tokens_out) == (call.tokens_in, call.tokens_out) > (0, 0)


def test_backoff_s_sets_the_sdk_retry_delay_unless_the_server_asks(tmp_path: Path,
                                                                   llm_server: LLMServer) -> None:
    """backoff_s rescales the SDK's retry-delay hook; this fails if the SDK drops the hook."""
    import openai
    from httpx2 import Headers
    from openai._models import FinalRequestOptions

    assert "_calculate_retry_timeout" in dir(openai.OpenAI)
    client = OpenAIStage(stage_of(tmp_path, llm_server, retries=3, backoff_s=0.01),
                         RuntimeContext(tmp_path))._client()
    options = FinalRequestOptions(method="post", url="/completions")
    first, third = (client._calculate_retry_timeout(n, options) for n in (3, 1))
    assert 0.0075 <= first <= 0.01 and 0.03 <= third <= 0.04  # 25 % jitter, doubling
    assert client._calculate_retry_timeout(3, options, Headers({"retry-after": "2"})) == 2.0


class FlakyProxy:
    """Failure injection in front of the real server: the first ``failures`` requests get
    ``failure`` (a status, or ``"drop"``: the connection closes unanswered), the rest are
    forwarded as they are, streams included. Records each request's path and key.

    With ``add_usage`` it stands for a server that honours ``stream_options.include_usage``
    (vLLM, OpenAI; llama.cpp's server ignores it): a stream ends with the usage chunk those
    send (``"choices": []``), holding the counts of the same request made without streaming.
    """

    def __init__(self, upstream: str, failure: int | str = 0, failures: int = 0, *,
                 add_usage: bool = False) -> None:
        import http.server
        import json
        import threading

        self.paths: list[str] = []
        self.keys: list[str | None] = []
        self.stream_options: list[Any] = []
        proxy = self

        def usage_chunk(body: bytes, headers: dict[str, str]) -> bytes:
            request = json.loads(body)
            proxy.stream_options.append(request.get("stream_options"))
            plain = httpx.post(upstream + "/v1/completions", headers=headers, timeout=60,
                               json={**request, "stream": False, "stream_options": None})
            chunk = {"id": "usage", "object": "text_completion", "created": 0,
                     "model": request["model"], "choices": [], "usage": plain.json()["usage"]}
            return f"data: {json.dumps(chunk)}\r\n\r\n".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                proxy.paths.append(self.path)
                proxy.keys.append(self.headers.get("Authorization"))
                if len(proxy.paths) <= failures:
                    if failure == "drop":
                        self.close_connection = True
                        return
                    error = b'{"error": {"message": "injected failure"}}'
                    self.send_response(int(failure))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("authorization", "content-type")}
                streamed = b'"stream": true' in body or b'"stream":true' in body
                extra = usage_chunk(body, headers) if add_usage and streamed else b""
                with httpx.stream("POST", upstream + self.path, content=body, headers=headers,
                                  timeout=60) as answer:
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("content-type", ""))
                    self.end_headers()  # no length: the answer ends when the connection closes
                    if extra:  # the whole stream, the usage chunk before its end
                        self.wfile.write(answer.read().replace(b"data: [DONE]",
                                                               extra + b"data: [DONE]", 1))
                    for chunk in answer.iter_raw():
                        self.wfile.write(chunk)
                        self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class socket_closed_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None
