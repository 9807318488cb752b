"""Chapter 7 benchmark (book 7.3, 7.4.4, 7.5): every method vs the target alone, beside the formula.

On one input-grounded prompt (repeat a paragraph) with the embedded model, greedy, batch 1, it runs the
target alone (``ch04_kvcache.generate``), prompt lookup, the layer-truncated self-drafts, ch06's int8, int4 g64 and
W8A8 drafts run by the fused C++ decode step, optionally more int8 drafts (``--int8-draft``: ch06 RTN,
torch dynamic, the eager C++ GEMV/W8A8 layers) and lookahead, and reports for each: identical tokens,
wall-clock speedup (prefill included, the same for every method), the acceptance rate, tokens per target
step, the cost ratio c (measured decode steps), the measured cost of a verification pass (``verify_x``, in
decode steps) and the formula's prediction from the fitted alpha (theory.py); ``--distill`` adds the draft
distilled by ``distill.py`` (trained on first use, then cached). Then 7.4.4's loop: the formula, fed the
best draft's alpha and c and this target's measured verify costs, picks gamma, and that gamma is measured.
Last, a chi-square exactness test of sampling at temperature 1 (tiny random pair, see stats.py) and,
unless ``--no-hf``, ``transformers``' own assisted decoding (``prompt_lookup_num_tokens``,
``assistant_model``) on the same prompt.

Drafts made from the target (its first blocks, its quantized copies) read the target's own KV cache
(``speculative.SharedCacheDrafter``): no cache and no prompt pass of their own. The row "own KV cache"
runs the W8A8 draft the classic way, to show what that costs.

Note for CPU readers: the formula assumes verifying gamma+1 tokens costs one decode step; on a CPU it
costs more (``verify_x``), which is why the measured speedups trail the prediction.
``--kernel auto`` (the default) runs the target, and the self-drafts made of its blocks, through ch06's
fused C++ decode step where it builds (``cpu_decode.FusedDecoder``: one native call per step, GEMVs at
memory speed): a faster target, a verification pass of a few rows that costs little more than one decode
step, and drafts whose cost is their bytes rather than PyTorch's per-op overhead. ``--kernel gemv`` keeps
the eager model with ch06's C++ GEMV linears; ``--kernel torch`` uses plain ``F.linear``.

    python -m ch07_speculative.bench --smoke          # CI sizes
    python -m ch07_speculative.bench --threads 1      # full run; one thread is steadier on a busy machine
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ch04_kvcache.generate import generate
from ch04_kvcache.model import LlamaModel
from ch06_quantization.cpu_decode import FusedDecoder
from ch06_quantization.cpu_gemv import gemv_problem, use_gemv
from ch07_speculative import theory
from ch07_speculative.drafts import (
    dynamic_int8_draft,
    fused_int4_draft,
    fused_int8_draft,
    fused_w8a8_draft,
    gemv_int8_draft,
    quantized_draft,
    step_cost,
    truncated_draft,
    w8a8_draft,
)
from ch07_speculative.lookahead import lookahead_generate
from ch07_speculative.prompt_lookup import REWRITE_PROMPT, PromptLookupDrafter
from ch07_speculative.speculative import ModelDrafter, SharedCacheDrafter, SpecResult, speculative_generate

OWN_CACHE_ROW = "W8A8 fused C++ draft, own KV cache"


def _timed(fn: Callable[[], object]) -> tuple[object, float]:
    from common.bench import time_fn

    box: list[object] = []
    t = time_fn(lambda: box.append(fn()), repeats=1, warmup=0)
    return box[-1], t.median


def self_draft(target: LlamaModel, layers: int, decoder: FusedDecoder | None):
    """The target's first ``layers`` blocks as a draft, through the target's fused ``decoder`` when it has one
    (sharing its packed weights)."""
    draft = truncated_draft(target, layers)
    return FusedDecoder(draft, reuse=decoder) if decoder is not None else draft


def method_row(name: str, res: SpecResult, wall: float, base_s: float, ref: list[int], gamma: int,
               c: float, t_step: float) -> dict:
    s = res.stats
    rate = s.acceptance_rate if s.drafted else 0.0
    alpha = theory.alpha_from_acceptance_rate(min(rate, 1.0), gamma)
    verify_x = (s.target_s / s.rounds) / t_step if s.rounds else float("nan")
    return {"method": name, "gamma": gamma, "identical": res.token_ids == ref, "speedup": base_s / wall,
            "acceptance_rate": rate, "tokens_per_target_step": s.tokens_per_target_step,
            "formula_tokens_per_step": theory.expected_tokens_per_step(alpha, gamma), "alpha_fit": alpha,
            "c": c, "verify_x": verify_x, "formula_speedup": theory.speedup(alpha, gamma, c)}


def choose_gamma(target, rows: list[dict], drafts: dict, context: int, gamma: int,
                 max_gamma: int) -> tuple[str, int] | None:
    """(draft, gamma) the formula prefers for the fastest draft so far, with this target's measured verify
    costs; None when that is the gamma already measured."""
    from ch07_speculative.sweeps import verify_cost

    measured = [r for r in rows if r["method"] in drafts]
    if not measured:
        return None
    best = max(measured, key=lambda r: r["speedup"])
    verify = {g: verify_cost(target, 1, g, context) for g in range(1, max_gamma + 1)}
    g = theory.best_gamma(best["alpha_fit"], best["c"], verify=verify)
    return None if g == gamma else (best["method"], g)


def hf_assisted(model_dir, ids: list[int], n: int, layers: int) -> dict[str, float]:
    """Speedups of transformers' prompt lookup and assisted decoding (truncated self-draft) over its own greedy."""
    import copy

    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    draft = copy.copy(hf)  # shallow: shares weights; only the layer list and config differ
    draft.model = copy.copy(hf.model)
    draft.model.layers = hf.model.layers[:layers]
    draft.config = copy.deepcopy(hf.config)
    draft.config.num_hidden_layers = layers
    x = torch.tensor([ids])
    kw = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False}
    with torch.inference_mode():
        hf.generate(x, max_new_tokens=2)
        base, t0 = _timed(lambda: hf.generate(x, **kw))
        pl, t1 = _timed(lambda: hf.generate(x, prompt_lookup_num_tokens=8, **kw))
        asst, t2 = _timed(lambda: hf.generate(x, assistant_model=draft, **kw))
    return {"hf_speedup_prompt_lookup": t0 / t1, "hf_speedup_assisted": t0 / t2,
            "hf_identical": bool(torch.equal(base, pl) and torch.equal(base, asst))}


def main(argv: list[str] | None = None) -> int:
    from ch07_speculative.stats import distribution_test, random_tiny_pair
    from common.bench import stamp_dict
    from common.chat import chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int, seed_everything
    from common.loader import load_tokenizer, resolve_model_path
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch07_speculative.bench", __doc__)
    add_common_args(parser)
    parser.add_argument("--max-new-tokens", type=positive_int, default=128,
                        help="tokens per method (the paragraph is ~100 tokens, so every method stops at EOS)")
    parser.add_argument("--gamma", type=positive_int, default=4, help="draft tokens per round (model drafts)")
    parser.add_argument("--lookup-gamma", type=positive_int, default=8, help="tokens copied per round")
    parser.add_argument("--draft-layers", default="12,20", help="comma-separated layer counts of self-drafts")
    parser.add_argument("--int8-draft", action="store_true", help="also measure the int8 drafts (ch06 RTN, torch dynamic)")
    parser.add_argument("--distill", action="store_true",
                        help="also measure the distilled draft (distill.py; trained first, ~8 min here, if not cached)")
    parser.add_argument("--kernel", choices=["auto", "fused", "gemv", "torch"], default="auto",
                        help="how the target (and the self-drafts) decode: ch06's fused C++ step (auto: when a "
                             "C++ toolchain is here), its C++ GEMV inside the eager model, or plain F.linear; "
                             "the target alone and every method use the same target")
    parser.add_argument("--samples", type=positive_int, default=500, help="samples for the chi-square test")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = leave as is)")
    parser.add_argument("--no-hf", action="store_true", help="skip transformers' assisted decoding")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        n = 12 if args.smoke else args.max_new_tokens
        layers = [20] if args.smoke else [int(x) for x in args.draft_layers.split(",")]
        target = LlamaModel.from_pretrained(args.model, load_format=args.load_format)
        tok = load_tokenizer(args.model)
        ids = chat_ids(tok, REWRITE_PROMPT)
        kernel = ("fused" if not gemv_problem() and target.dtype == torch.float32 and target.device.type == "cpu"
                  else "torch") if args.kernel == "auto" else args.kernel
        model_drafts = {}  # built from the plain target (each quantizes or copies nn.Linear layers)
        if args.int8_draft and not args.smoke:
            model_drafts["int8 RTN draft (ch06)"] = quantized_draft(target, 8)
            model_drafts["int8 dynamic draft"] = dynamic_int8_draft(target)
        if args.int8_draft and kernel in ("gemv", "fused"):
            model_drafts["int8 C++ GEMV draft (ch06)"] = gemv_int8_draft(target)
            model_drafts["W8A8 C++ GEMV draft (ch06)"] = w8a8_draft(target)
        if kernel == "fused":  # int8 weights *and* one C++ call per step: a quarter of the bytes, no op overhead
            model_drafts["int8 fused C++ draft (ch06)"] = fused_int8_draft(target)
            model_drafts["W8A8 fused C++ draft (ch06)"] = fused_w8a8_draft(target)
            model_drafts["int4 g64 fused C++ draft (ch06)"] = fused_int4_draft(target)
        if args.distill and not args.smoke:
            from ch07_speculative.distill import distilled_draft

            model_drafts["distilled draft (7.4.3)"] = distilled_draft(target, tok, log=print if not args.json else
                                                                      (lambda *a: None))[0]
        plain = target  # the LlamaModel; self-drafts are made of its first blocks
        if kernel in ("gemv", "fused"):  # the target alone and every method run this same target
            if kernel == "gemv":
                use_gemv(target, bits=32)
            else:
                target = FusedDecoder(plain)
            if "distilled draft (7.4.3)" in model_drafts:  # its sub-vocabulary head is not a Linear: GEMV only
                use_gemv(model_drafts["distilled draft (7.4.3)"], bits=32)
        generate(target, ids, 2)  # warm-up
        ref_res, base_s = _timed(lambda: generate(target, ids, n, cache="contiguous"))
        ref = ref_res.token_ids
        t_step = step_cost(target, context=len(ids), repeats=3)
        rows = []
        res, wall = _timed(lambda: speculative_generate(target, PromptLookupDrafter(), ids, n, args.lookup_gamma))
        c_pl = (res.stats.draft_s / max(res.stats.drafted, 1)) / t_step
        rows.append(method_row("prompt lookup", res, wall, base_s, ref, args.lookup_gamma, c_pl, t_step))
        fused_target = target if kernel == "fused" else None
        drafts = {**{f"self-draft {k}L": self_draft(plain, k, fused_target) for k in layers}, **model_drafts}
        own_cache = {"distilled draft (7.4.3)"}  # its blocks are trained copies: their K/V are not the target's
        if "W8A8 fused C++ draft (ch06)" in drafts:  # the same draft with its own cache and prefill, to compare
            drafts[OWN_CACHE_ROW] = drafts["W8A8 fused C++ draft (ch06)"]
            own_cache.add(OWN_CACHE_ROW)
        costs: dict[int, float] = {}  # c per draft object (the own-cache row reuses its twin's)

        def run_draft(name: str, gamma: int, label: str) -> None:
            d = drafts[name]
            if id(d) not in costs:
                costs[id(d)] = step_cost(d, context=len(ids), repeats=3) / t_step
            drafter = ModelDrafter(d) if name in own_cache else SharedCacheDrafter(d)
            res, wall = _timed(lambda: speculative_generate(target, drafter, ids, n, gamma))
            rows.append(method_row(label, res, wall, base_s, ref, gamma, costs[id(d)], t_step))

        for name in drafts:
            run_draft(name, args.gamma, name)
        chosen = choose_gamma(target, rows, drafts, len(ids), args.gamma, 8 if args.smoke else 10)
        if chosen:  # 7.4.4: the formula, fed the measured alpha, c and verify costs, picks gamma; measure it
            name, g = chosen
            run_draft(name, g, f"{name}, gamma {g} (formula's choice)")
        res, wall = _timed(lambda: lookahead_generate(target, ids, n, window=args.gamma))
        rows.append(method_row("lookahead", res, wall, base_s, ref, args.gamma, 0.0, t_step))
        tiny_t, tiny_d = random_tiny_pair(args.seed)
        dist = distribution_test(tiny_t, tiny_d, [1, 17, 42, 99], 100 if args.smoke else args.samples)
        hf = {} if args.no_hf or args.smoke else hf_assisted(resolve_model_path(args.model), ids, n, layers[-1])
        if not args.json:
            print_table(rows, title=f"greedy, batch 1, {n} new tokens, 'repeat this paragraph' prompt; "
                                    f"target alone {base_s:.2f} s, decode step {1e3 * t_step:.0f} ms")
            print(f"chi-square at temperature 1 ({100 if args.smoke else args.samples} samples): "
                  f"p(first token) = {dist['p_first']:.3f}, p(second token) = {dist['p_second']:.3f}")
            for k, v in hf.items():
                print(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}")
        by = {r["method"]: r for r in rows}
        model_drafts = [r for r in rows if r["method"] not in ("prompt lookup", "lookahead")]
        best = max(model_drafts, key=lambda r: r["speedup"])
        emit_json({
            "tokens_identical": all(r["identical"] for r in rows),
            "distribution_test_p": dist["p_first"], "distribution_test_p_second_token": dist["p_second"],
            "speedup_prompt_lookup": by["prompt lookup"]["speedup"], "speedup_draft": best["speedup"],
            "best_draft": best["method"], "best_draft_gamma": best["gamma"], "speedup_lookahead": by["lookahead"]["speedup"],
            "methods": {r["method"]: {k: v for k, v in r.items() if k != "method"} for r in rows},
            "new_tokens": n, "target_kernel": kernel, "target_s": base_s, "target_step_s": t_step, **hf,
            "hardware": stamp_dict(dtype="fp32", torch_threads=torch.get_num_threads()),
        })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
