"""A real Prometheus server as a context manager, and its HTTP API (book 8.4.2; used by ``promstack``).

``with PrometheusProcess(config_dict, rules_dict) as prom:`` writes both files to a temporary folder,
starts the Debian ``prometheus`` binary on a free loopback port with a throw-away TSDB, waits for
``/-/ready``, and stops it on exit. :meth:`PrometheusProcess.query` and friends speak ``/api/v1``.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml


class PrometheusUnavailable(RuntimeError):
    """No prometheus binary, or it did not start; the message says what to do."""


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise PrometheusUnavailable("no 'prometheus' binary on PATH: run 'make prometheus' "
                                    "(apt-get install prometheus) or use docker compose.")
    return path


def promtool(*args: str) -> subprocess.CompletedProcess:
    """Run ``promtool`` (shipped with the Debian package) and return the completed process."""
    tool = shutil.which("promtool")
    if tool is None:
        raise PrometheusUnavailable("no 'promtool' binary on PATH: run 'make prometheus'.")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


@dataclass
class QueryResult:
    name: str
    expr: str
    series: int
    value: float | None  # first finite sample, None when there is none

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass
class PrometheusProcess:
    """``with PrometheusProcess(config, rules) as prom:`` a real Prometheus on a free loopback port."""

    config: dict
    rules: dict | None = None
    port: int = 0
    startup_timeout_s: float = 30.0
    workdir: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusProcess:
        binary = prometheus_binary()
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="llmic-prom-")
            self.workdir = Path(self._tmp.name)
        if not self.port:
            from ch03_env.vllm_server import free_port

            self.port = free_port()
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        if self.rules is not None:
            (self.workdir / "rules.yml").write_text(yaml.safe_dump(self.rules, sort_keys=False))
        log = open(self.workdir / "prometheus.log", "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        end = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise PrometheusUnavailable(f"prometheus exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusUnavailable(f"prometheus was not ready after {self.startup_timeout_s:.0f} s")

    def log_tail(self, lines: int = 20) -> str:
        p = (self.workdir or Path("/nonexistent")) / "prometheus.log"
        return "\n".join(p.read_text().splitlines()[-lines:]) if p.is_file() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PrometheusProcess:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ HTTP API

    def api(self, path: str, **params: str) -> dict:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus API {path} failed: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def evaluate(self, name: str, expr: str) -> QueryResult:
        result = self.query(expr)
        finite = [float(s["value"][1]) for s in result if math.isfinite(float(s["value"][1]))]
        return QueryResult(name, expr, len(result), finite[0] if finite else None)

    def targets(self) -> list[dict]:
        return self.api("targets")["activeTargets"]

    def rules_state(self) -> list[dict]:
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]

    def wait_until(self, predicate, timeout_s: float = 30.0, every_s: float = 0.5) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(every_s)
        return False

    def wait_for_scrapes(self, instances: Sequence[str], timeout_s: float = 30.0) -> bool:
        def all_up() -> bool:
            health = {t["labels"].get("instance"): t["health"] for t in self.targets()}
            return all(health.get(i) == "up" for i in instances)
        return self.wait_until(all_up, timeout_s)
