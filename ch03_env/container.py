"""Build and run the book's images from Python with the ``docker`` SDK (book 3.4).

    python -m ch03_env.container build --image cpu          # docker/Dockerfile.cpu -> llmic:cpu
    python -m ch03_env.container run --image cpu            # model volume, port on 127.0.0.1, wait for health
    python -m ch03_env.container run --image gpu --model-volume llmic-models   # --gpus all equivalent

``run`` maps the port to the host's loopback, mounts the model (a named volume or a host folder), requests
the GPUs through a ``DeviceRequest`` for the GPU image, waits for the container's HEALTHCHECK to report
``healthy`` (printing the last log lines on failure) and leaves it running unless ``--smoke`` (then it stops
and removes it). Without a reachable daemon it says so in one sentence.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.cli import make_parser
from common.paths import REPO_ROOT


class DockerUnavailable(RuntimeError):
    """No Docker daemon, or the SDK is missing; the message says what to do."""


@dataclass(frozen=True)
class ImageSpec:
    tag: str
    dockerfile: str
    container_port: int
    volume_target: str  # where the model / cache volume is mounted in the container
    gpu: bool


IMAGES = {
    "cpu": ImageSpec("llmic:cpu", "docker/Dockerfile.cpu", 8000, "/data", gpu=False),
    "gpu": ImageSpec("llmic-vllm:gpu", "docker/Dockerfile", 8000, "/models", gpu=True),
}


@dataclass
class RunOptions:
    image: str = "cpu"
    host_port: int = 8000
    model_volume: str = "llmic-cache"  # a named volume, or an absolute host folder
    name: str = "llmic-ch03"
    health_timeout_s: float = 600.0
    env: dict[str, str] = field(default_factory=dict)


def client():
    """A connected ``docker.DockerClient``, or :class:`DockerUnavailable` with one sentence."""
    try:
        import docker
    except ImportError as exc:
        raise DockerUnavailable("the 'docker' Python package is missing: pip install 'docker>=7.0'.") from exc
    try:
        c = docker.from_env(timeout=10)
        c.ping()
    except Exception as exc:  # noqa: BLE001 - connection refused, permission denied, no socket: same advice
        raise DockerUnavailable(f"no Docker daemon is reachable ({type(exc).__name__}): start Docker, or check "
                                "DOCKER_HOST and that your user may use /var/run/docker.sock.") from exc
    return c


def volume_spec(model_volume: str, target: str, read_only: bool = False) -> dict[str, dict[str, str]]:
    """The SDK's ``volumes=`` mapping: a host folder if the name is an absolute path, else a named volume."""
    source = str(Path(model_volume).expanduser()) if model_volume.startswith(("/", "~")) else model_volume
    return {source: {"bind": target, "mode": "ro" if read_only else "rw"}}


def run_kwargs(spec: ImageSpec, opts: RunOptions) -> dict:
    """Keyword arguments of ``client.containers.run`` (pure: tested without a daemon)."""
    kw: dict = {
        "image": spec.tag, "name": opts.name, "detach": True,
        "ports": {f"{spec.container_port}/tcp": ("127.0.0.1", opts.host_port)},
        "volumes": volume_spec(opts.model_volume, spec.volume_target),
        "environment": dict(opts.env),
    }
    if spec.gpu:
        import docker

        kw["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        kw["ipc_mode"] = "host"
    return kw


def build(c, spec: ImageSpec, echo: bool = True) -> str:
    """Build ``spec`` from the repository root (the context the Dockerfiles expect); returns the image id."""
    image, logs = c.images.build(path=str(REPO_ROOT), dockerfile=spec.dockerfile, tag=spec.tag, rm=True)
    if echo:
        for chunk in logs:
            line = chunk.get("stream", "").rstrip()
            if line:
                print(line, flush=True)
    return image.id


def wait_healthy(container, timeout_s: float) -> str:
    """Poll the HEALTHCHECK status until healthy; raises with the log tail if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            break
        health = container.attrs.get("State", {}).get("Health", {}).get("Status", "none")
        if health == "healthy":
            return health
        time.sleep(3)
    tail = container.logs(tail=20).decode(errors="replace")
    raise DockerUnavailable(f"container {container.name} did not become healthy (status {container.status}); "
                            f"last log lines:\n{tail}")


def run(c, opts: RunOptions):
    spec = IMAGES[opts.image]
    try:
        old = c.containers.get(opts.name)
        old.remove(force=True)
    except Exception:  # noqa: BLE001 - docker.errors.NotFound: nothing to replace
        pass
    container = c.containers.run(**run_kwargs(spec, opts))
    wait_healthy(container, opts.health_timeout_s)
    return container


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch03_env.container", __doc__)
    parser.add_argument("action", choices=("build", "run", "up"), help="up = build then run")
    parser.add_argument("--image", default="cpu", choices=sorted(IMAGES))
    parser.add_argument("--port", type=int, default=8000, help="host port (bound to 127.0.0.1)")
    parser.add_argument("--model-volume", default="llmic-cache", help="named volume or absolute host folder")
    parser.add_argument("--name", default="llmic-ch03")
    parser.add_argument("--smoke", action="store_true", help="stop and remove the container once healthy")
    args = parser.parse_args(argv)
    try:
        c = client()
        spec = IMAGES[args.image]
        if args.action in ("build", "up"):
            print(f"built {spec.tag}: {build(c, spec)[:19]}")
        if args.action in ("run", "up"):
            opts = RunOptions(args.image, args.port, args.model_volume, args.name)
            container = run(c, opts)
            print(f"{spec.tag} is healthy at http://127.0.0.1:{args.port}/v1 (container {container.name})")
            if args.smoke:
                print(container.logs(tail=5).decode(errors="replace"))
                container.remove(force=True)
    except DockerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - docker.errors.BuildError / APIError: one sentence, not a trace
        print(f"error: docker failed: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
