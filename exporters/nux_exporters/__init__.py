"""nux_exporters: compile a frozen WorkbookSpec into what production deploys.

:func:`export` writes a Pulumi (Python) project that deploys the workbook as a KubeRay
RayService (one Ray Serve deployment per stage), the plain Ray Serve config
(``serve_config.yaml``) and the rendered Kubernetes objects (``kubernetes.yaml``). The CLI
(``nux export``) and the JupyterLab button share it. Every file is validated (Ray's Serve
schemas, the KubeRay CRD, Kubernetes schemas) before anything is written.
"""

from __future__ import annotations

from nux_exporters.bundle import ExportResult, export, render
from nux_exporters.options import (
    TARGETS,
    Acceptance,
    ExportOptions,
    StageOverride,
    parse_override,
)
from nux_exporters.plan import Plan, StagePlan, make_plan
from nux_runtime.errors import ExportError

__all__ = [
    "TARGETS",
    "Acceptance",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "Plan",
    "StageOverride",
    "StagePlan",
    "export",
    "make_plan",
    "parse_override",
    "render",
]
