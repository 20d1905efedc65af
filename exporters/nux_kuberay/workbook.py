"""What ``nux export`` decided for one workbook: the data the Pulumi program deploys.

``workbook.yaml`` beside ``__main__.py`` holds it (each value commented with the notebook cell
it came from); ``spec.json`` and ``provenance.json`` are the frozen spec and its record, which
the pods read from a ConfigMap. :meth:`ExportedWorkbook.load` reads the three from the exported
folder; ``nux export`` builds the same object in memory to render ``kubernetes.yaml``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["WORKBOOK_FILE", "ExportedWorkbook", "IngestJob"]

WORKBOOK_FILE = "workbook.yaml"
POD_MONITOR_FILE = "observability/podmonitor.yaml"


@dataclass(frozen=True)
class IngestJob:
    """An ingest workbook run as a Kubernetes Job: it fills one Qdrant collection."""

    job: str  # the job's name in the export (``ingest-handbook``)
    name: str  # the Kubernetes Job's name
    file: str  # the job file in the image (``python -m nux_runtime.jobs run <file>``)
    stages: tuple[str, ...]  # the job's stages that write the collection
    collection: str  # the setting (config key) that names the collection
    spec_hash: str

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> IngestJob:
        return cls(job=str(document["job"]), name=str(document["name"]),
                   file=str(document["file"]), stages=tuple(document["stages"]),
                   collection=str(document["collection"]),
                   spec_hash=str(document["spec_hash"]))


@dataclass(frozen=True)
class ExportedWorkbook:
    """The workbook's side of the deployment; the cluster's side is ``WorkbookServiceArgs``."""

    workbook: str  # the workbook's own name
    name: str  # the RayService: 47 characters at most
    spec_hash: str
    ray_version: str  # must equal the Ray version of the image (see Dockerfile)
    acceptance: str  # the acceptance verdict the export was made under
    gpu: bool  # a GPU worker group exists exactly when some stage needs a GPU
    #: every cluster setting (Pulumi config key) and its default
    settings: dict[str, Any]
    #: environment variable in the Ray pods -> Pulumi secret config key
    secrets: dict[str, str]
    #: secrets the service runs without (no API key: open on purpose; no Redis URL: in memory)
    optional_secrets: dict[str, str]
    #: where the image holds the files the stages read (None: the stages read no data)
    data_mount: str | None
    #: stage -> param path -> the location setting that gives its production value
    stage_settings: dict[str, dict[str, str]]
    #: stages that read a Qdrant collection: pointed at the Qdrant server when there is one
    qdrant_stages: tuple[str, ...]
    jobs: tuple[IngestJob, ...]
    #: the Ray Serve deployments: the ingress, then one per stage (named by the stage id);
    #: a stage's ``user_config`` is its params in the spec
    deployments: tuple[dict[str, Any], ...]
    spec: dict[str, Any] = field(repr=False)
    provenance: dict[str, Any] = field(repr=False)
    pod_monitor: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def all_secrets(self) -> tuple[str, ...]:
        return tuple(sorted({**self.secrets, **self.optional_secrets}))

    def params(self, stage: str) -> dict[str, Any]:
        """The params the workbook pinned for one stage."""
        found: dict[str, Any] = next(s["params"] for s in self.spec["stages"]
                                     if s["id"] == stage)
        return found

    @classmethod
    def from_document(cls, document: Mapping[str, Any], spec: Mapping[str, Any],
                      provenance: Mapping[str, Any],
                      pod_monitor: Mapping[str, Any] | None = None) -> ExportedWorkbook:
        """The workbook from the data of ``workbook.yaml``, the spec and the provenance."""
        return cls(
            workbook=str(document["workbook"]), name=str(document["name"]),
            spec_hash=str(document["spec_hash"]), ray_version=str(document["ray_version"]),
            acceptance=str(document["acceptance"]), gpu=bool(document["gpu"]),
            settings=dict(document["settings"]), secrets=dict(document["secrets"]),
            optional_secrets=dict(document["optional_secrets"]),
            data_mount=document.get("data_mount"),
            stage_settings={k: dict(v) for k, v in document["stage_settings"].items()},
            qdrant_stages=tuple(document["qdrant_stages"]),
            jobs=tuple(IngestJob.from_document(j) for j in document["jobs"]),
            deployments=tuple(dict(d) for d in document["deployments"]),
            spec=dict(spec), provenance=dict(provenance),
            pod_monitor=dict(pod_monitor) if pod_monitor is not None else None)

    @classmethod
    def load(cls, folder: str | Path) -> ExportedWorkbook:
        """The workbook of an exported folder."""
        root = Path(folder)

        def read(name: str) -> Any:
            return yaml.safe_load((root / name).read_text(encoding="utf-8"))

        monitor = read(POD_MONITOR_FILE) if (root / POD_MONITOR_FILE).is_file() else None
        return cls.from_document(read(WORKBOOK_FILE),
                                 json.loads((root / "spec.json").read_text(encoding="utf-8")),
                                 json.loads((root / "provenance.json").read_text(
                                     encoding="utf-8")), monitor)
