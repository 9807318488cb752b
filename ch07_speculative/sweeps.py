"""When speculation helps and when it fails (book 7.5.2-7.5.4): four sweeps, measured, with plots.

    python -m ch07_speculative.sweeps            # embedded model, ~5 minutes on 2 cores
    python -m ch07_speculative.sweeps --smoke    # tiny sizes

1. **gamma** (tokens drafted per round), for prompt lookup and the int8 dynamic draft: measured wall-clock
   speedup, acceptance, and the formula's prediction from the fitted alpha. Too small a gamma leaves
   speed on the table, too large a gamma pays for drafts that get rejected.
2. **temperature**: the int8 draft at T = 0, 0.7, 1.0 against the target sampling alone at the same T and
   seed. Sampling flattens both distributions, acceptance min(1, p/q) falls, and so does the gain.
3. **task type**: an input-grounded rewrite (the answer copies the prompt) against an open-ended question,
   for prompt lookup and the int8 draft: prompt lookup lives on copying; a model draft does not care.
4. **batch size**: our speculative loop is batch 1, so this sweep measures the component that changes
   with the batch -- a target pass over B x (gamma + 1) tokens against one over B tokens (``verify_x``)
   -- and puts it in the formula with the alpha fitted in sweep 1: tokens per step / (verify_x + gamma c).
   It is labelled "formula, measured verify cost". On a GPU a decode step is memory-bound up to large
   batches, so verify_x stays near 1 longer; on this CPU it grows quickly, which is 7.5.2's point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from ch04_kvcache.generate import generate
from ch04_kvcache.kv_cache import ContiguousKVCache
from ch04_kvcache.model import LlamaModel
from ch07_speculative import theory
from ch07_speculative.drafts import dynamic_int8_draft, step_cost
from ch07_speculative.prompt_lookup import REWRITE_PROMPT, PromptLookupDrafter
from ch07_speculative.speculative import Drafter, ModelDrafter, speculative_generate

OPEN_PROMPT = "Give three reasons why the sky appears blue, and explain each one in a sentence."


def _wall(fn: Callable[[], object]) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_point(target: LlamaModel, drafter: Drafter, ids: list[int], n: int, gamma: int, base_s: float,
              c: float, temperature: float = 0.0, seed: int = 0) -> dict:
    """One speculative run against a baseline time: measured speedup and the formula beside it."""
    res, wall = _wall(lambda: speculative_generate(target, drafter, ids, n, gamma, temperature=temperature,
                                                   seed=seed, eos_token_id=None))
    s = res.stats
    rate = min(s.acceptance_rate, 1.0) if s.drafted else 0.0
    alpha = theory.alpha_from_acceptance_rate(rate, gamma) if gamma >= 1 else 0.0
    return {"gamma": gamma, "temperature": temperature, "speedup": base_s / wall, "acceptance_rate": rate,
            "tokens_per_target_step": s.tokens_per_target_step, "alpha_fit": alpha,
            "formula_speedup": theory.speedup(alpha, gamma, c), "tokens": res.token_ids}


def baseline(target: LlamaModel, ids: list[int], n: int, temperature: float = 0.0, seed: int = 0):
    return _wall(lambda: generate(target, ids, n, temperature=temperature, seed=seed, eos_token_id=None))


def verify_cost(target: LlamaModel, batch: int, gamma: int, context: int, repeats: int = 3) -> float:
    """Time of a target pass over batch x (gamma + 1) new tokens / one over batch x 1 (same cached context)."""
    from common.bench import time_fn

    cache = ContiguousKVCache(target.config, batch, context + gamma + 1, target.device, target.dtype)
    ids = torch.randint(0, target.config.vocab_size, (batch, context + gamma + 1))
    with torch.inference_mode():
        target(ids[:, :context], cache=cache, logits_to_keep=1)

        def one(k: int) -> Callable[[], None]:
            def step() -> None:
                target(ids[:, context:context + k], cache=cache, logits_to_keep=k)
                cache.truncate(context)
            return step

        t1 = time_fn(one(1), repeats=repeats, warmup=1).median
        tk = time_fn(one(gamma + 1), repeats=repeats, warmup=1).median
    return tk / t1


def sweep_gamma(target, drafters: dict[str, tuple[Callable[[], Drafter], float]], ids, n, gammas, base_s) -> list[dict]:
    rows = []
    for name, (make, c) in drafters.items():
        for g in gammas:
            row = run_point(target, make(), ids, n, g, base_s, c)
            rows.append({"drafter": name, **{k: v for k, v in row.items() if k != "tokens"}})
    return rows


def sweep_temperature(target, make: Callable[[], Drafter], c: float, ids, n, gamma, temps: Sequence[float],
                      seed: int) -> list[dict]:
    rows = []
    for t in temps:
        _, base_s = baseline(target, ids, n, t, seed)
        row = run_point(target, make(), ids, n, gamma, base_s, c, t, seed)
        rows.append({k: v for k, v in row.items() if k != "tokens"})
    return rows


def sweep_batch(target, alpha: float, gamma: int, c: float, batches: Sequence[int], context: int) -> list[dict]:
    rows = []
    for b in batches:
        vx = verify_cost(target, b, gamma, context)
        rows.append({"batch": b, "verify_x": vx, "alpha": alpha, "gamma": gamma,
                     "formula_speedup_measured_verify": theory.expected_tokens_per_step(alpha, gamma) / (vx + gamma * c)})
    return rows


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.chat import chat_ids
    from common.cli import add_common_args, friendly_errors, make_parser, positive_int, seed_everything
    from common.loader import load_tokenizer
    from common.paths import reports_dir
    from common.report import emit_json, print_table, save_plot

    parser = make_parser("python -m ch07_speculative.sweeps", __doc__)
    add_common_args(parser)
    parser.add_argument("--max-new-tokens", type=positive_int, default=48, help="tokens per run")
    args = parser.parse_args(argv)
    with friendly_errors():
        seed_everything(args.seed)
        n = 8 if args.smoke else args.max_new_tokens
        gammas = [2, 4] if args.smoke else [1, 2, 4, 6, 8]
        temps = [0.0, 1.0] if args.smoke else [0.0, 0.7, 1.0]
        batches = [1, 4] if args.smoke else [1, 4, 8, 16, 32]
        target = LlamaModel.from_pretrained(args.model, load_format=args.load_format)
        tok = load_tokenizer(args.model)
        tasks = {"rewrite (input-grounded)": chat_ids(tok, REWRITE_PROMPT), "open-ended": chat_ids(tok, OPEN_PROMPT)}
        ids = tasks["rewrite (input-grounded)"]
        generate(target, ids, 2)  # warm-up
        t_step = step_cost(target, context=len(ids), repeats=3)
        draft = dynamic_int8_draft(target)
        c_draft = step_cost(draft, context=len(ids), repeats=3) / t_step
        drafters = {"prompt lookup": (PromptLookupDrafter, 0.0),
                    "int8 dynamic draft": (lambda: ModelDrafter(draft), c_draft)}
        _, base_s = baseline(target, ids, n)
        g_rows = sweep_gamma(target, drafters, ids, n, gammas, base_s)
        t_rows = sweep_temperature(target, lambda: ModelDrafter(draft), c_draft, ids, n, 4, temps, args.seed)
        task_rows = []
        for task, tids in tasks.items():
            _, tb = baseline(target, tids, n)
            for name, (make, c) in drafters.items():
                row = run_point(target, make(), tids, n, 4, tb, c)
                task_rows.append({"task": task, "drafter": name,
                                  **{k: v for k, v in row.items() if k not in ("tokens", "temperature")}})
        alpha = next(r["alpha_fit"] for r in g_rows if r["drafter"] == "int8 dynamic draft" and r["gamma"] == 4)
        b_rows = sweep_batch(target, alpha, 4, c_draft, batches, len(ids))

        out = reports_dir("ch07")
        plots = [
            save_plot(out / "sweep_gamma.png", {
                f"{d} measured": ([r["gamma"] for r in g_rows if r["drafter"] == d],
                                  [r["speedup"] for r in g_rows if r["drafter"] == d]) for d in drafters} | {
                f"{d} formula": ([r["gamma"] for r in g_rows if r["drafter"] == d],
                                 [r["formula_speedup"] for r in g_rows if r["drafter"] == d]) for d in drafters},
                title="speedup vs gamma (rewrite task, greedy)", xlabel="gamma", ylabel="x", hlines={"1x": 1.0}),
            save_plot(out / "sweep_temperature.png", {
                "acceptance": ([r["temperature"] for r in t_rows], [r["acceptance_rate"] for r in t_rows]),
                "speedup": ([r["temperature"] for r in t_rows], [r["speedup"] for r in t_rows])},
                title="int8 draft vs temperature (gamma 4)", xlabel="temperature", hlines={"1x": 1.0}),
            save_plot(out / "sweep_batch.png", {
                "verify cost (x a 1-token pass)": ([r["batch"] for r in b_rows], [r["verify_x"] for r in b_rows]),
                "speedup (formula, measured verify cost)": ([r["batch"] for r in b_rows],
                                                            [r["formula_speedup_measured_verify"] for r in b_rows])},
                title="batch size: the verify pass gets expensive", xlabel="batch", logx=True, hlines={"1x": 1.0}),
        ]
        if not args.json:
            print_table(g_rows, title=f"gamma sweep: rewrite task, greedy, {n} new tokens, target alone {base_s:.2f} s")
            print_table(t_rows, title="temperature sweep: int8 dynamic draft, gamma 4 (baseline = target alone, same T)")
            print_table(task_rows, title="task type, gamma 4, greedy")
            print_table(b_rows, title=f"batch size (formula with measured verify cost; alpha {alpha:.2f} from the gamma sweep)")
            print("plots: " + ", ".join(str(p) for p in plots))
        best = max(g_rows, key=lambda r: r["speedup"])
        emit_json({"bench": "ch07_speculative.sweeps", "new_tokens": n, "gamma": g_rows, "temperature": t_rows,
                   "task": task_rows, "batch": b_rows, "best_gamma": {"drafter": best["drafter"],
                                                                      "gamma": best["gamma"], "speedup": best["speedup"]},
                   "c_int8_draft": c_draft, "plots": [str(p) for p in plots],
                   "hardware": stamp_dict(dtype="fp32")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
