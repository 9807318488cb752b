"""Offline vLLM-CPU on a token-id workload: the peer our engine is measured against (5.4, 5.6).

Book sections: 5.4 vLLM的调度器实现, 5.6.1 vLLM调度参数调优.

Runs inside ``.venv-vllm`` (``make vllm-env``); ``bench.py`` and ``tune.py`` call :func:`run_vllm`, which
writes the workload to a JSON file and starts this module under that interpreter::

    .venv-vllm/bin/python -m ch05_scheduling.vllm_bench SPEC.json OUT.json

The spec holds prompt token ids, output lengths and engine knobs (``max_num_seqs``,
``max_num_batched_tokens``, ``enable_chunked_prefill``, ``enable_prefix_caching``, ``scheduling_policy``,
dtype). Decoding is greedy with ``ignore_eos`` so every request yields exactly its output length, eager
mode (no graph capture), the same dtype as our engine. The result holds the wall time of ``LLM.generate``
(after a short warm-up), the tokens, and the settings vLLM actually used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.paths import REPO_ROOT

VLLM_PY = REPO_ROOT / ".venv-vllm" / "bin" / "python"


def has_vllm() -> bool:
    return VLLM_PY.exists()


def run_vllm(spec: dict, timeout_s: float = 1800) -> dict:
    """Run the spec under ``.venv-vllm``; raises RuntimeError with vLLM's last words on failure."""
    if not has_vllm():
        raise RuntimeError("no .venv-vllm: run 'make vllm-env' to compare with vLLM-CPU")
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1", PYTHONPATH=str(REPO_ROOT),
                   VLLM_CPU_KVCACHE_SPACE=str(spec.get("kvcache_space_gib", 1)))
        if spec.get("threads"):  # same core count as our engine: vLLM-CPU binds its OpenMP threads to cores
            env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{int(spec['threads']) - 1}"
        env.pop("VIRTUAL_ENV", None)
        proc = subprocess.run([str(VLLM_PY), "-m", "ch05_scheduling.vllm_bench", str(spec_path), str(out_path)],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0 or not out_path.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError("vLLM run failed: " + " | ".join(tail))
        return json.loads(out_path.read_text())


def _run(spec: dict) -> dict:
    from vllm import LLM, SamplingParams  # only .venv-vllm has it
    from vllm.inputs import TokensPrompt

    kw = {k: spec[k] for k in ("max_num_seqs", "max_num_batched_tokens", "enable_chunked_prefill",
                                "enable_prefix_caching", "scheduling_policy") if spec.get(k) is not None}
    llm = LLM(model=spec["model"], dtype=spec.get("dtype", "float32"), enforce_eager=True, seed=0,
              max_model_len=spec.get("max_model_len", 2048), **kw)
    prompts = [TokensPrompt(prompt_token_ids=p) for p in spec["prompts"]]
    params = [SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True) for n in spec["output_lens"]]
    llm.generate(prompts[:1], [SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True)], use_tqdm=False)
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - t0
    sched = llm.llm_engine.vllm_config.scheduler_config
    cache = llm.llm_engine.vllm_config.cache_config
    return {"wall_s": wall, "output_tokens": sum(len(o.outputs[0].token_ids) for o in outs),
            "token_ids": [list(o.outputs[0].token_ids) for o in outs],
            "settings": {"max_num_seqs": sched.max_num_seqs, "max_num_batched_tokens": sched.max_num_batched_tokens,
                         "enable_chunked_prefill": getattr(sched, "enable_chunked_prefill", None),
                         "enable_prefix_caching": cache.enable_prefix_caching,
                         "scheduling_policy": str(getattr(sched, "policy", "fcfs")),
                         "block_size": cache.block_size, "dtype": spec.get("dtype", "float32")}}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args and args[0] in ("-h", "--help") else 2
    spec = json.loads(Path(args[0]).read_text())
    Path(args[1]).write_text(json.dumps(_run(spec)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
