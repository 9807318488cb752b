"""Exercise 3.2, a different correct answer: dependencies installed with ``pip --prefix`` in the build stage
and copied into /usr/local, a system user made with ``useradd -l``, a JSON VOLUME, the app copied with
--chown, the health probe a tiny script written in the build stage."""

from dataclasses import dataclass
from pathlib import Path

from ch03_env.solutions.ex3_2_dockerize import APP_SOURCE, REQUIREMENTS


@dataclass(frozen=True)
class ServiceSpec:
    python_image: str = "python:3.11-slim-bookworm"
    port: int = 8000
    model_mount: str = "/models"
    uid: int = 10001


def render_dockerfile(spec):
    probe = f"import urllib.request as u; u.urlopen('http://localhost:{spec.port}/health', timeout=2)"
    lines = [
        f"FROM {spec.python_image} AS deps",
        "COPY requirements.txt /src/requirements.txt",
        "RUN pip install --no-cache-dir --prefix=/install -r /src/requirements.txt",
        "",
        f"FROM {spec.python_image} AS runtime",
        "COPY --from=deps /install /usr/local",
        f"RUN useradd -l -r -m -u {spec.uid} svc && mkdir -p {spec.model_mount} "
        f"&& chown {spec.uid} {spec.model_mount}",
        f"COPY --chown={spec.uid} app.py /srv/app/app.py",
        "WORKDIR /srv/app",
        f"ENV MODEL_DIR={spec.model_mount}",
        f'VOLUME ["{spec.model_mount}"]',
        f"EXPOSE {spec.port}",
        f"USER {spec.uid}",
        f'HEALTHCHECK --interval=15s --timeout=3s CMD ["python", "-c", "{probe}"]',
        f'CMD ["uvicorn", "app:app", "--host", "0.0.0.0", "--port", "{spec.port}"]',
    ]
    return "\n".join(lines) + "\n"


def write_context(dest, spec=None):
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in (("app.py", APP_SOURCE), ("requirements.txt", REQUIREMENTS),
                       ("Dockerfile", render_dockerfile(spec or ServiceSpec()))):
        (dest / name).write_text(text)
    return dest / "Dockerfile"
