"""Exercise 8.1, a different correct answer: kustomize's own ``replicas`` and ``images`` fields, JSON 6902
patches (inline, with targets) for the HPA bounds and the GPU resources/toleration, and a strategic-merge
patch for the ConfigMap."""

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


def _split_image(image):
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        return image.rsplit(":", 1)
    return image, "latest"


def write_overlay(out_dir, spec):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name, tag = _split_image(spec.image)
    patches = [{"target": {"kind": "HorizontalPodAutoscaler", "name": "llm-server"}, "patch": yaml.safe_dump([
        {"op": "replace", "path": "/spec/minReplicas", "value": spec.replicas},
        {"op": "replace", "path": "/spec/maxReplicas", "value": spec.max_replicas}])}]
    if spec.gpus:  # the base's server (containers/0) has requests and limits already
        res = "/spec/template/spec/containers/0/resources"
        ops = [{"op": "add", "path": f"{res}/{kind}/nvidia.com~1gpu", "value": spec.gpus}
               for kind in ("requests", "limits")]
        ops.append({"op": "add", "path": "/spec/template/spec/tolerations",
                    "value": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]})
        patches.append({"target": {"kind": "Deployment", "name": "llm-server"}, "patch": yaml.safe_dump(ops)})
    (out / "cost.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"name": "llm-server-config"},
                                                   "data": {"LLMIC_COST_PER_HOUR": f"{spec.cost_per_hour:g}"}}))
    patches.append({"path": "cost.yaml"})
    (out / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S_DIR / "base", out.resolve())],
        "replicas": [{"name": "llm-server", "count": spec.replicas}],
        "images": [{"name": "llmic", "newName": name, "newTag": tag}],
        "patches": patches}))
    return out
