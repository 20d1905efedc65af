"""`WorkbookSpec`: the one frozen object everything downstream of the notebook consumes.

A notebook is live and editable; the compiler in ``nux_kernel`` turns it into a ``WorkbookSpec``
once, checks it whole, and from then on the executor, the tuner, the exporters and the production
runtime read only this object. It is a versioned pydantic model with a JSON schema
(:func:`spec_json_schema`) and a content hash (:attr:`WorkbookSpec.hash`) that ignores where
things were written (cell ids, lines) and covers everything that changes behaviour.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nux_runtime.dag import Graph

__all__ = [
    "SPEC_VERSION",
    "CatalogRef",
    "ComponentRef",
    "CostModel",
    "Criterion",
    "Dimension",
    "Origin",
    "Resources",
    "Sandbox",
    "Scale",
    "StageKind",
    "StageSpec",
    "WorkbookSpec",
    "canonical_json",
    "spec_json_schema",
]

SPEC_VERSION = "1"

StageKind = Literal["model", "data", "code"]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the text every NUX hash is taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Origin(_Frozen):
    """Where a stage was written: the notebook cell id and the line of its ``%%nux`` header.

    Not part of any hash: moving a cell does not change what it does.
    """

    cell: str = Field(description="Notebook cell id, or the stage id for a Python-built workbook.")
    line: int = Field(default=1, description="1-based line of the `%%nux` header in the cell.")


class ComponentRef(_Frozen):
    """A vetted catalog component, pinned by version and by the hash of its catalog entry."""

    id: str = Field(description="Catalog id, e.g. `llm.local/gemma-3-270m` or `code`.")
    version: str = Field(description="The catalog entry's version.")
    implementation: str = Field(description="Entry point name in the `nux.components` group.")
    hash: str = Field(description="sha256 of the catalog entry this stage was vetted against.")


class CostModel(_Frozen):
    """Prices from the catalog; a trace's cost is tokens plus replica time at these prices."""

    input_per_1k: float = Field(default=0.0, ge=0, description="USD per 1K input tokens.")
    output_per_1k: float = Field(default=0.0, ge=0, description="USD per 1K output tokens.")
    per_call: float = Field(default=0.0, ge=0, description="USD per call (hosted APIs).")
    replica_hour: float = Field(
        default=0.0, ge=0, description="USD per replica-hour of the node a self-hosted stage uses."
    )

    def cost(self, tokens_in: int, tokens_out: int, seconds: float) -> float:
        """The whole cost of one call: tokens at the price table plus the replica time it held."""
        return (
            tokens_in / 1000.0 * self.input_per_1k
            + tokens_out / 1000.0 * self.output_per_1k
            + self.per_call
            + seconds / 3600.0 * self.replica_hour
        )


class Resources(_Frozen):
    """What one replica of the stage needs (Ray actor options)."""

    num_cpus: float = Field(default=1.0, ge=0, description="CPUs per replica.")
    num_gpus: float = Field(default=0.0, ge=0, description="GPUs per replica (0: a CPU stage).")
    memory_mb: int | None = Field(default=None, ge=1, description="Memory per replica in MiB.")


class Scale(_Frozen):
    """How the stage's deployment scales in production."""

    min_replicas: int = Field(default=1, ge=0, description="Replicas kept warm.")
    max_replicas: int = Field(default=1, ge=1, description="Upper bound for autoscaling.")
    target_ongoing_requests: float = Field(
        default=2.0, gt=0, description="Autoscaling target of in-flight requests per replica."
    )
    max_ongoing_requests: int = Field(
        default=8, ge=1, description="Requests a replica accepts at once before queueing."
    )

    @model_validator(mode="after")
    def _bounds(self) -> Scale:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is greater than max_replicas "
                f"({self.max_replicas})"
            )
        return self


class Dimension(_Frozen):
    """One tunable parameter: an Optuna distribution, optionally enabled by another choice.

    ``demos`` tunes a model stage's ``few_shot``: how many demonstrations (``low`` to ``high``)
    are drawn from the tuning part of the test bank, and which candidate draw (``choices``
    numbers the candidate draws).
    """

    type: Literal["int", "float", "log", "choice", "demos"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] | None = None
    enabled_if: dict[str, Any] | None = Field(
        default=None,
        description="Conditional space: sampled only when these params take these values.",
    )


class Criterion(_Frozen):
    """An acceptance criterion the workbook names (scored by ``nux eval``)."""

    name: str
    type: str = Field(description="exact, contains, regex, json, json_schema, semantic, judge, ...")
    stage: str | None = Field(default=None, description="Stage scored; the output by default.")
    params: dict[str, Any] = Field(default_factory=dict)


class CatalogRef(_Frozen):
    """The catalog the workbook was compiled against."""

    name: str
    version: str
    hash: str


class Sandbox(_Frozen):
    """What a code stage's function may reach when it runs, from the catalog it was vetted by."""

    allow_imports: tuple[str, ...] = Field(
        default=(), description="Modules the code may import, with their submodules."
    )
    withhold_builtins: tuple[str, ...] = Field(
        default=(), description="Builtins withheld from the code, beyond those NUX always is."
    )


class StageSpec(_Frozen):
    """One frozen stage: a vetted component, its resolved params, its edges and its resources."""

    id: str
    kind: StageKind
    component: ComponentRef
    inputs: tuple[str, ...] = Field(description="Workbook inputs or upstream stage ids.")
    params: dict[str, Any] = Field(default_factory=dict, description="Resolved parameters.")
    tune: dict[str, Dimension] = Field(default_factory=dict, description="Search space.")
    when: str | None = Field(default=None, description="Run only when this condition holds.")
    input_schemas: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="JSON schema of each input the stage accepts."
    )
    output_schema: dict[str, Any] = Field(
        default_factory=dict, description="JSON schema of the stage's output."
    )
    resources: Resources = Field(default_factory=Resources)
    scale: Scale = Field(default_factory=Scale)
    cost: CostModel = Field(default_factory=CostModel)
    source: str | None = Field(default=None, description="A code stage's Python source.")
    function: str | None = Field(default=None, description="A code stage's function name.")
    prompts: dict[str, str] = Field(
        default_factory=dict, description="Prompt templates this stage references, by name@version."
    )
    timeout_s: float | None = Field(default=None, gt=0, description="Per-call timeout.")
    retries: int = Field(default=0, ge=0, le=10, description="Retries for transient errors.")
    fallback: str | None = Field(default=None, description="Stage id answering when this fails.")
    sandbox: Sandbox | None = Field(
        default=None, description="A code stage's import allow-list and withheld builtins."
    )
    origin: Origin | None = Field(default=None, description="Where the stage was written.")

    def body(self) -> dict[str, Any]:
        """Everything that changes what the stage does (no origin)."""
        exclude = {"origin"} if self.sandbox is not None else {"origin", "sandbox"}
        return self.model_dump(mode="json", exclude=exclude)

    @cached_property
    def hash(self) -> str:
        """Content hash of the stage: the first half of every stage-cache key."""
        return _sha256(self.body())

    def dependencies(self) -> tuple[str, ...]:
        """Names this stage reads: its inputs and the names its ``when`` condition uses."""
        if not self.when:
            return self.inputs
        from nux_runtime.conditions import condition_names

        extra = tuple(n for n in condition_names(self.when) if n not in self.inputs)
        return self.inputs + extra


class WorkbookSpec(_Frozen):
    """The frozen workbook: inputs, stages, output, criteria and where its test bank lives."""

    spec_version: Literal["1"] = "1"
    name: str
    description: str = ""
    inputs: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the request (an object; one property per workbook input).",
    )
    stages: tuple[StageSpec, ...]
    output: tuple[str, ...] = Field(
        description="Output stage; with several, the first one that was not skipped answers."
    )
    criteria: tuple[Criterion, ...] = ()
    acceptance: dict[str, float] = Field(
        default_factory=dict, description="Thresholds, e.g. pass_rate: 0.8, p95_ms: 800."
    )
    test_bank: str | None = Field(default=None, description="Test bank file beside the workbook.")
    catalog: CatalogRef | None = None

    @cached_property
    def hash(self) -> str:
        """Content hash of the whole workbook (independent of cell ids and positions)."""
        body = self.model_dump(mode="json", exclude={"stages"})
        body["stages"] = [s.body() for s in self.stages]
        return _sha256(body)

    @cached_property
    def by_id(self) -> dict[str, StageSpec]:
        return {s.id: s for s in self.stages}

    def stage(self, stage_id: str) -> StageSpec:
        try:
            return self.by_id[stage_id]
        except KeyError:
            known = ", ".join(self.by_id) or "none"
            raise KeyError(
                f"no stage {stage_id!r} in workbook {self.name!r} (stages: {known})"
            ) from None

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.inputs.get("properties", {}))

    def reach(self, targets: Iterable[str]) -> set[str]:
        """``targets`` and every stage they read (inputs, ``when``) or fall back to,
        transitively: what running ``targets`` may call."""
        return Graph({s.id: (*s.dependencies(), *filter(None, [s.fallback]))
                      for s in self.stages}).ancestors(targets)

    @cached_property
    def evaluation_stages(self) -> tuple[str, ...]:
        """Stages that exist only for evaluation: a criterion scores them (a ``metric`` cell) or
        what they feed, and no request reaches them (no output reads them or falls back to
        them). ``nux eval`` runs them; the served app neither deploys nor calls them."""
        served = self.reach(self.output)
        scored = self.reach(c.stage for c in self.criteria if c.stage)
        return tuple(s.id for s in self.stages if s.id in scored and s.id not in served)

    @cached_property
    def evaluation_inputs(self) -> tuple[str, ...]:
        """Workbook inputs only evaluation stages read (``expected``, which ``nux eval`` fills
        from the test bank): the production API neither asks for nor documents them."""
        evaluation = set(self.evaluation_stages)
        if not evaluation:
            return ()
        by_evaluation: set[str] = set()
        by_others: set[str] = set()
        for stage in self.stages:
            (by_evaluation if stage.id in evaluation else by_others).update(stage.dependencies())
        return tuple(n for n in self.input_names if n in by_evaluation and n not in by_others)

    @cached_property
    def served(self) -> WorkbookSpec:
        """The workbook as production serves it: without :attr:`evaluation_stages`, the
        criteria that score them and :attr:`evaluation_inputs` (``self`` when there are none).
        Its ``hash`` is not the workbook's: what is served still reports ``self.hash``."""
        dropped, unasked = set(self.evaluation_stages), set(self.evaluation_inputs)
        if not dropped:
            return self
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        fields.update(
            stages=tuple(s for s in self.stages if s.id not in dropped),
            criteria=tuple(c for c in self.criteria if c.stage not in dropped),
            inputs=_without_properties(self.inputs, unasked))
        return type(self)(**fields)

    def output_schema(self) -> dict[str, Any]:
        """JSON schema of the workbook's answer (one of the output stages' schemas)."""
        schemas = [self.stage(s).output_schema for s in self.output]
        unique = [json.loads(t) for t in dict.fromkeys(canonical_json(s) for s in schemas)]
        return unique[0] if len(unique) == 1 else {"anyOf": unique}

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, indented): what the exporters write."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> WorkbookSpec:
        return cls.model_validate_json(text)


def _without_properties(schema: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """An object schema with the properties ``names`` removed, and no longer required."""
    out = copy.deepcopy(schema)
    if not names:
        return out
    properties = out.get("properties")
    if isinstance(properties, dict):
        out["properties"] = {k: v for k, v in properties.items() if k not in names}
    required = out.get("required")
    if isinstance(required, list):
        out["required"] = [n for n in required if n not in names]
    dependent = out.get("dependentRequired")
    if isinstance(dependent, dict):
        out["dependentRequired"] = {k: [n for n in v if n not in names]
                                    for k, v in dependent.items()
                                    if k not in names and isinstance(v, list)}
    return out


def spec_json_schema() -> dict[str, Any]:
    """The versioned JSON schema of ``WorkbookSpec``."""
    schema = WorkbookSpec.model_json_schema()
    schema["$id"] = f"https://nux.dev/schemas/workbook-spec/v{SPEC_VERSION}.json"
    return schema
