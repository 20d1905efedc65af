"""The PodMonitor and the Grafana dashboard: they scrape Ray's pods and query only metrics the
runtime records, under the names Ray exports them with."""

from __future__ import annotations

import json
import re

import yaml

from nux_exporters.observability import (
    DASHBOARD_FILE,
    POD_MONITOR_FILE,
    grafana_dashboard,
    observability_files,
)
from nux_runtime.serve.metrics import METRIC_PREFIX, Metrics


def _exported_names() -> set[str]:
    """Every sample name the runtime's families produce, as Ray exports them."""
    metrics = Metrics("wb", use_ray=False)
    names = set()
    for family in metrics.registry.collect():
        suffixes = ("_total",) if family.type == "counter" else ("_bucket", "_sum", "_count")
        names |= {f"{METRIC_PREFIX}{family.name}{s}" for s in suffixes}
    return names


def test_the_dashboard_queries_only_metrics_the_runtime_records() -> None:
    dashboard = grafana_dashboard("support", ["clean", "answer"], "ab" * 32)
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\bray_nux_\w+", expr)}
    assert used and used <= _exported_names(), used - _exported_names()
    assert all('workbook="support"' in expr for expr in exprs)
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("stage latency", "tokens", "cost", "cache", "errors", "online evaluation"):
        assert topic in titles
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_pod_monitor_scrapes_every_ray_pod_of_the_namespace() -> None:
    files = observability_files("support", "support-ns", "support", ["a"], "cd" * 32)
    assert set(files) == {POD_MONITOR_FILE, DASHBOARD_FILE}
    monitor = yaml.safe_load(files[POD_MONITOR_FILE])
    assert monitor["kind"] == "PodMonitor"
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["support-ns"]}
    assert monitor["spec"]["selector"]["matchLabels"] == {"ray.io/is-ray-node": "yes"}
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert json.loads(files[DASHBOARD_FILE])["uid"] == "nux-" + "cd" * 6
    again = observability_files("support", "support-ns", "support", ["a"], "cd" * 32)
    assert again == files  # deterministic
