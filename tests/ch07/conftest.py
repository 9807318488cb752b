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


@pytest.fixture(autouse=True)
def one_thread():
    """Chapter 7 runs many short forward passes: on two shared, busy cores one intra-op thread is faster
    and steadier than two (a 9-token pass of the embedded model measured 0.6 s vs 4.7 s under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
