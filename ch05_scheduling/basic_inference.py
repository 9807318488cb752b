"""Chapter 3's basic-inference examples (single, batch, streaming) on OUR engine (book 3.5, 5.3).

ch03 defines the three calls and the :class:`InferenceBackend` interface; layering lets ch05 import
ch03 (not the reverse), so this module registers an ``engine`` backend and hands over to ch03's CLI::

    python -m ch05_scheduling.basic_inference --backend engine --smoke
    python -m ch05_scheduling.basic_inference --backend engine --mode stream --prompt "Tell me about Paris."

The batch call goes through continuous batching (all prompts in one engine run); streaming yields each
token's text as the engine's step produces it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence

from ch03_env.backends import GenerationRequest, GenerationResponse
from ch03_env.basic_inference import main as ch03_main
from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.sequence import SamplingParams
from common.chat import chat_ids


class EngineBackend:
    """ch03's backend interface over :class:`LLMEngine` (in this process, CPU or GPU)."""

    name = "engine"

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", load_format: str = "auto") -> None:
        self.engine = LLMEngine(EngineConfig(model=model, device=device, dtype=dtype, load_format=load_format))

    def _params(self, r: GenerationRequest) -> SamplingParams:
        return SamplingParams(max_tokens=r.max_new_tokens, temperature=r.temperature)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        tok = self.engine.tokenizer
        prompts = [chat_ids(tok, r.prompt, r.system) for r in requests]
        t0 = time.perf_counter()
        outs = self.engine.generate(prompts, [self._params(r) for r in requests])
        seconds = time.perf_counter() - t0
        return [GenerationResponse(o.text, len(o.prompt_token_ids), len(o.token_ids), seconds, o.finish_reason or "")
                for o in outs]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        rid = self.engine.add_request(chat_ids(self.engine.tokenizer, request.prompt, request.system),
                                      self._params(request))
        try:
            while True:
                for out in self.engine.step():
                    if out.request_id != rid:
                        continue
                    if out.new_text:
                        yield out.new_text
                    if out.finished:
                        return
        finally:
            self.engine.abort(rid)

    def close(self) -> None:
        self.engine = None


def _engine(args: argparse.Namespace) -> EngineBackend:
    return EngineBackend(args.model, args.device, args.dtype, args.load_format)


def main(argv: list[str] | None = None) -> int:
    return ch03_main(argv, extra_backends={"engine": _engine}, prog="python -m ch05_scheduling.basic_inference")


if __name__ == "__main__":
    raise SystemExit(main())
