"""How much speculative decoding can win, on paper (book 7.1, 7.5.1), and a Monte Carlo check.

With a draft that proposes ``gamma`` tokens, each accepted independently with probability ``alpha``,
one target forward pass yields on average (Leviathan et al. 2023, eq. 1)

    E[tokens per target step] = (1 - alpha^(gamma+1)) / (1 - alpha)

(the accepted prefix plus the one token the target always adds: a correction or a bonus). If one draft
step costs ``c`` target steps, a round costs ``gamma * c + 1`` target steps, so the wall-time speedup is

    speedup = (1 - alpha^(gamma+1)) / ((1 - alpha) * (gamma * c + 1)).

:func:`simulate_tokens_per_step` draws rounds with i.i.d. acceptances and confirms the first formula;
``tests/ch07/test_theory.py`` checks they agree.

    python -m ch07_speculative.theory --alpha 0.8 --gamma 4 --c 0.1   # calculator + plots
"""

from __future__ import annotations

import random
from dataclasses import dataclass

ALPHAS = tuple(i / 20 for i in range(0, 20))  # 0.0 .. 0.95
GAMMAS = (1, 2, 3, 4, 5, 6, 8, 10)


def expected_tokens_per_step(alpha: float, gamma: int) -> float:
    """Mean tokens one target forward pass produces: (1 - a^(g+1)) / (1 - a); g + 1 when a == 1."""
    _check(alpha, gamma)
    if alpha >= 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def speedup(alpha: float, gamma: int, c: float, verify: float = 1.0) -> float:
    """Expected wall-time speedup over plain decoding when a draft step costs ``c`` target steps.

    ``verify``: what the target's pass over gamma + 1 tokens costs, in single-token steps. The paper's
    formula takes 1 (true on a GPU, where such a pass is as memory-bound as one token); on a CPU pass
    the measured value, which grows with gamma.
    """
    if c < 0 or verify <= 0:
        raise ValueError(f"the cost ratio c must be >= 0 and the verify cost > 0, got c={c}, verify={verify}")
    return expected_tokens_per_step(alpha, gamma) / (gamma * c + verify)


def best_gamma(alpha: float, c: float, max_gamma: int = 16, verify: dict[int, float] | None = None) -> int:
    """The gamma with the highest predicted speedup (7.4.4: choose by the formula).

    ``verify`` maps gamma to the measured cost of verifying gamma + 1 tokens; then only those gammas are
    candidates. Without it every gamma in 1..max_gamma is, at the formula's verify cost of 1.
    """
    if verify:
        return max(verify, key=lambda g: speedup(alpha, g, c, verify[g]))
    return max(range(1, max_gamma + 1), key=lambda g: speedup(alpha, g, c))


def alpha_from_tokens_per_step(tokens_per_step: float, gamma: int) -> float:
    """Invert the first formula (bisection): the i.i.d. alpha that explains a measured tokens/step."""
    if not 1.0 <= tokens_per_step <= gamma + 1:
        raise ValueError(f"tokens per step must lie in [1, {gamma + 1}], got {tokens_per_step}")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if expected_tokens_per_step(mid, gamma) < tokens_per_step:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def alpha_from_acceptance_rate(rate: float, gamma: int) -> float:
    """The i.i.d. alpha whose expected accepted/drafted ratio, a(1-a^g)/((1-a)g), equals a measured rate."""
    if not 0.0 <= rate <= 1.0 or gamma < 1:
        raise ValueError(f"need a rate in [0, 1] and gamma >= 1, got {rate}, {gamma}")
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (expected_tokens_per_step(mid, gamma) - 1.0) / gamma < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def simulate_tokens_per_step(alpha: float, gamma: int, rounds: int = 100_000, seed: int = 0) -> float:
    """Monte Carlo: each round accepts draft tokens while coins (p = alpha) come up heads, at most gamma,
    then the target adds one token; return the mean tokens per round (= per target forward pass)."""
    _check(alpha, gamma)
    rng = random.Random(seed)
    total = 0
    for _ in range(rounds):
        accepted = 0
        while accepted < gamma and rng.random() < alpha:
            accepted += 1
        total += accepted + 1
    return total / rounds


@dataclass(frozen=True, slots=True)
class Prediction:
    alpha: float
    gamma: int
    c: float
    tokens_per_step: float
    speedup: float
    best_gamma: int
    best_speedup: float


def predict(alpha: float, gamma: int, c: float) -> Prediction:
    g = best_gamma(alpha, c)
    return Prediction(alpha, gamma, c, expected_tokens_per_step(alpha, gamma), speedup(alpha, gamma, c), g,
                      speedup(alpha, g, c))


def _check(alpha: float, gamma: int) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha is a probability in [0, 1], got {alpha}")
    if gamma < 0:
        raise ValueError(f"gamma (draft tokens per round) must be >= 0, got {gamma}")


def plot_speedups(c: float, out_dir) -> list:
    """Two PNGs: speedup over alpha for several gamma, and speedup over gamma for several alpha."""
    from common.report import save_plot

    by_alpha = {f"gamma={g}": (ALPHAS, [speedup(a, g, c) for a in ALPHAS]) for g in (1, 2, 4, 8)}
    gs = list(range(1, 11))
    by_gamma = {f"alpha={a}": (gs, [speedup(a, g, c) for g in gs]) for a in (0.5, 0.7, 0.8, 0.9)}
    return [
        save_plot(out_dir / f"speedup_vs_alpha_c{c:g}.png", by_alpha, title=f"Predicted speedup, c={c:g}",
                  xlabel="acceptance rate alpha", ylabel="speedup", hlines={"no gain": 1.0}),
        save_plot(out_dir / f"speedup_vs_gamma_c{c:g}.png", by_gamma, title=f"Predicted speedup, c={c:g}",
                  xlabel="draft tokens per round gamma", ylabel="speedup", hlines={"no gain": 1.0}),
    ]


def main(argv: list[str] | None = None) -> int:
    from common.bench import stamp_dict
    from common.cli import UsageError, add_common_args, friendly_errors, make_parser
    from common.paths import reports_dir
    from common.report import emit_json, print_table

    parser = make_parser("python -m ch07_speculative.theory", __doc__)
    add_common_args(parser, model=False)
    parser.add_argument("--alpha", type=float, default=0.8, help="acceptance rate per draft token")
    parser.add_argument("--gamma", type=int, default=4, help="draft tokens per round")
    parser.add_argument("--c", type=float, default=0.1, help="cost of one draft step / one target step")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    with friendly_errors():
        try:
            p = predict(args.alpha, args.gamma, args.c)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        mc = simulate_tokens_per_step(args.alpha, args.gamma, 20_000 if args.smoke else 200_000, args.seed)
        rows = [{"gamma": g, "tokens/step": expected_tokens_per_step(args.alpha, g),
                 "speedup": speedup(args.alpha, g, args.c)} for g in GAMMAS]
        plots = [] if args.no_plot else plot_speedups(args.c, reports_dir("ch07"))
        if not args.json:
            print_table(rows, title=f"alpha={args.alpha}, c={args.c} (formula of Leviathan et al. 2023)")
            print(f"Monte Carlo tokens/step at gamma={args.gamma}: {mc:.3f} (formula {p.tokens_per_step:.3f}); "
                  f"best gamma {p.best_gamma} -> speedup {p.best_speedup:.2f}x")
            for path in plots:
                print(f"plot: {path}")
        emit_json({"alpha": p.alpha, "gamma": p.gamma, "c": p.c, "tokens_per_step": p.tokens_per_step,
                   "tokens_per_step_monte_carlo": mc, "speedup": p.speedup, "best_gamma": p.best_gamma,
                   "best_speedup": p.best_speedup, "plots": [str(x) for x in plots],
                   "hardware": stamp_dict(dtype="n/a")})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
