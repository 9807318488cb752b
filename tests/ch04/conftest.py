"""Chapter 4 fixtures: our from-scratch model on the tiny random config and on the embedded model."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_model(tiny_hf_model):
    """``(ours, hf)``: our LlamaModel loaded from the tiny random ``transformers`` model's folder."""
    from ch04_kvcache.model import LlamaModel

    hf, folder = tiny_hf_model
    return LlamaModel.from_pretrained(folder), hf


@pytest.fixture(scope="session")
def embedded_model(embedded_model_dir):
    """Our LlamaModel with the embedded model's weights (fp32), loaded once per session."""
    from ch04_kvcache.model import LlamaModel

    return LlamaModel.from_pretrained(embedded_model_dir)
