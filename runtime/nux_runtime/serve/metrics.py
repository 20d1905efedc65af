"""Prometheus metrics of one ingress replica (``GET /metrics``), all labelled by workbook."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The metric families the ingress records; one registry per replica."""

    def __init__(self, workbook: str) -> None:
        self.workbook = workbook
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("nux_requests", "Requests answered, by route and HTTP status.",
                                ["workbook", "route", "status"], registry=r)
        self.request_latency = Histogram(
            "nux_request_latency_seconds", "Latency of a whole request.", ["workbook", "route"],
            buckets=_LATENCY_BUCKETS, registry=r)
        self.stage_latency = Histogram(
            "nux_stage_latency_seconds", "Latency of one stage call seen by the ingress.",
            ["workbook", "stage"], buckets=_LATENCY_BUCKETS, registry=r)
        self.stage_tokens = Counter("nux_stage_tokens", "Tokens a stage read (in) and wrote (out).",
                                    ["workbook", "stage", "direction"], registry=r)
        self.stage_cost = Counter("nux_stage_cost_usd", "Cost of a stage's calls in USD.",
                                  ["workbook", "stage"], registry=r)
        self.stage_errors = Counter("nux_stage_errors", "Failed stage calls, by error category.",
                                    ["workbook", "stage", "category"], registry=r)
        self.stage_retries = Counter("nux_stage_retries", "Stage calls tried again.",
                                     ["workbook", "stage"], registry=r)
        self.fallbacks = Counter("nux_fallbacks", "Answers given by a fallback stage or response.",
                                 ["workbook", "stage"], registry=r)
        self.cache_lookups = Counter("nux_cache_lookups", "Answer-cache lookups by cache, result.",
                                     ["workbook", "cache", "result"], registry=r)
        self.rejected = Counter("nux_rejected_requests", "Requests refused, by reason.",
                                ["workbook", "reason"], registry=r)
        self.online_eval = Counter("nux_online_eval", "Sampled answers scored by a criterion.",
                                   ["workbook", "criterion", "result"], registry=r)
        self.feedback = Counter("nux_feedback", "Feedback received, by kind.",
                                ["workbook", "kind"], registry=r)
        self.feedback_score = Histogram("nux_feedback_score", "Scores sent as feedback.",
                                        ["workbook"], buckets=(0.0, 0.25, 0.5, 0.75, 1.0),
                                        registry=r)

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
