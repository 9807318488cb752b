"""The ``vllm`` backend of the basic-inference examples: vLLM's server through its OpenAI API (book 3.5).

vLLM lives in its own environment (``.venv-vllm``), so from this interpreter we talk to it over HTTP: the
backend either starts a server (:class:`ch03_env.vllm_server.VLLMServer`) or uses ``base_url``. A batch is
one ``/v1/completions`` call with a list of chat-templated prompts (the server batches them); streaming is a
streamed chat completion read with the official ``openai`` client.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from ch03_env.backends import GenerationRequest, GenerationResponse
from ch03_env.vllm_server import SERVED_MODEL_NAME, VLLMServer, VLLMServerConfig


class VLLMServerBackend:
    name = "vllm"

    def __init__(self, base_url: str | None = None, model: str | None = None, dtype: str = "float32",
                 served_model_name: str = SERVED_MODEL_NAME) -> None:
        from ch03_env.openai_client import make_client
        from common.loader import load_tokenizer

        self.server: VLLMServer | None = None
        if base_url is None:
            self.server = VLLMServer(VLLMServerConfig(model=model, dtype=dtype, served_model_name=served_model_name))
            base_url = self.server.start()
        self.base_url = base_url
        self.model_name = served_model_name
        self.client = make_client(base_url)
        self.tokenizer = load_tokenizer(model)  # for the chat template of batched completions

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        from common.chat import chat_prompt

        if not requests:
            return []
        if len({(r.max_new_tokens, r.temperature) for r in requests}) > 1:
            raise ValueError("one batched completion call needs the same max_new_tokens and temperature")
        prompts = [chat_prompt(self.tokenizer, r.prompt, r.system) for r in requests]
        t0 = time.perf_counter()
        resp = self.client.completions.create(model=self.model_name, prompt=prompts,
                                              max_tokens=requests[0].max_new_tokens,
                                              temperature=requests[0].temperature, seed=0)
        seconds = time.perf_counter() - t0
        choices = sorted(resp.choices, key=lambda c: c.index)
        out = []
        for p, c in zip(prompts, choices, strict=True):
            n_new = len(self.tokenizer(c.text, add_special_tokens=False)["input_ids"])
            n_prompt = len(self.tokenizer(p, add_special_tokens=False)["input_ids"])
            out.append(GenerationResponse(c.text, n_prompt, n_new, seconds, c.finish_reason or ""))
        return out

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        from common.chat import as_messages

        stream = self.client.chat.completions.create(
            model=self.model_name, messages=as_messages(request.prompt, request.system),
            max_tokens=request.max_new_tokens, temperature=request.temperature, stream=True)
        for chunk in stream:
            piece = chunk.choices[0].delta.content if chunk.choices else None
            if piece:
                yield piece

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
