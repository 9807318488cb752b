"""Exercise 3.2 (book 3.4): dockerize an inference service.

Task: write :func:`render_dockerfile`, which returns the text of a Dockerfile for the small service in
``APP_SOURCE`` (a FastAPI app with ``/health`` and ``/v1/models``; :func:`write_context` writes it, its
``requirements.txt`` and your Dockerfile into one build folder). The grader (``python -m common.grade 3.2``)
checks what a reviewer would:

* ``hadolint`` reports nothing (an ignore is allowed only with a ``# Why DLxxxx ...`` comment above it);
* two stages: dependencies are installed in a build stage; the final stage copies only the result;
* the base image is pinned to a tag (no ``latest``), ``ADD`` is not used, the final ``USER`` is a numeric
  non-root uid (``spec.uid``);
* the model directory ``spec.model_mount`` is a ``VOLUME`` (a model is never baked into an image);
* ``EXPOSE spec.port``, a ``HEALTHCHECK`` that calls ``/health``, and an exec-form ``CMD`` that starts
  ``uvicorn app:app`` on ``0.0.0.0:spec.port``;
* where a Docker daemon exists, the image builds and its container turns ``healthy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

APP_SOURCE = '''"""A minimal OpenAI-shaped service for exercise 3.2: health and model listing only."""
import os

from fastapi import FastAPI

app = FastAPI()
MODEL_DIR = os.environ.get("MODEL_DIR", "/models")


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.get("/v1/models")
def models() -> dict:
    names = sorted(os.listdir(MODEL_DIR)) if os.path.isdir(MODEL_DIR) else []
    return {"object": "list", "data": [{"id": n, "object": "model"} for n in names]}
'''

REQUIREMENTS = "fastapi==0.115.6\nuvicorn==0.34.0\n"


@dataclass(frozen=True)
class ServiceSpec:
    python_image: str = "python:3.11-slim-bookworm"
    port: int = 8000
    model_mount: str = "/models"
    uid: int = 10001

    def __post_init__(self) -> None:
        if ":" not in self.python_image or self.python_image.endswith(":latest"):
            raise ValueError("pin the base image to a tag, e.g. python:3.11-slim-bookworm")
        if not 1 <= self.port <= 65535 or self.uid < 1:
            raise ValueError("port must be 1..65535 and uid a non-root id (>= 1)")


def render_dockerfile(spec: ServiceSpec) -> str:
    """The Dockerfile text for ``APP_SOURCE`` under ``spec`` (see the module docstring for the rules)."""
    health = (f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{spec.port}/health', timeout=2)")
    return f"""# syntax=docker/dockerfile:1
# Exercise 3.2: a small inference-shaped service; dependencies in a build stage, a slim non-root runtime.
FROM {spec.python_image} AS build
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt

FROM {spec.python_image}
RUN useradd --create-home --uid {spec.uid} app \\
    && mkdir -p {spec.model_mount} && chown app:app {spec.model_mount}
COPY --from=build /opt/venv /opt/venv
COPY app.py /home/app/app.py
ENV PATH=/opt/venv/bin:$PATH \\
    MODEL_DIR={spec.model_mount}
VOLUME ["{spec.model_mount}"]
USER {spec.uid}
WORKDIR /home/app
EXPOSE {spec.port}
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "{health}"]
CMD ["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "{spec.port}"]
"""


def write_context(dest: str | Path, spec: ServiceSpec | None = None) -> Path:
    """Write ``app.py``, ``requirements.txt`` and the Dockerfile into ``dest``; returns the Dockerfile's path."""
    spec = spec or ServiceSpec()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "app.py").write_text(APP_SOURCE)
    (dest / "requirements.txt").write_text(REQUIREMENTS)
    path = dest / "Dockerfile"
    path.write_text(render_dockerfile(spec))
    return path
