"""Chapter 8's practical checklist (实战检查清单): is this server ready to face traffic?

    python -m ch08_production.checklist                                 # the server's defaults
    python -m ch08_production.checklist --host 0.0.0.0 --port 8000 --api-key-file keys.txt
    python -m ch08_production.checklist --shutdown-grace-s 90 --max-pending 16 --max-num-seqs 32

Items, from your settings and this machine: an address open to the network without an API key (or a rate
limit), whether the port is free, the OpenMP wait policy (spinning workers starve the event loop, 8.5),
the Prometheus binary the monitoring stack needs, the drain time against Kubernetes' termination grace
period (``k8s/base/deployment.yaml``), and the admission limit against the batch (a queue that holds more
than a few batches turns overload into long waits instead of fast 503s). Exit code 1 on a FAIL.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path

from ch08_production.config import ServerConfig
from ch08_production.omp import ENV as OMP_ENV
from ch08_production.security import API_KEY_FILE_ENV, API_KEYS_ENV
from common.checklist import FAIL, OK, WARN, Check, add_checklist_args, report
from common.cli import friendly_errors, make_parser, positive_int

DEPLOYMENT = Path(__file__).resolve().parents[1] / "k8s" / "base" / "deployment.yaml"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_exposure(host: str, has_key: bool, requests_per_minute: float) -> Check:
    if host in LOCAL_HOSTS:
        return Check("exposure", OK, f"listens on {host}: reachable from this machine only")
    if not has_key:
        return Check("exposure", FAIL, f"listens on {host} with no API key: anyone who reaches the port runs the "
                     "model", f"pass --api-key-file (or set {API_KEYS_ENV}), or bind 127.0.0.1 behind a gateway.")
    if requests_per_minute <= 0:
        return Check("exposure", WARN, f"listens on {host} with API keys but no per-key rate limit",
                     "set --requests-per-minute / --tokens-per-minute so one key cannot take every seat.")
    return Check("exposure", OK, f"listens on {host}, API keys and a {requests_per_minute:g}/min rate limit")


def check_port(host: str, port: int) -> Check:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            return Check("port", FAIL, f"cannot bind {host}:{port}: {exc.strerror or exc}",
                         f"stop what holds it (ss -ltnp | grep {port}) or pass --port another.")
    return Check("port", OK, f"{host}:{port} is free")


def check_omp(policy: str | None) -> Check:
    if policy is None:
        return Check("omp-wait", OK, f"{OMP_ENV} unset: the server restarts itself with PASSIVE")
    if policy.upper() == "ACTIVE":
        return Check("omp-wait", WARN, f"{OMP_ENV}=ACTIVE: idle OpenMP workers spin on the cores the event loop "
                     "needs (one engine step went from ~55 ms to ~1 s behind the server on 2 cores)",
                     f"unset {OMP_ENV} or set it to PASSIVE.")
    return Check("omp-wait", OK, f"{OMP_ENV}={policy}")


def check_prometheus(binary: str | None) -> Check:
    if binary is None:
        return Check("prometheus", WARN, "no prometheus binary on PATH: metrics are exported but nothing "
                     "scrapes or alerts on them", "make prometheus (apt-get install prometheus) or docker compose.")
    return Check("prometheus", OK, f"prometheus at {binary}")


def termination_grace_s(path: Path = DEPLOYMENT) -> float | None:
    if not path.is_file():
        return None
    m = re.search(r"terminationGracePeriodSeconds:\s*(\d+)", path.read_text())
    return float(m.group(1)) if m else None


def check_drain(shutdown_grace_s: float, k8s_grace_s: float | None) -> Check:
    if k8s_grace_s is None:
        return Check("drain", OK, f"drains for {shutdown_grace_s:g} s on SIGTERM (no Kubernetes manifest here)")
    detail = f"drains for {shutdown_grace_s:g} s; Kubernetes kills the pod {k8s_grace_s:g} s after SIGTERM"
    if shutdown_grace_s >= k8s_grace_s:
        return Check("drain", FAIL, detail + ": streams still running are cut off",
                     f"keep --shutdown-grace-s below terminationGracePeriodSeconds ({k8s_grace_s:g}) by ~10 s.")
    return Check("drain", OK, detail)


def check_admission(max_pending: int, max_num_seqs: int) -> Check:
    batches = max_pending / max(1, max_num_seqs)
    detail = f"max-pending {max_pending} = {batches:.1f} batches of max-num-seqs {max_num_seqs}"
    if max_pending < max_num_seqs:
        return Check("admission", WARN, detail + ": the server rejects before the batch is full",
                     f"raise --max-pending to at least {max_num_seqs}.")
    if batches > 4:
        return Check("admission", WARN, detail + ": under overload a request waits behind several whole batches "
                     "before its first token", f"lower --max-pending to ~{2 * max_num_seqs}: a fast 503 with "
                     "Retry-After lets the client or the load balancer go elsewhere.")
    return Check("admission", OK, detail)


def has_api_key(api_key_file: str | None) -> bool:
    return bool(api_key_file or os.environ.get(API_KEYS_ENV) or os.environ.get(API_KEY_FILE_ENV))


def run_checks(args) -> list[Check]:
    return [
        check_exposure(args.host, has_api_key(args.api_key_file), args.requests_per_minute),
        check_port(args.host, args.port),
        check_omp(os.environ.get(OMP_ENV)),
        check_prometheus(shutil.which("prometheus")),
        check_drain(args.shutdown_grace_s, termination_grace_s()),
        check_admission(args.max_pending, args.max_num_seqs),
    ]


def main(argv: list[str] | None = None) -> int:
    d = ServerConfig()
    parser = make_parser("python -m ch08_production.checklist", __doc__)
    parser.add_argument("--host", default=d.host, help="address the server binds")
    parser.add_argument("--port", type=positive_int, default=d.port, help="port the server binds")
    parser.add_argument("--api-key-file", default=d.api_key_file, help="file of API keys, one per line")
    parser.add_argument("--requests-per-minute", type=float, default=d.requests_per_minute, help="per key; 0 = off")
    parser.add_argument("--shutdown-grace-s", type=float, default=d.shutdown_grace_s, help="drain time on SIGTERM")
    parser.add_argument("--max-pending", type=positive_int, default=d.max_pending, help="requests before 503")
    parser.add_argument("--max-num-seqs", type=positive_int, default=d.engine.max_num_seqs, help="engine batch seats")
    add_checklist_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        return report("chapter 8 checklist: exposure, port, OpenMP, monitoring, drain, admission",
                      run_checks(args), json_only=args.json)


if __name__ == "__main__":
    sys.exit(main())
