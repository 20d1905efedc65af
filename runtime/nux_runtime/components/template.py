"""Prompt templates: ``{name}`` placeholders filled from a stage's inputs.

A template is given inline (``template:``) or by reference to the prompt registry
(``prompt: qa@1``); the compiler pins every referenced template into the stage spec, so a
deployed stage never reads a file. Templates use Python's format syntax, the convention of
LangChain's ``PromptTemplate``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from nux_runtime.components.base import Component
from nux_runtime.errors import StageError
from nux_runtime.spec import StageSpec

__all__ = ["TemplateStage", "render_prompt", "template_text", "template_variables"]

_FORMATTER = string.Formatter()


def template_variables(template: str) -> list[str]:
    """The placeholder names a template reads, in order, without duplicates."""
    names: dict[str, None] = {}
    for _, field_name, _, _ in _FORMATTER.parse(template):
        if field_name:
            names[field_name.split(".")[0].split("[")[0]] = None
    return list(names)


def template_text(stage: StageSpec, params: Mapping[str, Any]) -> str:
    """The template a stage renders with these params: a registry prompt or an inline one."""
    ref = params.get("prompt")
    if ref:
        try:
            return stage.prompts[str(ref)]
        except KeyError:
            known = ", ".join(sorted(stage.prompts)) or "none"
            raise StageError(
                stage.id, f"prompt {ref!r} is not pinned in the stage (pinned: {known})"
            ) from None
    text = params.get("template")
    if not isinstance(text, str):
        raise StageError(stage.id, "the stage sets neither `prompt:` nor `template:`")
    return text


def render_prompt(stage: StageSpec, params: Mapping[str, Any], inputs: Mapping[str, Any]) -> str:
    """Fill the stage's template from its inputs (and from params of the same name)."""
    template = template_text(stage, params)
    values = {**params, **inputs}
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise StageError(
            stage.id, f"the template reads {{{exc.args[0]}}}, which is not an input",
            category="input",
        ) from None
    except (ValueError, IndexError) as exc:
        raise StageError(stage.id, f"the template is malformed: {exc}", category="input") from None


class TemplateStage(Component):
    """Renders a prompt template; its output is the text."""

    def __call__(self, inputs: Mapping[str, Any]) -> str:
        return render_prompt(self.stage, self.params, inputs)
