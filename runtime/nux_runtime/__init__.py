"""nux_runtime: what runs a workbook, in the playground and in production alike.

It holds the frozen :class:`WorkbookSpec`, the component implementations, and the one DAG walker
that both the in-process executor and the Ray Serve ingress use. It imports no other NUX
package: a production image installs it alone.
"""

from nux_runtime.components.base import Component, RuntimeContext, StageResult
from nux_runtime.errors import (
    ExportError,
    NuxError,
    PolicyError,
    Problem,
    StageError,
    WorkbookError,
)
from nux_runtime.spec import StageSpec, WorkbookSpec
from nux_runtime.trace import StageTrace
from nux_runtime.walker import WalkResult, walk

__all__ = [
    "Component",
    "ExportError",
    "NuxError",
    "PolicyError",
    "Problem",
    "RuntimeContext",
    "StageError",
    "StageResult",
    "StageSpec",
    "StageTrace",
    "WalkResult",
    "WorkbookError",
    "WorkbookSpec",
    "walk",
]

__version__ = "0.1.0"
