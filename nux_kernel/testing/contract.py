"""The component contract: one suite every vetted component implementation passes.

Subclass :class:`ComponentContract` in a test module, set the class attributes, and pytest runs
every ``test_*`` method against your component::

    class TestMiniLM(ComponentContract):
        component = "embed.local/minilm"
        inputs = {"text": "string"}
        cases = [{"text": "a cat"}, {"text": "a dog"}]
        bad_params = {"batch_size": 0}
        failing_case = {"text": 42}
        failing_cause = "must be a string"

Each test compiles a one-stage workbook through the authoring compiler (so params are checked
against the catalog's vetted schema exactly as a notebook's are) and runs it through the
playground executor (so traces, cost and errors are what a user sees). Override the
``workbook_dir`` fixture to prepare data beside the workbook (a database, a collection).

What the suite holds a component to:

- it is registered under ``nux.components`` and is a ``Component``;
- params are validated against the catalog schema: the valid ones compile, one outside the vetted
  range is a ``PolicyError`` naming the stage and the param;
- every run leaves a trace with latency, tokens (when the component counts them) and the cost the
  catalog's cost model gives for them;
- the output matches the catalog entry's output schema;
- with fixed params (a fixed seed) the same request gives the same answer (floats equal to
  float32 precision);
- a request the component cannot serve is a ``StageError`` naming the stage and the cause, and
  the next request still succeeds;
- concurrent requests (``run_many``) each get the answer they get alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from jsonschema import Draft202012Validator

from nux_kernel.builder import Workbook
from nux_kernel.catalog import load_catalog
from nux_kernel.executor import Executor
from nux_runtime.components.base import Component
from nux_runtime.errors import NuxError, StageError
from nux_runtime.registry import load_component
from nux_runtime.spec import WorkbookSpec

__all__ = ["ComponentContract"]

STAGE = "stage"


def same(a: Any, b: Any, *, rel_tol: float = 1e-5) -> bool:
    """Equal outputs, floats compared to float32 precision (BLAS may round the last bit
    differently from one call to the next)."""
    if isinstance(a, float) or isinstance(b, float):
        return (isinstance(a, int | float) and isinstance(b, int | float)
                and math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-6))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k], rel_tol=rel_tol) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(
            same(x, y, rel_tol=rel_tol) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class ComponentContract:
    """Conformance tests for one catalog component (subclass it as ``Test...``)."""

    #: The catalog id, e.g. ``llm.local/gemma-3-270m``.
    component: ClassVar[str]
    #: Workbook inputs (name -> JSON type or schema); every input feeds the stage.
    inputs: ClassVar[Mapping[str, Any]] = {"text": "string"}
    #: Valid params for the stage (over the catalog's defaults).
    params: ClassVar[Mapping[str, Any]] = {}
    #: Requests the stage serves; at least two, so concurrent runs mix different answers.
    cases: ClassVar[list[dict[str, Any]]]
    #: Params of which one lies outside the vetted schema: compiling must name it.
    bad_params: ClassVar[Mapping[str, Any]]
    #: A request the stage must refuse with a StageError (or None with ``failing_params``).
    failing_case: ClassVar[dict[str, Any] | None] = None
    #: Workbook inputs for the failing request, when it needs a looser schema than ``inputs``.
    failing_inputs: ClassVar[Mapping[str, Any] | None] = None
    #: Params (over ``params``) with which the first case must fail instead.
    failing_params: ClassVar[Mapping[str, Any] | None] = None
    #: Text the failure's cause must contain.
    failing_cause: ClassVar[str] = ""
    #: The failure's category (``input``, ``resource``, ``timeout``, ...), or "" for any.
    failing_category: ClassVar[str] = ""
    #: Same params and request give the same output.
    deterministic: ClassVar[bool] = True
    #: The component reports tokens_in for every call.
    counts_tokens: ClassVar[bool] = False
    #: Requests in flight at once in the concurrency test.
    concurrency: ClassVar[int] = 4

    # -- set-up -------------------------------------------------------------------------------

    @pytest.fixture
    def workbook_dir(self, tmp_path: Path) -> Path:
        """The workbook's folder; override to put data beside it."""
        return tmp_path

    def build(self, base_dir: Path, params: Mapping[str, Any] | None = None,
              inputs: Mapping[str, Any] | None = None) -> WorkbookSpec:
        """Compile a one-stage workbook using the component (through the authoring compiler)."""
        entry = load_catalog().get(self.component)
        assert entry is not None, f"{self.component} is not in the catalog"
        inputs = self.inputs if inputs is None else inputs
        wb = Workbook(f"contract-{entry.implementation}", inputs=dict(inputs),
                      output=STAGE, base_dir=base_dir)
        body = {"params": dict(self.params if params is None else params)}
        add = {"model": wb.model, "data": wb.data}.get(entry.kind)
        assert add is not None, f"the contract covers model and data components, not {entry.kind}"
        add(STAGE, uses=self.component, inputs=list(inputs), **body)
        return wb.compile()

    def executor(self, base_dir: Path, params: Mapping[str, Any] | None = None,
                 inputs: Mapping[str, Any] | None = None) -> Executor:
        return Executor(self.build(base_dir, params, inputs), base_dir=base_dir, cache=False)

    def output_validator(self) -> Draft202012Validator | None:
        entry = load_catalog().get(self.component)
        return Draft202012Validator(entry.output) if entry and entry.output else None

    def run_case(self, base_dir: Path, case: Mapping[str, Any]) -> Any:
        executor = self.executor(base_dir)
        try:
            result = executor.run(case)
        finally:
            executor.close()
        assert result.ok, [e.to_dict() for e in result.errors]
        return result

    # -- the contract -------------------------------------------------------------------------

    def test_registered_as_a_component(self) -> None:
        entry = load_catalog().get(self.component)
        assert entry is not None
        cls = load_component(entry.implementation)
        assert issubclass(cls, Component)

    def test_params_are_validated_against_the_catalog(self, workbook_dir: Path) -> None:
        spec = self.build(workbook_dir)
        stage = spec.stage(STAGE)
        for name, value in self.params.items():
            assert stage.params[name] == value
        with pytest.raises(NuxError) as info:
            self.build(workbook_dir, {**self.params, **self.bad_params})
        problems = info.value.problems
        assert problems, "an out-of-range param must be reported"
        assert all(p.stage == STAGE for p in problems)
        assert any(p.field is not None and any(p.field.endswith(name) for name in self.bad_params)
                   for p in problems), [p.render() for p in problems]

    def test_trace_has_latency_tokens_and_cost(self, workbook_dir: Path) -> None:
        result = self.run_case(workbook_dir, self.cases[0])
        trace = result.traces[STAGE]
        stage = result.walk.spec.stage(STAGE)
        assert trace.status == "ok"
        assert trace.latency_ms > 0
        assert trace.tokens_in >= 0 and trace.tokens_out >= 0
        if self.counts_tokens:
            assert trace.tokens_in > 0
        priced = stage.cost.cost(trace.tokens_in, trace.tokens_out, trace.compute_ms / 1000.0)
        assert math.isclose(trace.cost_usd, priced, rel_tol=1e-9, abs_tol=1e-15)
        if stage.cost.replica_hour or stage.cost.per_call:
            assert trace.cost_usd > 0

    def test_output_matches_the_catalog_schema(self, workbook_dir: Path) -> None:
        validator = self.output_validator()
        result = self.run_case(workbook_dir, self.cases[0])
        if validator is not None:
            errors = [e.message for e in validator.iter_errors(result.output)]
            assert not errors, errors

    def test_same_request_same_answer(self, workbook_dir: Path) -> None:
        if not self.deterministic:
            pytest.skip(f"{self.component} is not deterministic by design")
        first = self.run_case(workbook_dir, self.cases[0]).output
        second = self.run_case(workbook_dir, self.cases[0]).output
        assert same(first, second), (first, second)

    def test_failure_is_a_stage_error_naming_stage_and_cause(self, workbook_dir: Path) -> None:
        params = {**self.params, **(self.failing_params or {})}
        case = self.failing_case if self.failing_case is not None else self.cases[0]
        executor = self.executor(workbook_dir, params, self.failing_inputs)
        try:
            result = executor.run(case)
            assert not result.ok, f"{case} should fail"
            [error] = result.errors
            assert isinstance(error, StageError)
            assert error.stage == STAGE
            assert self.failing_cause.lower() in error.cause.lower(), error.cause
            if self.failing_category:
                assert error.category == self.failing_category, error.to_dict()
            assert "Traceback" not in error.cause
            assert result.traces[STAGE].status == "error"
        finally:
            executor.close()
        # nothing else broke: the component still serves a good request
        self.run_case(workbook_dir, self.cases[0])

    def test_concurrent_requests_get_their_own_answers(self, workbook_dir: Path) -> None:
        executor = self.executor(workbook_dir)
        try:
            alone = [executor.run(case) for case in self.cases]
            batch = [case for _ in range(2) for case in self.cases]
            together = executor.run_many(batch, concurrency=self.concurrency)
        finally:
            executor.close()
        assert all(r.ok for r in alone), [e.to_dict() for r in alone for e in r.errors]
        assert all(r.ok for r in together), [e.to_dict() for r in together for e in r.errors]
        if self.deterministic:
            expected = [r.output for r in alone] * 2
            got = [r.output for r in together]
            assert same(got, expected), (got, expected)
