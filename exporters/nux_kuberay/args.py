"""The cluster settings of a workbook's service: each is a Pulumi config key.

:class:`WorkbookServiceArgs` holds them typed; the field ``worker_max_replicas`` is the config key
``workerMaxReplicas``. The defaults written here are the same for every workbook; the ones an
export decides (the namespace, the image, how many workers the stages need) are in the
``settings`` block of ``workbook.yaml``, which is also what ``from_config`` falls back to for a
key the stack leaves unset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import pulumi

if TYPE_CHECKING:
    from nux_kuberay.workbook import ExportedWorkbook

__all__ = ["WorkbookServiceArgs", "config_name", "field_name"]

#: The head pod's own IP, from the downward API: the kubelet substitutes it into the
#: ``ray start`` command KubeRay generates, so the dashboard listens on the pod network only.
POD_IP_ENV = "NUX_POD_IP"
#: The Qdrant server release deployed when the export names none.
QDRANT_IMAGE = "qdrant/qdrant:v1.13.0"
_GPU = "gpu_"
_JOB = "job_"
_NOT_SETTINGS = frozenset({"locations", "secrets"})


def field_name(key: str) -> str:
    """``workerMaxReplicas`` -> ``worker_max_replicas``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def config_name(name: str) -> str:
    """``worker_max_replicas`` -> ``workerMaxReplicas``."""
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass(frozen=True)
class WorkbookServiceArgs:
    """Cluster settings of the workbook's service, in the order the README documents them."""

    namespace: str
    image: str
    head_cpu: str = "1"
    head_memory: str = "4Gi"
    worker_cpu: str = "4"
    worker_memory: str = "8Gi"
    worker_min_replicas: int = 1
    worker_max_replicas: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    # the GPU worker group: settings only of a workbook with a stage that needs a GPU
    gpu_worker_cpu: str = "8"
    gpu_worker_memory: str = "32Gi"
    gpu_worker_gpus: int = 1
    gpu_worker_min_replicas: int = 0
    gpu_worker_max_replicas: int = 1
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    gpu_tolerations: list[dict[str, str]] = field(default_factory=list)
    idle_timeout_seconds: int = 60
    install_operator: bool = False
    qdrant_mode: str = "none"  # statefulset (deployed here), external (qdrant_url) or none
    qdrant_url: str = ""
    qdrant_image: str = QDRANT_IMAGE
    qdrant_storage: str = "10Gi"
    qdrant_cpu: str = "1"
    qdrant_memory: str = "2Gi"
    upgrade_strategy: str = "NewCluster"
    canary_gateway_class: str = "istio"
    canary_step_percent: int = 10
    canary_interval_seconds: int = 60
    network_policy: bool = True
    pod_monitor: bool = False  # needs the Prometheus operator's PodMonitor CRD
    ray_auth_mode: str = "token"
    dashboard_host: str = f"$({POD_IP_ENV})"
    # the ingest jobs: settings only of a workbook whose data an ingest job writes
    job_cpu: str = "2"
    job_memory: str = "4Gi"
    #: Location settings (``answerBaseUrl``, ``handbookCollection``): config key -> value; each
    #: gives a stage param its production value (``ExportedWorkbook.stage_settings``).
    locations: dict[str, Any] = field(default_factory=dict)
    #: Environment variable -> secret value, for the workbook's Secret.
    secrets: dict[str, pulumi.Output[str]] = field(default_factory=dict)

    @property
    def qdrant_server(self) -> str:
        """The Qdrant server the stages use ("" when there is none)."""
        if self.qdrant_mode == "statefulset":
            return f"http://qdrant.{self.namespace}.svc.cluster.local:6333"
        return self.qdrant_url if self.qdrant_mode == "external" else ""

    @classmethod
    def from_settings(cls, values: Mapping[str, Any],
                      secrets: Mapping[str, pulumi.Output[str]] | None = None
                      ) -> WorkbookServiceArgs:
        """The args for config keys -> values; a key that is no field is a location."""
        known = {f.name for f in fields(cls)} - _NOT_SETTINGS
        chosen: dict[str, Any] = {}
        locations: dict[str, Any] = {}
        for key, value in values.items():
            name = field_name(key)
            if name in known:
                chosen[name] = value
            else:
                locations[key] = value
        return cls(**chosen, locations=locations, secrets=dict(secrets or {}))

    @classmethod
    def from_config(cls, config: pulumi.Config, workbook: ExportedWorkbook
                    ) -> WorkbookServiceArgs:
        """Read every setting once; a key the stack leaves unset keeps the export's default."""
        values: dict[str, Any] = {}
        for key, default in workbook.settings.items():
            value: Any
            if isinstance(default, bool):
                value = config.get_bool(key)
            elif isinstance(default, int):
                value = config.get_int(key)
            elif isinstance(default, dict | list):
                value = config.get_object(key)
            else:
                value = config.get(key)
            values[key] = default if value is None else value
        return cls.from_settings(values, read_secrets(config, workbook))

    def settings(self, *, gpu: bool, jobs: bool) -> dict[str, Any]:
        """Config key -> value of every setting a workbook has (the GPU group's only with a
        GPU stage, the jobs' only with an ingest job), locations last."""
        found: dict[str, Any] = {}
        for item in fields(self):
            name = item.name
            if name in _NOT_SETTINGS or (name.startswith(_GPU) and not gpu) or (
                    name.startswith(_JOB) and not jobs):
                continue
            found[config_name(name)] = getattr(self, name)
        return {**found, **self.locations}


def read_secrets(config: pulumi.Config, workbook: ExportedWorkbook
                 ) -> dict[str, pulumi.Output[str]]:
    """Every required secret, and each optional one that is set."""
    found = {env: config.require_secret(key) for env, key in workbook.secrets.items()}
    for env, key in workbook.optional_secrets.items():
        value = config.get_secret(key)
        if value is not None:
            found[env] = value
    return found
