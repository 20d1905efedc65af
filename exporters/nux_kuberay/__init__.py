"""A NUX workbook deployed on KubeRay, as a Pulumi component.

``nux export`` copies this package into the Pulumi project it writes, beside ``__main__.py``
and the workbook's data (``workbook.yaml``, ``spec.json``, ``provenance.json``); the program
needs only ``pulumi``, ``pulumi-kubernetes`` and PyYAML. The same code renders the project's
``kubernetes.yaml`` for review, so what is reviewed is what ``pulumi up`` creates.

- :class:`ExportedWorkbook` (``workbook.py``): what the export decided for the workbook.
- :class:`WorkbookServiceArgs` (``args.py``): the cluster settings, one Pulumi config key each.
- :mod:`nux_kuberay.objects`: the Kubernetes objects as documents.
- :mod:`nux_kuberay.serve`: the Ray Serve application inside the RayService.
- :class:`WorkbookService` (``service.py``): the component that creates them.
"""

from __future__ import annotations

from nux_kuberay.args import WorkbookServiceArgs
from nux_kuberay.service import WorkbookService
from nux_kuberay.workbook import WORKBOOK_FILE, ExportedWorkbook, IngestJob

__all__ = [
    "WORKBOOK_FILE",
    "ExportedWorkbook",
    "IngestJob",
    "WorkbookService",
    "WorkbookServiceArgs",
]
