"""Pulumi program for the NUX workbook "sql-qa": each stage is a Ray Serve deployment.

Exported by `nux export` from spec <spec-hash-12> (full hash and provenance in
provenance.json). What the export decided is data in workbook.yaml; the package
nux_kuberay/ beside this file, the same reviewed code for every workbook, turns it into
Kubernetes objects. The workbook is the source of truth for the stages: change a cell
and export again. Cluster settings are Pulumi config (see README.md and the stack
file).
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from nux_kuberay import ExportedWorkbook, WorkbookService, WorkbookServiceArgs

workbook = ExportedWorkbook.load(Path(__file__).parent)
args = WorkbookServiceArgs.from_config(pulumi.Config(), workbook)
service = WorkbookService(workbook.name, workbook, args)
pulumi.export("serve_url", service.serve_url)
pulumi.export("dashboard_url", service.dashboard_url)
