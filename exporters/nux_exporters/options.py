"""What an export can be told: targets, cluster settings, per-stage overrides, the gate.

:class:`ExportOptions` holds the export-time choices (they become the defaults written into
``Pulumi.<stack>.yaml``); :class:`StageOverride` changes one stage's scale or resources for
production without touching the workbook; :class:`Acceptance` is the result of ``nux eval`` that
gates the export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from nux_runtime.errors import ExportError, Problem

__all__ = [
    "TARGETS",
    "UPGRADE_STRATEGIES",
    "Acceptance",
    "ExportOptions",
    "QdrantMode",
    "StageOverride",
    "Target",
    "UpgradeStrategy",
    "parse_override",
]

Target = Literal["pulumi", "serve", "k8s-yaml"]
TARGETS: tuple[Target, ...] = ("pulumi", "serve", "k8s-yaml")

QdrantMode = Literal["none", "statefulset", "external"]
UpgradeStrategy = Literal["NewCluster", "NewClusterWithIncrementalUpgrade", "None"]
UPGRADE_STRATEGIES: tuple[UpgradeStrategy, ...] = (
    "NewCluster",
    "NewClusterWithIncrementalUpgrade",
    "None",
)

# Fields a production override may set, and where they live on the stage.
SCALE_FIELDS = ("min_replicas", "max_replicas", "target_ongoing_requests", "max_ongoing_requests")
RESOURCE_FIELDS = ("num_cpus", "num_gpus", "memory_mb")


@dataclass(frozen=True)
class StageOverride:
    """Production settings for one stage that win over the workbook's ``scale:``/``resources:``."""

    stage: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Acceptance:
    """The acceptance verdict for the exact spec being exported.

    ``summary`` is what gets recorded (scores, thresholds, pass rate); ``source`` says where the
    verdict came from (``nux eval``, a cached result, a caller).
    """

    passed: bool
    summary: Mapping[str, Any] = field(default_factory=dict)
    source: str = "nux eval"

    @classmethod
    def coerce(cls, value: Any) -> Acceptance:
        """Accept an ``Acceptance``, a mapping with ``passed``, or an object with ``.passed``."""
        if isinstance(value, Acceptance):
            return value
        if isinstance(value, Mapping):
            if "passed" not in value:
                raise ExportError(problems=[Problem(
                    code="export-acceptance", field="acceptance",
                    message="the acceptance result has no `passed` field",
                    fix="pass the result of `nux eval` (or None to export ungated)")])
            body = {k: v for k, v in value.items() if k != "passed"}
            return cls(passed=bool(value["passed"]), summary=body,
                       source=str(body.pop("source", "nux eval")))
        passed = getattr(value, "passed", None)
        if passed is None:
            raise ExportError(problems=[Problem(
                code="export-acceptance", field="acceptance",
                message=f"cannot read a verdict from {type(value).__name__}",
                fix="pass the result of `nux eval` (an object with `passed`)")])
        to_dict = getattr(value, "to_dict", None)
        summary = to_dict() if callable(to_dict) else {}
        if not isinstance(summary, Mapping):
            summary = {}
        return cls(passed=bool(passed), summary={k: v for k, v in summary.items()
                                                 if k != "passed"})


@dataclass(frozen=True)
class ExportOptions:
    """Export-time choices. Every cluster setting here is also a Pulumi config key.

    ``gpus=False`` declares a cluster without GPU nodes: a stage that needs a GPU is then an
    export error rather than a deployment that never schedules.
    """

    targets: tuple[Target, ...] = TARGETS
    stack: str = "dev"
    name: str | None = None
    namespace: str | None = None
    image: str | None = None
    gpus: bool = True
    node_selector: Mapping[str, str] = field(default_factory=dict)
    gpu_node_selector: Mapping[str, str] = field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: Sequence[Mapping[str, str]] = ()
    gpu_tolerations: Sequence[Mapping[str, str]] = (
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
    install_operator: bool = False
    qdrant: QdrantMode | None = None  # None: statefulset when a stage reads Qdrant
    qdrant_url: str = ""
    upgrade_strategy: UpgradeStrategy = "NewCluster"
    canary_step_percent: int = 10
    canary_interval_seconds: int = 60
    gpu_scale_to_zero: bool = False
    overrides: tuple[StageOverride, ...] = ()
    secrets: tuple[str, ...] = ()
    #: collection -> "external": the production Qdrant already holds it (no ingest job)
    collections: Mapping[str, str] = field(default_factory=dict)
    tuning: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def problems(self) -> list[Problem]:
        """What is wrong with the options themselves (before looking at the workbook)."""
        found: list[Problem] = []
        unknown = [t for t in self.targets if t not in TARGETS]
        if unknown or not self.targets:
            found.append(Problem(
                code="export-target", field="target",
                message=f"unknown target(s): {', '.join(unknown) or 'none given'}",
                fix=f"choose among {', '.join(TARGETS)}"))
        if self.upgrade_strategy not in UPGRADE_STRATEGIES:
            found.append(Problem(
                code="export-option", field="upgrade_strategy",
                message=f"unknown upgrade strategy {self.upgrade_strategy!r}",
                fix=f"choose among {', '.join(UPGRADE_STRATEGIES)}"))
        if self.qdrant not in (None, "none", "statefulset", "external"):
            found.append(Problem(
                code="export-option", field="qdrant",
                message=f"unknown Qdrant mode {self.qdrant!r}",
                fix="choose none, statefulset or external"))
        if self.qdrant == "external" and not self.qdrant_url:
            found.append(Problem(
                code="export-option", field="qdrant_url",
                message="Qdrant mode `external` needs the server's URL",
                fix="pass --qdrant-url http://qdrant.example:6333"))
        if not 1 <= self.canary_step_percent <= 100:
            found.append(Problem(
                code="export-option", field="canary_step_percent",
                message=f"canary step {self.canary_step_percent}% is outside 1..100",
                fix="give a traffic step between 1 and 100 percent"))
        if self.canary_interval_seconds < 1:
            found.append(Problem(
                code="export-option", field="canary_interval_seconds",
                message="the canary interval must be at least one second",
                fix="give a positive number of seconds"))
        return found


def _number(raw: str) -> Any:
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            continue
    return raw


def parse_override(text: str) -> StageOverride:
    """``STAGE.FIELD=VALUE`` (``answer.max_replicas=8``, ``embed.num_gpus=1``)."""
    target, sep, raw = text.partition("=")
    stage, dot, name = target.rpartition(".")
    if not sep or not dot or not stage or not name:
        raise ExportError(problems=[Problem(
            code="export-override", field="override",
            message=f"cannot read override {text!r}",
            fix="write STAGE.FIELD=VALUE, e.g. answer.max_replicas=8")])
    return StageOverride(stage=stage, values={name: _number(raw.strip())})
