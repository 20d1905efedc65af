"""A private Ray with Serve on this machine: what ``nux serve``, the tests and benchmarks run on.

``address="local"`` always starts a new cluster (never someone else's Ray on the same machine);
no dashboard; Serve's HTTP proxy on the given loopback port. A busy machine can make Ray's own
startup check time out; the start is tried again a few times before giving up.
"""

from __future__ import annotations

import time

__all__ = ["init_local_ray", "start_local", "stop_local"]


def start_local(num_cpus: int, *, port: int, host: str = "127.0.0.1",
                attempts: int = 3) -> None:
    """Start Ray (``num_cpus`` logical CPUs) and Serve's proxy on ``host:port``."""
    from ray import serve

    init_local_ray(num_cpus, attempts=attempts)
    serve.start(http_options={"host": host, "port": port})


def init_local_ray(num_cpus: int, *, attempts: int = 3) -> None:
    """Start a private local Ray, retrying when a busy machine misses Ray's start-up window."""
    import ray

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


def stop_local() -> None:
    """Shut Serve and Ray down (Ray even when Serve's shutdown fails)."""
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
