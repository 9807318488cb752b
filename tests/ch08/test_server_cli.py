"""The server as a process: ``--help``, bad flags as one sentence, SIGTERM drains a stream and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest


def test_help_runs():
    out = subprocess.run([sys.executable, "-m", "ch08_production.server", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--backend" in out.stdout and "--api-key-file" in out.stdout


def test_bad_flag_value_is_one_sentence():
    out = subprocess.run([sys.executable, "-m", "ch08_production.server", "--port", "70000"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: port must be within") and "Traceback" not in out.stderr


@pytest.mark.slow
def test_sigterm_drains_in_flight_stream_then_exits_zero(tiny_model_dir, port):
    env = dict(os.environ, LLMIC_API_KEYS="sk-cli-test-000001")
    proc = subprocess.Popen([sys.executable, "-m", "ch08_production.server", "--backend", "transformers",
                             "--model", str(tiny_model_dir), "--served-model-name", "tiny", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < end, "the server did not become ready"
            time.sleep(0.3)
        body = {"model": "tiny", "prompt": "x", "max_tokens": 200, "stream": True, "ignore_eos": True}
        lines = []
        with httpx.Client(timeout=120) as c, c.stream("POST", url + "/v1/completions", json=body,
                                                     headers={"Authorization": "Bearer sk-cli-test-000001"}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: "):
                    lines.append(line[6:])
                    if len(lines) == 2:
                        proc.send_signal(signal.SIGTERM)
        assert lines[-1] == "[DONE]" and len(lines) == 201  # 200 token chunks, then [DONE]
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
