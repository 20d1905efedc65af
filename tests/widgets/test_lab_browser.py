"""The extension in a real JupyterLab, driven by Playwright in Debian's headless Chromium.

Open a workbook: the DAG panel shows its nodes and edges and every `%%nux` cell wears its kind
badge; add a stage through the catalog picker and its form; run the chain and see each stage's
status; break a cell and see the problem on that cell and on its node. Each step leaves a
screenshot in widgets/ui-tests/test-results/.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nux_kernel import Workbook
from tests.widgets.conftest import Lab, build_knob

pytestmark = pytest.mark.slow

NODE = "#nux-dag-panel g.nux-dag-node"
# the kind badges of the notebook on show (others may be restored as hidden tabs)
BADGES = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .nux-kind-badge"


def _graph(page: Any) -> tuple[dict[str, str], set[tuple[str, str]]]:
    nodes = page.eval_on_selector_all(
        NODE, "els => els.map(e => [e.dataset.stage, e.dataset.kind])")
    edges = page.eval_on_selector_all(
        "#nux-dag-panel path.nux-dag-edge",
        "els => els.map(e => [e.dataset.source, e.dataset.target])")
    return dict(nodes), {(a, b) for a, b in edges}


def _statuses(page: Any) -> dict[str, str]:
    return dict(page.eval_on_selector_all(
        NODE, "els => els.map(e => [e.dataset.stage, e.dataset.status])"))


def test_workbook_in_jupyterlab(lab: Lab, browser: Any, screenshots: Path) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text) if m.type == "error" else None)
    page.goto(lab.page_url("books/shout.ipynb"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands"
                           ".hasCommand('nux:open-dag')")
    page.evaluate("() => window.jupyterapp.commands.execute('nux:open-dag')")
    page.wait_for_selector(f"{NODE}[data-stage='answer']")

    # 1. The graph of the workbook as it was saved.
    nodes, edges = _graph(page)
    assert nodes == {"question": "input", "clean": "code", "shout": "code", "answer": "code"}
    assert edges == {("question", "clean"), ("clean", "shout"), ("clean", "answer"),
                     ("shout", "answer")}
    page.wait_for_function(f"() => document.querySelectorAll({BADGES!r}).length >= 3")
    badges = page.eval_on_selector_all(BADGES,
                                       "els => els.map(e => e.dataset.kind)")
    assert badges == ["code", "code", "code"]
    page.screenshot(path=str(screenshots / "1-dag-panel.png"))

    # 2. Clicking a node makes its cell the active one.
    page.click(f"{NODE}[data-stage='answer']")
    active = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCell"
                           ".model.id")
    assert active == "answer"

    # 3. Add a stage from the catalog: pick text.template, fill the form, add the cell.
    page.click(".nux-toolbar-add button, .nux-toolbar-add")
    page.wait_for_selector(".nux-catalog-picker")
    # A model component: its vetting record, and its tunable parameters marked in the form.
    page.fill(".nux-catalog-search", "gemma")
    page.click(".nux-catalog-item[data-component='llm.local/gemma-3-270m']")
    facts = page.inner_text(".nux-catalog-facts")
    assert "vetted" in facts and "egress" in facts and "cost" in facts
    assert page.get_attribute("[data-tune='temperature']", "type") == "checkbox"
    assert page.get_attribute("[data-param='temperature']", "max") == "2"
    page.fill(".nux-catalog-search", "text.template")
    assert page.eval_on_selector_all(".nux-catalog-item", "els => els.map(e => "
                                     "e.dataset.component)") == ["text.template"]
    page.click(".nux-catalog-item[data-component='text.template']")
    page.fill(".nux-catalog-form input[name='stage']", "final")
    page.uncheck(".nux-form-inputs input[value='shout']") if page.is_checked(
        ".nux-form-inputs input[value='shout']") else None
    page.check(".nux-form-inputs input[value='answer']")
    page.fill(".nux-catalog-form [data-param='template']", "Final: {answer}")
    page.screenshot(path=str(screenshots / "2-catalog-picker.png"))
    page.click(".jp-Dialog button.jp-mod-accept")
    page.wait_for_selector(f"{NODE}[data-stage='final']")
    source = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCell"
                           ".model.sharedModel.getSource()")
    assert source.startswith("%%nux code final\nuses: text.template\n")
    assert "inputs: [answer]" in source and "Final: {answer}" in source
    nodes, edges = _graph(page)
    assert nodes["final"] == "code" and ("answer", "final") in edges
    page.screenshot(path=str(screenshots / "3-catalog-cell-added.png"))

    # 4. Run the chain from the DAG panel; every stage shows its status.
    _run_from_panel(page, "  hello ")
    page.wait_for_function(_status_is("final", "ok"))
    assert _statuses(page) == {"question": "input", "clean": "ok", "shout": "ok",
                               "answer": "ok", "final": "ok"}
    output = page.inner_text("#nux-dag-panel .nux-dag-output")
    assert output.strip() == "Q: hello\nA: HELLOHELLO"
    page.screenshot(path=str(screenshots / "4-run-statuses.png"))

    # 5. Edit a stage: it turns stale; break another: its problem shows on its cell and node.
    page.evaluate("""() => {
        const cells = window.jupyterapp.shell.currentWidget.content.widgets;
        const shout = cells.find(c => c.model.id === 'shout');
        shout.model.sharedModel.setSource(
          shout.model.sharedModel.getSource().replace('times: int = 2', 'times: int = 3'));
        const answer = cells.find(c => c.model.id === 'answer');
        answer.model.sharedModel.setSource(
          answer.model.sharedModel.getSource().replace('[clean, shout]', '[clean, shuot]'));
    }""")
    page.wait_for_selector(".jp-Cell .nux-cell-problems li[data-code='unknown-input']")
    problem = page.inner_text(".jp-Cell .nux-cell-problems li[data-code='unknown-input']")
    assert problem.startswith("line 3:") and "'shout'" in problem
    owner = page.evaluate("""() => document.querySelector(
        ".nux-cell-problems li[data-code='unknown-input']").closest('.jp-Cell')
        .querySelector('.jp-InputArea-editor').textContent""")
    assert "%%nux code answer" in owner
    answer_node = page.query_selector(f"{NODE}[data-stage='answer']")
    assert int(answer_node.get_attribute("data-problems")) >= 1
    page.screenshot(path=str(screenshots / "5-problems-on-cells.png"))
    assert "Traceback" not in page.inner_text("body")

    # Fix the typo: the problem goes, and the edited stage is stale until the next run.
    page.evaluate("""() => {
        const cells = window.jupyterapp.shell.currentWidget.content.widgets;
        const answer = cells.find(c => c.model.id === 'answer');
        answer.model.sharedModel.setSource(
          answer.model.sharedModel.getSource().replace('shuot', 'shout'));
    }""")
    page.wait_for_function(
        "() => !document.querySelector('.nux-cell-problems') && document.querySelector("
        "\"#nux-dag-panel g.nux-dag-node[data-stage='shout']\")?.dataset.status === 'stale'")
    statuses = _statuses(page)
    assert statuses["shout"] == "stale" and statuses["clean"] == "ok"
    page.screenshot(path=str(screenshots / "6-stale-after-edit.png"))

    # 6. Export to production: the report lists the files, and they are on disk.
    page.click(".nux-toolbar-export button, .nux-toolbar-export")
    page.wait_for_selector(".nux-export-report", timeout=240_000)
    assert page.get_attribute(".nux-export-report", "data-status") == "done"
    listed = set(page.eval_on_selector_all(".nux-export-files li",
                                           "els => els.map(e => e.textContent)"))
    deploy = lab.root / "books" / "deploy"
    on_disk = {p.relative_to(deploy).as_posix() for p in deploy.rglob("*") if p.is_file()}
    assert listed == on_disk
    assert {"Pulumi.yaml", "__main__.py", "serve_config.yaml", "kubernetes.yaml"} <= on_disk
    assert "pulumi up" in page.inner_text(".nux-export-steps")
    link = page.get_attribute(".nux-export-download", "href")
    assert link and link.endswith("/archive")
    spec = json.loads((deploy / "spec.json").read_text())
    assert [s["id"] for s in spec["stages"]] == ["clean", "shout", "answer", "final"]
    page.screenshot(path=str(screenshots / "7-export-report.png"))
    page.click(".jp-Dialog button.jp-mod-accept")
    assert not [m for m in messages if "nux" in m.lower()], messages
    context.close()


def _open(page: Any, lab: Lab, path: str) -> None:
    page.goto(lab.page_url(path))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands"
                           ".hasCommand('nux:open-dag')")
    page.evaluate("() => window.jupyterapp.commands.execute('nux:open-dag')")
    page.wait_for_selector(f"{NODE}[data-kind]:not([data-kind='input'])")


def _put_setting(lab: Lab, raw: dict[str, Any]) -> None:
    request = urllib.request.Request(
        f"{lab.url}lab/api/settings/nux-widgets:plugin", method="PUT",
        data=json.dumps({"raw": json.dumps(raw)}).encode(),
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30):
        pass


def test_flagship_ingest_run_and_export(lab: Lab, browser: Any, screenshots: Path) -> None:
    """The flagship: ingest its corpus from JupyterLab, see the graph, ask a question of the
    real local models, and export it (evaluation turned off in the settings editor: the test
    bank would take minutes on the local model)."""
    _put_setting(lab, {"exportWithEval": False})
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    _open(page, lab, "rag_qa/ingest.ipynb")
    assert _graph(page)[0] == {"ingest": "data"}
    page.wait_for_selector("#nux-dag-panel .nux-dag-run:not([disabled])")
    page.click("#nux-dag-panel .nux-dag-run")  # no inputs: no dialog
    page.wait_for_function(_status_is("ingest", "ok"), timeout=300_000)
    page.screenshot(path=str(screenshots / "1-ingested.png"))

    _open(page, lab, "rag_qa/rag_qa.ipynb")
    nodes, edges = _graph(page)
    assert nodes == {"question": "input", "retrieve": "data", "context": "code",
                     "answer": "model"}
    assert edges == {("question", "retrieve"), ("retrieve", "context"),
                     ("question", "answer"), ("context", "answer")}
    _run_from_panel(page, "How long is a sauna slot in Tallinn?")
    page.wait_for_function(_status_is("answer", "ok"), timeout=300_000)
    assert _statuses(page) == {"question": "input", "retrieve": "ok", "context": "ok",
                               "answer": "ok"}
    assert page.inner_text("#nux-dag-panel .nux-dag-output").strip()
    answer_sub = page.text_content(f"{NODE}[data-stage='answer'] .nux-dag-sub") or ""
    assert re.fullmatch(r"ok · \d+(\.\d)? m?s · \$[0-9.e-]+", answer_sub), answer_sub
    page.screenshot(path=str(screenshots / "2-flagship-run.png"))

    page.click(".nux-toolbar-export button, .nux-toolbar-export")
    page.wait_for_selector(".nux-export-report", timeout=240_000)
    assert page.get_attribute(".nux-export-report", "data-status") == "done"
    deploy = lab.root / "rag_qa" / "deploy"
    on_disk = {p.relative_to(deploy).as_posix() for p in deploy.rglob("*") if p.is_file()}
    listed = set(page.eval_on_selector_all(".nux-export-files li",
                                           "els => els.map(e => e.textContent)"))
    assert listed == on_disk
    assert {"Pulumi.yaml", "__main__.py", "serve_config.yaml", "kubernetes.yaml"} <= on_disk
    serve = (deploy / "serve_config.yaml").read_text()
    assert "retrieve" in serve and "answer" in serve
    page.screenshot(path=str(screenshots / "3-flagship-export.png"))
    context.close()


def test_flagship_graph_and_a_failing_stage(lab: Lab, browser: Any, screenshots: Path) -> None:
    """The flagship rag_qa workbook, copied without its ingested collection: the graph is
    right, and a run shows the data stage's error on its node and the rest skipped."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    _open(page, lab, "rag_qa_empty/rag_qa.ipynb")
    nodes, edges = _graph(page)
    assert nodes == {"question": "input", "retrieve": "data", "context": "code",
                     "answer": "model"}
    assert edges == {("question", "retrieve"), ("retrieve", "context"),
                     ("question", "answer"), ("context", "answer")}
    # every stage cell gets its badge once the notebook has rendered it
    page.wait_for_function(f"() => document.querySelectorAll({BADGES!r}).length >= 3")
    badges = page.eval_on_selector_all(BADGES,
                                       "els => els.map(e => e.dataset.kind)")
    assert sorted(badges) == ["code", "data", "model"]
    page.screenshot(path=str(screenshots / "1-flagship-dag.png"))
    _run_from_panel(page, "How long is a sauna slot?")
    page.wait_for_function(_status_is("retrieve", "error"), timeout=240_000)
    assert _statuses(page) == {"question": "input", "retrieve": "error", "context": "skipped",
                               "answer": "skipped"}
    reason = page.text_content(f"{NODE}[data-stage='retrieve'] title") or ""
    assert "collection 'handbook' does not exist" in reason and "qdrant.ingest" in reason
    failures = page.inner_text("#nux-dag-panel .nux-dag-run-errors")
    assert failures.startswith("retrieve failed: collection 'handbook' does not exist")
    assert "Traceback" not in page.inner_text("body")
    page.screenshot(path=str(screenshots / "2-flagship-error.png"))
    context.close()


def test_tune_panel_runs_a_study_and_pins_a_trial(lab: Lab, browser: Any, screenshots: Path
                                                  ) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(lab.page_url("knob/knob.ipynb"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands"
                           ".hasCommand('nux:tune')")
    page.wait_for_selector(".jp-Cell .nux-kind-badge >> visible=true")
    page.click(".nux-toolbar-tune button, .nux-toolbar-tune")
    page.wait_for_selector(".nux-tune-panel")
    page.click(".nux-tune-panel button.jp-mod-accept")
    page.wait_for_function(
        "() => /^done: 20 trials/.test(document.querySelector('.nux-tune-status')?.textContent)",
        timeout=240_000)
    rows = page.eval_on_selector_all(".nux-tune-table tr[data-trial]",
                                     "els => els.map(e => e.dataset.trial)")
    assert rows == [str(i) for i in range(20)]
    assert page.query_selector_all(".nux-tune-plot circle.nux-pareto")
    page.screenshot(path=str(screenshots / "1-tune-panel.png"))
    best = page.query_selector("tr.nux-pareto")
    assert best is not None
    cells = best.eval_on_selector_all("td", "els => els.map(e => e.textContent)")
    headers = page.eval_on_selector_all(".nux-tune-table th",
                                        "els => els.map(e => e.textContent)")
    k = json.loads(cells[headers.index("answer.k")])
    best.query_selector("button.nux-pin").click()
    source = page.evaluate("""() => window.jupyterapp.shell.widgets('main')
        .find(w => w.context && w.context.path === 'knob/knob.ipynb')
        .content.widgets.find(c => c.model.id === 'answer').model.sharedModel.getSource()""")
    assert f"k: int = {k}," in source
    assert "pinned trial" in page.inner_text(".nux-tune-status")
    page.screenshot(path=str(screenshots / "2-pinned.png"))

    # The study is a server-side job: a new tune panel (a closed tab, a reload) picks it up.
    page.reload()
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands"
                           ".hasCommand('nux:tune')")
    page.wait_for_selector(".jp-Cell .nux-kind-badge >> visible=true")
    page.click(".nux-toolbar-tune button, .nux-toolbar-tune")
    page.wait_for_function(
        "() => /^done: 20 trials/.test(document.querySelector('.nux-tune-status')?.textContent)")
    assert len(page.query_selector_all(".nux-tune-table tr[data-trial]")) == 20
    context.close()


def test_settings_are_in_the_settings_editor(lab: Lab) -> None:
    request = urllib.request.Request(f"{lab.url}lab/api/settings/nux-widgets:plugin",
                                     headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        settings = json.loads(response.read())
    properties = settings["schema"]["properties"]
    assert properties["exportOutDir"]["default"] == "deploy"
    assert {"catalogPath", "validateDelayMs", "exportStack", "exportWithEval",
            "tuneTrials"} <= set(properties)


def test_broken_workbook_shows_problems_on_its_cells(lab: Lab, browser: Any, screenshots: Path
                                                     ) -> None:
    broken = lab.root / "books" / "broken.ipynb"
    notebook = json.loads((lab.root / "books" / "shout.ipynb").read_text())
    for cell in notebook["cells"]:
        if cell.get("id") == "clean":
            cell["source"] = "%%nux code clean\nimport subprocess\n" \
                             "def clean(question: str) -> str:\n    return question\n"
    notebook["metadata"]["nux"]["output"] = "answr"
    broken.write_text(json.dumps(notebook))
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(lab.page_url("books/broken.ipynb"))
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands"
                           ".hasCommand('nux:open-dag')")
    page.evaluate("() => window.jupyterapp.commands.execute('nux:open-dag')")
    page.wait_for_selector(".jp-Cell .nux-cell-problems li")
    cell_problems = page.eval_on_selector_all(
        ".jp-Cell .nux-cell-problems li", "els => els.map(e => [e.dataset.code, "
        "e.closest('.jp-Cell').querySelector('.jp-InputArea-editor').textContent])")
    codes = {code for code, _ in cell_problems}
    assert any("%%nux code clean" in text for _, text in cell_problems)
    assert codes, cell_problems
    workbook_problems = page.inner_text("#nux-dag-panel .nux-dag-problems")
    assert "answr" in workbook_problems and "answer" in workbook_problems
    assert page.is_disabled("#nux-dag-panel .nux-dag-run")
    assert "Traceback" not in page.inner_text("body")
    page.screenshot(path=str(screenshots / "broken-workbook.png"))
    context.close()


def _run_from_panel(page: Any, question: str) -> None:
    """Press the DAG panel's Run button and answer its inputs dialog."""
    page.wait_for_selector("#nux-dag-panel .nux-dag-run:not([disabled])")
    page.click("#nux-dag-panel .nux-dag-run")
    page.fill("textarea[data-input='question']", question)
    page.click(".jp-Dialog button.jp-mod-accept")


def _status_is(stage: str, status: str) -> str:
    return (f"() => document.querySelector(\"#nux-dag-panel g.nux-dag-node[data-stage='{stage}']\")"
            f"?.dataset.status === '{status}'")


def _run_cell(page: Any, index: int) -> None:
    """Select a cell and press Shift+Enter in command mode, as a user runs it."""
    page.evaluate(f"""() => {{
        const notebook = window.jupyterapp.shell.currentWidget.content;
        notebook.activeCellIndex = {index};
        notebook.mode = 'command';
        notebook.node.focus();
    }}""")
    page.keyboard.press("Shift+Enter")


def test_kernel_cells_show_on_the_dag_panel(lab: Lab, browser: Any, screenshots: Path) -> None:
    """`%%nux` cells run in the kernel (Shift+Enter) show their status, latency and cost on the
    DAG panel like a run from the panel; a re-run upstream stage makes the stages below stale."""
    folder = lab.root / "kernel"
    wb = Workbook("kernel", inputs={"question": "string"}, output="answer", base_dir=folder)
    wb.code("clean", "def clean(question: str) -> str:\n    return question.strip()\n")
    wb.code("shout", "def shout(clean: str, *, times: int = 2) -> str:\n"
                     "    return clean.upper() * times\n")
    wb.template("answer", inputs=["clean", "shout"], template="Q: {clean}\nA: {shout}")
    notebook = wb.to_notebook()
    notebook.cells.insert(1, nbformat.v4.new_code_cell('%nux inputs question=" hi "'))
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(folder / "kernel.ipynb"))
    cells = [c.get("id") for c in notebook.cells]

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    _open(page, lab, "kernel/kernel.ipynb")
    assert set(_statuses(page).values()) == {"input", "idle"}
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.ready")

    # 1. %load_ext, %nux inputs, then the `clean` and `shout` cells, each with Shift+Enter.
    for index in range(4):
        _run_cell(page, index)
    page.wait_for_function(_status_is("shout", "ok"), timeout=120_000)
    statuses = _statuses(page)
    assert statuses == {"question": "input", "clean": "ok", "shout": "ok", "answer": "idle"}
    sub = page.text_content(f"{NODE}[data-stage='shout'] .nux-dag-sub") or ""
    assert re.fullmatch(r"ok · \d+(\.\d)? m?s · \$[0-9.e-]+", sub), sub  # status, latency, cost
    tip = page.text_content(f"{NODE}[data-stage='shout'] title") or ""
    assert "HIHI" in tip
    kernel_run = page.inner_text("#nux-dag-panel .nux-dag-kernel-run")
    run_id = kernel_run.split()[2].rstrip(":")
    assert kernel_run.endswith("clean ok, shout ok"), kernel_run
    assert (folder / ".nux" / "runs" / f"{run_id}.jsonl").is_file()
    page.screenshot(path=str(screenshots / "1-kernel-cells-ran.png"))

    # 2. A full run from the panel, then `shout` edited and re-run in the kernel: shout is ok
    # in its new version, answer (which read the old shout) is stale, clean stays ok.
    page.click("#nux-dag-panel .nux-dag-run")
    page.fill("textarea[data-input='question']", " hi ")
    page.click(".jp-Dialog button.jp-mod-accept")
    page.wait_for_function(_status_is("answer", "ok"))
    page.evaluate("""() => {
        const cells = window.jupyterapp.shell.currentWidget.content.widgets;
        const shout = cells.find(c => c.model.id === 'shout');
        shout.model.sharedModel.setSource(
          shout.model.sharedModel.getSource().replace('times: int = 2', 'times: int = 3'));
    }""")
    page.wait_for_function(_status_is("shout", "stale"))
    assert _statuses(page)["answer"] == "stale"
    _run_cell(page, cells.index("shout"))
    page.wait_for_function(_status_is("shout", "ok"), timeout=120_000)
    assert _statuses(page) == {"question": "input", "clean": "ok", "shout": "ok",
                               "answer": "stale"}
    tip = page.text_content(f"{NODE}[data-stage='shout'] title") or ""
    assert "HIHIHI" in tip
    page.screenshot(path=str(screenshots / "2-kernel-rerun-stale-below.png"))
    assert "Traceback" not in page.inner_text("body")
    context.close()


def _api(lab: Lab, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{lab.url}nux/{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"token {lab.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _toast_says(text: str) -> str:
    return ("() => [...document.querySelectorAll('.jp-toast-message')]"
            f".some(e => e.textContent.includes({json.dumps(text)}))")


def test_export_reattaches_after_a_reload(lab: Lab, browser: Any, screenshots: Path) -> None:
    """An export keeps running on the server when its page goes; the reopened workbook shows
    its progress, then its report, once (a later reopen does not show it again).

    Two long tuning studies hold both of the server's job slots, so the export waits in the
    queue for as long as the test needs it to."""
    build_knob(lab.root / "reattach")
    blockers = []
    for name in ("busy1", "busy2"):
        build_knob(lab.root / name)
        blockers.append(_api(lab, "POST", "jobs/tune",
                             {"path": f"{name}/knob.ipynb", "trials": 10_000})["id"])
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        _open(page, lab, "reattach/knob.ipynb")
        page.click(".nux-toolbar-export button, .nux-toolbar-export")
        page.wait_for_function(_toast_says("waiting for a free job slot"))
        exports = _api(lab, "GET", "jobs?kind=export&path=reattach/knob.ipynb")["jobs"]
        assert [j["status"] for j in exports] == ["queued"]
        page.screenshot(path=str(screenshots / "1-export-queued.png"))

        # The page goes (a reload, a closed tab); the export stays on the server.
        page.reload()
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands"
                               ".hasCommand('nux:open-dag')")
        page.wait_for_function(_toast_says("started before this page opened"))
        assert not page.query_selector(".nux-export-report")
        page.screenshot(path=str(screenshots / "2-export-progress-after-reload.png"))
    finally:
        for job_id in blockers:
            _api(lab, "POST", f"jobs/{job_id}/stop", {})

    page.wait_for_selector(".nux-export-report", timeout=240_000)
    assert page.get_attribute(".nux-export-report", "data-status") == "done"
    deploy = lab.root / "reattach" / "deploy"
    on_disk = {p.relative_to(deploy).as_posix() for p in deploy.rglob("*") if p.is_file()}
    listed = set(page.eval_on_selector_all(".nux-export-files li",
                                           "els => els.map(e => e.textContent)"))
    assert listed == on_disk and "Pulumi.yaml" in on_disk
    assert "pulumi up" in page.inner_text(".nux-export-steps")
    assert (page.get_attribute(".nux-export-download", "href") or "").endswith(
        f"/nux/jobs/{exports[0]['id']}/archive")
    page.screenshot(path=str(screenshots / "3-export-report-after-reload.png"))
    page.click(".jp-Dialog button.jp-mod-accept")

    # Shown once: reopening the workbook later does not follow the job or show its report.
    followed: list[str] = []
    page.on("request", lambda r: followed.append(r.url) if f"nux/jobs/{exports[0]['id']}"
            in r.url else None)
    with page.expect_response(lambda r: "nux/jobs?kind=export" in r.url):
        page.reload()
    # (other tests' notebooks may be restored too, as hidden tabs: wait for a shown cell)
    page.wait_for_selector(".jp-Cell .nux-kind-badge >> visible=true")
    page.wait_for_timeout(1500)  # room for a follow-up request, were one made
    assert followed == [] and not page.query_selector(".nux-export-report")
    context.close()


def test_opening_a_hostile_notebook_runs_nothing(lab: Lab, browser: Any, screenshots: Path
                                                 ) -> None:
    """A colleague's notebook whose code cell's annotation would run a shell command if it were
    evaluated, and whose model cell holds a YAML alias bomb: opening it (the extension validates
    it at once) creates no file, the server keeps answering, each problem shows on its cell."""
    folder = lab.root / "hostile"
    folder.mkdir()
    marker = folder / "pwned"
    escape = ("[c for c in object.__subclasses__() if c.__name__ == 'catch_warnings'][0]()"
              f"._module.__builtins__['__import__']('os').system('touch {marker}') and str")
    bomb = "\n".join(["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)])
    notebook = nbformat.v4.new_notebook(metadata={"nux": {
        "name": "hostile", "inputs": {"question": "string"}, "output": "answer"}})
    notebook.cells = [
        nbformat.v4.new_code_cell(f"%%nux code shout\ndef shout(question: {escape}) -> str:\n"
                                  "    return question\n", id="shout"),
        nbformat.v4.new_code_cell("%%nux model answer\nuses: llm.local/gemma-3-270m\n"
                                  f"inputs: [shout]\n{bomb}\n", id="answer")]
    nbformat.write(notebook, str(folder / "hostile.ipynb"))

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    _open(page, lab, "hostile/hostile.ipynb")
    page.wait_for_function("() => document.querySelectorAll('.jp-NotebookPanel:not("
                           ".lm-mod-hidden) .jp-Cell .nux-cell-problems').length === 2")
    shown = page.eval_on_selector_all(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell .nux-cell-problems",
        "els => els.map(e => [e.closest('.jp-Cell').querySelector('.jp-InputArea-editor')"
        ".textContent, e.textContent])")
    problems = {next(h for h in ("%%nux code shout", "%%nux model answer") if
                     source.startswith(h)): text for source, text in shown}
    assert len(problems) == 2, shown
    assert "annotation" in problems["%%nux code shout"]
    assert "YAML" in problems["%%nux model answer"]
    assert page.is_disabled("#nux-dag-panel .nux-dag-run")
    assert "Traceback" not in page.inner_text("body")
    page.screenshot(path=str(screenshots / "hostile-notebook.png"))
    # The server answers, and nothing the notebook holds ran.
    assert _api(lab, "GET", "catalog")["components"]
    assert not marker.exists()
    context.close()
