"""The metrics of a served workbook, all labelled by workbook, recorded where the deployment
is scraped.

Inside Ray (every replica of a served app) the families are Ray's own metrics
(``ray.util.metrics``): each replica reports to its node's metrics agent, which exports them,
prefixed ``ray_`` (``ray_nux_requests_total``), with the replica's ``WorkerId`` among the labels;
the cluster's Prometheus scrapes every node (KubeRay's PodMonitor), so a sum over the labels
counts every request of every replica once. ``GET /metrics`` of the app answers the ``ray_nux_``
families of every node of its cluster (for ``nux serve`` and a quick look; a scrape should use
the nodes). Outside Ray (the pipeline's unit tests, benchmarks in one process) the same families
live in a private ``prometheus_client`` registry under the same names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["METRIC_PREFIX", "Metrics", "cluster_metrics"]

#: What Ray puts before every application metric's name when it exports it.
METRIC_PREFIX = "ray_"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_DISTANCE_BUCKETS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)


class _Child(Protocol):
    def inc(self, amount: float = 1.0) -> None: ...

    def observe(self, value: float) -> None: ...


class _Family:
    """One metric family with the ``labels(...).inc()`` / ``.observe()`` interface."""

    def __init__(self, backend: Any, kind: str, name: str, doc: str, labels: Sequence[str],
                 buckets: Sequence[float] = ()) -> None:
        self.kind, self.names = kind, tuple(labels)
        self.ray = backend is None
        if self.ray:
            from ray.util import metrics as rm

            if kind == "counter":
                self.metric: Any = rm.Counter(name, doc, tag_keys=self.names)
            else:
                # Ray takes positive boundaries only (its first bucket starts at 0)
                self.metric = rm.Histogram(name, doc, boundaries=[b for b in buckets if b > 0],
                                           tag_keys=self.names)
        else:
            import prometheus_client as pc

            if kind == "counter":
                self.metric = pc.Counter(name, doc, list(labels), registry=backend)
            else:
                self.metric = pc.Histogram(name, doc, list(labels), buckets=tuple(buckets),
                                           registry=backend)

    def labels(self, *values: str) -> _Child:
        if not self.ray:
            child: _Child = self.metric.labels(*values)
            return child
        return _RayChild(self.metric, dict(zip(self.names, map(str, values), strict=True)))


class _RayChild:
    def __init__(self, metric: Any, tags: dict[str, str]) -> None:
        self.metric, self.tags = metric, tags

    def inc(self, amount: float = 1.0) -> None:
        if amount > 0:
            self.metric.inc(amount, tags=self.tags)

    def observe(self, value: float) -> None:
        self.metric.observe(value, tags=self.tags)


def _in_ray() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())


class Metrics:
    """The metric families the ingress records: Ray's metrics in Ray, else a local registry."""

    def __init__(self, workbook: str, *, use_ray: bool | None = None) -> None:
        self.workbook = workbook
        self.uses_ray = _in_ray() if use_ray is None else use_ray
        self.registry: Any = None
        if not self.uses_ray:
            from prometheus_client import CollectorRegistry

            self.registry = CollectorRegistry()

        def counter(name: str, doc: str, *labels: str) -> _Family:
            return _Family(self.registry, "counter", name, doc, ["workbook", *labels])

        def histogram(name: str, doc: str, buckets: Sequence[float], *labels: str) -> _Family:
            return _Family(self.registry, "histogram", name, doc, ["workbook", *labels],
                           buckets)

        self.requests = counter("nux_requests", "Requests answered, by route and HTTP status.",
                                "route", "status")
        self.request_latency = histogram("nux_request_latency_seconds",
                                         "Latency of a whole request.", _LATENCY_BUCKETS, "route")
        self.stage_latency = histogram("nux_stage_latency_seconds",
                                       "Latency of one stage call seen by the ingress.",
                                       _LATENCY_BUCKETS, "stage")
        self.stage_tokens = counter("nux_stage_tokens",
                                    "Tokens a stage read (in) and wrote (out).",
                                    "stage", "direction")
        self.stage_cost = counter("nux_stage_cost_usd", "Cost of a stage's calls in USD.",
                                  "stage")
        self.stage_errors = counter("nux_stage_errors", "Failed stage calls, by error category.",
                                    "stage", "category")
        self.stage_retries = counter("nux_stage_retries", "Stage calls tried again.", "stage")
        self.fallbacks = counter("nux_fallbacks", "Answers given by a fallback stage or response.",
                                 "stage")
        self.cache_lookups = counter("nux_cache_lookups",
                                     "Answer-cache lookups by cache and result.",
                                     "cache", "result")
        self.semantic_distance = histogram(
            "nux_semantic_cache_nearest_distance",
            "Cosine distance from a lookup to the nearest cached request of its scope.",
            _DISTANCE_BUCKETS)
        self.rejected = counter("nux_rejected_requests", "Requests refused, by reason.",
                                "reason")
        self.online_eval = counter("nux_online_eval", "Sampled answers scored by a criterion.",
                                   "criterion", "result")
        self.feedback = counter("nux_feedback", "Feedback received, by kind.", "kind")
        self.feedback_score = histogram("nux_feedback_score", "Scores sent as feedback.",
                                        (0.25, 0.5, 0.75, 1.0))  # Ray needs positive bounds

    def stage_call(self, stage: str, seconds: float, tokens_in: int, tokens_out: int,
                   cost: float) -> None:
        w = self.workbook
        self.stage_latency.labels(w, stage).observe(seconds)
        self.stage_tokens.labels(w, stage, "in").inc(tokens_in)
        self.stage_tokens.labels(w, stage, "out").inc(tokens_out)
        self.stage_cost.labels(w, stage).inc(cost)

    def stage_error(self, stage: str, category: str) -> None:
        self.stage_errors.labels(self.workbook, stage, category).inc()

    def cache(self, cache: str, hit: bool) -> None:
        self.cache_lookups.labels(self.workbook, cache, "hit" if hit else "miss").inc()

    def reject(self, reason: str) -> None:
        self.rejected.labels(self.workbook, reason).inc()

    async def render(self) -> bytes:
        """The Prometheus text of these metrics: every node's ``ray_nux_`` families in Ray."""
        if not self.uses_ray:
            from prometheus_client import generate_latest

            return bytes(generate_latest(self.registry))
        return await cluster_metrics()


async def cluster_metrics(prefix: str = f"{METRIC_PREFIX}nux_") -> bytes:
    """The families named ``prefix...`` that the metrics agent of every live Ray node exports."""
    import httpx
    import ray

    nodes = await asyncio.to_thread(ray.nodes)
    urls = [f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
            for n in nodes if n.get("Alive") and n.get("MetricsExportPort")]
    async with httpx.AsyncClient(timeout=5.0) as client:
        answers = await asyncio.gather(*(client.get(u) for u in urls), return_exceptions=True)
    lines: list[str] = []
    for answer in answers:
        if isinstance(answer, httpx.Response) and answer.status_code == 200:
            lines += [line for line in answer.text.splitlines()
                      if line.startswith(prefix) or line.startswith(f"# HELP {prefix}")
                      or line.startswith(f"# TYPE {prefix}")]
    return ("\n".join(lines) + "\n").encode()
