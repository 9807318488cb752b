"""One small interface for "give me text for this prompt", and the ``transformers`` backend (book 3.5.1-3.5.3).

The basic-inference examples (``python -m ch03_env.basic_inference``) run the same three calls (single,
batch, streaming) against any :class:`InferenceBackend`:

* ``transformers``: the model in this process (this file);
* ``vllm``: the vLLM server through its OpenAI-compatible API (``ch03_env.vllm_backend``);
* ``engine``: our continuous-batching engine, which is chapter 5's. Layering forbids ch03 from importing
  ch05, so ch05 registers it by calling ``ch03_env.basic_inference.main(argv, extra_backends={...})``.

Messages are dataclasses; backends hold no module-level state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class GenerationRequest:
    """A user turn; the backend wraps it in the model's chat template."""

    prompt: str
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy, deterministic
    system: str | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")


@dataclass(frozen=True)
class GenerationResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float  # wall time of the call that produced it (a batch shares one)
    finish_reason: str = ""


@runtime_checkable
class InferenceBackend(Protocol):
    """What the basic-inference examples need from an engine."""

    name: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        """Answer a batch; responses in request order."""
        ...

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Yield text pieces as they are produced."""
        ...

    def close(self) -> None: ...


class TransformersBackend:
    """Hugging Face ``transformers`` in this process: left-padded batches, ``TextIteratorStreamer`` streaming."""

    name = "transformers"

    def __init__(self, model: str | None = None, device: str = "auto", dtype: str = "auto") -> None:
        from common.device import pick_device, pick_dtype
        from common.loader import load_hf_model, load_tokenizer

        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.tokenizer = load_tokenizer(model)
        self.tokenizer.padding_side = "left"  # decoder-only batches pad on the left so new tokens line up
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = load_hf_model(model, self.device, self.dtype)

    def _encode(self, requests: Sequence[GenerationRequest]):
        from common.chat import chat_prompt

        texts = [chat_prompt(self.tokenizer, r.prompt, r.system) for r in requests]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def _gen_kwargs(self, req: GenerationRequest) -> dict:
        kw = {"max_new_tokens": req.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if req.temperature > 0:
            kw.update(do_sample=True, temperature=req.temperature)
        else:
            kw.update(do_sample=False)
        return kw

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        import torch

        if not requests:
            return []
        if len({(r.max_new_tokens, r.temperature) for r in requests}) > 1:
            raise ValueError("one transformers batch needs the same max_new_tokens and temperature for all")
        enc = self._encode(requests)  # input_ids (B, T_prompt), left-padded
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(**enc, **self._gen_kwargs(requests[0]))  # (B, T_prompt + T_new)
        seconds = time.perf_counter() - t0
        new = out[:, enc["input_ids"].shape[1]:]  # (B, T_new)
        eos = self.tokenizer.eos_token_id
        responses = []
        for i in range(len(requests)):
            ids = new[i].tolist()
            n = ids.index(eos) + 1 if eos in ids else len(ids)
            responses.append(GenerationResponse(
                text=self.tokenizer.decode(ids[:n], skip_special_tokens=True),
                prompt_tokens=int(enc["attention_mask"][i].sum()), completion_tokens=n, seconds=seconds,
                finish_reason="stop" if eos in ids[:n] else "length"))
        return responses

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        enc = self._encode([request])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.no_grad():
                    self.model.generate(**enc, **self._gen_kwargs(request), streamer=streamer)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                errors.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for piece in streamer:  # blocks until the generating thread puts the next decoded piece
            if piece:
                yield piece
        worker.join()
        if errors:
            raise errors[0]

    def close(self) -> None:
        self.model = None
