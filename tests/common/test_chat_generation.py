"""common.chat with the embedded model: the book's first example answers as documented."""

from __future__ import annotations

import pytest
import torch

from common.chat import FRANCE_ANSWER, FRANCE_PROMPT, as_messages, chat_ids, chat_prompt


def test_string_prompt_becomes_a_user_message_with_optional_system():
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    msgs = as_messages("hi", system="be brief")
    assert msgs[0] == {"role": "system", "content": "be brief"} and msgs[1]["role"] == "user"


def test_malformed_messages_are_rejected():
    with pytest.raises(ValueError, match="role"):
        as_messages([{"content": "no role"}])


def test_template_wraps_the_prompt_the_way_smollm2_was_tuned(embedded_tokenizer):
    text = chat_prompt(embedded_tokenizer, FRANCE_PROMPT)
    assert text.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in text


def test_template_free_tokenizer_gets_a_visible_fallback():
    class Plain:
        chat_template = None

    assert chat_prompt(Plain(), "hi").endswith("user: hi\nassistant:")


def test_embedded_model_answers_the_france_prompt_greedily(embedded_tokenizer, embedded_hf_model):
    ids = torch.tensor([chat_ids(embedded_tokenizer, FRANCE_PROMPT)])
    out = embedded_hf_model.generate(ids, max_new_tokens=20, do_sample=False)
    answer = embedded_tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert answer == FRANCE_ANSWER
