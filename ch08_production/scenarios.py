"""Three serving scenarios on one engine, each with its cost per 1M output tokens (book 8.7, appendix C.4).

* **chat**: ShareGPT conversations arriving as a Poisson stream (``--chat-rate``), short answers; what
  counts is latency: the share meeting p90-style targets (TTFT <= 2 s, TPOT <= 0.25 s by default);
* **batch**: long jobs (summaries, offline evaluation), all submitted at t=0; what counts is throughput;
* **mixed**: both at once on the same engine, the way one deployment often serves an app and a nightly
  job: does the batch work push the chat requests past their targets, and what does the whole cost?

Every scenario runs ch05's real engine (continuous batching) through ``replay(skip_idle=True)``: real
step times, no sleeping while nothing has arrived. Cost per 1M output tokens = price per hour /
(tokens/s x 3600) x 1e6 at ``--price-per-hour``, a stated assumption (default: an assumed rate for a
2-vCPU cloud VM like the reference machine; pass your own). A scenario's tokens/s is its output tokens
over its whole span, idle gaps between chat arrivals included: that is what the traffic costs on a
machine of its own, and why light chat traffic costs more per token than a full batch.

    python -m ch08_production.scenarios --smoke
    python -m ch08_production.scenarios --chat-rate 0.5 --batch-jobs 8 --price-per-hour 0.10
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

ASSUMED_PRICE_PER_HOUR = 0.10  # assumption: a 2-vCPU cloud VM on demand; override with --price-per-hour


@dataclass(frozen=True)
class ScenarioResult:
    scenario: str
    requests: int
    output_tokens: int
    throughput_tok_s: float
    chat_slo_attainment: float | None  # share of chat requests meeting both targets (None: no chat)
    chat_ttft_p90_s: float | None
    cost_per_1m_tokens: float


def cost_per_million(price_per_hour: float, tokens_per_s: float) -> float:
    return price_per_hour / (tokens_per_s * 3600.0) * 1e6


def summarize_scenario(name: str, seqs, chat_ids: set[int], slo, price_per_hour: float) -> ScenarioResult:
    from ch05_scheduling.metrics import summarize_requests

    whole = summarize_requests(seqs, slo)
    chat = [s for s in seqs if s.seq_id in chat_ids]
    chat_m = summarize_requests(chat, slo) if chat else None
    return ScenarioResult(name, int(whole["requests"]), int(whole["output_tokens"]), whole["throughput_tok_s"],
                          chat_m["slo_attainment"] if chat_m else None, chat_m["ttft_p90"] if chat_m else None,
                          cost_per_million(price_per_hour, whole["throughput_tok_s"]))


def main(argv: list[str] | None = None) -> int:
    from ch05_scheduling.bench import engine_run
    from ch05_scheduling.engine import EngineConfig, LLMEngine
    from ch05_scheduling.metrics import SLO
    from ch05_scheduling.workload import poisson_arrivals, sharegpt_trace, with_arrivals
    from common.bench import stamp_dict
    from common.cli import UsageError, add_common_args, friendly_errors, make_parser, positive_int
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch08_production.scenarios", __doc__)
    add_common_args(parser)
    parser.add_argument("--chat-requests", type=positive_int, default=24)
    parser.add_argument("--chat-rate", type=float, default=0.5, help="chat arrivals, requests/s (Poisson)")
    parser.add_argument("--chat-max-output", type=positive_int, default=64)
    parser.add_argument("--batch-jobs", type=positive_int, default=8)
    parser.add_argument("--batch-max-output", type=positive_int, default=256)
    parser.add_argument("--max-num-seqs", type=positive_int, default=16)
    parser.add_argument("--ttft", type=float, default=2.0, help="chat TTFT target, s")
    parser.add_argument("--tpot", type=float, default=0.25, help="chat TPOT target, s")
    parser.add_argument("--price-per-hour", type=float, default=ASSUMED_PRICE_PER_HOUR,
                        help=f"machine price, $/h (default {ASSUMED_PRICE_PER_HOUR}: an assumed 2-vCPU VM rate)")
    args = parser.parse_args(argv)
    with friendly_errors():
        if args.chat_rate <= 0 or args.price_per_hour < 0 or min(args.ttft, args.tpot) <= 0:
            raise UsageError("--chat-rate, --ttft and --tpot must be positive and --price-per-hour >= 0")
        n_chat, n_batch, chat_out, batch_out = ((4, 2, 8, 16) if args.smoke else
                                                (args.chat_requests, args.batch_jobs, args.chat_max_output,
                                                 args.batch_max_output))
        slo = SLO(args.ttft, args.tpot)
        engine = LLMEngine(EngineConfig(model=args.model, device=args.device, dtype=args.dtype,
                                        load_format=args.load_format, seed=args.seed,
                                        max_num_seqs=args.max_num_seqs))
        chat = sharegpt_trace(engine.tokenizer, n_chat, args.seed, max_output=chat_out, max_prompt=512)
        chat = with_arrivals(chat, poisson_arrivals(n_chat, args.chat_rate, args.seed))
        batch = sharegpt_trace(engine.tokenizer, n_batch, args.seed + 1, max_output=batch_out, max_prompt=512)
        batch = [replace(r, request_id=n_chat + i, output_len=batch_out) for i, r in enumerate(batch)]  # long jobs
        engine.generate([list(chat[0].prompt_token_ids)], None)  # warm-up
        chat_ids = {r.request_id for r in chat}
        results = []
        for name, trace in (("chat", chat), ("batch", batch), ("mixed", chat + batch)):
            seqs = engine_run(engine, trace, "continuous", skip_idle=True)[1]
            results.append(summarize_scenario(name, seqs, chat_ids, slo, args.price_per_hour))
    by = {r.scenario: r for r in results}
    if not args.json:
        print_table([{"scenario": r.scenario, "requests": r.requests, "out tokens": r.output_tokens,
                      "tok/s": r.throughput_tok_s,
                      "chat meeting targets": "-" if r.chat_slo_attainment is None else f"{r.chat_slo_attainment:.0%}",
                      "chat TTFT p90 s": "-" if r.chat_ttft_p90_s is None else f"{r.chat_ttft_p90_s:.2f}",
                      "$ per 1M tokens": r.cost_per_1m_tokens} for r in results],
                    title=f"ch05 engine, batch {args.max_num_seqs}; chat targets TTFT <= {args.ttft} s, TPOT <= "
                          f"{args.tpot} s; cost at ${args.price_per_hour}/h (stated assumption)")
    emit_json({"bench": "ch08_production.scenarios", "price_per_hour": args.price_per_hour,
               "price_source": "--price-per-hour" if args.price_per_hour != ASSUMED_PRICE_PER_HOUR
               else "assumed 2-vCPU VM rate", "chat_rate_rps": args.chat_rate,
               "scenarios": {r.scenario: vars(r) for r in results},
               "mixed_chat_slo_attainment": by["mixed"].chat_slo_attainment,
               "chat_alone_slo_attainment": by["chat"].chat_slo_attainment,
               "mixed_cost_per_1m_tokens": by["mixed"].cost_per_1m_tokens,
               "hardware": stamp_dict(dtype=args.dtype)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
