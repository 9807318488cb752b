"""Speculative decoding in vLLM (book 7.6): the ngram and draft-model configurations, and a CPU run.

vLLM takes one JSON flag, ``--speculative-config``:

* n-gram (prompt lookup, no draft model; runs on vLLM-CPU):
  ``{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 2, "prompt_lookup_max": 4}``
* draft model (the draft must share the target's tokenizer; vLLM-CPU 0.32 runs it too):
  ``{"method": "draft_model", "model": "<small model>", "num_speculative_tokens": 4}``

Tuning tips, backed by this chapter's measurements (README): n-gram speculation pays on input-grounded
work (rewrite, summarise, edit code) and costs almost nothing elsewhere; keep ``num_speculative_tokens``
near the formula's best gamma for your measured alpha (``python -m ch07_speculative.theory``); the gain
shrinks as the batch grows, because verification stops being free once the GPU is compute-bound.
vLLM exports ``vllm:spec_decode_num_draft_tokens`` / ``..._num_accepted_tokens`` on ``/metrics``: their
ratio is the acceptance rate this chapter measures.

    python -m ch07_speculative.vllm_spec --smoke   # start vLLM-CPU with ngram speculation, one request
    python -m ch07_speculative.vllm_spec --smoke --method draft_model   # the draft-model path
"""

from __future__ import annotations

import json
import re


def ngram_config(num_tokens: int = 4, lookup_min: int = 2, lookup_max: int = 4) -> dict:
    if not 1 <= lookup_min <= lookup_max or num_tokens < 1:
        raise ValueError("need num_tokens >= 1 and 1 <= lookup_min <= lookup_max")
    return {"method": "ngram", "num_speculative_tokens": num_tokens, "prompt_lookup_min": lookup_min,
            "prompt_lookup_max": lookup_max}


def draft_model_config(draft: str, num_tokens: int = 4) -> dict:
    return {"method": "draft_model", "model": draft, "num_speculative_tokens": num_tokens}


def server_args(spec: dict) -> tuple[str, ...]:
    """Extra command-line arguments for ``ch03_env.vllm_server.VLLMServerConfig(extra_args=...)``."""
    return ("--speculative-config", json.dumps(spec))


def spec_counters(metrics_text: str) -> dict[str, float]:
    """The spec-decode counters from a Prometheus ``/metrics`` page (summed over label sets)."""
    out: dict[str, float] = {}
    for name in ("num_drafts", "num_draft_tokens", "num_accepted_tokens"):
        pat = re.compile(rf"^vllm:spec_decode_{name}(?:_total)?(?:{{[^}}]*}})? ([0-9.eE+-]+)$", re.M)
        out[name] = sum(float(v) for v in pat.findall(metrics_text))
    return out


def main(argv: list[str] | None = None) -> int:
    from ch03_env.vllm_server import VLLMServer, VLLMServerConfig
    from ch07_speculative.prompt_lookup import REWRITE_PROMPT
    from common.bench import stamp_dict
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int
    from common.report import emit_json

    parser = make_parser("python -m ch07_speculative.vllm_spec", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--num-tokens", type=positive_int, default=4, help="num_speculative_tokens")
    parser.add_argument("--max-tokens", type=positive_int, default=64, help="tokens to generate")
    parser.add_argument("--print-config", action="store_true", help="print the two configs and exit")
    parser.add_argument("--method", choices=["ngram", "draft_model"], default="ngram",
                        help="ngram (prompt lookup) or draft_model (a second model proposes)")
    parser.add_argument("--draft", default=None,
                        help="draft model folder for --method draft_model (default: the embedded model itself, "
                             "which accepts every token: a check of the plumbing, not a speedup)")
    args = parser.parse_args(argv)
    if args.print_config:
        print(json.dumps(ngram_config(args.num_tokens)))
        print(json.dumps(draft_model_config("<draft model folder>", args.num_tokens)))
        return 0
    with friendly_errors():
        import httpx
        import openai

        from common.loader import resolve_model_path

        spec = (ngram_config(args.num_tokens) if args.method == "ngram"
                else draft_model_config(resolve_model_path(args.draft), args.num_tokens))
        cfg = VLLMServerConfig(extra_args=server_args(spec))
        with VLLMServer(cfg) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
            r = client.chat.completions.create(model=cfg.served_model_name, temperature=0.0,
                                               max_tokens=16 if args.smoke else args.max_tokens,
                                               messages=[{"role": "user", "content": REWRITE_PROMPT}])
            counters = spec_counters(httpx.get(f"{url}/metrics", timeout=10).text)
        rate = counters["num_accepted_tokens"] / max(counters["num_draft_tokens"], 1)
        if not args.json:
            print(r.choices[0].message.content)
            print(f"vLLM {args.method} speculation: {counters['num_draft_tokens']:.0f} draft tokens, "
                  f"{counters['num_accepted_tokens']:.0f} accepted ({rate:.2f})")
        emit_json({"method": args.method, "text": r.choices[0].message.content, **counters, "acceptance_rate": rate,
                   "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
