"""The private local Ray that `nux serve`, the tests and the benchmarks run Serve on."""

from __future__ import annotations

from typing import Any

from tests.fixtures.ray_serve import ServeCluster


def test_every_ray_process_serves_in_the_throughput_mode_without_direct_ingress(
        ray_serve: ServeCluster) -> None:
    import ray

    @ray.remote(num_cpus=0)
    def serve_mode() -> dict[str, Any]:
        # what a replica started by this Ray resolves when Serve imports its constants
        from ray.serve._private import constants

        return {"user_code_thread": constants.RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD,
                "router_loop": constants.RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP,
                "direct_ingress": constants.RAY_SERVE_ENABLE_DIRECT_INGRESS}

    assert ray.get(serve_mode.remote(), timeout=120) == {
        "user_code_thread": False, "router_loop": False, "direct_ingress": False}
