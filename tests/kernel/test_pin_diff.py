"""``nux pin`` edits values, not cells: on the flagship, the notebook's diff is the changed
values, the pin comment lines and the pin records; layout, quoting, comments, key order and the
notebook metadata's order stay as written."""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution

from nux_kernel.compiler import compile_notebook
from nux_kernel.tune.pin import pin_trial

REPO = Path(__file__).resolve().parents[2]


def test_a_pin_changes_only_the_values(tmp_path: Path) -> None:
    path = tmp_path / "rag_qa.ipynb"
    shutil.copy(REPO / "examples" / "rag_qa" / "rag_qa.ipynb", path)
    for extra in ("cases.jsonl", "prompts"):
        src = REPO / "examples" / "rag_qa" / extra
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / extra)
    before = path.read_text(encoding="utf-8")
    overrides = {"retrieve": {"top_k": 4, "hybrid": True},
                 "answer": {"prompt": "qa@2", "max_tokens": 24, "seed": 7}}
    study = optuna.create_study(study_name="pin", directions=["maximize"])
    study.add_trial(optuna.trial.create_trial(
        params={"retrieve.top_k": 4, "answer.prompt": "qa@2"},
        distributions={"retrieve.top_k": IntDistribution(1, 5),
                       "answer.prompt": CategoricalDistribution(["qa@1", "qa@2"])},
        values=[0.7], user_attrs={"nux": {"overrides": overrides, "constraints": []}}))
    pin_trial(path, study, 0)
    after = path.read_text(encoding="utf-8")

    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    removed = [ln[2:].strip() for ln in diff if ln.startswith("- ")
               and ln[2:].strip() != '"metadata": {},']  # cells that now hold a pin record
    added = [ln[2:].strip() for ln in diff if ln.startswith("+ ")]
    assert removed == ['"  top_k: 2\\n",', '"  hybrid: false\\n",', '"  prompt: qa@1\\n",',
                       '"  max_tokens: 32\\n",']
    assert '"  top_k: 4\\n",' in added and '"  hybrid: true\\n",' in added
    assert '"  prompt: qa@2\\n",' in added and '"  max_tokens: 24\\n",' in added
    # a param the cell did not write is one new line in the block's style
    assert '"  seed: 7\\n",' in added
    assert sum("# nux pin:" in ln for ln in added) == 2
    # the few-shot strings, the flow-style stop list and the metadata order are untouched
    nb_before, nb_after = json.loads(before), json.loads(after)
    assert list(nb_after["metadata"]["nux"]) == list(nb_before["metadata"]["nux"])
    answer = next(c for c in nb_after["cells"] if "".join(c["source"]).startswith(
        "%%nux model answer"))
    text = "".join(answer["source"])
    assert '  stop: ["\\n"]\n' in text
    assert '    - context: "The Tallinn office has a sauna' in text
    assert answer["metadata"]["nux"]["pin"]["params"] == overrides["answer"]
    spec = compile_notebook(path)
    assert spec.stage("retrieve").params["top_k"] == 4
    assert spec.stage("answer").params["prompt"] == "qa@2"
    assert spec.stage("answer").params["seed"] == 7
