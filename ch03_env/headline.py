"""Chapter 3's line in the guided tour (``make demo``): is this machine ready, and does inference work?

Measured in the call: the doctor's verdict (OK / WARN / FAIL counts), whether vLLM is installed (here or in
``.venv-vllm``), and, unless ``smoke``, one greedy answer from ``transformers`` with its decode speed.
Starting vLLM itself takes minutes on a small CPU, so the tour only checks its install; ``python -m
ch03_env.bench --start-vllm`` measures it.

    python -m ch03_env.headline [--smoke]
"""

from __future__ import annotations

from common.report import Headline


def headline(smoke: bool = False) -> Headline:
    from ch03_env.doctor import FAIL, OK, WARN, run_checks

    checks = run_checks()
    counts = {s: sum(c.status == s for c in checks) for s in (OK, WARN, FAIL)}
    vllm = next(c for c in checks if c.name == "vllm")
    figures: dict = {"doctor_ok": counts[OK], "doctor_warn": counts[WARN], "doctor_fail": counts[FAIL],
                     "vllm": vllm.detail if vllm.status == OK else None}
    text = (f"Doctor: {counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL"
            f" ({', '.join(c.name for c in checks if c.status == WARN) or 'no warnings'} warned); "
            f"vLLM: {vllm.detail if vllm.status == OK else 'not installed (make vllm-env)'}")
    if not smoke:
        from ch03_env.backends import GenerationRequest, TransformersBackend
        from common.chat import FRANCE_PROMPT

        backend = TransformersBackend()
        backend.generate([GenerationRequest(FRANCE_PROMPT, 4)])  # warm-up
        res = backend.generate([GenerationRequest(FRANCE_PROMPT, 16)])[0]
        figures.update(answer=res.text, new_tokens=res.completion_tokens, seconds=res.seconds,
                       tokens_per_s=res.completion_tokens / res.seconds)
        text += (f"; transformers answered {res.text.strip()!r} in {res.seconds:.2f} s "
                 f"({figures['tokens_per_s']:.1f} tok/s, fp32, batch 1)")
    return Headline("ch03", text, figures)


def main(argv: list[str] | None = None) -> int:
    from common.cli import headline_main

    return headline_main("python -m ch03_env.headline", __doc__, headline, "doctor and vLLM check only, no generation", argv)


if __name__ == "__main__":
    raise SystemExit(main())
