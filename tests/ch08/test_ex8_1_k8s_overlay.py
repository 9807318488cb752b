"""Exercise 8.1 (book 8.3): the reader's kustomize overlay renders, validates for Kubernetes 1.33, and
sets replicas, image, GPUs (with toleration), HPA bounds and the cost setting; a cluster, when
reachable, accepts it in a server-side dry run."""

from __future__ import annotations

import pytest

from ch08_production import k8s_manifests as km

PKG, MOD = "ch08_production", "ex8_1_k8s_overlay"


@pytest.fixture
def rendered(exercise, tmp_path):
    mod = exercise(PKG, MOD)

    def _render(**kw):
        out = mod.write_overlay(tmp_path / "overlay", mod.OverlaySpec(**kw))
        return km.render(out)
    return _render


def test_overlay_renders_and_every_object_validates(rendered):
    objs = rendered(image="registry.example.com/team/llm:2.0", replicas=3, max_replicas=9, gpus=1)
    assert [(r.kind, r.errors) for r in km.validate_objects(objs) if not r.ok] == []
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret"} <= {o["kind"] for o in objs}


def test_overlay_sets_replicas_image_gpus_and_toleration(rendered):
    objs = rendered(image="registry.example.com/team/llm:2.0", replicas=3, max_replicas=9, gpus=2,
                    cost_per_hour=2.5)
    dep = km.find(objs, "Deployment", "llm-server")
    assert dep["spec"]["replicas"] == 3
    server = km.containers(objs)["server"]
    assert server["image"] == "registry.example.com/team/llm:2.0"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert server["resources"]["requests"]["nvidia.com/gpu"] == 2
    tol = dep["spec"]["template"]["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tol
    hpa = km.find(objs, "HorizontalPodAutoscaler", "llm-server")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 9)
    assert km.find(objs, "ConfigMap", "llm-server-config")["data"]["LLMIC_COST_PER_HOUR"] == "2.5"


def test_cpu_overlay_asks_for_no_gpu(rendered):
    objs = rendered(replicas=2, gpus=0)
    assert "nvidia.com/gpu" not in str(km.containers(objs)["server"].get("resources", {}))
    # the probes, security context and model volume of the base survive the patches
    server = km.containers(objs)["server"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert server["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.k8s
def test_a_real_cluster_accepts_the_overlay_in_a_server_side_dry_run(rendered):
    from ch08_production import deploy

    objs = [o for o in rendered(replicas=1) if o["kind"] != "ServiceMonitor"]
    deploy.apply_objects([o for o in objs if o["kind"] == "Namespace"], dry_run=False)
    results = deploy.apply_objects([o for o in objs if o["kind"] != "Namespace"], dry_run=True)
    assert [r for r in results if r.action != "dry-run applied"] == []
