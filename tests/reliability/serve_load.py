"""Reliability of the served app under load (``make reliability``; not part of ``make test``).

Phase 1: a bounded loopback load, 60 s at concurrency 16, on a workbook of code and template
stages; every valid request must answer 200. Phase 2: the same load while one replica actor of a
stage (two replicas, as production runs them) is killed; the app must keep answering, and the
report counts the requests that failed while Serve replaced the replica (goal: none, absorbed by
the ingress's retries). Prints a JSON report; exits 1 when phase 1 saw any error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

WORDS = ("refund", "password", "invoice", "account", "shipping", "upgrade", "login", "plan")


def build_spec(base: Path, replicas: int = 2) -> Any:
    from nux_kernel import Workbook

    wb = Workbook("reliability", base_dir=base, output="answer",
                  inputs={"question": "string", "tier": {"type": "string",
                                                         "enum": ["free", "pro"]}})
    wb.code("clean", "def clean(question: str) -> str:\n    return ' '.join(question.split())\n")
    wb.code("topic", "def topic(clean: str) -> str:\n"
                     "    return 'billing' if 'refund' in clean else 'general'\n")
    wb.code("lookup", "def lookup(clean: str, tier: str) -> str:\n"
                      "    return f'{tier}:{len(clean.split())}'\n",
            scale={"min_replicas": replicas, "max_replicas": replicas})
    wb.template("answer", inputs=["clean", "topic", "lookup"],
                template="[{topic}] {clean} ({lookup})")
    return wb.compile()


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)

    def report(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latencies) or [0.0]
        total = sum(self.statuses.values())
        return {"requests": total, "statuses": dict(self.statuses),
                "errors": total - self.statuses.get("200", 0),
                "throughput_rps": round(total / seconds, 1),
                "p50_ms": round(statistics.median(lat) * 1000, 2),
                "p95_ms": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 2)}


async def load(url: str, seconds: float, concurrency: int, tally: Tally, start: float) -> None:
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            body = {"question": " ".join(random.choices(WORDS, k=random.randint(2, 8))),
                    "tier": random.choice(("free", "pro"))}
            t0 = time.monotonic()
            try:
                r = await client.post("/v1/run", json=body,
                                      headers={"Cache-Control": "no-cache"})
                status = str(r.status_code)
                if r.status_code != 200:
                    tally.failures.append((t0 - start, r.text[:200]))
            except httpx.HTTPError as exc:
                status = type(exc).__name__
                tally.failures.append((t0 - start, status))
            tally.statuses[status] += 1
            tally.latencies.append(time.monotonic() - t0)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


def replica_names(app: str, deployment: str) -> list[str]:
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(prefix)]


async def kill_later(app: str, deployment: str, after: float) -> tuple[str, float]:
    import ray

    await asyncio.sleep(after)
    victim = replica_names(app, deployment)[0]
    ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
    return victim, time.monotonic()


async def wait_replaced(app: str, deployment: str, victim: str, want: int) -> float:
    start = time.monotonic()
    while time.monotonic() - start < 120:
        names = replica_names(app, deployment)
        if victim not in names and len(names) >= want:
            return time.monotonic() - start
        await asyncio.sleep(0.25)
    return float("nan")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--kill-seconds", type=float, default=30.0)
    parser.add_argument("--replicas", type=int, default=2,
                        help="Replicas of the stage whose replica is killed.")
    opts = parser.parse_args(argv)

    from ray import serve

    from nux_runtime.serve.app import build_app
    from nux_runtime.serve.local import start_local, stop_local

    base = Path(tempfile.mkdtemp(prefix="nux-reliability-"))
    spec = build_spec(base, opts.replicas)
    (base / "spec.json").write_text(spec.to_json())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report: dict[str, Any] = {"workbook": spec.name, "concurrency": opts.concurrency}
    try:
        start_local(4, port=port)
        serve.run(build_app({"spec_path": str(base / "spec.json"), "stage_cpus": 0.1,
                             "ingress_cpus": 0.1, "cache": {"enabled": False},
                             "rate_limit": {"enabled": False}, "transport_retries": 6}),
                  name="rel", route_prefix="/rel")
        url = f"http://127.0.0.1:{port}/rel"

        steady = Tally()
        t0 = time.monotonic()
        asyncio.run(load(url, opts.seconds, opts.concurrency, steady, t0))
        report["steady"] = {"seconds": opts.seconds, **steady.report(time.monotonic() - t0)}

        async def chaos() -> dict[str, Any]:
            tally = Tally()
            start = time.monotonic()
            kill = asyncio.ensure_future(kill_later("rel", "lookup", opts.kill_seconds / 4))
            loader = asyncio.ensure_future(load(url, opts.kill_seconds, opts.concurrency,
                                                tally, start))
            victim, killed_at = await kill
            replaced_s = await wait_replaced("rel", "lookup", victim, opts.replicas)
            await loader
            during = [f for f in tally.failures if f[0] >= killed_at - start]
            return {"seconds": opts.kill_seconds, "killed": victim,
                    "killed_at_s": round(killed_at - start, 2),
                    "replica_replaced_after_s": round(replaced_s, 2),
                    "failed_during_recovery": len(during),
                    "first_failures": [f[1] for f in during[:3]],
                    **tally.report(time.monotonic() - start)}

        report["replica_kill"] = asyncio.run(chaos())
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        report["replica_kill"]["calls_retried_after_unreachable"] = sum(
            float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
            if line.startswith("ray_nux_stage_errors_total{") and 'category="unreachable"' in line)
    finally:
        stop_local()
    print(json.dumps(report, indent=2))
    ok = report["steady"]["errors"] == 0
    print(f"steady load: {'PASS' if ok else 'FAIL'} ({report['steady']['errors']} errors); "
          f"replica kill: {report['replica_kill']['failed_during_recovery']} failed requests "
          "during recovery", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
