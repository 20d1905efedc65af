"""Policy checks against the vetted catalog: components, params, search spaces, imports, prompts.

Each check appends :class:`~nux_runtime.errors.Problem` records (cell, line, fix) instead of
raising, so ``nux validate`` reports every problem at once.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from jsonschema import ValidationError as SchemaViolation

from nux_kernel.catalog import Catalog, CatalogEntry
from nux_kernel.drafts import Draft
from nux_runtime.components.template import template_variables
from nux_runtime.errors import Problem
from nux_runtime.spec import Dimension

__all__ = [
    "POLICY_CODES",
    "check_component",
    "check_endpoint",
    "check_imports",
    "check_params",
    "check_secrets",
    "read_tune",
    "resolve_prompts",
]

POLICY_CODES = frozenset(
    {"unvetted-component", "kind-mismatch", "param-type", "param-range", "unknown-param",
     "tune-range", "code-import"}
)
PROMPT_REF = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+$")
_RANGE_KEYWORDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "const",
                   "minLength", "maxLength", "pattern", "minItems", "maxItems", "multipleOf"}


def check_component(draft: Draft, catalog: Catalog, problems: list[Problem]) -> CatalogEntry | None:
    """The vetted entry a cell uses, or a policy problem naming close matches."""
    entry = catalog.get(draft.uses)
    if entry is None:
        close = catalog.suggest(draft.uses, draft.kind)
        fix = f"did you mean {' or '.join(close)}?" if close else (
            f"use a {draft.kind} component listed by `nux catalog`, or ask the platform team to "
            "vet this one")
        problems.append(draft.problem(
            "unvetted-component",
            f"component {draft.uses!r} is not in the vetted catalog {catalog.name!r}", fix, "uses"))
        return None
    if entry.kind != draft.kind:
        problems.append(draft.problem(
            "kind-mismatch",
            f"{entry.id!r} is a {entry.kind} component, used in a {draft.kind} cell",
            f"write `%%nux {entry.kind} {draft.stage}`", "uses"))
        return None
    return entry


def _violation(draft: Draft, entry: CatalogEntry, err: SchemaViolation, via: str) -> Problem:
    path = [str(p) for p in err.absolute_path]
    name = path[0] if path else ""
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(entry.params))  # type: ignore[arg-type]
        name = extra[0] if extra else name
        close = difflib.get_close_matches(name, list(entry.params), n=1)
        fix = f"did you mean {close[0]!r}?" if close else (
            f"{entry.id} takes: {', '.join(entry.params) or 'no params'}")
        return draft.problem("unknown-param", f"{entry.id} has no param {name!r}", fix,
                             via, name, field_name=f"{via}.{name}")
    if err.validator == "required":
        return draft.problem("param-missing", err.message, f"set it under `{via}:`", via,
                             field_name=via)
    schema = entry.params.get(name, {})
    bounds = {k: schema[k] for k in sorted(_RANGE_KEYWORDS) if k in schema}
    code = "param-range" if err.validator in _RANGE_KEYWORDS else "param-type"
    allowed = ", ".join(f"{k} {v}" for k, v in bounds.items()) or f"type {schema.get('type')}"
    return draft.problem(code, f"param {name!r}: {err.message}",
                         f"the vetted {entry.id} allows {allowed}", via, name,
                         field_name=f"{via}.{name}")


def check_params(draft: Draft, entry: CatalogEntry, params: Mapping[str, Any],
                 problems: list[Problem], via: str = "params") -> bool:
    """Validate params against the entry's vetted schema; True when they pass."""
    errors = sorted(entry.validator.iter_errors(dict(params)), key=lambda e: list(e.path))
    for err in errors:
        problems.append(_violation(draft, entry, err, via))
    return not errors


#: Components that add the OpenAI ``/v1/...`` paths to their ``base_url`` themselves.
_ADDS_V1 = frozenset({"llm.openai"})


def check_endpoint(draft: Draft, entry: CatalogEntry, params: Mapping[str, Any],
                   problems: list[Problem]) -> None:
    """A ``base_url`` that already ends in ``/v1`` would be called as ``/v1/v1/...``."""
    url = params.get("base_url")
    if entry.implementation not in _ADDS_V1 or not isinstance(url, str):
        return
    root = url.rstrip("/")
    if root.endswith("/v1"):
        problems.append(draft.problem(
            "base-url", f"base_url {url!r} ends in /v1, and {entry.id} adds /v1 itself "
            "(requests would go to /v1/v1/...)", f"write `base_url: {root[:-3]}`", "params",
            "base_url", field_name="params.base_url"))


def check_secrets(draft: Draft, params: Mapping[str, Any], warnings: list[Problem]) -> None:
    """An ``api_key_env`` unset in this environment: a warning (production sets the secret),
    so a run here would fail."""
    name = params.get("api_key_env")
    if isinstance(name, str) and name and name not in os.environ:
        warnings.append(draft.problem(
            "api-key-env", f"the environment variable {name} (api_key_env) is not set here, so "
            "running this stage here fails", f"export {name}=... before `nux run` or `nux eval` "
            "(production reads it from a secret)", "params", "api_key_env",
            field_name="params.api_key_env"))


def read_tune(draft: Draft, entry: CatalogEntry | None, params: Mapping[str, Any],
              problems: list[Problem]) -> dict[str, Dimension]:
    """Turn a cell's ``tune:`` mapping into dimensions inside the vetted ranges."""
    space: dict[str, Dimension] = {}
    for name, raw in draft.tune.items():
        def bad(message: str, fix: str, code: str = "tune", name: str = name) -> None:
            problems.append(draft.problem(code, f"tune {name!r}: {message}", fix, "tune", name,
                                          field_name=f"tune.{name}"))

        known = entry is None or name in entry.params or entry.free_params
        if draft.uses == "code":
            known = name in draft.params
        if not known:
            options = entry.params if entry else draft.params
            bad("no such param", f"tune one of: {', '.join(options)}")
            continue
        if not isinstance(raw, dict):
            bad("must be a mapping", "write e.g. `{int: [1, 8]}`, `{float: [0, 1]}`, "
                "`{log: [1e-3, 1]}` or `{choice: [a, b]}`")
            continue
        if "demos" in raw:
            demos = _read_demos(name, raw, draft, entry, bad)
            if demos is not None:
                space[name] = demos
            continue
        kinds = [k for k in ("int", "float", "log", "choice") if k in raw]
        extra = sorted(set(raw) - {"int", "float", "log", "choice", "step", "if"})
        if len(kinds) != 1 or extra:
            bad("needs exactly one of int, float, log, choice (plus optional step, if)",
                "write e.g. `top_k: {int: [1, 8]}`")
            continue
        kind, values = kinds[0], raw[kinds[0]]
        condition = raw.get("if")
        if condition is not None and (not isinstance(condition, dict) or not all(
                c in params or c in draft.tune for c in condition)):
            bad("`if` must map other params to the values that enable this one",
                "write e.g. `if: {hybrid: true}`")
            continue
        if kind == "choice":
            if not isinstance(values, list) or not values:
                bad("choice needs a non-empty list", "write `{choice: [a, b]}`")
                continue
            probes = list(values)
            dim = Dimension(type="choice", choices=tuple(values), enabled_if=condition)
        else:
            numeric = isinstance(values, list) and len(values) == 2 and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            if not numeric or values[0] >= values[1]:
                bad(f"{kind} needs [low, high] numbers with low < high",
                    f"write `{{{kind}: [1, 8]}}`")
                continue
            if kind == "log" and values[0] <= 0:
                bad("log needs a positive low bound", "write e.g. `{log: [0.001, 1.0]}`")
                continue
            if kind == "int" and not all(isinstance(v, int) for v in values):
                bad("int bounds must be integers", "write e.g. `{int: [1, 8]}`")
                continue
            probes = list(values)
            dim = Dimension.model_validate({"type": kind, "low": values[0], "high": values[1],
                                            "step": raw.get("step"), "enabled_if": condition})
        if entry is not None and draft.uses != "code":
            for probe in probes:
                # only the tuned param's own errors: a wrong value elsewhere in the cell is
                # reported once, on its own line, by check_params
                errors = [e for e in entry.validator.iter_errors({**params, name: probe})
                          if list(e.absolute_path)[:1] == [name]]
                if errors:
                    bad(f"value {probe!r} is outside the vetted range",
                        _violation(draft, entry, errors[0], "tune").fix, code="tune-range")
                    break
            else:
                space[name] = dim
        else:
            space[name] = dim
    return space


#: The most demonstrations a ``few_shot: {demos: [low, high]}`` entry may draw, and the most
#: candidate draws (``sets``) it may compare.
MAX_DEMOS, MAX_DEMO_SETS = 16, 64


def _read_demos(name: str, raw: Mapping[str, Any], draft: Draft, entry: CatalogEntry | None,
                bad: Callable[[str, str], None]) -> Dimension | None:
    """``few_shot: {demos: [low, high], sets: N}``: demonstrations drawn from the bank."""
    if name != "few_shot" or draft.kind != "model" or (
            entry is not None and "few_shot" not in entry.params):
        bad("`demos` tunes a model stage's `few_shot` examples only",
            "write `few_shot: {demos: [0, 4]}` in a model cell whose component takes few_shot")
        return None
    extra = sorted(set(raw) - {"demos", "sets", "if"})
    values, sets = raw.get("demos"), raw.get("sets", 8)
    bounds: list[int] = list(values) if isinstance(values, list) and len(values) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in values) else []
    if extra or not bounds or not 0 <= bounds[0] < bounds[1] <= MAX_DEMOS:
        bad(f"`demos` needs [low, high] whole numbers with 0 <= low < high <= {MAX_DEMOS} "
            "(plus optional `sets`)", "write e.g. `few_shot: {demos: [0, 4], sets: 8}`")
        return None
    if isinstance(sets, bool) or not isinstance(sets, int) or not 1 <= sets <= MAX_DEMO_SETS:
        bad(f"`sets` (how many candidate draws to compare) must be 1 to {MAX_DEMO_SETS}",
            "write e.g. `sets: 8`")
        return None
    if raw.get("if") is not None:
        bad("`demos` cannot be conditional", "drop the `if:`")
        return None
    return Dimension(type="demos", low=bounds[0], high=bounds[1], choices=tuple(range(sets)))


def check_imports(draft: Draft, catalog: Catalog, problems: list[Problem]) -> None:
    for module, line in draft.imports:
        if not catalog.import_allowed(module):
            problems.append(Problem(
                code="code-import",
                message=f"`{module}` is not on the catalog's import allow-list",
                fix=f"use an allowed module ({', '.join(catalog.allow_imports[:6])}, ...) or ask "
                    "the platform team to vet it",
                cell=draft.cell, stage=draft.stage, line=line))


def resolve_prompts(draft: Draft, params: Mapping[str, Any], inline: Mapping[str, Any],
                    base_dir: Path, problems: list[Problem], provided: Iterable[str] = ()
                    ) -> dict[str, str]:
    """Pin every prompt a stage references (its param and its tune choices) by name@version.

    A template may read the stage's inputs, its params and the variables the component
    ``provided`` itself fills.
    """
    refs: list[str] = []
    if isinstance(params.get("prompt"), str):
        refs.append(params["prompt"])
    tune = draft.tune.get("prompt")
    if isinstance(tune, dict) and isinstance(tune.get("choice"), list):
        refs.extend(str(c) for c in tune["choice"])
    pinned: dict[str, str] = {}
    for ref in dict.fromkeys(refs):
        if not PROMPT_REF.match(ref):
            problems.append(draft.problem("prompt-ref", f"prompt {ref!r} is not `name@version`",
                                          "write e.g. `prompt: qa@1`", "params", "prompt"))
            continue
        text = inline.get(ref)
        path = base_dir / "prompts" / f"{ref}.txt"
        if text is None and path.is_file():
            text = path.read_text(encoding="utf-8")
        if not isinstance(text, str):
            problems.append(draft.problem(
                "prompt-missing", f"prompt {ref!r} is not in the prompt registry",
                f"create prompts/{ref}.txt beside the workbook, or add it to metadata.nux.prompts",
                "params", "prompt"))
            continue
        pinned[ref] = text
    templates = list(pinned.values())
    if isinstance(params.get("template"), str):
        templates.append(params["template"])
    allowed = set(draft.inputs) | set(params) | set(provided)
    for text in templates:
        missing = [v for v in template_variables(text) if v not in allowed]
        if missing:
            problems.append(draft.problem(
                "template-variable",
                f"the prompt reads {', '.join('{' + m + '}' for m in missing)}, which "
                f"{'is' if len(missing) == 1 else 'are'} not among the stage's inputs",
                f"add {', '.join(missing)} to `inputs:`", "inputs"))
    return pinned
