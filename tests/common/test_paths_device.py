"""common.paths and common.device: the cache moves with one variable; bad devices get one sentence."""

from __future__ import annotations

import pytest
import torch

from common import paths
from common.device import DeviceError, dtype_name, pick_device, pick_dtype


def test_cache_dir_follows_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c"
    assert paths.models_dir() == tmp_path / "c" / "models" and paths.models_dir().is_dir()
    assert paths.wheels_dir().is_dir()


def test_reports_dir_is_created_on_demand(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMIC_REPORTS_DIR", str(tmp_path / "r"))
    d = paths.reports_dir("ch04", "plots")
    assert d == tmp_path / "r" / "ch04" / "plots" and d.is_dir()


def test_auto_device_is_cpu_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert pick_device("auto").type in {"cpu", "mps"}
    assert pick_device("cpu") == torch.device("cpu")


def test_asking_for_cuda_without_a_gpu_explains_what_to_do():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="--device cpu"):
        pick_device("cuda")


def test_unknown_device_and_dtype_are_rejected_with_the_choices():
    with pytest.raises(DeviceError, match="choose one of"):
        pick_device("tpu")
    with pytest.raises(DeviceError, match="choose one of"):
        pick_dtype("int3", "cpu")


def test_dtype_auto_is_fp32_on_cpu_and_names_round_trip():
    assert pick_dtype("auto", "cpu") == torch.float32
    for name in ("fp32", "fp16", "bf16"):
        assert dtype_name(pick_dtype(name, "cpu")) == name
