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

from dataclasses import dataclass
from pathlib import Path

from ch08_production.k8s_manifests import K8S_DIR  # noqa: F401 - you will need it


@dataclass(frozen=True)
class OverlaySpec:
    image: str = "llmic:cpu"
    replicas: int = 2
    max_replicas: int = 6
    gpus: int = 0
    cost_per_hour: float = 0.5


def write_overlay(out_dir: Path, spec: OverlaySpec) -> Path:
    raise NotImplementedError("Exercise 8.1: write the overlay folder (see the module docstring)")
