"""Chapter 7 fixtures: the embedded model in our ch04 implementation, loaded once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def embedded_llama(embedded_model_dir):
    from ch04_kvcache.model import LlamaModel

    return LlamaModel.from_pretrained(embedded_model_dir)


@pytest.fixture(scope="session")
def chat_prompt_ids(embedded_tokenizer):
    from common.chat import chat_ids

    return chat_ids(embedded_tokenizer, "Name three primary colors.")


@pytest.fixture
def one_thread():
    """Many tiny forward passes run faster on one thread than fighting for two busy cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
