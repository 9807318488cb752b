"""How to judge a quantized model (book 6.6.2, 6.6.3): perplexity on a fixed held-out text, greedy
agreement with the fp32 model, weight bytes, and decode tokens/s, all on ch04's ``LlamaModel``.

* perplexity: non-overlapping windows of ``seq_len`` tokens of :func:`common.datasets.eval_token_ids`
  (held-out ShareGPT answers; calibration never sees them); every token after the first of a window is
  scored, and the count is reported with the number.
* agreement: fp32 answers fixed chat prompts greedily; the quantized model is fed the same prompt + fp32
  answer and we count the positions where its argmax equals fp32's token (teacher-forced top-1
  agreement: one forward per prompt, and one early divergence does not poison the rest).
* weight bytes: every parameter and buffer once (tied weights once), tensor subclasses (torchao,
  bitsandbytes) by their inner storage.
* tokens/s: batch-1 greedy decode with ch04's contiguous KV cache, after a warm-up.

Run ``python -m ch06_quantization.evaluate [--smoke]`` for the fp32 model's figures.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from common.chat import DEMO_PROMPTS, chat_ids
from common.datasets import eval_token_ids

PROMPTS = (*DEMO_PROMPTS, "Explain in one sentence what a GPU is.", "Write a haiku about the sea.")


def load_model(spec: str | None = None, dtype: torch.dtype = torch.float32) -> nn.Module:
    """ch04's from-scratch ``LlamaModel`` (what every quantizer in this chapter rewrites), on CPU."""
    from ch04_kvcache.model import LlamaModel

    return LlamaModel.from_pretrained(spec, device="cpu", dtype=dtype)


@dataclass
class EvalData:
    """Everything an evaluation needs, prepared once from the fp32 model."""

    ppl_ids: torch.Tensor  # [n_windows, seq_len]
    prompts: list[list[int]]
    references: list[list[int]]  # fp32's greedy answers

    @property
    def ppl_tokens(self) -> int:
        return self.ppl_ids.shape[0] * (self.ppl_ids.shape[1] - 1)


@dataclass
class EvalResult:
    ppl: float
    ppl_tokens: int
    agreement: float
    weight_bytes: int
    tok_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def eval_windows(tokenizer, n_tokens: int, seq_len: int) -> torch.Tensor:
    if n_tokens < seq_len:
        raise ValueError(f"need at least one window: n_tokens ({n_tokens}) < seq_len ({seq_len})")
    ids = eval_token_ids(tokenizer, n_tokens // seq_len * seq_len)
    return torch.tensor(ids, dtype=torch.long).reshape(-1, seq_len)


@torch.no_grad()
def perplexity(model: nn.Module, windows: torch.Tensor, batch: int = 2) -> float:
    """exp(mean next-token NLL) over ``windows[n, T]`` (positions 1..T-1 of each window scored)."""
    nll, count = 0.0, 0
    for chunk in windows.split(batch):
        logits = model(chunk)  # [b, T, V]
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                           chunk[:, 1:].reshape(-1), reduction="sum")
        nll += float(loss)
        count += chunk[:, 1:].numel()
    return math.exp(nll / count)


@torch.no_grad()
def greedy(model: nn.Module, prompt: list[int], max_new_tokens: int, eos: int | None = None) -> list[int]:
    from ch04_kvcache.generate import generate

    kw = {} if eos is None else {"eos_token_id": eos}
    return generate(model, prompt, max_new_tokens, cache="contiguous", **kw).token_ids


@torch.no_grad()
def agreement(model: nn.Module, prompts: list[list[int]], references: list[list[int]]) -> float:
    """Fraction of reference positions where ``model``'s argmax (teacher-forced) equals the reference."""
    hits = total = 0
    for p, ref in zip(prompts, references, strict=True):
        if not ref:
            continue
        ids = torch.tensor([p + ref])
        pred = model(ids)[0, len(p) - 1 : len(p) - 1 + len(ref)].argmax(-1)  # [len(ref)]
        hits += int((pred == torch.tensor(ref)).sum())
        total += len(ref)
    return hits / max(total, 1)


def tensor_bytes(t: torch.Tensor) -> int:
    """Storage of a tensor; tensor subclasses (torchao) are counted by their inner tensors."""
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    extra = 0
    qs = getattr(t, "quant_state", None)  # bitsandbytes 4-bit: absmax (and nested stats) live here
    if qs is not None:
        for name in ("absmax", "code"):
            v = getattr(qs, name, None)
            extra += v.numel() * v.element_size() if isinstance(v, torch.Tensor) else 0
        st2 = getattr(qs, "state2", None)
        if st2 is not None and isinstance(getattr(st2, "absmax", None), torch.Tensor):
            extra += st2.absmax.numel() * st2.absmax.element_size()
    scb = getattr(t, "SCB", None)  # bitsandbytes int8: per-row scales
    if isinstance(scb, torch.Tensor):
        extra += scb.numel() * scb.element_size()
    return t.numel() * t.element_size() + extra


def weight_bytes(model: nn.Module, linears_only: bool = False) -> int:
    """Bytes of every parameter and buffer, each storage once (tied embeddings once; no rotary tables)."""
    seen: set[int] = set()
    total = 0
    for mod_name, mod in model.named_modules():
        if linears_only and "layers." not in mod_name:
            continue
        for name, t in [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]:
            if t is None or "inv_freq" in name or id(t) in seen:
                continue
            seen.add(id(t))
            total += tensor_bytes(t)
    return total


def decode_tok_s(model: nn.Module, prompt: list[int], new_tokens: int, repeats: int = 1) -> float:
    """Batch-1 greedy decode rate (new tokens / decode seconds, prefill excluded), after a warm-up."""
    from ch04_kvcache.generate import generate

    generate(model, prompt, 4, cache="contiguous", eos_token_id=-1)  # warm-up
    best = 0.0
    for _ in range(repeats):
        r = generate(model, prompt, new_tokens, cache="contiguous", eos_token_id=-1)
        best = max(best, r.timings.decode_tokens_per_s)
    return best


def prepare_eval(model: nn.Module, tokenizer, n_tokens: int, seq_len: int, answer_tokens: int,
                 n_prompts: int | None = None) -> EvalData:
    prompts = [chat_ids(tokenizer, p) for p in PROMPTS[:n_prompts]]
    eos = tokenizer.eos_token_id
    refs = [greedy(model, p, answer_tokens, eos) for p in prompts]
    return EvalData(eval_windows(tokenizer, n_tokens, seq_len), prompts, refs)


def evaluate(model: nn.Module, data: EvalData, decode_tokens: int = 32, batch: int = 2,
             decoder: nn.Module | None = None) -> EvalResult:
    """Perplexity and agreement of ``model``; decode tok/s of ``decoder`` (default: the model), which must
    share its weights (``compare`` passes ``cpu_decode.fast_decoder(model)``)."""
    return EvalResult(
        ppl=perplexity(model, data.ppl_ids, batch),
        ppl_tokens=data.ppl_tokens,
        agreement=agreement(model, data.prompts, data.references),
        weight_bytes=weight_bytes(model),
        tok_s=decode_tok_s(decoder if decoder is not None else model, data.prompts[0], decode_tokens)
        if decode_tokens > 0 else float("nan"),
    )


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser
    from common.loader import load_tokenizer
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch06_quantization.evaluate", __doc__)
    add_common_args(parser)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--seq-len", type=int, default=512)
    args = parser.parse_args(argv)
    with friendly_errors():
        n_tok, seq = (512, 256) if args.smoke else (args.eval_tokens, args.seq_len)
        t0 = time.perf_counter()
        model = load_model(args.model)
        tok = load_tokenizer(args.model)
        data = prepare_eval(model, tok, n_tok, seq, 16 if args.smoke else 48)
        res = evaluate(model, data, decode_tokens=8 if args.smoke else 32)
        if not args.json:
            print_table([{"model": "fp32", **res.as_dict()}], title="fp32 reference", floatfmt=".4g")
        emit_json({"benchmark": "ch06.evaluate", **res.as_dict(), "seconds": time.perf_counter() - t0,
                   "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
