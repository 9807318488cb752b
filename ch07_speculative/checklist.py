"""Chapter 7's practical checklist (实战检查清单): will speculative decoding speed this setup up, or slow it down?

    python -m ch07_speculative.checklist --alpha 0.7 --gamma 4 --c 0.3          # a draft at 0.3 of the target
    python -m ch07_speculative.checklist --alpha 0.4 --gamma 8 --c 0.5 --verify 1.8
    python -m ch07_speculative.checklist --draft-model smollm2-135m --alpha 0.8 --gamma 4 --c 0.2 --batch 32

Items: the draft and target share a vocabulary (token ids must mean the same text), the expected speedup
from the measured acceptance rate ``alpha``, the draft's cost ``c`` (draft step / target step) and the
verify pass's cost (on a CPU a pass over gamma + 1 tokens costs more than one step: measure it with
``python -m ch07_speculative.bench``), whether another gamma would do better (the formula of
:mod:`ch07_speculative.theory`), and the batch size (at large batches decode stops being memory-bound and
the spare compute speculation lives on is gone). Exit code 1 on a FAIL.
"""

from __future__ import annotations

import argparse
import sys

from ch07_speculative.theory import best_gamma, speedup
from common.checklist import FAIL, OK, WARN, Check, add_checklist_args, report
from common.cli import friendly_errors, make_parser, positive_int
from common.loader import EMBEDDED, load_config


def check_vocab(draft_vocab: int | None, target_vocab: int) -> Check:
    if draft_vocab is None:
        return Check("vocab", OK, "no separate draft model (self-draft or prompt lookup): one vocabulary")
    if draft_vocab != target_vocab:
        return Check("vocab", FAIL, f"draft vocabulary {draft_vocab} != target {target_vocab}: proposed ids "
                     "would be other tokens", "pick a draft from the target's family (same tokenizer).")
    return Check("vocab", OK, f"draft and target share a {target_vocab}-token vocabulary")


def check_speedup(alpha: float, gamma: int, c: float, verify: float) -> Check:
    s = speedup(alpha, gamma, c, verify)
    detail = f"alpha {alpha:g}, gamma {gamma}, c {c:g}, verify {verify:g}: expected {s:.2f}x plain decoding"
    if s < 1.0:
        return Check("speedup", FAIL, detail, "speculation slows this down: a better-matched draft (distil it, "
                     "ch07 distill), a cheaper one (quantized or truncated), a smaller gamma, or turn it off.")
    if s < 1.2:
        return Check("speedup", WARN, detail, "under 1.2x: measure the end-to-end latency before paying for "
                     "a second model's memory.")
    return Check("speedup", OK, detail)


def check_gamma(alpha: float, gamma: int, c: float, verify: float) -> Check:
    best = best_gamma(alpha, c)
    now, there = speedup(alpha, gamma, c, verify), speedup(alpha, best, c, verify)
    if best != gamma and there > 1.05 * now:
        return Check("gamma", WARN, f"gamma {best} predicts {there:.2f}x vs {now:.2f}x at gamma {gamma} "
                     "(at the same verify cost)", f"try --gamma {best}, then measure: the verify cost grows "
                     "with gamma on a CPU.")
    return Check("gamma", OK, f"gamma {gamma} is within 5% of the formula's best ({best})")


def check_batch(batch: int) -> Check:
    if batch > 16:
        return Check("batch", WARN, f"batch {batch}: decode is near compute-bound, verifying gamma extra tokens per "
                     "sequence costs real compute", "turn speculation off above a batch threshold (vLLM "
                     "disables it under load); measure with ch07's bench.")
    return Check("batch", OK, f"batch {batch}: decode is memory-bound, verify tokens ride along nearly free")


def run_checks(args) -> list[Check]:
    target = load_config(args.target_model)["vocab_size"]
    draft = load_config(args.draft_model)["vocab_size"] if args.draft_model else None
    return [
        check_vocab(draft, target),
        check_speedup(args.alpha, args.gamma, args.c, args.verify),
        check_gamma(args.alpha, args.gamma, args.c, args.verify),
        check_batch(args.batch),
    ]


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"alpha must be in [0, 1), got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch07_speculative.checklist", __doc__)
    parser.add_argument("--target-model", default=EMBEDDED, help="target model (preset, folder or hub id)")
    parser.add_argument("--draft-model", default=None, help="separate draft model, if any")
    parser.add_argument("--alpha", type=unit_float, default=0.6, help="measured per-token acceptance rate")
    parser.add_argument("--gamma", type=positive_int, default=4, help="draft tokens per round")
    parser.add_argument("--c", type=float, default=0.3, help="draft step cost / target step cost")
    parser.add_argument("--verify", type=float, default=1.0, help="cost of verifying gamma+1 tokens, in target steps")
    parser.add_argument("--batch", type=positive_int, default=1, help="concurrent sequences")
    add_checklist_args(parser)
    args = parser.parse_args(argv)
    with friendly_errors():
        return report("chapter 7 checklist: vocabulary, expected speedup, gamma, batch", run_checks(args),
                      json_only=args.json)


if __name__ == "__main__":
    sys.exit(main())
