"""Compile a workbook (a notebook or a Python-built :class:`Workbook`) into a `WorkbookSpec`.

Two phases, as ploomber renders before it builds: everything is read and checked first, every
problem collected (cell, line, fix), and only a workbook with none becomes a frozen spec.
Compiling never executes the notebook.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from jsonschema import Draft202012Validator
from jsonschema import exceptions as jsonschema_exceptions
from pydantic import ValidationError

from nux_kernel.catalog import Catalog, load_catalog
from nux_kernel.drafts import Draft, read_draft
from nux_kernel.evaluate.criteria import check_criteria
from nux_kernel.evaluate.summary import acceptance_problems
from nux_kernel.notebook import WorkbookSource, read_notebook
from nux_kernel.policy import (
    POLICY_CODES,
    check_component,
    check_endpoint,
    check_imports,
    check_params,
    check_secrets,
    read_tune,
    resolve_prompts,
)
from nux_runtime.conditions import ConditionError, condition_names
from nux_runtime.dag import Graph, GraphCycle
from nux_runtime.errors import PolicyError, Problem, WorkbookError
from nux_runtime.spec import Criterion, Resources, Sandbox, Scale, StageSpec, WorkbookSpec

__all__ = ["check_workbook", "compile_notebook", "compile_workbook", "input_schema"]


def input_schema(raw: Any, problems: list[Problem]) -> dict[str, Any]:
    """Normalize ``metadata.nux.inputs`` into an object JSON schema.

    Accepts a full object schema, a mapping of name -> schema (or type name), or a list of names
    (strings). Every input is required unless the schema says otherwise.
    """
    field = "metadata.nux.inputs"
    if raw is None:
        raw = {}
    if isinstance(raw, list) and all(isinstance(n, str) for n in raw):
        raw = {n: {"type": "string"} for n in raw}
    if not isinstance(raw, dict):
        problems.append(Problem(code="metadata-inputs", message="`inputs` must be a mapping",
                                fix="write `inputs: {question: {type: string}}`", field=field))
        return {"type": "object", "properties": {}}
    if raw.get("type") == "object":
        schema = dict(raw)
    else:
        props = {str(k): ({"type": v} if isinstance(v, str) else v) for k, v in raw.items()}
        schema = {"type": "object", "properties": props, "required": list(props)}
    schema.setdefault("properties", {})
    schema.setdefault("additionalProperties", False)
    try:
        Draft202012Validator.check_schema(schema)
    except jsonschema_exceptions.SchemaError as exc:
        problems.append(Problem(code="metadata-inputs",
                                message=f"the input schema is invalid: {exc.message}",
                                fix="give each input a JSON schema such as {type: string}",
                                field=field))
        return {"type": "object", "properties": {}}
    return schema


def _metadata(meta: Mapping[str, Any], problems: list[Problem]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    name = meta.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem(code="metadata-name", message="the workbook has no name",
                                fix="set metadata.nux.name, e.g. `rag-qa`",
                                field="metadata.nux.name"))
        name = "workbook"
    out["name"] = name
    out["description"] = str(meta.get("description", ""))
    out["inputs"] = input_schema(meta.get("inputs"), problems)
    output = meta.get("output")
    if isinstance(output, str):
        output = [output]
    if not isinstance(output, list) or not output or not all(isinstance(o, str) for o in output):
        problems.append(Problem(code="missing-output", message="the workbook names no output stage",
                                fix="set metadata.nux.output to the id of the answering stage",
                                field="metadata.nux.output"))
        output = []
    out["output"] = tuple(output)
    criteria: list[Criterion] = []
    raw_criteria = meta.get("criteria") or []
    if not isinstance(raw_criteria, list):
        problems.append(Problem(code="metadata-criteria",
                                message="`criteria` must be a list of criteria",
                                fix="write e.g. `criteria: [{type: contains, name: mentions}]`",
                                field="metadata.nux.criteria"))
        raw_criteria = []
    for i, raw in enumerate(raw_criteria):
        try:
            body = dict(raw)
            ctype = body.pop("type")
            criteria.append(Criterion(name=str(body.pop("name", ctype)), type=str(ctype),
                                      stage=body.pop("stage", None), params=body))
        except (TypeError, ValueError, KeyError):
            problems.append(Problem(code="metadata-criteria",
                                    message=f"criterion #{i + 1} must be a mapping with a `type`",
                                    fix="write e.g. `{type: contains, name: mentions-answer}`",
                                    field=f"metadata.nux.criteria[{i}]"))
    out["criteria"] = tuple(criteria)
    acceptance = meta.get("acceptance") or {}
    if not isinstance(acceptance, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in acceptance.values()):
        problems.append(Problem(code="metadata-acceptance",
                                message="`acceptance` must map names to numbers",
                                fix="write e.g. `{pass_rate: 0.8, p95_ms: 800}`",
                                field="metadata.nux.acceptance"))
        acceptance = {}
    out["acceptance"] = {str(k): float(v) for k, v in acceptance.items()}
    bank = meta.get("test_bank")
    if bank is not None and not isinstance(bank, str):
        problems.append(Problem(code="metadata-test-bank",
                                message="`test_bank` must be a path",
                                fix="write e.g. `test_bank: cases.jsonl`",
                                field="metadata.nux.test_bank"))
        bank = None
    out["test_bank"] = bank
    prompts = meta.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
        problems.append(Problem(code="metadata-prompts",
                                message="`prompts` must map `name@version` to prompt text",
                                fix="write e.g. `prompts: {qa@1: 'Answer: {question}'}`",
                                field="metadata.nux.prompts"))
        prompts = {}
    out["prompts"] = prompts
    return out


def _check_names(drafts: list[Draft], inputs: set[str], problems: list[Problem]) -> None:
    stages = {d.stage for d in drafts}
    known = sorted(inputs | stages)
    for draft in drafts:
        if draft.stage in inputs:
            problems.append(draft.problem(
                "name-clash", f"stage id {draft.stage!r} is also a workbook input",
                "rename the stage or the input"))
        names = [(n, "inputs") for n in draft.inputs]
        if draft.when:
            try:
                names += [(n, "when") for n in condition_names(draft.when)]
            except ConditionError as exc:
                problems.append(draft.problem("when", str(exc), "write a Python expression such as "
                                              "`route == 'hard'`", "when"))
        for name, key in names:
            if name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            fix = f"did you mean {close[0]!r}?" if close else (
                f"add {name!r} to metadata.nux.inputs or define a stage with that id")
            problems.append(draft.problem(
                "unknown-input", f"{name!r} is neither a workbook input nor a stage", fix, key,
                name))


def _check_types(drafts: dict[str, Draft], inputs: Mapping[str, Any],
                 problems: list[Problem]) -> None:
    """A code cell's annotated input type must agree with what feeds it."""
    for draft in drafts.values():
        for name, expected in draft.input_schemas.items():
            upstream = drafts[name].output_schema if name in drafts else inputs.get(name, {})
            want, got = expected.get("type"), upstream.get("type")
            if want and got and want != got and not (want == "number" and got == "integer"):
                problems.append(draft.problem(
                    "type-mismatch",
                    f"input {name!r} is annotated {want} but {name!r} gives {got}",
                    "change the annotation or the upstream stage's output type"))


M = TypeVar("M", Resources, Scale)


def _section(draft: Draft, key: str, model: type[M], default: M, problems: list[Problem]
             ) -> M | None:
    """A cell's ``resources:`` or ``scale:`` over the catalog's defaults."""
    value = draft.options.get(key, {})
    if not isinstance(value, dict):
        problems.append(draft.problem(key, f"`{key}` must be a mapping",
                                      f"write `{key}: {{name: value}}`", key))
        return None
    try:
        return model.model_validate({**default.model_dump(), **value})
    except ValidationError as exc:
        for err in exc.errors():
            path: list[str] = [str(x) for x in err["loc"]]
            problems.append(draft.problem(
                key, f"{key}{'.' + '.'.join(path) if path else ''}: {err['msg']}",
                f"see `{key}:` in docs/workbook-format.md", key, *path[:1],
                field_name=".".join([key, *path])))
        return None


def _check_fallbacks(drafts: dict[str, Draft], graph: Graph, problems: list[Problem]) -> None:
    """A ``fallback:`` names another stage that does not depend on the one it replaces."""
    for draft in drafts.values():
        fallback = draft.options.get("fallback")
        if fallback is None:
            continue
        if not isinstance(fallback, str) or fallback not in drafts:
            close = difflib.get_close_matches(str(fallback), list(drafts), n=1)
            problems.append(draft.problem(
                "unknown-fallback", f"the fallback {fallback!r} is not a stage",
                f"did you mean {close[0]!r}?" if close else "name a stage of this workbook",
                "fallback"))
        elif fallback == draft.stage or fallback in graph.descendants([draft.stage]):
            problems.append(draft.problem(
                "fallback-cycle", f"the fallback {fallback!r} depends on {draft.stage!r}",
                "use a stage that does not read the one it replaces", "fallback"))


def _build_stage(draft: Draft, catalog: Catalog, meta: Mapping[str, Any], base_dir: Path,
                 problems: list[Problem], warnings: list[Problem]) -> StageSpec | None:
    before = len(problems)
    entry = check_component(draft, catalog, problems)
    if entry is None:
        return None
    params = {**entry.defaults(), **draft.params}
    if draft.uses != "code":
        check_params(draft, entry, params, problems)
        check_endpoint(draft, entry, params, problems)
        check_secrets(draft, params, warnings)
    tune = read_tune(draft, entry, params, problems)
    check_imports(draft, catalog, problems)
    prompts = resolve_prompts(draft, params, meta["prompts"], base_dir, problems,
                              entry.provides)
    opts = draft.options
    resources = _section(draft, "resources", Resources, entry.resources, problems)
    scale = _section(draft, "scale", Scale, entry.scale, problems)
    if len(problems) > before or resources is None or scale is None:
        return None
    try:
        return StageSpec(
            id=draft.stage, kind=draft.kind, component=entry.ref(), inputs=tuple(draft.inputs),  # type: ignore[arg-type]
            params=params, tune=tune, when=draft.when, input_schemas=draft.input_schemas,
            output_schema=draft.output_schema or entry.output, resources=resources, scale=scale,
            cost=entry.cost, source=draft.source, function=draft.function, prompts=prompts,
            timeout_s=opts.get("timeout_s"), retries=opts.get("retries", 0),
            fallback=opts.get("fallback"), origin=draft.origin(),
            sandbox=Sandbox(allow_imports=tuple(catalog.allow_imports),
                            withhold_builtins=tuple(catalog.withhold_builtins))
            if draft.source is not None else None,
        )
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            problems.append(draft.problem("stage-option", f"{loc}: {err['msg']}",
                                          "see docs/workbook-format.md", loc.split(".")[0]))
        return None


def check_workbook(source: WorkbookSource, catalog: Catalog | None = None,
                   warnings: list[Problem] | None = None
                   ) -> tuple[WorkbookSpec | None, list[Problem]]:
    """Compile and check; the spec (None when there are problems) and every problem found.

    ``warnings`` collects what compiles but would fail a run in this environment (an unset
    ``api_key_env``); they never stop the compile.
    """
    warnings = warnings if warnings is not None else []
    problems = list(source.problems)
    try:
        catalog = catalog or load_catalog()
    except WorkbookError as exc:
        return None, problems + exc.problems
    meta = _metadata(source.metadata, problems)
    drafts: dict[str, Draft] = {}
    for cell in source.cells:
        draft = read_draft(cell.stage, cell.kind, cell.cell, cell.body)
        if isinstance(draft, list):
            problems.extend(draft)
            draft = Draft(stage=cell.stage, kind=cell.kind, cell=cell.cell, uses="")
        problems.extend(draft.problems)
        if cell.stage in drafts:
            first = drafts[cell.stage]
            problems.append(draft.problem(
                "duplicate-stage", f"stage id {cell.stage!r} is already used by cell {first.cell}",
                "give each stage a unique id"))
            continue
        drafts[cell.stage] = draft
    inputs = set(meta["inputs"]["properties"])
    _check_names(list(drafts.values()), inputs, problems)
    graph = Graph({d.stage: d.inputs + (
        [n for n in _safe_names(d.when) if n not in d.inputs] if d.when else [])
        for d in drafts.values()})
    try:
        graph.order()
    except GraphCycle as cycle:
        first = drafts[cycle.stages[0]]
        problems.append(first.problem(
            "cycle", f"the stages form a cycle: {' -> '.join(cycle.stages)}",
            "remove one of these inputs so data flows one way", "inputs"))
    for out in meta["output"]:
        if out not in drafts:
            close = difflib.get_close_matches(out, list(drafts), n=1)
            problems.append(Problem(
                code="missing-output", message=f"the output stage {out!r} does not exist",
                fix=f"did you mean {close[0]!r}?" if close else "set metadata.nux.output to a "
                "stage id", field="metadata.nux.output"))
    _check_fallbacks(drafts, graph, problems)
    problems += check_criteria(meta["criteria"], drafts)[0]
    problems += acceptance_problems(meta["acceptance"], (c.name for c in meta["criteria"]))
    _check_types(drafts, meta["inputs"]["properties"], problems)
    stages = [_build_stage(d, catalog, meta, source.base_dir, problems, warnings)
              for d in drafts.values() if d.uses]
    if problems:
        return None, problems
    spec = WorkbookSpec(
        name=meta["name"], description=meta["description"], inputs=meta["inputs"],
        stages=tuple(s for s in stages if s is not None), output=meta["output"],
        criteria=meta["criteria"], acceptance=meta["acceptance"], test_bank=meta["test_bank"],
        catalog=catalog.ref())
    return spec, []


def _safe_names(expression: str) -> tuple[str, ...]:
    try:
        return condition_names(expression)
    except ConditionError:
        return ()


def compile_workbook(source: WorkbookSource, catalog: Catalog | None = None) -> WorkbookSpec:
    """Compile a workbook source; raises :class:`WorkbookError` (or :class:`PolicyError`)."""
    spec, problems = check_workbook(source, catalog)
    if spec is None:
        if all(p.code in POLICY_CODES for p in problems):
            raise PolicyError(problems=problems)
        raise WorkbookError(problems=problems)
    return spec


def compile_notebook(path: str | Path, catalog: Catalog | None = None) -> WorkbookSpec:
    """Read and compile an ``.ipynb`` workbook."""
    return compile_workbook(read_notebook(path), catalog)
