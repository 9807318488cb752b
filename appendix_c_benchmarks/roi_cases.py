"""C.5 (and 1.2-1.3): the book's five ROI cases as calculators, fed with this repository's measured ratios.

Each case's scenario inputs (monthly spend, volumes) are the book's, labelled as such. The ratio that
turns "before" into "after" is read from what appendix C measured on your machine (results.json); where
that benchmark did not run, the basis column says "not measured" and which command measures it, and
never passes the book's claim off as a result. A benchmark that ran but lacks the figure is an error
(:class:`MissingMeasurement`), not a silent fallback. Prices are assumptions and say so.

    python -m appendix_c_benchmarks.roi_cases                       # the book's defaults
    python -m appendix_c_benchmarks.roi_cases --results reports/<hw>/results.json
    python -m appendix_c_benchmarks.roi_cases --case toast --set monthly_conversations=200000
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.cli import make_parser
from common.report import emit_json, print_table


@dataclass(frozen=True)
class CaseResult:
    case: str
    book_claim: str  # what the book says, labelled as a claim
    inputs: dict[str, float]
    monthly_cost_before: float
    monthly_cost_after: float
    measured_basis: str  # which measured ratio drove "after", or "not measured: ..." and what would measure it
    measured_effect: str = ""  # the measured counterpart of the book's claim, where it is not a cost

    @property
    def monthly_saving(self) -> float:
        return self.monthly_cost_before - self.monthly_cost_after

    @property
    def saving_pct(self) -> float:
        return 100.0 * self.monthly_saving / self.monthly_cost_before if self.monthly_cost_before else 0.0


class MissingMeasurement(KeyError):
    """A benchmark ran and succeeded but lacks a figure a case reads (renamed or dropped key)."""


# Every measured figure a case reads: (benchmark key in results.json, field of its JSON line).
MEASURED_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "toast": (("ch05_scheduling", "engine_tok_s"),),
    "writing": (("ch05_rate_slo", "continuous_vs_static_rate_at_slo"),
                ("ch05_rate_slo", "ttft_p90_reduction_pct")),
    "codegen": (("ch06_quantization", "methods"),),
    "moe": (("ch09_advanced", "mixtral_params_b"), ("ch09_advanced", "mixtral_active_params_b")),
    "saas": (("ch08_autoscale", "peak_provisioned_idle_share"),),
}


def _data(results: dict[str, Any], bench: str) -> dict[str, Any] | None:
    """The benchmark's JSON line, or None when it did not run or did not succeed (so: not measured)."""
    entry = results.get(bench)
    if not isinstance(entry, dict) or entry.get("status", "ok") != "ok":
        return None
    data = entry.get("data")
    return data if isinstance(data, dict) and data else None


def _get(results: dict[str, Any], bench: str, key: str) -> Any:
    """A measured figure; None when ``bench`` did not run; :class:`MissingMeasurement` when it ran without it."""
    data = _data(results, bench)
    if data is None:
        return None
    if data.get(key) is None:
        raise MissingMeasurement(f"{bench} ran but its results have no {key!r}: the key was renamed or dropped")
    return data[key]


def _number(results: dict[str, Any], bench: str, key: str) -> float | None:
    value = _get(results, bench, key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MissingMeasurement(f"{bench}.{key} is {value!r}, not a number")
    return float(value)


def _measured_on_gpu(results: dict[str, Any], bench: str) -> bool:
    data = _data(results, bench) or {}
    return bool((data.get("hardware") or {}).get("gpu"))


ASSUMED_GPU_DOLLARS_PER_HOUR = 2.0   # assumption: one datacenter GPU on demand; override with --set
ASSUMED_CPU_DOLLARS_PER_HOUR = 0.10  # assumption: a 2-vCPU cloud VM like the machine the reference ran on


def toast_support_agent(results: dict[str, Any], monthly_conversations: float = 100_000,
                        human_cost_per_conversation: float = 5.0, tokens_per_conversation: float = 3_000,
                        machine_dollars_per_hour: float | None = None,
                        tokens_per_s: float | None = None) -> CaseResult:
    """1.1 / C.5.1: AI customer-service agent vs people. Book's claim: about 100x ROI.

    The serving cost is priced at the hourly rate of **the machine that measured the throughput** (a CPU's
    tok/s at a GPU's price would be neither machine's cost).
    """
    measured = None if tokens_per_s is not None else _number(results, "ch05_scheduling", "engine_tok_s")
    on_gpu = _measured_on_gpu(results, "ch05_scheduling") if measured else True
    if machine_dollars_per_hour is None:
        machine_dollars_per_hour = ASSUMED_GPU_DOLLARS_PER_HOUR if on_gpu else ASSUMED_CPU_DOLLARS_PER_HOUR
        price = f"${machine_dollars_per_hour:.2f}/h assumed for {'a GPU' if on_gpu else 'this CPU'}"
    else:
        price = f"${machine_dollars_per_hour:.2f}/h given"
    if measured:
        tokens_per_s = measured
        basis = f"engine_tok_s measured here ({measured:.0f} tok/s on {'a GPU' if on_gpu else 'a CPU'}), {price}"
    elif tokens_per_s is not None:
        basis = f"tokens_per_s given ({tokens_per_s:.0f}), {price}"
    else:
        tokens_per_s = 1_000.0
        basis = f"not measured (run make bench): assumed 1,000 tok/s, {price}"
    ai_cost = monthly_conversations * tokens_per_conversation / tokens_per_s / 3600 * machine_dollars_per_hour
    human = monthly_conversations * human_cost_per_conversation
    return CaseResult("C.5.1 AI support agent (Toast)", "about 100x ROI (book's claim)",
                      {"monthly_conversations": monthly_conversations,
                       "human_cost_per_conversation": human_cost_per_conversation,
                       "tokens_per_conversation": tokens_per_conversation,
                       "machine_dollars_per_hour": machine_dollars_per_hour, "tokens_per_s": tokens_per_s},
                      human, ai_cost, basis,
                      f"people cost {human / ai_cost:,.0f}x the serving bill under these inputs" if ai_cost else "")


def writing_assistant_scheduling(results: dict[str, Any], monthly_gpu_spend: float = 20_000.0,
                                 capacity_gain: float | None = None) -> CaseResult:
    """C.5.2: scheduling (continuous batching). Book's claim: latency down 60%.

    The claim is about latency, so the latency it measures is reported as such (p90 TTFT at the highest
    rate static batching sustains). The cost follows from capacity: at the same latency target continuous
    batching sustains ``continuous_vs_static_rate_at_slo`` times the request rate, so the same traffic needs
    that many times fewer machines. Neither is converted into the other.
    """
    rate_gain = _number(results, "ch05_rate_slo", "continuous_vs_static_rate_at_slo")
    ttft_cut = _number(results, "ch05_rate_slo", "ttft_p90_reduction_pct")
    effect = (f"p90 TTFT -{ttft_cut:.0f}% at static's highest sustainable rate (measured here)"
              if ttft_cut is not None else "latency not measured (python -m ch05_scheduling.rate_at_slo)")
    if capacity_gain is not None:
        basis = f"capacity_gain given ({capacity_gain:.2f}x)"
    elif rate_gain:
        capacity_gain, basis = rate_gain, f"continuous_vs_static_rate_at_slo measured here ({rate_gain:.2f}x)"
    else:
        capacity_gain = 1.0
        basis = "not measured (python -m ch05_scheduling.rate_at_slo): cost left unchanged"
    return CaseResult("C.5.2 AI writing assistant (scheduling)", "latency -60% (book's claim)",
                      {"monthly_gpu_spend": monthly_gpu_spend, "capacity_gain": capacity_gain},
                      monthly_gpu_spend, monthly_gpu_spend / capacity_gain, basis, effect)


GPTQ_METHOD = "int4 g64 GPTQ"  # the row name ch06_quantization.compare writes


def code_generation_quantization(results: dict[str, Any], monthly_gpu_spend: float = 40_000.0,
                                 weight_bytes_ratio: float | None = None) -> CaseResult:
    """C.5.3: 4-bit weights need a quarter of the memory. Book's claim: GPU cost -75%."""
    methods = _get(results, "ch06_quantization", "methods")
    if weight_bytes_ratio is not None:
        basis = f"weight_bytes_ratio given ({weight_bytes_ratio:.2f})"
    elif methods is not None:
        try:
            fp16 = float(methods["bf16"]["weight_bytes"])
            q4 = float(methods[GPTQ_METHOD]["weight_bytes"])
        except (KeyError, TypeError) as exc:
            raise MissingMeasurement(f"ch06_quantization.methods lacks {exc} (bf16 and {GPTQ_METHOD!r} rows "
                                     "with weight_bytes)") from None
        weight_bytes_ratio, basis = q4 / fp16, f"{GPTQ_METHOD} bytes / bf16 bytes measured here ({q4 / fp16:.2f})"
    else:
        weight_bytes_ratio = 0.25
        basis = "not measured (run make bench): the book's arithmetic, 4 bits / 16 bits = 0.25"
    # Memory-bound serving: GPUs needed scale with the bytes that must sit in memory (first order).
    return CaseResult("C.5.3 code generation (quantization)", "GPU cost -75% (book's claim)",
                      {"monthly_gpu_spend": monthly_gpu_spend, "weight_bytes_ratio": weight_bytes_ratio},
                      monthly_gpu_spend, monthly_gpu_spend * weight_bytes_ratio, basis)


def multimodal_search_moe(results: dict[str, Any], monthly_gpu_spend: float = 30_000.0,
                          active_fraction: float | None = None) -> CaseResult:
    """C.5.4: an MoE model computes with its active experts only. Book's claim: cost -40%.

    First order, compute-bound serving: the cost per token follows the active share of the parameters
    (Mixtral-8x7B from ch09: about 12.9B of 46.7B). Its memory still holds every expert, so a deployment
    bound by memory capacity saves less; the basis says which share was used.
    """
    total = _number(results, "ch09_advanced", "mixtral_params_b")
    active = _number(results, "ch09_advanced", "mixtral_active_params_b")
    if total is None or active is None:  # a count from the config, not a timing: no benchmark run needed
        from ch09_advanced.moe import mixtral_numbers
        numbers = mixtral_numbers()
        total, active = numbers["mixtral_params_b"], numbers["mixtral_active_params_b"]
    if active_fraction is not None:
        basis = f"active_fraction given ({active_fraction:.2f})"
    else:
        active_fraction = active / total
        basis = (f"Mixtral active / total parameters from its config ({active:.1f}B / {total:.1f}B = "
                 f"{active_fraction:.2f}); compute-bound first order, memory still holds all {total:.0f}B")
    return CaseResult("C.5.4 multimodal search (MoE)", "inference cost -40% (book's claim)",
                      {"monthly_gpu_spend": monthly_gpu_spend, "active_fraction": active_fraction},
                      monthly_gpu_spend, monthly_gpu_spend * active_fraction, basis)


def saas_cost_monitoring(results: dict[str, Any], monthly_gpu_spend: float = 60_000.0,
                         idle_fraction_found: float | None = None) -> CaseResult:
    """C.5.5: monitoring finds idle or over-provisioned GPUs. Book's claim: $15,000 saved per month.

    The idle share comes from ch08's autoscale sizing: a fleet sized for the peak of its loads, with each
    load lasting an equal share of the day, next to one right-sized for each load under the same TTFT SLO.
    """
    measured = _number(results, "ch08_autoscale", "peak_provisioned_idle_share")
    if idle_fraction_found is not None:
        basis = f"idle_fraction_found given ({idle_fraction_found:.2f})"
    elif measured is not None:
        idle_fraction_found = measured
        cost_model = (_data(results, "ch08_autoscale") or {}).get("cost_model", "?")
        basis = (f"peak_provisioned_idle_share from ch08 autoscale ({measured:.2f}: replicas per load from the "
                 f"ch05 simulator, cost model {cost_model}, loads equally long)")
    else:
        idle_fraction_found = 0.0
        basis = "not measured (python -m ch08_production.autoscale): no saving assumed"
    return CaseResult("C.5.5 SaaS platform (cost monitoring)", "$15,000/month saved (book's claim)",
                      {"monthly_gpu_spend": monthly_gpu_spend, "idle_fraction_found": idle_fraction_found},
                      monthly_gpu_spend, monthly_gpu_spend * (1 - idle_fraction_found), basis)


CASES: dict[str, Callable[..., CaseResult]] = {
    "toast": toast_support_agent,
    "writing": writing_assistant_scheduling,
    "codegen": code_generation_quantization,
    "moe": multimodal_search_moe,
    "saas": saas_cost_monitoring,
}


def all_cases(results: dict[str, Any]) -> list[CaseResult]:
    """Every case on ``results``; raises :class:`MissingMeasurement` if a benchmark that ran lacks a figure."""
    return [fn(results) for fn in CASES.values()]


def missing_measurements(results: dict[str, Any]) -> list[str]:
    """``bench.key`` for every figure the cases read that ``results`` does not hold (empty: all measured)."""
    out = []
    for pairs in MEASURED_KEYS.values():
        for bench, key in pairs:
            data = _data(results, bench)
            if data is None or data.get(key) is None:
                out.append(f"{bench}.{key}")
    return out


def load_results(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        return json.loads(path.read_text()).get("benchmarks", {})
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m appendix_c_benchmarks.roi_cases", __doc__)
    parser.add_argument("--results", type=Path, default=None, help="results.json from `make bench`")
    parser.add_argument("--case", choices=sorted(CASES), default=None, help="one case only")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override an input of the chosen --case (see its inputs in the JSON line)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    results = load_results(args.results)
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            overrides[name.strip()] = float(value)
        except ValueError:
            parser.error(f"--set expects NAME=NUMBER, got {item!r}")
    if overrides and not args.case:
        parser.error("--set needs --case (inputs differ between cases)")
    try:
        cases = [CASES[args.case](results, **overrides)] if args.case else all_cases(results)
    except MissingMeasurement as exc:
        parser.error(f"{args.results}: {exc.args[0]}")
    except TypeError:
        fn = CASES[args.case]
        names = [p for p in fn.__code__.co_varnames[1:fn.__code__.co_argcount]]
        parser.error(f"case {args.case!r} has inputs {', '.join(names)}")
    if not args.json:
        print_table([{"case": c.case, "before $/mo": c.monthly_cost_before, "after $/mo": c.monthly_cost_after,
                      "saving %": c.saving_pct, "book": c.book_claim, "measured": c.measured_effect,
                      "basis": c.measured_basis}
                     for c in cases], floatfmt=",.0f")
    emit_json({"cases": [dict(asdict(c), monthly_saving=c.monthly_saving, saving_pct=c.saving_pct)
                         for c in cases]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
