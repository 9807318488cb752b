"""Exercise 8.1 (book 8.3): deploy to Kubernetes - write a kustomize overlay for your own service.

Write ``write_overlay(out_dir, spec)``: a folder with a ``kustomization.yaml`` that uses ``k8s/base`` as
its base (by a *relative* path: kustomize refuses absolute ones) and patches it so that

* the Deployment ``llm-server`` runs ``spec.replicas`` replicas of ``spec.image`` (the base's image is
  ``llmic:cpu``: kustomize's ``images`` field renames it);
* with ``spec.gpus > 0``, the ``server`` container requests and limits ``nvidia.com/gpu: spec.gpus``, and
  the pod tolerates the ``nvidia.com/gpu`` taint (``operator: Exists``, ``effect: NoSchedule``);
* the HPA ``llm-server`` scales between ``spec.replicas`` and ``spec.max_replicas``;
* the ConfigMap ``llm-server-config`` has ``LLMIC_COST_PER_HOUR = str(spec.cost_per_hour)``.

Graded by rendering (``kubectl kustomize``) and validating every object against the Kubernetes 1.33
schemas (``ch08_production.k8s_manifests``), then checking those fields; with a cluster reachable, a
server-side dry-run apply. Return the overlay folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ch08_production.k8s_manifests import K8S_DIR


@dataclass(frozen=True)
class OverlaySpec:
    image: str = "llmic:cpu"
    replicas: int = 2
    max_replicas: int = 6
    gpus: int = 0
    cost_per_hour: float = 0.5


def write_overlay(out_dir: Path, spec: OverlaySpec) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name, _, tag = spec.image.rpartition(":")
    name, tag = (name, tag) if name and "/" not in tag else (spec.image, "latest")
    server: dict = {"name": "server"}
    pod: dict = {"containers": [server]}
    if spec.gpus > 0:
        server["resources"] = {"requests": {"nvidia.com/gpu": spec.gpus}, "limits": {"nvidia.com/gpu": spec.gpus}}
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "llm-server"},
                  "spec": {"replicas": spec.replicas, "template": {"spec": pod}}}
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "llm-server"},
           "spec": {"minReplicas": spec.replicas, "maxReplicas": spec.max_replicas}}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "llm-server-config"},
              "data": {"LLMIC_COST_PER_HOUR": str(spec.cost_per_hour)}}
    for fname, obj in (("deployment.yaml", deployment), ("hpa.yaml", hpa), ("config.yaml", config)):
        (out_dir / fname).write_text(yaml.safe_dump(obj, sort_keys=False))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S_DIR / "base", out_dir.resolve())],
        "images": [{"name": "llmic", "newName": name, "newTag": tag}],
        "patches": [{"path": "deployment.yaml"}, {"path": "hpa.yaml"}, {"path": "config.yaml"}],
    }
    (out_dir / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    return out_dir
