"""Chapter 5's practical checklist (实战检查清单): will these scheduler settings batch, and meet a TTFT target?

    python -m ch05_scheduling.checklist                                       # the engine's defaults
    python -m ch05_scheduling.checklist --max-num-batched-tokens 256 --no-chunked-prefill --max-model-len 2048
    python -m ch05_scheduling.checklist --policy static --ttft-target-s 0.5 --avg-len 800

Items, all from the settings (no engine is started): whether a full-length prompt can ever be scheduled
(token budget vs max-model-len without chunked prefill), whether the token budget caps the decode batch,
whether the KV block pool holds max-num-seqs sequences at your average length (else preemptions), the
batching policy (static batching leaves finished slots idle), whether the simulator's cost model was
calibrated on this machine (``python -m ch05_scheduling.calibrate``), and, with that model, how long one
full prefill chunk takes against your TTFT target (a decode step waits behind it). Exit code 1 on a FAIL.
"""

from __future__ import annotations

import math
import sys

from ch02_gpu.memory import kv_bytes_per_token
from ch02_gpu.vram import load_arch
from ch05_scheduling.cost_model import CostModel, StepFeatures
from ch05_scheduling.engine import EngineConfig
from ch05_scheduling.policies import POLICY_NAMES
from ch05_scheduling.simulator import default_cost_path
from common.bench import hardware_stamp
from common.checklist import FAIL, OK, WARN, Check, add_checklist_args, report
from common.cli import friendly_errors, make_parser, positive_int

MIB = 1 << 20


def check_prefill_fits(max_batched: int, max_model_len: int, chunked: bool) -> Check:
    if chunked:
        return Check("prefill-fits", OK, f"chunked prefill: a {max_model_len}-token prompt is prefilled in "
                     f"{math.ceil(max_model_len / max_batched)} chunks of <= {max_batched} tokens")
    if max_batched < max_model_len:
        return Check("prefill-fits", FAIL, f"without chunked prefill a prompt over {max_batched} tokens "
                     f"(max-num-batched-tokens) never fits a step, yet max-model-len allows {max_model_len}",
                     f"enable chunked prefill, or raise --max-num-batched-tokens to >= {max_model_len}.")
    return Check("prefill-fits", OK, f"whole prompts up to {max_model_len} tokens fit one {max_batched}-token step")


def check_decode_width(max_batched: int, max_num_seqs: int) -> Check:
    if max_batched < max_num_seqs:
        return Check("decode-width", WARN, f"max-num-batched-tokens {max_batched} < max-num-seqs {max_num_seqs}: "
                     f"at most {max_batched} sequences decode per step", "raise --max-num-batched-tokens to at "
                     "least max-num-seqs (vLLM's default is 2048-8192 tokens).")
    return Check("decode-width", OK, f"all {max_num_seqs} sequences can decode in one step "
                 f"({max_batched} tokens per step)")


def check_seats_vs_blocks(num_blocks: int, block_size: int, max_num_seqs: int, avg_len: int) -> Check:
    per_seq = math.ceil(avg_len / block_size)
    holds = num_blocks // max(1, per_seq)
    detail = (f"{num_blocks} KV blocks of {block_size} tokens hold {holds} sequences at your average "
              f"{avg_len} tokens, for max-num-seqs {max_num_seqs}")
    if holds < max_num_seqs:
        return Check("seats-vs-blocks", WARN, detail, "the batch fills the KV pool before its seats: expect "
                     "preemption (recompute); raise --kv-cache-mib or lower --max-num-seqs to "
                     f"{max(1, holds)}.")
    return Check("seats-vs-blocks", OK, detail)


def check_policy(policy: str) -> Check:
    if policy == "static":
        return Check("policy", WARN, "static batching: a batch's finished slots stay idle until its longest "
                     "request ends", "use --policy continuous (ch05's rate-at-SLO benchmark measures the gap).")
    if policy == "fifo":
        return Check("policy", WARN, "fifo runs one request at a time", "use --policy continuous.")
    return Check("policy", OK, f"{policy} batching fills freed slots every step")


def check_calibration(cost: CostModel | None, here: str) -> Check:
    if cost is None:
        return Check("calibration", WARN, "no calibrated cost model: the simulator uses its built-in defaults",
                     "run python -m ch05_scheduling.calibrate (a few minutes) before trusting simulated tuning.")
    measured_on = cost.meta.get("hardware", "?")
    if measured_on != here:
        return Check("calibration", WARN, f"the cost model was calibrated on {measured_on}, this is {here}",
                     "re-run python -m ch05_scheduling.calibrate on this machine.")
    return Check("calibration", OK, f"cost model calibrated here on {cost.meta.get('date', '?')}")


def check_chunk_vs_ttft(cost: CostModel | None, max_batched: int, target_s: float | None) -> Check:
    if target_s is None:
        return Check("chunk-vs-ttft", OK, "no TTFT target given (--ttft-target-s): nothing to compare")
    if cost is None:
        return Check("chunk-vs-ttft", WARN, f"cannot price a {max_batched}-token step without a cost model",
                     "run python -m ch05_scheduling.calibrate.")
    attn = max_batched * max_batched / 2 / 1000.0  # a fresh chunk attends to itself (causal)
    step = cost.predict(StepFeatures(num_tokens=max_batched, num_logits=1, attn_kilo=attn, num_seqs=1))
    detail = f"one {max_batched}-token prefill step takes ~{step:.3f} s (cost model) against a TTFT target of " \
             f"{target_s:g} s"
    if step > target_s:
        return Check("chunk-vs-ttft", FAIL, detail, "one step alone misses the target: lower "
                     "--max-num-batched-tokens (smaller chunks) or use faster hardware.")
    if step > target_s / 2:
        return Check("chunk-vs-ttft", WARN, detail, "a queued request waits for a few such steps: smaller chunks "
                     "leave headroom.")
    return Check("chunk-vs-ttft", OK, detail)


def saved_cost_model() -> CostModel | None:
    path = default_cost_path()
    return CostModel.load(path) if path.is_file() else None


def run_checks(args, cost: CostModel | None = None, here: str | None = None) -> list[Check]:
    arch = load_arch(args.model)
    num_blocks = args.kv_cache_mib * MIB // (kv_bytes_per_token(arch, "fp32") * args.block_size)
    return [
        check_prefill_fits(args.max_num_batched_tokens, args.max_model_len, args.chunked_prefill),
        check_decode_width(args.max_num_batched_tokens, args.max_num_seqs),
        check_seats_vs_blocks(num_blocks, args.block_size, args.max_num_seqs, args.avg_len),
        check_policy(args.policy),
        check_calibration(cost, here or hardware_stamp().short()),
        check_chunk_vs_ttft(cost, args.max_num_batched_tokens, args.ttft_target_s),
    ]


def main(argv: list[str] | None = None) -> int:
    d = EngineConfig()
    parser = make_parser("python -m ch05_scheduling.checklist", __doc__)
    parser.add_argument("--model", default=d.model, help="preset, local folder or hub id")
    parser.add_argument("--kv-cache-mib", type=positive_int, default=d.kv_cache_mib, help="KV pool size (fp32)")
    parser.add_argument("--block-size", type=positive_int, default=d.block_size, help="tokens per KV block")
    parser.add_argument("--max-num-seqs", type=positive_int, default=d.max_num_seqs, help="batch seats")
    parser.add_argument("--max-num-batched-tokens", type=positive_int, default=d.max_num_batched_tokens,
                        help="token budget per step")
    parser.add_argument("--max-model-len", type=positive_int, default=d.max_model_len, help="longest sequence")
    parser.add_argument("--no-chunked-prefill", dest="chunked_prefill", action="store_false",
                        help="prefill whole prompts only")
    parser.add_argument("--policy", default=d.policy, choices=POLICY_NAMES, help="batching / ordering policy")
    parser.add_argument("--avg-len", type=positive_int, default=512, help="your average prompt + output tokens")
    parser.add_argument("--ttft-target-s", type=float, default=None, help="time-to-first-token you promise")
    add_checklist_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        return report("chapter 5 checklist: token budget, seats vs KV blocks, policy, cost model",
                      run_checks(args, saved_cost_model()), json_only=args.json)


if __name__ == "__main__":
    sys.exit(main())
