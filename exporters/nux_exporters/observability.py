"""What the cluster's Prometheus and Grafana need to watch a served workbook.

The runtime records its metrics through Ray's own (``nux_runtime.serve.metrics``): every Ray
node exports them on its metrics port, named ``ray_nux_*``, one series per replica. KubeRay
documents scraping the nodes with the Prometheus operator's ``PodMonitor``; :func:`pod_monitor`
writes one for the workbook's RayService pods (head and workers, the ``metrics`` port KubeRay
adds to every Ray container). :func:`grafana_dashboard` is a dashboard for the workbook:
requests and latency, latency per stage, tokens, cost, cache hits and the semantic cache's
nearest distances, errors by category, and the online-evaluation pass rate. Both are plain
data, rendered deterministically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from nux_kuberay.serve import dump_yaml

__all__ = ["DASHBOARD_FILE", "POD_MONITOR_FILE", "grafana_dashboard", "observability_files",
           "pod_monitor"]

POD_MONITOR_FILE = "observability/podmonitor.yaml"
DASHBOARD_FILE = "observability/grafana-dashboard.json"

#: The port name KubeRay gives Ray's metrics export port (8080) in every Ray container.
METRICS_PORT = "metrics"


def pod_monitor(name: str, namespace: str, *, release: str = "prometheus") -> dict[str, Any]:
    """A ``monitoring.coreos.com/v1`` PodMonitor scraping every Ray pod of the RayService."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": f"{name}-ray", "namespace": namespace,
                     # the label kube-prometheus-stack selects monitors by
                     "labels": {"release": release, "app.kubernetes.io/part-of": name}},
        "spec": {
            "jobLabel": f"{name}-ray",
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": {"ray.io/is-ray-node": "yes"}},
            "podMetricsEndpoints": [{
                "port": METRICS_PORT, "interval": "15s",
                # Ray labels each series with the node's IP; keep the pod's name beside it
                "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_name"],
                                 "targetLabel": "pod"}],
            }],
        },
    }


def _panel(index: int, title: str, unit: str, *queries: tuple[str, str]) -> dict[str, Any]:
    return {
        "id": index + 1, "type": "timeseries", "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(queries)],
    }


def grafana_dashboard(workbook: str, stages: Sequence[str], spec_hash: str) -> dict[str, Any]:
    """A Grafana dashboard (JSON model) of one served workbook over Ray's exported metrics."""
    w = f'workbook="{workbook}"'
    rate = "[$__rate_interval]"
    panels: list[tuple[Any, ...]] = [
        ("Requests by route and status", "reqps",
         (f"sum by (route, status) (rate(ray_nux_requests_total{{{w}}}{rate}))",
          "{{route}} {{status}}")),
        ("Request latency p50 / p95", "s",
         (f"histogram_quantile(0.5, sum by (le) (rate(ray_nux_request_latency_seconds_bucket"
          f"{{{w}}}{rate})))", "p50"),
         (f"histogram_quantile(0.95, sum by (le) (rate(ray_nux_request_latency_seconds_bucket"
          f"{{{w}}}{rate})))", "p95")),
        ("Stage latency p95", "s",
         (f"histogram_quantile(0.95, sum by (le, stage) (rate("
          f"ray_nux_stage_latency_seconds_bucket{{{w}}}{rate})))", "{{stage}}")),
        ("Tokens per second by stage", "short",
         (f"sum by (stage, direction) (rate(ray_nux_stage_tokens_total{{{w}}}{rate}))",
          "{{stage}} {{direction}}")),
        ("Cost per hour by stage (USD)", "currencyUSD",
         (f"sum by (stage) (increase(ray_nux_stage_cost_usd_total{{{w}}}[1h]))", "{{stage}}")),
        ("Cache lookups by result", "ops",
         (f"sum by (cache, result) (rate(ray_nux_cache_lookups_total{{{w}}}{rate}))",
          "{{cache}} {{result}}")),
        ("Semantic cache: nearest distance p10 / p50", "short",
         (f"histogram_quantile(0.1, sum by (le) (rate("
          f"ray_nux_semantic_cache_nearest_distance_bucket{{{w}}}{rate})))", "p10"),
         (f"histogram_quantile(0.5, sum by (le) (rate("
          f"ray_nux_semantic_cache_nearest_distance_bucket{{{w}}}{rate})))", "p50")),
        ("Stage errors by category", "ops",
         (f"sum by (stage, category) (rate(ray_nux_stage_errors_total{{{w}}}{rate}))",
          "{{stage}} {{category}}"),
         (f"sum by (stage) (rate(ray_nux_fallbacks_total{{{w}}}{rate}))",
          "fallback {{stage}}")),
        ("Refused requests by reason", "reqps",
         (f"sum by (reason) (rate(ray_nux_rejected_requests_total{{{w}}}{rate}))",
          "{{reason}}")),
        ("Online evaluation pass rate", "percentunit",
         (f'sum by (criterion) (rate(ray_nux_online_eval_total{{{w},result="pass"}}[1h])) / '
          f"sum by (criterion) (rate(ray_nux_online_eval_total{{{w}}}[1h]))", "{{criterion}}")),
    ]
    return {
        "title": f"NUX workbook {workbook}",
        "uid": f"nux-{spec_hash[:12]}",
        "description": f"Workbook {workbook} (spec {spec_hash[:12]}); stages: "
                       + ", ".join(stages),
        "tags": ["nux", workbook],
        "schemaVersion": 39, "version": 1, "editable": True,
        "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus", "label": "Prometheus"}]},
        "panels": [_panel(i, title, unit, *queries)
                   for i, (title, unit, *queries) in enumerate(panels)],
    }


def observability_files(name: str, namespace: str, workbook: str, stages: Sequence[str],
                        spec_hash: str) -> dict[str, str]:
    """The PodMonitor (YAML) and the Grafana dashboard (JSON) as export files."""
    header = (f"# Prometheus operator PodMonitor for workbook {workbook!r}: scrapes Ray's "
              "metrics port of every Ray pod.\n# kubectl apply -f this file where the "
              "Prometheus operator runs (kube-prometheus-stack).\n")
    return {
        POD_MONITOR_FILE: header + dump_yaml(pod_monitor(name, namespace)),
        DASHBOARD_FILE: json.dumps(grafana_dashboard(workbook, stages, spec_hash), indent=2,
                                   sort_keys=True) + "\n",
    }
