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


def test_the_proxy_and_the_handles_of_every_replica_take_grpc(ray_serve: ServeCluster) -> None:
    import ray

    @ray.remote(num_cpus=0)
    def transport() -> dict[str, Any]:
        from ray.serve._private import constants

        return {"proxy": constants.RAY_SERVE_PROXY_USE_GRPC,
                "handles": constants.RAY_SERVE_USE_GRPC_BY_DEFAULT}

    assert ray.get(transport.remote(), timeout=120) == {"proxy": True, "handles": True}


def test_the_stage_handles_take_grpc_whatever_process_built_the_app(
        ray_serve: ServeCluster) -> None:
    import httpx
    from ray import serve

    from nux_runtime.serve.transport import HandleClient

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Echo:
        async def __call__(self, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"echo": inputs}

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Front:
        def __init__(self, handles: dict[str, Any]) -> None:
            # handles as a driver that imported Ray Serve before its mode was set builds them
            self.given = {k: h.options(_by_reference=True) for k, h in handles.items()}
            self.client = HandleClient(self.given)

        async def __call__(self, request: Any) -> dict[str, Any]:
            return {"given": [h.handle_options._by_reference for h in self.given.values()],
                    "used": [h.handle_options._by_reference
                             for h in self.client.handles.values()],
                    "answer": await self.client.call("echo", {"x": 1})}

    url = ray_serve.deploy(Front.bind({"echo": Echo.bind()}), "grpc-handles")
    assert httpx.get(url, timeout=60).json() == {
        "given": [True], "used": [False], "answer": {"echo": {"x": 1}}}
