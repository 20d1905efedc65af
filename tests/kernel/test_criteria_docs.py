"""docs/evaluate-and-tune.md documents every criterion type with a script; each script runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nux_kernel.evaluate.criteria import known_types

DOC = Path(__file__).resolve().parents[2] / "docs" / "evaluate-and-tune.md"
#: The session fixtures a model-based example shares, so it loads nothing twice.
MODELS = {"semantic": "minilm", "judge": "gemma"}


def examples() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for section in re.split(r"^### ", text, flags=re.M)[1:]:
        title = section.split("\n", 1)[0].strip()
        block = re.search(r"```python\n(.*?)```", section, re.S)
        if block:
            found[title.strip("`")] = block.group(1)
    return found


EXAMPLES = examples()


def test_every_criterion_type_has_a_documented_example() -> None:
    missing = [t for t in known_types() if t not in EXAMPLES]
    assert not missing, f"no section with an example for {missing} in {DOC.name}"
    assert any("field" in source for source in EXAMPLES.values())


@pytest.mark.parametrize("title", list(EXAMPLES))
def test_documented_example_runs(title: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 request: pytest.FixtureRequest) -> None:
    if title in MODELS:
        request.getfixturevalue(MODELS[title])
    monkeypatch.chdir(tmp_path)
    exec(compile(EXAMPLES[title], f"{DOC.name}: {title}", "exec"), {"__name__": "__doc__"})
