"""``WorkbookService``: a NUX workbook on KubeRay as one Pulumi component.

Its children are the objects of :mod:`nux_kuberay.objects` (namespace, spec ConfigMap, optional
Qdrant server, NetworkPolicies, ingest jobs, PodMonitor, the RayService), plus what only a live
deployment has: the Secret filled from Pulumi secret config and, if asked, the KubeRay operator.
The ingest jobs are created after everything they need, and the RayService after the jobs:
Pulumi waits for a Job to complete, so the service starts on a filled collection.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from nux_kuberay import objects
from nux_kuberay.args import WorkbookServiceArgs
from nux_kuberay.workbook import ExportedWorkbook, IngestJob

__all__ = ["WorkbookService"]

KUBERAY_HELM_REPO = "https://ray-project.github.io/kuberay-helm/"


class WorkbookService(pulumi.ComponentResource):
    """A NUX workbook on KubeRay: namespace, secrets, frozen spec, Ray cluster, Serve app.

    Outputs: ``serve_url`` (the Serve HTTP endpoint) and ``dashboard_url`` (the Ray dashboard).
    """

    serve_url: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]

    def __init__(self, name: str, workbook: ExportedWorkbook, args: WorkbookServiceArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("nux:workbook:WorkbookService", name, None, opts)
        self.workbook = workbook
        ns = objects.namespace(workbook, args)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata=ns["metadata"],
            opts=pulumi.ResourceOptions(parent=self))
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[self.namespace])
        after: list[pulumi.Resource] = [self.namespace]

        if args.install_operator:
            self.operator = k8s.helm.v3.Release(
                f"{name}-kuberay-operator",
                chart="kuberay-operator",
                version=objects.KUBERAY_CHART_VERSION,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBERAY_HELM_REPO),
                namespace=args.namespace,
                opts=in_namespace)
            after.append(self.operator)

        if workbook.all_secrets:
            self.secret = k8s.core.v1.Secret(
                f"{name}-secrets",
                metadata={"name": f"{workbook.name}-secrets", "namespace": args.namespace,
                          "labels": objects.labels(workbook)},
                string_data=args.secrets,
                opts=in_namespace)
            after.append(self.secret)

        spec = objects.config_map(workbook, args)
        self.spec = k8s.core.v1.ConfigMap(f"{name}-spec", metadata=spec["metadata"],
                                          data=spec["data"], opts=in_namespace)
        after.append(self.spec)

        if args.qdrant_mode == "statefulset":
            service, stateful_set = objects.qdrant(workbook, args)
            after.append(k8s.core.v1.Service(f"{name}-qdrant", metadata=service["metadata"],
                                             spec=service["spec"], opts=in_namespace))
            after.append(k8s.apps.v1.StatefulSet(
                f"{name}-qdrant", metadata=stateful_set["metadata"], spec=stateful_set["spec"],
                opts=in_namespace))
        if args.network_policy:
            for policy in objects.network_policies(workbook, args):
                suffix = policy["metadata"]["name"].removeprefix(f"{workbook.name}-")
                after.append(k8s.networking.v1.NetworkPolicy(
                    f"{name}-{suffix}-policy", metadata=policy["metadata"],
                    spec=policy["spec"], opts=in_namespace))
        if args.qdrant_server:
            jobs = [self._job(name, job, objects.ingest_job(workbook, args, job), after)
                    for job in workbook.jobs]
            after += jobs

        monitor = objects.pod_monitor(workbook, args)
        if args.pod_monitor and monitor is not None:  # needs the PodMonitor CRD
            self.pod_monitor = self._custom(f"{name}-podmonitor", monitor, in_namespace)

        ray = objects.ray_service(workbook, args)
        self.ray_service = self._custom(f"{name}-rayservice", ray, pulumi.ResourceOptions(
            parent=self, depends_on=after))

        host = f"{workbook.name}-serve-svc.{args.namespace}.svc.cluster.local"
        head = f"{workbook.name}-head-svc.{args.namespace}.svc.cluster.local"
        self.serve_url = self.ray_service.id.apply(lambda _: f"http://{host}:8000/")
        self.dashboard_url = self.ray_service.id.apply(lambda _: f"http://{head}:8265/")
        self.register_outputs({"serve_url": self.serve_url, "dashboard_url": self.dashboard_url})

    def _custom(self, resource_name: str, document: dict[str, Any],
                opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            resource_name, api_version=document["apiVersion"], kind=document["kind"],
            metadata=document["metadata"], spec=document["spec"], opts=opts)

    def _job(self, name: str, job: IngestJob, document: dict[str, Any],
             after: list[pulumi.Resource]) -> k8s.batch.v1.Job:
        """An ingest Job, created after everything before it (the Qdrant server, the policies);
        Pulumi waits for it to complete."""
        return k8s.batch.v1.Job(
            f"{name}-{job.job}", metadata=document["metadata"], spec=document["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)))
