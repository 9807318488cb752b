"""Chapter 6 fixtures: a tiny random ch04 ``LlamaModel`` and calibration ids for it."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def tiny_model(tiny_hf_model):
    """ch04's ``LlamaModel`` loaded from the tiny random HF folder (2 layers, hidden 64)."""
    from ch04_kvcache.model import LlamaModel

    _, folder = tiny_hf_model
    return LlamaModel.from_pretrained(folder)


@pytest.fixture
def tiny_calib() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(3, 256, (4, 32), generator=g)
