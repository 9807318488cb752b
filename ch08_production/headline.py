"""Chapter 8's line in the guided tour (``make demo``): what the serving layer costs, measured now.

Runs ``python -m ch08_production.bench`` in a fresh process (so ``OMP_WAIT_POLICY=PASSIVE`` applies,
see :mod:`ch08_production.omp`) and turns its JSON line into one sentence.

    python -m ch08_production.headline [--smoke]
"""

from __future__ import annotations

import os
import subprocess
import sys

from common.report import Headline, parse_json_line


def headline(smoke: bool = False) -> Headline:
    args = ["--smoke"] if smoke else ["--num-requests", "16", "--concurrency", "8", "--max-output-len", "32",
                                      "--no-vllm"]
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    proc = subprocess.run([sys.executable, "-m", "ch08_production.bench", "--json", *args], capture_output=True,
                          text=True, env=env, timeout=900)
    if proc.returncode not in (0, 1):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Headline("ch08", f"the server benchmark did not run here ({tail})", {})
    fig = parse_json_line(proc.stdout)
    n, c = fig["config"]["num_requests"], fig["config"]["concurrency"]
    over = fig["server_overhead_pct"]
    versus = (f"{over:.0f}% below calling the engine directly" if over >= 0 else
              f"{-over:.0f}% above calling the engine directly (run-to-run spread exceeds the serving cost)")
    text = (f"Our OpenAI-compatible server streamed {fig['server_tok_s']:.1f} tok/s from ch05's engine "
            f"({fig['engine_direct_tok_s']:.1f} in-process), {versus} "
            f"({n} ShareGPT requests, {c} concurrent, {fig['errors']} errors).")
    return Headline("ch08", text, fig)


def main(argv: list[str] | None = None) -> int:
    from common.cli import make_parser

    parser = make_parser("python -m ch08_production.headline", __doc__)
    parser.add_argument("--smoke", action="store_true", help="4 requests of 16 tokens")
    args = parser.parse_args(argv)
    print(headline(args.smoke).text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
