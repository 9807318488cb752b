"""Deploy an overlay of ``k8s/`` with the ``kubernetes`` Python client, by server-side apply (book 8.3).

Three modes::

    python -m ch08_production.deploy --overlay cpu                    # render + validate, list objects
    python -m ch08_production.deploy --overlay gpu --dry-run server   # the API server checks, changes nothing
    python -m ch08_production.deploy --overlay gpu --dry-run none     # really apply

``--dry-run client`` (the default) needs no cluster: it renders with ``kubectl kustomize``, validates every
object (:mod:`ch08_production.k8s_manifests`) and prints the list. ``server`` and ``none`` send each
object as a server-side apply (``PATCH`` with ``application/apply-patch+yaml``, field manager
``llmic-deploy``), namespaces first; ``server`` adds ``dryRun=All`` so admission and schema checks run on
the real cluster without persisting anything.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ch08_production.k8s_manifests import K8S_VERSION, TREES, ManifestError, render, validate_objects
from common.cli import make_parser

FIELD_MANAGER = "llmic-deploy"
DRY_RUN_MODES = ("client", "server", "none")
KIND_ORDER = ("Namespace", "CustomResourceDefinition", "ConfigMap", "Secret", "PersistentVolumeClaim",
              "Service", "Deployment", "LeaderWorkerSet", "HorizontalPodAutoscaler", "PodDisruptionBudget",
              "NetworkPolicy", "ServiceMonitor")


class ClusterUnavailable(RuntimeError):
    """No kubeconfig or the API server did not answer; the message says what to do."""


@dataclass
class ApplyResult:
    kind: str
    name: str
    namespace: str
    action: str  # "valid", "invalid: ...", "dry-run applied", "applied", "failed: ..."
    checked_by: str = ""


def ordered(objects: list[dict]) -> list[dict]:
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    return sorted(objects, key=lambda o: rank.get(o.get("kind", ""), len(KIND_ORDER)))


def dynamic_client():
    """A ``DynamicClient`` from ~/.kube/config or the in-cluster service account."""
    try:
        from kubernetes import client, config
        from kubernetes.dynamic import DynamicClient
    except ImportError as exc:
        raise ClusterUnavailable("the 'kubernetes' package is missing: pip install '.[dev]'") from exc
    try:
        config.load_kube_config()
    except Exception:  # noqa: BLE001 - any kubeconfig problem: try in-cluster, then give one sentence
        try:
            config.load_incluster_config()
        except Exception as exc:  # noqa: BLE001
            raise ClusterUnavailable("no Kubernetes cluster configured (no ~/.kube/config and not in a pod); "
                                     "use --dry-run client to render and validate offline.") from exc
    try:
        return DynamicClient(client.ApiClient())
    except Exception as exc:  # noqa: BLE001 - discovery failed: the API server is unreachable
        raise ClusterUnavailable(f"the Kubernetes API server did not answer ({type(exc).__name__}); "
                                 "check 'kubectl cluster-info'.") from exc


def apply_objects(objects: list[dict], dry_run: bool, client=None) -> list[ApplyResult]:
    """Server-side apply each object (``dryRun=All`` when ``dry_run``); one failure does not stop the rest."""
    client = client or dynamic_client()
    results = []
    for obj in ordered(objects):
        meta = obj["metadata"]
        kw = {"field_manager": FIELD_MANAGER, "force_conflicts": True}
        if dry_run:
            kw["dry_run"] = "All"
        try:
            resource = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            client.server_side_apply(resource, body=obj, namespace=meta.get("namespace"), **kw)
            action = "dry-run applied" if dry_run else "applied"
        except Exception as exc:  # noqa: BLE001 - report per object (e.g. a CRD that is not installed)
            action = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        results.append(ApplyResult(obj["kind"], meta["name"], meta.get("namespace", ""), action))
    return results


def client_dry_run(objects: list[dict]) -> list[ApplyResult]:
    return [ApplyResult(r.kind, r.name, r.namespace, "valid" if r.ok else "invalid: " + "; ".join(r.errors),
                        r.checked_by) for r in validate_objects(ordered(objects))]


def main(argv: list[str] | None = None) -> int:
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch08_production.deploy", __doc__)
    parser.add_argument("--overlay", default="cpu",
                        help=f"a folder under k8s/ ({', '.join(TREES)}; 'cpu' means overlays/cpu, and so on)")
    parser.add_argument("--dry-run", default="client", choices=DRY_RUN_MODES,
                        help="client: render+validate offline; server: apply with dryRun=All; none: apply")
    parser.add_argument("--smoke", action="store_true", help="same as the default client dry run (CI)")
    args = parser.parse_args(argv)
    tree = f"overlays/{args.overlay}" if f"overlays/{args.overlay}" in TREES else args.overlay
    try:
        objects = render(tree)
        results = client_dry_run(objects)
        if args.dry_run != "client" and all(r.action == "valid" for r in results):
            results = apply_objects(objects, dry_run=args.dry_run == "server")
    except (ManifestError, ClusterUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = [{"kind": r.kind, "name": r.name, "namespace": r.namespace, "result": r.action,
             "checked by": r.checked_by} for r in results]
    print_table(rows, title=f"k8s/{tree}: {len(results)} objects (dry run: {args.dry_run}, "
                            f"schemas: Kubernetes {K8S_VERSION})")
    bad = [f"{r.kind}/{r.name}" for r in results if r.action.startswith(("invalid", "failed"))]
    emit_json({"tree": tree, "dry_run": args.dry_run, "objects": [f"{r.kind}/{r.name}" for r in results],
               "failed": bad, "kubernetes_version": K8S_VERSION})
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
