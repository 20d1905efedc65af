"""The exported cluster is closed by default, under Pulumi's mocks.

The generated ``__main__.py`` runs under ``pulumi.runtime.set_mocks``: a NetworkPolicy admits
only the Serve port from outside the Ray pods, the dashboard is not bound to all interfaces,
KubeRay token authentication is on, and each secret reaches only what needs it. Each is a
setting; turned off, the program and ``kubernetes.yaml`` agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from nux_exporters import ExportResult, export
from nux_exporters.manifests import manifests, settings
from tests.exporters.test_program import (  # noqa: F401  (the event-loop fixture)
    all_secrets,
    pulumi_event_loop,
    run_program,
)
from tests.exporters.workbooks import rag_bot


def _rag_export(tmp_path: Path) -> ExportResult:
    spec, sources = rag_bot()
    return export(spec, tmp_path / "rag", sources=sources, secrets=("OPENAI_API_KEY",))


def _cluster(service: Any) -> dict[str, Any]:
    cluster: dict[str, Any] = service.inputs["spec"]["rayClusterConfig"]
    return cluster


def test_ray_pods_admit_only_the_serve_port_from_outside(tmp_path: Path) -> None:
    result = _rag_export(tmp_path)
    mocks, _ = run_program(result, secrets=all_secrets(result))
    policies = {p.inputs["metadata"]["name"]: p.inputs for p in mocks.of_type(":NetworkPolicy")}
    assert sorted(policies) == ["rag-bot-qdrant", "rag-bot-ray"]
    ray = policies["rag-bot-ray"]["spec"]
    selector = ray["podSelector"]["matchLabels"]
    assert ray["policyTypes"] == ["Ingress"]
    # Every rule either names a source or admits the Serve port alone.
    open_rules = [rule for rule in ray["ingress"] if "from" not in rule]
    assert open_rules == [{"ports": [{"protocol": "TCP", "port": 8000}]}]
    sources = [rule["from"] for rule in ray["ingress"] if "from" in rule]
    assert [{"podSelector": {"matchLabels": selector}}] in sources  # head <-> workers
    (operator_rule,) = [r for r in ray["ingress"] if r.get("ports") == [
        {"protocol": "TCP", "port": 8265}]]
    assert operator_rule["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "kuberay-operator"}
    # The policy selects every Ray pod: head and workers carry its label.
    (service,) = mocks.of_type(":RayService")
    cluster = _cluster(service)
    templates = [cluster["headGroupSpec"]["template"],
                 *(g["template"] for g in cluster["workerGroupSpecs"])]
    assert all(t["metadata"]["labels"].items() >= selector.items() for t in templates)
    # Qdrant admits its ports from the Ray pods and the ingest job only.
    qdrant = policies["rag-bot-qdrant"]["spec"]
    (rule,) = qdrant["ingress"]
    assert {p["port"] for p in rule["ports"]} == {6333, 6334}
    assert rule["from"][0] == {"podSelector": {"matchLabels": selector}}
    (job,) = mocks.of_type(":Job")
    job_labels = job.inputs["spec"]["template"]["metadata"]["labels"]
    job_selector = rule["from"][1]["podSelector"]
    assert job_selector["matchLabels"].items() <= job_labels.items()
    assert all(e["key"] in job_labels for e in job_selector["matchExpressions"])
    (stateful_set,) = mocks.of_type(":StatefulSet")
    pod_labels = stateful_set.inputs["spec"]["template"]["metadata"]["labels"]
    assert qdrant["podSelector"]["matchLabels"] == pod_labels
    # kubernetes.yaml, for review, holds the same policies.
    docs = list(yaml.safe_load_all((result.out_dir / "kubernetes.yaml").read_text()))
    rendered = {d["metadata"]["name"]: d for d in docs if d and d["kind"] == "NetworkPolicy"}
    assert {name: doc["spec"] for name, doc in rendered.items()} == {
        name: policy["spec"] for name, policy in policies.items()}


def test_dashboard_not_on_all_interfaces_and_token_auth_on(tmp_path: Path) -> None:
    result = _rag_export(tmp_path)
    mocks, _ = run_program(result, secrets=all_secrets(result))
    (service,) = mocks.of_type(":RayService")
    cluster = _cluster(service)
    head = cluster["headGroupSpec"]
    host = head["rayStartParams"]["dashboard-host"]
    assert host not in ("0.0.0.0", "::", "")
    # The address is the head pod's own IP, from the downward API, which the kubelet
    # substitutes into the generated `ray start` command.
    assert host == "$(NUX_POD_IP)"
    (container,) = head["template"]["spec"]["containers"]
    (pod_ip,) = [e for e in container["env"] if e["name"] == "NUX_POD_IP"]
    assert pod_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert cluster["authOptions"] == {"mode": "token"}


def test_each_secret_reaches_only_what_needs_it(tmp_path: Path) -> None:
    result = _rag_export(tmp_path)
    assert set(result.plan.secrets) >= {"QDRANT_API_KEY", "OPENAI_API_KEY"}
    mocks, _ = run_program(result, secrets=all_secrets(result))
    # The ingest job: the Qdrant key alone, by key, never the whole Secret.
    (job,) = mocks.of_type(":Job")
    (container,) = job.inputs["spec"]["template"]["spec"]["containers"]
    assert "envFrom" not in container
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
            for e in container["env"] if "valueFrom" in e}
    assert refs == {"QDRANT_API_KEY": "QDRANT_API_KEY"}
    # The Qdrant server: its own key alone.
    (stateful_set,) = mocks.of_type(":StatefulSet")
    (qdrant,) = stateful_set.inputs["spec"]["template"]["spec"]["containers"]
    assert "envFrom" not in qdrant
    assert [e["valueFrom"]["secretKeyRef"]["key"] for e in qdrant["env"]] == ["QDRANT_API_KEY"]
    # The Ray pods run every stage: they get the workbook's Secret (documented in the README).
    (service,) = mocks.of_type(":RayService")
    for group in _cluster(service)["workerGroupSpecs"]:
        (worker,) = group["template"]["spec"]["containers"]
        assert worker["envFrom"] == [{"secretRef": {"name": "rag-bot-secrets"}}]
    readme = (result.out_dir / "README.md").read_text(encoding="utf-8")
    assert "shared Ray worker pod" in readme


def test_each_protection_is_a_setting(tmp_path: Path) -> None:
    result = _rag_export(tmp_path)
    plan = result.plan
    changed = {"networkPolicy": False, "rayAuthMode": "disabled", "dashboardHost": "0.0.0.0"}
    mocks, _ = run_program(result, config=changed, secrets=all_secrets(result))
    assert mocks.of_type(":NetworkPolicy") == []
    (service,) = mocks.of_type(":RayService")
    cluster = _cluster(service)
    assert cluster["authOptions"] == {"mode": "disabled"}
    assert cluster["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    expected = [m for m in manifests(plan, {**settings(plan), **changed})
                if m["kind"] == "RayService"]
    assert {**service.inputs["spec"], "serveConfigV2": ""} == {
        **expected[0]["spec"], "serveConfigV2": ""}
    assert not [m for m in manifests(plan, {**settings(plan), **changed})
                if m["kind"] == "NetworkPolicy"]
    stack = (result.out_dir / "Pulumi.dev.yaml").read_text(encoding="utf-8")
    assert "networkPolicy: true" in stack and "rayAuthMode: token" in stack


def test_redis_url_is_an_optional_secret_reaching_the_ray_containers(tmp_path: Path) -> None:
    from pulumi.runtime import rpc

    result = _rag_export(tmp_path)
    assert "NUX_REDIS_URL" in result.plan.optional_secrets
    required = {k: v for k, v in all_secrets(result).items() if k != "nuxRedisUrl"}
    # Unset: `pulumi up` runs and the Secret has no Redis URL (each replica keeps its state).
    mocks, _ = run_program(result, secrets=required)
    (secret,) = mocks.of_type(":Secret")
    assert "NUX_REDIS_URL" not in secret.inputs["stringData"]["value"]
    # Set: a secret value in the Secret every Ray container reads its environment from.
    url = "rediss://:pw@redis.example:6380/0"
    mocks, _ = run_program(result, secrets={**required, "nuxRedisUrl": url})
    (secret,) = mocks.of_type(":Secret")
    assert secret.inputs["stringData"][rpc._special_sig_key] == rpc._special_secret_sig
    assert secret.inputs["stringData"]["value"]["NUX_REDIS_URL"] == url
    name = secret.inputs["metadata"]["name"]
    (service,) = mocks.of_type(":RayService")
    cluster = _cluster(service)
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in pods:
        (container,) = group["template"]["spec"]["containers"]
        assert {"secretRef": {"name": name}} in container["envFrom"]
    # The ingest job does not get it.
    (job,) = mocks.of_type(":Job")
    (container,) = job.inputs["spec"]["template"]["spec"]["containers"]
    assert "NUX_REDIS_URL" not in json.dumps(container)
    readme = (result.out_dir / "README.md").read_text(encoding="utf-8")
    assert "`nuxRedisUrl` | `NUX_REDIS_URL`" in readme


def test_metrics_dashboard_and_pod_monitor_in_the_export(tmp_path: Path) -> None:
    result = _rag_export(tmp_path)
    stages = [s.id for s in result.plan.spec.stages]
    dashboard = json.loads(
        (result.out_dir / "observability" / "grafana-dashboard.json").read_text())
    assert dashboard["tags"] == ["nux", "rag-bot"] and dashboard["panels"]
    assert all(stage in dashboard["description"] for stage in stages)
    assert 'workbook="rag-bot"' in dashboard["panels"][0]["targets"][0]["expr"]
    monitor = yaml.safe_load((result.out_dir / "observability" / "podmonitor.yaml").read_text())
    assert monitor["kind"] == "PodMonitor" and monitor["metadata"]["namespace"] == "rag-bot"
    provenance = json.loads((result.out_dir / "provenance.json").read_text())
    assert {"observability/grafana-dashboard.json",
            "observability/podmonitor.yaml"} <= set(provenance["files"])
    # Off by default (it needs the Prometheus operator's CRD); on, in the stack's namespace.
    mocks, _ = run_program(result, secrets=all_secrets(result))
    assert mocks.of_type(":PodMonitor") == []
    mocks, _ = run_program(result, config={"podMonitor": True, "namespace": "prod"},
                           secrets=all_secrets(result))
    (created,) = mocks.of_type(":PodMonitor")
    assert created.inputs["metadata"]["namespace"] == "prod"
    assert created.inputs["spec"]["namespaceSelector"] == {"matchNames": ["prod"]}
    assert created.inputs["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    # The NetworkPolicy lets Prometheus scrape Ray's metrics port, from Prometheus pods only.
    (ray_policy,) = [p for p in mocks.of_type(":NetworkPolicy")
                     if p.inputs["metadata"]["name"] == "rag-bot-ray"]
    (rule,) = [r for r in ray_policy.inputs["spec"]["ingress"]
               if r.get("ports") == [{"protocol": "TCP", "port": 8080}]]
    assert rule["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "prometheus"}
