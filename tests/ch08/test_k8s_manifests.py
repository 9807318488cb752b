"""k8s/ (book 8.3): every tree renders with kubectl kustomize and every object validates for a pinned
Kubernetes version (strict schemas for core kinds; ServiceMonitor and LeaderWorkerSet structurally,
LWS pod templates through the core PodTemplate schema). The deploy script's client dry run lists
every object; with a reachable cluster, a server-side dry-run apply is accepted (``k8s`` marker)."""

from __future__ import annotations

import pytest

from ch08_production import deploy
from ch08_production import k8s_manifests as km


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {tree: km.render(tree) for tree in km.TREES}


@pytest.mark.parametrize("tree", km.TREES)
def test_every_rendered_object_validates(rendered, tree):
    reports = km.validate_objects(rendered[tree])
    assert reports
    assert [(r.kind, r.errors) for r in reports if not r.ok] == []


def test_overlays_contain_every_object_the_chapter_needs(rendered):
    want = {"Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Service", "Deployment",
            "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}
    for overlay in ("overlays/cpu", "overlays/gpu"):
        assert want <= {o["kind"] for o in rendered[overlay]}, overlay


def test_server_container_has_probes_on_health_and_ready_and_runs_restricted(rendered):
    for overlay in ("overlays/cpu", "overlays/gpu"):
        objs = rendered[overlay]
        c = km.containers(objs)["server"]
        assert c["startupProbe"]["httpGet"]["path"] == "/health"
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        pod = km.find(objs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/models"]["readOnly"] is True
        claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
        assert claims["models"] == {"claimName": "llm-models"}


def test_init_container_prepares_the_model_on_the_volume(rendered):
    init = km.containers(rendered["overlays/cpu"])["prepare-model"]
    assert init["command"][-2:] == ["common.models", "prepare"]
    assert any(m["mountPath"] == "/models" and not m.get("readOnly") for m in init["volumeMounts"])


def test_gpu_overlay_requests_a_gpu_with_selector_and_toleration(rendered):
    objs = rendered["overlays/gpu"]
    pod = km.find(objs, "Deployment")["spec"]["template"]["spec"]
    engine = km.containers(objs)["vllm"]
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert "nvidia.com/gpu" not in str(km.find(rendered["overlays/cpu"], "Deployment"))


def test_cpu_hpa_scales_on_cpu_and_gpu_hpa_on_the_waiting_queue(rendered):
    cpu = km.find(rendered["overlays/cpu"], "HorizontalPodAutoscaler")["spec"]["metrics"]
    gpu = km.find(rendered["overlays/gpu"], "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert cpu[0]["resource"]["name"] == "cpu"
    assert gpu[0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
    adapter = km.find(rendered["addons/prometheus-adapter"], "ConfigMap")["data"]["config.yaml"]
    assert "vllm:num_requests_waiting" in adapter and 'as: "vllm_${1}"' in adapter


def test_gpu_servicemonitor_scrapes_both_the_gateway_and_the_engine(rendered):
    sm = km.find(rendered["overlays/gpu"], "ServiceMonitor")
    assert [e["port"] for e in sm["spec"]["endpoints"]] == ["http", "engine"]


def test_structural_checks_catch_a_servicemonitor_pointing_at_no_port(rendered):
    objs = [dict(o) for o in rendered["overlays/cpu"]]
    sm = km.find(objs, "ServiceMonitor")
    sm["spec"] = {**sm["spec"], "endpoints": [{"port": "nope"}]}
    errors = [r for r in km.validate_objects(objs) if not r.ok]
    assert [r.kind for r in errors] == ["ServiceMonitor"]


def test_schema_validation_rejects_a_mistyped_field():
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replicas": "two", "selector": {}, "template": {}}}
    assert not km.validate_objects([bad])[0].ok


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_deploy_client_dry_run_lists_every_object(overlay, capsys):
    from common.report import parse_json_line

    assert deploy.main(["--overlay", overlay]) == 0
    out = capsys.readouterr().out
    result = parse_json_line(out)
    rendered = km.render(f"overlays/{overlay}")
    assert sorted(result["objects"]) == sorted(f"{o['kind']}/{o['metadata']['name']}" for o in rendered)
    assert result["failed"] == []


def test_deploy_orders_namespaces_first_and_crds_last(rendered):
    kinds = [o["kind"] for o in deploy.ordered(rendered["overlays/gpu"])]
    assert kinds[0] == "Namespace" and kinds[-1] == "ServiceMonitor"


@pytest.mark.k8s
@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_server_side_dry_run_apply_is_accepted_by_a_real_cluster(overlay):
    objs = [o for o in km.render(f"overlays/{overlay}") if o["kind"] != "ServiceMonitor"]  # CRD may be absent
    # A dry-run Namespace is not persisted, so namespaced dry runs need the real one first.
    deploy.apply_objects([o for o in objs if o["kind"] == "Namespace"], dry_run=False)
    results = deploy.apply_objects([o for o in objs if o["kind"] != "Namespace"], dry_run=True)
    assert [r for r in results if r.action != "dry-run applied"] == []
