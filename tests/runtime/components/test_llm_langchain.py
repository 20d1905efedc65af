"""llm.langchain: LangChain's ChatOpenAI (an allow-listed target) against the loopback
llama_cpp.server, through the contract; the allow-list and secrets are enforced."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from nux_kernel import Executor, Workbook
from nux_kernel.testing import ComponentContract
from nux_runtime.components.base import RuntimeContext
from nux_runtime.components.llm_langchain import LangChainStage
from nux_runtime.errors import PolicyError
from tests.fixtures.llm_server import LLMServer

pytestmark = pytest.mark.slow

CAPITALS = [
    {"question": "What is the capital of France?", "output": "Paris"},
    {"question": "What is the capital of Japan?", "output": "Tokyo"},
]


def chat_params(server: LLMServer, **options: Any) -> dict[str, Any]:
    return {
        "target": "langchain_openai:ChatOpenAI",
        "options": {"model": server.model, "base_url": f"{server.base_url}/v1",
                    "temperature": 0.7, "seed": 11, "max_tokens": 12, "max_retries": 0,
                    # langchain-openai sends `max_completion_tokens`, which llama_cpp.server
                    # ignores; the server reads `max_tokens` from the body
                    "extra_body": {"max_tokens": 12}, **options},
        "api_key_env": server.api_key_env,
        "template": "{question}", "few_shot": CAPITALS, "system": "Answer with one word.",
    }


class TestLangChainContract(ComponentContract):
    component = "llm.langchain"
    inputs: ClassVar[Any] = {"question": "string"}
    cases: ClassVar[Any] = [{"question": "What is the capital of Italy?"},
                            {"question": "What is the capital of Germany?"}]
    bad_params: ClassVar[Any] = {"target": "langchain_community.llms:OpenAI"}
    failing_case: ClassVar[Any] = {"question": "word " * 3000}
    failing_cause = "context length"
    failing_category = "input"
    counts_tokens = True

    @pytest.fixture
    def workbook_dir(self, tmp_path: Path, llm_server: LLMServer) -> Path:
        self.params = chat_params(llm_server)
        return tmp_path


def stage_of(tmp_path: Path, params: dict[str, Any]) -> Any:
    wb = Workbook("qa", inputs={"question": "string"}, output="answer")
    wb.model("answer", uses="llm.langchain", inputs=["question"], params=params)
    return wb.compile().stage("answer")


def test_chat_model_answers_and_streams(tmp_path: Path, llm_server: LLMServer) -> None:
    stage = LangChainStage(stage_of(tmp_path, chat_params(llm_server, temperature=0.0)),
                           RuntimeContext(tmp_path))
    assert stage.is_chat
    question = {"question": "What is the capital of Italy?"}
    result = stage(question)
    assert result.value and result.tokens_in > 0 and 0 < result.tokens_out <= 12
    assert "".join(stage.stream(question)).strip() == result.value


def test_only_allow_listed_targets_and_options(tmp_path: Path, llm_server: LLMServer) -> None:
    for bad in ({"target": "os:system"},
                {"options": {"model": "m", "api_key": llm_server.api_key}}):
        with pytest.raises(PolicyError) as info:
            stage_of(tmp_path, {**chat_params(llm_server), **bad})
        assert info.value.problems[0].stage == "answer"


def test_a_missing_key_variable_is_named(tmp_path: Path, llm_server: LLMServer) -> None:
    wb = Workbook("qa", inputs={"question": "string"}, output="answer")
    wb.model("answer", uses="llm.langchain", inputs=["question"],
             params={**chat_params(llm_server), "api_key_env": "NUX_TEST_NO_SUCH_KEY"})
    result = Executor(wb.compile(), base_dir=tmp_path, cache=False).run({"question": "Hi?"})
    [error] = result.errors
    assert error.category == "resource" and "NUX_TEST_NO_SUCH_KEY" in error.cause


def capital_chain(model: str, base_url: str, api_key: str) -> Any:
    """An LCEL chain (prompt | chat model | parser): a Runnable that is not a chat model."""
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer with one word."), ("user", "{question}")])
    # langchain-openai sends `max_completion_tokens`; llama_cpp.server reads only `max_tokens`
    llm = ChatOpenAI(model=model, base_url=base_url, api_key=api_key, temperature=0,
                     max_tokens=8, extra_body={"max_tokens": 8},
                     max_retries=0)  # type: ignore[arg-type]
    return prompt | llm | StrOutputParser()


def test_an_organization_can_vet_a_runnable_chain(tmp_path: Path, llm_server: LLMServer) -> None:
    import yaml

    from nux_kernel.catalog import DEFAULT_CATALOG, load_catalog

    target = f"{__name__}:capital_chain"
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text())
    params = raw["components"]["llm.langchain"]["params"]
    params["target"]["enum"].append(target)
    params["options"]["properties"] = {"model": {"type": "string"},
                                       "base_url": {"type": "string"}}
    raw["components"]["llm.langchain"]["output"] = {}
    (tmp_path / "catalog.yaml").write_text(yaml.safe_dump(raw))
    wb = Workbook("chain", inputs={"question": "string"}, output="answer")
    wb.model("answer", uses="llm.langchain", inputs=["question"], params={
        "target": target, "api_key_env": llm_server.api_key_env,
        "options": {"model": llm_server.model, "base_url": f"{llm_server.base_url}/v1"}})
    spec = wb.compile(load_catalog(tmp_path / "catalog.yaml"))
    stage = LangChainStage(spec.stage("answer"), RuntimeContext(tmp_path))
    assert not stage.is_chat
    answer = stage({"question": "What is the capital of Italy?"}).value
    assert isinstance(answer, str) and answer.strip()
    result = Executor(spec, base_dir=tmp_path, cache=False).run(
        {"question": "What is the capital of Italy?"})
    assert result.ok and result.output == answer
