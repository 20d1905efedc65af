"""Notebook views: the trace table and the parameter playground, on a real executor."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets
import pytest

from nux_kernel import Executor, compile_notebook
from nux_runtime.errors import NuxError
from nux_widgets.views import playground, trace_table, with_params
from tests.widgets.conftest import build_workbook


@pytest.fixture
def executor(tmp_path: Path) -> Executor:
    spec = compile_notebook(build_workbook(tmp_path))
    return Executor(spec, base_dir=tmp_path)


def test_trace_table_shows_every_stage(executor: Executor) -> None:
    result = executor.run({"question": " <b>hi</b> "})
    table = trace_table(result)
    assert isinstance(table, widgets.HTML)
    for stage in ("clean", "shout", "answer"):
        assert f'<tr data-stage="{stage}">' in table.value
    assert table.value.count(">ok<") == 3
    assert "<b>hi</b>" not in table.value and "&lt;b&gt;hi&lt;/b&gt;" in table.value
    assert f"run {result.run_id}: ok" in table.value


def test_playground_reruns_the_stage_and_what_depends_on_it(executor: Executor) -> None:
    view = playground(executor.spec, "shout", {"question": "hi"}, executor=executor)
    assert set(view.controls) == {"times"}
    slider = view.controls["times"]
    assert isinstance(slider, widgets.IntSlider) and (slider.min, slider.max) == (1, 3)
    assert view.last is not None and view.last.output == "Q: hi\nA: HIHI"
    before = executor.executions
    slider.value = 3
    assert view.last.output == "Q: hi\nA: HIHIHI"
    assert executor.executions - before == 2  # shout and answer; clean came from the cache
    assert ">ok<" in view.output.value and "HIHIHI" in view.answer.value


def test_playground_names_a_stage_without_tunables(executor: Executor) -> None:
    with pytest.raises(NuxError) as info:
        playground(executor.spec, "clean", {"question": "hi"}, executor=executor)
    assert info.value.problems[0].code == "tune"
    with pytest.raises(NuxError):
        with_params(executor.spec, "nope", {})
