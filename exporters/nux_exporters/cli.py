"""``nux export``: the workbook as a Pulumi project, a Ray Serve config and Kubernetes YAML.

The command comes with nux-exporters, which registers it under the ``nux.commands`` entry-point
group: the ``nux`` group loads it when it runs (``nux export --help`` included). The acceptance
criteria gate the export (:func:`~nux_kernel.provenance.acceptance_verdict`, which the
JupyterLab export job calls too): a failing workbook is refused unless ``--force``; the README
and the provenance then say so.
"""

from __future__ import annotations

import json
from typing import Any

import click

from nux_exporters import TARGETS, ExportOptions, export, parse_override
from nux_kernel.catalog import load_catalog
from nux_kernel.cli.main import err, load_spec, out, user_errors
from nux_kernel.datasources import find_sources
from nux_kernel.provenance import acceptance_verdict, tuning_provenance
from nux_runtime.errors import NuxError, Problem

__all__ = ["export_cmd"]


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise NuxError(problems=[Problem(code="usage", message=f"{option} {value!r}",
                                             fix=f"write {option} KEY=VALUE")])
        found[key] = item
    return found


@click.command(name="export")
@click.argument("workbook", type=click.Path(dir_okay=False))
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write (over a previous export: its files are replaced, your "
                   "stack settings and other files kept).")
@click.option("--target", "targets", multiple=True, type=click.Choice(TARGETS),
              help="What to write (repeat; default all): the Pulumi project, serve_config.yaml, "
                   "kubernetes.yaml.")
@click.option("--stack", default="dev", show_default=True, help="Pulumi stack name.")
@click.option("--name", help="RayService name (default: the workbook name; 47 chars at most).")
@click.option("--namespace", help="Kubernetes namespace (default: the name).")
@click.option("--image", help="Runtime image (default nux-<name>:<spec hash>).")
@click.option("--no-gpus", is_flag=True, help="The cluster has no GPU nodes: refuse GPU stages.")
@click.option("--node-selector", multiple=True, metavar="KEY=VALUE",
              help="Node selector of the CPU workers (repeat).")
@click.option("--gpu-node-selector", multiple=True, metavar="KEY=VALUE",
              help="Node selector of the GPU workers (repeat; replaces the default).")
@click.option("--install-operator", is_flag=True, help="Install the KubeRay operator (Helm).")
@click.option("--qdrant", type=click.Choice(["none", "statefulset", "external"]),
              help="Deploy a Qdrant server (statefulset), use one (external), or none "
                   "(default: statefulset when a stage reads Qdrant).")
@click.option("--qdrant-url", default="", help="URL of an existing Qdrant (--qdrant external).")
@click.option("--upgrade-strategy", default="NewCluster", show_default=True,
              type=click.Choice(["NewCluster", "NewClusterWithIncrementalUpgrade", "None"]),
              help="How a change rolls out (incremental: a canary in traffic steps).")
@click.option("--canary-step", default=10, show_default=True,
              help="Traffic percent moved per step.")
@click.option("--canary-interval", default=60, show_default=True, help="Seconds per step.")
@click.option("--override", "overrides", multiple=True, metavar="STAGE.FIELD=VALUE",
              help="Production scale/resources of a stage, e.g. answer.max_replicas=8.")
@click.option("--collection", "collections", multiple=True, metavar="NAME=external",
              help="A collection the production Qdrant already holds (no ingest job; repeat).")
@click.option("--secret", "secrets", multiple=True, metavar="ENV_NAME",
              help="Another secret the pods need (set with `pulumi config set --secret`).")
@click.option("--force", is_flag=True,
              help="Export even when the acceptance criteria fail (recorded in the export).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--catalog", type=click.Path(dir_okay=False), help="Catalog file (NUX_CATALOG).")
@user_errors
def export_cmd(workbook: str, out_dir: str, targets: tuple[str, ...], stack: str,
               name: str | None, namespace: str | None, image: str | None, no_gpus: bool,
               node_selector: tuple[str, ...], gpu_node_selector: tuple[str, ...],
               install_operator: bool, qdrant: str | None, qdrant_url: str, upgrade_strategy: str,
               canary_step: int, canary_interval: int, overrides: tuple[str, ...],
               collections: tuple[str, ...], secrets: tuple[str, ...], force: bool,
               as_json: bool,
               catalog: str | None) -> None:
    """Export a workbook for production: Pulumi project, Serve config, Kubernetes YAML."""
    spec, base_dir = load_spec(workbook, catalog)
    sources = find_sources(workbook, spec, catalog=load_catalog(catalog))
    settings: dict[str, Any] = {
        "stack": stack, "name": name, "namespace": namespace, "image": image,
        "gpus": not no_gpus, "node_selector": _pairs(node_selector, "--node-selector"),
        "install_operator": install_operator, "qdrant": qdrant, "qdrant_url": qdrant_url,
        "upgrade_strategy": upgrade_strategy, "canary_step_percent": canary_step,
        "canary_interval_seconds": canary_interval, "secrets": tuple(secrets),
        "overrides": tuple(parse_override(o) for o in overrides),
        "collections": _pairs(collections, "--collection"),
        "tuning": tuning_provenance(workbook, spec),
    }
    if targets:
        settings["targets"] = tuple(dict.fromkeys(targets))
    if gpu_node_selector:
        settings["gpu_node_selector"] = _pairs(gpu_node_selector, "--gpu-node-selector")
    options = ExportOptions(**settings)
    verdict = acceptance_verdict(spec, base_dir, sources)
    result = export(spec, out_dir, options, acceptance=verdict, force=force, sources=sources)
    plan = result.plan
    if as_json:
        click.echo(json.dumps({"ok": True, "out": str(result.out_dir), "files": result.files,
                               "spec_hash": spec.hash, "acceptance": verdict,
                               "forced": plan.forced, "changes": result.changes},
                              indent=2, default=str))
        return
    gpu = ", GPU worker group" if plan.gpu else ""
    out.print(f"{spec.name}: {len(plan.stages)} stages -> {result.out_dir} "
              f"({', '.join(result.files)}){gpu}", markup=False)
    for change in result.changes:
        out.print(f"  {change}", markup=False)
    if verdict is None:
        err.print("acceptance not evaluated: the workbook names no test bank", markup=False)
    elif not verdict["passed"]:
        err.print("FORCED: the workbook fails its acceptance criteria; the export says so",
                  markup=False)
    if verdict is not None and verdict.get("stale_data"):
        err.print("FORCED: the verdict was measured on a collection that does not hold what "
                  "the export ingests; the export says so", markup=False)
