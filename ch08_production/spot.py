"""Spot (preemptible) instances: drain on the termination notice, and what they really save (book 8.6.2).

**Drain.** Clouds warn before reclaiming a spot VM: AWS 2 minutes (instance metadata
``/latest/meta-data/spot/instance-action`` turns from 404 into a JSON notice), GCP and Azure about 30 s
(``computeMetadata/v1/instance/preempted`` = ``TRUE``; Azure Scheduled Events). :class:`NoticeWatcher`
polls such an endpoint and, on the first notice, calls ``on_notice`` once: in a pod, send SIGTERM to
the server (our server's drain: ``/ready`` turns 503, new requests get 503, in-flight streams finish
within ``shutdown_grace_s``, then exit). In Kubernetes the usual tool is a node termination handler
(aws-node-termination-handler, GKE's graceful node shutdown) that cordons and drains the node, which
ends in the same SIGTERM; the watcher shows the mechanism and serves plain VMs.

**Savings.** Each interruption costs ``recovery_s`` of a replica (new node + image + weight load). To keep
the same serving capacity you over-provision by 1 / (1 - interruptions/hour x recovery hours), so

    effective spot $/hour = spot $/hour / (1 - rate x recovery)   (plus on-demand for the baseline share)

and spot pays only while rate x recovery < discount. Requests in flight at the notice are lost only if
they outlive it: with a 2-minute notice and a drain grace below it, none are.

    python -m ch08_production.spot --on-demand 2.99 --spot 1.10 --interruptions-per-hour 0.05 --recovery-s 300
    python -m ch08_production.spot --smoke      # also runs the watcher against a fake metadata endpoint
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from common.cli import UsageError, friendly_errors, make_parser
from common.report import emit_json, print_table

AWS_NOTICE_URL = "http://169.254.169.254/latest/meta-data/spot/instance-action"
GCP_NOTICE_URL = "http://metadata.google.internal/computeMetadata/v1/instance/preempted"


@dataclass(frozen=True)
class SpotPlan:
    on_demand_per_hour: float
    spot_per_hour: float
    interruptions_per_hour: float
    recovery_s: float
    on_demand_share: float = 0.0  # baseline kept on on-demand nodes (0..1)

    def __post_init__(self) -> None:
        if min(self.on_demand_per_hour, self.spot_per_hour, self.interruptions_per_hour, self.recovery_s) < 0:
            raise UsageError("prices, interruption rate and recovery time must be >= 0")
        if not 0 <= self.on_demand_share <= 1:
            raise UsageError("on-demand share must be within 0..1")

    @property
    def lost_fraction(self) -> float:
        """Share of spot replica-time spent recovering from interruptions."""
        return self.interruptions_per_hour * self.recovery_s / 3600.0

    @property
    def effective_spot_per_hour(self) -> float:
        """Spot $ per hour of *serving* capacity, over-provisioned to cover recoveries."""
        if self.lost_fraction >= 1:
            return float("inf")
        return self.spot_per_hour / (1.0 - self.lost_fraction)

    @property
    def blended_per_hour(self) -> float:
        s = self.on_demand_share
        return s * self.on_demand_per_hour + (1 - s) * self.effective_spot_per_hour

    @property
    def savings(self) -> float:
        """Fraction saved against all on-demand for the same capacity (negative: spot costs more)."""
        return 1.0 - self.blended_per_hour / self.on_demand_per_hour if self.on_demand_per_hour else 0.0

    @property
    def break_even_interruptions_per_hour(self) -> float:
        """The interruption rate at which spot capacity costs as much as on-demand."""
        if self.recovery_s == 0 or self.spot_per_hour >= self.on_demand_per_hour:
            return 0.0 if self.spot_per_hour >= self.on_demand_per_hour else float("inf")
        return (1.0 - self.spot_per_hour / self.on_demand_per_hour) * 3600.0 / self.recovery_s


def parse_notice(status: int, body: str, provider: str) -> bool:
    """True when the metadata answer is a termination notice."""
    if provider == "aws":
        return status == 200 and "action" in body  # {"action": "terminate", "time": "..."}; 404 otherwise
    return status == 200 and body.strip().upper() == "TRUE"


class NoticeWatcher:
    """Poll a metadata endpoint; call ``on_notice`` once when a termination notice appears."""

    def __init__(self, url: str, on_notice: Callable[[], None], provider: str = "aws", poll_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if provider not in ("aws", "gcp"):
            raise UsageError("provider must be aws or gcp")
        self.url, self.on_notice, self.provider, self.poll_s = url, on_notice, provider, poll_s
        self.transport = transport
        self.noticed = False
        self.polls = 0

    async def check(self, client: httpx.AsyncClient) -> bool:
        headers = {"Metadata-Flavor": "Google"} if self.provider == "gcp" else {}
        try:
            r = await client.get(self.url, headers=headers, timeout=2.0)
            notice = parse_notice(r.status_code, r.text, self.provider)
        except httpx.HTTPError:
            notice = False  # the metadata service is local; a blip is not a notice
        self.polls += 1
        if notice and not self.noticed:
            self.noticed = True
            self.on_notice()
        return notice

    async def run(self, max_polls: int | None = None) -> None:
        async with httpx.AsyncClient(transport=self.transport) as client:
            while not self.noticed and (max_polls is None or self.polls < max_polls):
                if await self.check(client):
                    return
                await asyncio.sleep(self.poll_s)


def sigterm_self() -> None:
    """The drain trigger in a container: the server's own SIGTERM handler drains and exits."""
    os.kill(os.getpid(), signal.SIGTERM)


def _fake_metadata(notice_after: int) -> httpx.MockTransport:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] > notice_after:
            return httpx.Response(200, text='{"action": "terminate", "time": "2026-01-01T00:02:00Z"}')
        return httpx.Response(404, text="Not Found")
    return httpx.MockTransport(handler)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch08_production.spot", __doc__)
    parser.add_argument("--on-demand", type=float, default=2.99, help="on-demand $/hour (given)")
    parser.add_argument("--spot", type=float, default=1.20, help="spot $/hour (given)")
    parser.add_argument("--interruptions-per-hour", type=float, default=0.05, help="reclaims per node-hour")
    parser.add_argument("--recovery-s", type=float, default=300.0, help="seconds to replace a reclaimed replica")
    parser.add_argument("--on-demand-share", type=float, default=0.0, help="baseline on on-demand nodes")
    parser.add_argument("--watch", choices=("aws", "gcp"), help="poll the real metadata endpoint; SIGTERM on notice")
    parser.add_argument("--smoke", action="store_true", help="also run the watcher against a fake endpoint")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    with friendly_errors():
        if args.watch:
            url = AWS_NOTICE_URL if args.watch == "aws" else GCP_NOTICE_URL
            asyncio.run(NoticeWatcher(url, sigterm_self, args.watch).run())
            return 0
        rates = sorted({0.0, args.interruptions_per_hour, 0.2, 1.0})
        plans = [SpotPlan(args.on_demand, args.spot, r, args.recovery_s, args.on_demand_share) for r in rates]
        demo = None
        if args.smoke:
            fired: list[bool] = []
            watcher = NoticeWatcher("http://metadata.test/spot", lambda: fired.append(True), poll_s=0.01,
                                    transport=_fake_metadata(notice_after=3))
            asyncio.run(watcher.run(max_polls=20))
            demo = {"polls_until_notice": watcher.polls, "drain_triggered": bool(fired)}
    rows = [{"interruptions/h": p.interruptions_per_hour, "lost capacity %": 100 * p.lost_fraction,
             "effective $/h": p.blended_per_hour, "savings %": 100 * p.savings} for p in plans]
    if not args.json:
        print_table(rows, title=f"spot ${args.spot}/h vs on-demand ${args.on_demand}/h (given), recovery "
                                f"{args.recovery_s:.0f} s, {args.on_demand_share:.0%} on-demand baseline")
        print(f"spot stops paying above {plans[0].break_even_interruptions_per_hour:.2f} interruptions per hour")
        if demo:
            print(f"watcher: notice seen after {demo['polls_until_notice']} polls, drain triggered: "
                  f"{demo['drain_triggered']}")
    emit_json({"benchmark": "spot", "plans": rows, "break_even_interruptions_per_hour":
               plans[0].break_even_interruptions_per_hour, "watcher_demo": demo})
    return 0


if __name__ == "__main__":
    sys.exit(main())
