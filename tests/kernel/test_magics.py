"""``%%nux`` cells executed by a real Jupyter kernel (nbclient + ipykernel)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient


def run_notebook(cells: list[str], tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return nb


def text_of(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/html", "") + out.data.get("text/plain", ""))
        elif out.output_type == "error":
            parts.append("ERROR " + out.ename + ": " + out.evalue)
    return "\n".join(parts)


@pytest.mark.slow
def test_cells_run_as_stages_and_mark_downstream_stale(tmp_path: Path) -> None:
    nb = run_notebook([
        "%load_ext nux_kernel",
        '%nux inputs question=" What is NUX? "',
        "%%nux code clean\ndef clean(question: str) -> str:\n    return question.strip()\n",
        "%%nux code shout\ndef shout(clean: str, *, times: int = 2) -> str:\n"
        "    return clean.upper() * times\n",
        "print(repr(shout))",
        "%%nux code clean\ndef clean(question: str) -> str:\n    return question.strip().lower()\n",
        "%nux status",
        "%%nux code broken\ndef broken(clean: str) -> str:\n    return clean[100]\n",
        "%%nux code typo\ndef typo(cleen: str) -> str:\n    return cleen\n",
    ], tmp_path)
    outputs = [text_of(c) for c in nb.cells]
    assert "WHAT IS NUX?WHAT IS NUX?" in outputs[3]
    assert "nux-trace" in outputs[3] and "shout" in outputs[3]
    assert "'WHAT IS NUX?WHAT IS NUX?'" in outputs[4]
    assert "stale (re-run them): shout" in outputs[5]
    assert "'shout': 'stale'" in outputs[6] and "'clean': 'ok'" in outputs[6]
    assert "stage broken failed: IndexError" in outputs[7]
    assert "unknown-input" in outputs[8] and "did you mean 'clean'" in outputs[8]
    assert not any("Traceback" in o or o.startswith("ERROR") for o in outputs), outputs


@pytest.mark.slow
def test_nux_run_runs_a_loaded_workbook_to_its_output(tmp_path: Path) -> None:
    from nux_kernel import Workbook

    wb = Workbook("chain", inputs={"question": "string"}, output="answer", base_dir=tmp_path)
    wb.code("clean", "def clean(question: str) -> str:\n    return question.strip()\n")
    wb.code("answer", "def answer(clean: str) -> str:\n    return f'You asked: {clean}'\n")
    wb.save(tmp_path / "chain.ipynb")
    nb = run_notebook([
        "%load_ext nux_kernel",
        "%nux run",
        "%nux load chain.ipynb",
        '%nux run question=" why? "',
        "print(repr(clean), repr(answer))",
        "%nux status",
        "%nux run nonsense",
    ], tmp_path)
    outputs = [text_of(c) for c in nb.cells]
    assert "no stage cells yet" in outputs[1]
    assert "'You asked: why?'" in outputs[3] and "nux-trace" in outputs[3]
    assert "'why?' 'You asked: why?'" in outputs[4]
    assert "'clean': 'ok'" in outputs[5] and "'answer': 'ok'" in outputs[5]
    assert "write name=value, not 'nonsense'" in outputs[6]
    assert len(list((tmp_path / ".nux" / "runs").glob("*.jsonl"))) == 1
    assert not any("Traceback" in o or o.startswith("ERROR") for o in outputs), outputs
