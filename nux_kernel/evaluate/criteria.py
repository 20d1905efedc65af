"""Acceptance criteria: how one case's answer is scored.

Each criterion type is a :class:`Scorer` registered under the ``nux.criteria`` entry-point group
(NUX's own in the root ``setup.cfg``, exactly as a third-party package would register one). A
scorer is built once per evaluation from the workbook's :class:`~nux_runtime.spec.Criterion`,
checks its params up front (a bad one is a user error naming the criterion), and gives every case
a :class:`Score`: a value in [0, 1] and a pass/fail.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from jsonschema import Draft202012Validator
from jsonschema import exceptions as jsonschema_exceptions

from nux_kernel.evaluate.bank import Case
from nux_kernel.executor import RunResult
from nux_runtime import registry
from nux_runtime.answer_checks import (
    answer_text,
    check_for,
    json_valid,
    pick_field,
    schema_param,
)
from nux_runtime.errors import NuxError, Problem
from nux_runtime.spec import Criterion, WorkbookSpec

__all__ = [
    "Contains",
    "ExactMatch",
    "JsonSchemaValid",
    "JsonValid",
    "Metric",
    "RegexMatch",
    "Score",
    "Scorer",
    "Scoring",
    "build_scorers",
    "check_criteria",
    "criterion_problem",
    "known_types",
    "pick_field",
    "scorer_class",
]


@dataclass(frozen=True)
class Score:
    """A case's score on one criterion."""

    value: float
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "passed": self.passed, "detail": self.detail}


@dataclass
class Scoring:
    """What a scorer sees for one case: the case, the scored value and the whole run."""

    case: Case
    actual: Any
    result: RunResult
    answered: bool = True
    reason: str = ""


CRITERIA_FIELD = "metadata.nux.criteria"


def criterion_problem(criterion: Criterion, message: str, fix: str,
                      where: str = CRITERIA_FIELD) -> Problem:
    return Problem(code="criterion", message=f"criterion {criterion.name!r}: {message}", fix=fix,
                   field=where)


def _problem(criterion: Criterion, message: str, fix: str) -> NuxError:
    return NuxError(problems=[criterion_problem(criterion, message, fix)])


def _did_you_mean(name: str, known: Iterable[str], otherwise: str) -> str:
    options = sorted(known)
    close = difflib.get_close_matches(name, options, n=1)
    return f"did you mean {close[0]!r}?" if close else f"{otherwise}: {', '.join(options)}"


def _number(criterion: Criterion, key: str, where: str) -> list[Problem]:
    value = criterion.params.get(key)
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return []
    return [criterion_problem(criterion, f"`{key}` must be a number, not {value!r}",
                              f"write e.g. `{key}: 0.7`", where)]


_text = answer_text


class Scorer:
    """Base of every criterion type. Subclasses set ``type`` and override :meth:`score`."""

    type: ClassVar[str] = ""
    #: Param names this type accepts; ``threshold`` and ``field`` are always allowed.
    params: ClassVar[tuple[str, ...]] = ()
    #: Params every criterion takes.
    common: ClassVar[tuple[str, ...]] = ("threshold", "field")

    @classmethod
    def check(cls, criterion: Criterion, stages: Collection[str],
              where: str = CRITERIA_FIELD) -> list[Problem]:
        """What is wrong with the criterion as written, found without building it (``nux
        validate`` and the compiler call this; a subclass extends it with its own params)."""
        problems = []
        allowed = (*cls.params, *cls.common)
        for name in sorted(set(criterion.params) - set(allowed)):
            problems.append(criterion_problem(
                criterion, f"{cls.type} has no param {name!r}",
                _did_you_mean(name, allowed, f"{cls.type} takes"), where))
        if criterion.stage is not None and criterion.stage not in stages:
            problems.append(criterion_problem(
                criterion, f"no stage {criterion.stage!r}",
                _did_you_mean(criterion.stage, stages, "name one of"), where))
        problems += _number(criterion, "threshold", where)
        picked = criterion.params.get("field")
        if picked is not None and (not isinstance(picked, str) or not picked.strip("/")):
            problems.append(criterion_problem(
                criterion, f"`field` must be a path such as `category` or `/items/0/name`, not "
                f"{picked!r}", "write e.g. `field: category`", where))
        return problems

    def __init__(self, criterion: Criterion, spec: WorkbookSpec, base_dir: Path) -> None:
        self.criterion = criterion
        self.spec = spec
        self.base_dir = base_dir
        problems = type(self).check(criterion, spec.by_id)
        if problems:
            raise NuxError(problems=problems)
        self.threshold = float(criterion.params.get("threshold", 1.0))

    @property
    def name(self) -> str:
        return self.criterion.name

    def stages(self) -> tuple[str, ...]:
        """Stages the run must reach besides the output (the scored stage)."""
        return (self.criterion.stage,) if self.criterion.stage else ()

    def pick(self, item: Scoring) -> Scoring:
        """The scored part of the case: with ``field``, that path of the answer (and of the
        expected value, when it is a JSON object or array holding the path)."""
        path = self.criterion.params.get("field")
        if not isinstance(path, str) or not item.answered:
            return item
        found, actual = pick_field(item.actual, path)
        if not found:
            return Scoring(item.case, None, item.result, False,
                           f"the answer has no field {path!r}")
        case = item.case
        if isinstance(case.expected, Mapping | list):
            has, expected = pick_field(case.expected, path)
            if has:
                case = replace(case, expected=expected)
        return Scoring(case, actual, item.result, True, item.reason)

    def score(self, item: Scoring) -> Score:
        raise NotImplementedError

    def score_many(self, items: Sequence[Scoring]) -> list[Score]:
        """Score every case (a scorer that batches, such as an embedder, overrides this)."""
        return [self.score(i) if i.answered else Score(0.0, False, i.reason) for i in items]

    def close(self) -> None:
        """Release what the scorer loaded."""


def _flag(value: bool, detail: str = "") -> Score:
    return Score(1.0 if value else 0.0, value, detail)


class ExactMatch(Scorer):
    """The answer equals the expected one (strings stripped; ``ignore_case`` optional)."""

    type = "exact"
    params = ("ignore_case", "strip")

    def score(self, item: Scoring) -> Score:
        actual, expected = item.actual, item.case.expected
        if isinstance(actual, str) and isinstance(expected, str):
            if self.criterion.params.get("strip", True):
                actual, expected = actual.strip(), expected.strip()
            if self.criterion.params.get("ignore_case", False):
                actual, expected = actual.casefold(), expected.casefold()
            return _flag(actual == expected)
        return _flag(_text(actual) == _text(expected))


class Contains(Scorer):
    """The answer contains the expected text (or each of ``values``/a list ``expected``)."""

    type = "contains"
    params = ("value", "values", "ignore_case", "any")

    def score(self, item: Scoring) -> Score:
        p = self.criterion.params
        wanted = p.get("values") or ([p["value"]] if "value" in p else item.case.expected)
        needles = [_text(w) for w in (wanted if isinstance(wanted, list) else [wanted])
                   if w is not None]
        if not needles:
            return Score(0.0, False, "nothing to look for: the case has no `expected`")
        hay = _text(item.actual)
        if p.get("ignore_case", True):
            hay, needles = hay.casefold(), [n.casefold() for n in needles]
        found = [n in hay for n in needles]
        value = sum(found) / len(found)
        passed = any(found) if p.get("any", False) else all(found)
        missing = [n for n, f in zip(needles, found, strict=True) if not f]
        return Score(value, passed, f"missing: {', '.join(missing)}" if missing else "")


class RegexMatch(Scorer):
    """The answer matches ``pattern`` (``re.search``), or the case's expected pattern."""

    type = "regex"
    params = ("pattern", "ignore_case", "fullmatch")

    @classmethod
    def check(cls, criterion: Criterion, stages: Collection[str],
              where: str = CRITERIA_FIELD) -> list[Problem]:
        problems = super().check(criterion, stages, where)
        pattern = criterion.params.get("pattern")
        if pattern is not None:
            try:
                re.compile(str(pattern))
            except re.error as exc:
                problems.append(criterion_problem(
                    criterion, f"invalid regex {pattern!r}: {exc}",
                    "fix the pattern (Python `re` syntax)", where))
        return problems

    def __init__(self, criterion: Criterion, spec: WorkbookSpec, base_dir: Path) -> None:
        super().__init__(criterion, spec, base_dir)
        self.flags = re.IGNORECASE if criterion.params.get("ignore_case") else 0
        # with a pattern the answer alone decides: the served app's check, exactly
        self.answer_check = check_for(self.type, _without_field(criterion.params))

    def score(self, item: Scoring) -> Score:
        if self.answer_check is not None:
            return _flag(*self.answer_check(item.actual))
        if item.case.expected is None:
            return Score(0.0, False, "no `pattern` param and no `expected` pattern")
        try:
            pattern = re.compile(str(item.case.expected), self.flags)
        except re.error as exc:
            return Score(0.0, False, f"case {item.case.id}: invalid regex: {exc}")
        match = (pattern.fullmatch if self.criterion.params.get("fullmatch") else pattern.search)
        return _flag(match(_text(item.actual)) is not None)


def _without_field(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params for the shared answer check: ``field`` is picked by :meth:`Scorer.pick`."""
    return {k: v for k, v in params.items() if k != "field"}


class JsonValid(Scorer):
    """The answer is valid JSON (a JSON string, or a JSON-serializable value)."""

    type = "json"

    def score(self, item: Scoring) -> Score:
        return _flag(*json_valid(item.actual))


class JsonSchemaValid(Scorer):
    """The answer validates against ``schema``, by default the scored stage's typed output."""

    type = "json_schema"
    params = ("schema",)

    @classmethod
    def check(cls, criterion: Criterion, stages: Collection[str],
              where: str = CRITERIA_FIELD) -> list[Problem]:
        problems = super().check(criterion, stages, where)
        raw = criterion.params.get("schema")
        schema = schema_param(raw)
        if raw is not None and schema is None:
            problems.append(criterion_problem(
                criterion, "`schema` must be a JSON schema (a mapping, or its JSON text)",
                "write e.g. `schema: {type: object, required: [total]}`", where))
        elif schema is not None:
            try:
                Draft202012Validator.check_schema(schema)
            except jsonschema_exceptions.SchemaError as exc:
                problems.append(criterion_problem(criterion, f"invalid JSON schema: {exc.message}",
                                                  "fix `schema:`", where))
        return problems

    def __init__(self, criterion: Criterion, spec: WorkbookSpec, base_dir: Path) -> None:
        super().__init__(criterion, spec, base_dir)
        schema = schema_param(criterion.params.get("schema"))
        if schema is None:
            schema = (spec.stage(criterion.stage).output_schema if criterion.stage
                      else spec.output_schema())
        if not schema:
            raise _problem(criterion, "the scored stage declares no output type",
                           "annotate the stage's return type or give `schema:`")
        try:
            Draft202012Validator.check_schema(schema)
        except jsonschema_exceptions.SchemaError as exc:
            raise _problem(criterion, f"invalid JSON schema: {exc.message}",
                           "fix `schema:`") from None
        self.answer_check = check_for(self.type, {"schema": schema})

    def score(self, item: Scoring) -> Score:
        assert self.answer_check is not None
        return _flag(*self.answer_check(item.actual))


class Metric(Scorer):
    """A custom metric written as a code cell: the stage's return value is the score.

    The stage returns a bool or a number in [0, 1]; it passes at ``threshold`` (default 0.5).
    When the workbook declares an input named ``expected``, the case's expected answer is fed to
    it, so a metric cell can compare with it.
    """

    type = "metric"

    @classmethod
    def check(cls, criterion: Criterion, stages: Collection[str],
              where: str = CRITERIA_FIELD) -> list[Problem]:
        problems = super().check(criterion, stages, where)
        if criterion.stage is None:
            problems.append(criterion_problem(
                criterion, "a metric names the code stage that computes it",
                "write `{type: metric, stage: <code stage id>}`", where))
        return problems

    def __init__(self, criterion: Criterion, spec: WorkbookSpec, base_dir: Path) -> None:
        super().__init__(criterion, spec, base_dir)
        self.threshold = float(criterion.params.get("threshold", 0.5))

    def score(self, item: Scoring) -> Score:
        value = item.actual
        if isinstance(value, bool):
            return _flag(value)
        if not isinstance(value, int | float) or math.isnan(float(value)):
            return Score(0.0, False, f"stage {self.criterion.stage} returned {value!r}, "
                                     "not a number")
        bounded = min(1.0, max(0.0, float(value)))
        return Score(bounded, bounded >= self.threshold)


def scorer_class(name: str) -> type[Scorer] | None:
    """The scorer registered as ``name`` under ``nux.criteria`` (NUX's own ones included: the
    root ``setup.cfg`` registers them, so a model-based scorer's module is imported only when a
    workbook uses it); None when nothing is registered under that name."""
    if name not in registry.available("nux.criteria"):
        return None
    cls = registry.load("nux.criteria", name)
    if isinstance(cls, type) and issubclass(cls, Scorer):
        return cls
    raise NuxError(f"{name!r} in nux.criteria is not a Scorer subclass")


def known_types() -> list[str]:
    """Every criterion type registered under ``nux.criteria``."""
    return registry.available("nux.criteria")


def check_criteria(criteria: Sequence[Criterion], stages: Collection[str]
                   ) -> tuple[list[Problem], list[type[Scorer] | None]]:
    """Every problem with the criteria as written (type, params, stage, names), found without
    building a scorer, and each criterion's scorer class (None for a bad one)."""
    problems: list[Problem] = []
    classes: list[type[Scorer] | None] = []
    names = [c.name for c in criteria]
    for i, criterion in enumerate(criteria):
        where = f"{CRITERIA_FIELD}[{i}]"
        classes.append(None)
        if names.index(criterion.name) != i:
            problems.append(Problem(code="criterion", message=f"two criteria are named "
                                    f"{criterion.name!r}", fix="give each criterion a `name`",
                                    field=where))
            continue
        cls = scorer_class(criterion.type)
        if cls is None:
            problems.append(criterion_problem(
                criterion, f"unknown type {criterion.type!r}",
                _did_you_mean(criterion.type, known_types(), "use one of"), where))
            continue
        found = cls.check(criterion, stages, where)
        problems += found
        if not found:
            classes[i] = cls
    return problems, classes


def build_scorers(spec: WorkbookSpec, base_dir: Path) -> list[Scorer]:
    """One scorer per criterion of the workbook; every bad criterion reported at once."""
    scorers: list[Scorer] = []
    problems, classes = check_criteria(spec.criteria, spec.by_id)
    for i, (criterion, cls) in enumerate(zip(spec.criteria, classes, strict=True)):
        if cls is None:
            continue
        try:
            scorers.append(cls(criterion, spec, base_dir))
        except NuxError as exc:
            problems.extend(replace(p, field=f"{CRITERIA_FIELD}[{i}]") for p in exc.problems)
    if problems:
        for scorer in scorers:
            scorer.close()
        raise NuxError(problems=problems)
    return scorers
