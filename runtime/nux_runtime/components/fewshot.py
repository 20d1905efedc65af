"""Few-shot prompts for base (completion) models.

A base model continues text; it answers well when the prompt shows it a few solved examples in
the same shape as the query. Each example is a mapping of the template's variables plus
``output``; it is rendered with the stage's template, followed by its output and a blank line,
and the query comes last with nothing after the template. With ``stop: ["\\n"]`` the model writes
one line, the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nux_runtime.components.template import template_text
from nux_runtime.errors import StageError
from nux_runtime.spec import StageSpec

__all__ = ["build_prompt", "chat_messages", "fill"]


def fill(stage: StageSpec, template: str, values: Mapping[str, Any], where: str) -> str:
    """Render ``template`` with ``values``; a missing variable names ``where`` it was missing."""
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise StageError(stage.id, f"the template reads {{{exc.args[0]}}}, which {where} lacks",
                         category="input") from None
    except (ValueError, IndexError) as exc:
        raise StageError(stage.id, f"the template is malformed: {exc}", category="input") from None


def build_prompt(stage: StageSpec, params: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """The full prompt: the stage's few-shot examples, then the query rendered from inputs."""
    template = template_text(stage, params)
    shots = params.get("few_shot") or []
    if not isinstance(shots, list):
        raise StageError(stage.id, "`few_shot` must be a list of examples", category="input")
    base = {k: v for k, v in params.items() if k not in ("few_shot", "prompt", "template")}
    parts: list[str] = []
    for number, example in enumerate(shots, 1):
        if not isinstance(example, Mapping) or "output" not in example:
            raise StageError(
                stage.id, f"few_shot example {number} must be a mapping with an `output` key",
                category="input")
        shown = fill(stage, template, {**base, **example}, f"few_shot example {number}")
        parts.append(f"{shown.rstrip()} {str(example['output']).strip()}\n\n")
    parts.append(fill(stage, template, {**base, **inputs}, "the stage's inputs"))
    return "".join(parts)


def chat_messages(stage: StageSpec, params: Mapping[str, Any], inputs: Mapping[str, Any]
                  ) -> list[dict[str, str]]:
    """The same few-shot prompt for a chat model: examples as user/assistant turns.

    An optional ``system`` param opens the conversation; the query is the last user turn.
    """
    template = template_text(stage, params)
    base = {k: v for k, v in params.items() if k not in ("few_shot", "prompt", "template")}
    messages = []
    if params.get("system"):
        messages.append({"role": "system", "content": str(params["system"])})
    shots = params.get("few_shot") or []
    if not isinstance(shots, list):
        raise StageError(stage.id, "`few_shot` must be a list of examples", category="input")
    for number, example in enumerate(shots, 1):
        if not isinstance(example, Mapping) or "output" not in example:
            raise StageError(stage.id, f"few_shot example {number} must be a mapping with an "
                             "`output` key", category="input")
        shown = fill(stage, template, {**base, **example}, f"few_shot example {number}")
        messages += [{"role": "user", "content": shown},
                     {"role": "assistant", "content": str(example["output"])}]
    messages.append({"role": "user",
                     "content": fill(stage, template, {**base, **inputs}, "the stage's inputs")})
    return messages
