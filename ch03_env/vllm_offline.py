"""vLLM quickstart, offline: batch generation with ``vllm.LLM`` and ``SamplingParams`` (book 3.3.3).

vLLM lives in ``.venv-vllm`` (``make vllm-env``). Run this module with that interpreter::

    .venv-vllm/bin/python -m ch03_env.vllm_offline --smoke
    .venv-vllm/bin/python -m ch03_env.vllm_offline --dtype bfloat16 --prompt "Name three primary colors."

Started from any other Python without vLLM, it re-runs itself under ``.venv-vllm/bin/python`` when that exists,
and otherwise says in one sentence how to get it. Prompts go through the model's chat template
(``LLM.chat``); decoding is greedy, so the embedded model answers the France prompt exactly as ``transformers``
does ("The capital of France is Paris."). Prints each answer, then one JSON line.

Several ``--model`` folders run one after another in the same process (with ``--dtype`` once for all, or once
per model), which saves a vLLM import and an engine-process start per model: that is how chapter 6 checks
four quantized checkpoints against vLLM-CPU in one run::

    .venv-vllm/bin/python -m ch03_env.vllm_offline --model ckpt/gptq --dtype bfloat16 --model ckpt/w8a8 \
        --dtype float32 --prompt "What is the capital of France?"
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

from ch03_env.vllm_server import VLLM_DTYPES, VLLMUnavailable, require_vllm_python
from common.chat import DEMO_PROMPTS
from common.cli import make_parser


def _rerun_under_vllm_python(argv: list[str]) -> int:
    try:
        py = require_vllm_python()
    except VLLMUnavailable as exc:
        print(f"error: vllm is not importable here and {exc}", file=sys.stderr)
        return 2
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1")
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run([str(py), "-m", "ch03_env.vllm_offline", *argv], env=env).returncode


def _generate(model: str, dtype: str, prompts: list[str], max_tokens: int, max_model_len: int) -> dict:
    """One engine: start it, answer ``prompts`` greedily through the chat template, shut it down."""
    from vllm import LLM, SamplingParams  # imported here: only .venv-vllm has it

    t0 = time.perf_counter()
    llm = LLM(model=model, dtype=dtype, enforce_eager=True, max_model_len=max_model_len, seed=0)
    load_s = time.perf_counter() - t0
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    conversations = [[{"role": "user", "content": p}] for p in prompts]
    t1 = time.perf_counter()
    outputs = llm.chat(conversations, params, use_tqdm=False)
    gen_s = time.perf_counter() - t1
    answers = [o.outputs[0].text for o in outputs]
    new_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    del llm, outputs
    _release_engine()
    return {"model": model, "dtype": dtype, "answers": answers, "new_tokens": new_tokens, "generate_s": gen_s,
            "startup_s": load_s, "tokens_per_s": new_tokens / gen_s}


def _release_engine() -> None:
    """Free the engine's memory and its process group so that the next ``LLM`` can start in this process."""
    from vllm.distributed import cleanup_dist_env_and_memory

    cleanup_dist_env_and_memory()


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m ch03_env.vllm_offline", __doc__)
    parser.add_argument("--model", action="append", default=None,
                        help="model folder or hub id, repeatable (default: the embedded model)")
    parser.add_argument("--prompt", action="append", default=None, help="a user message (repeatable)")
    parser.add_argument("--dtype", action="append", default=None, choices=VLLM_DTYPES,
                        help="float32 by default; once for all models or once per --model")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--kvcache-space-gib", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="the two demo prompts, 16 tokens")
    parser.add_argument("--json", action="store_true", help="print only the final JSON line")
    args = parser.parse_args(argv)
    dtypes = args.dtype or ["float32"]
    if args.model and len(dtypes) not in (1, len(args.model)):
        parser.error(f"give --dtype once or once per --model ({len(args.model)} models, {len(dtypes)} dtypes)")
    if importlib.util.find_spec("vllm") is None:
        return _rerun_under_vllm_python(list(sys.argv[1:] if argv is None else argv))

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(args.kvcache_space_gib))
    if args.model and len(args.model) > 1:  # one process for all engines: no engine process to spawn per model
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from common.models import ensure_model

    models = args.model or [str(ensure_model())]
    dtypes = dtypes * len(models) if len(dtypes) == 1 else dtypes
    prompts = args.prompt or list(DEMO_PROMPTS)
    max_tokens = 16 if args.smoke else args.max_tokens
    runs = [_generate(m, d, prompts, max_tokens, args.max_model_len) for m, d in zip(models, dtypes, strict=True)]
    if not args.json:
        for run in runs:
            print(f"== {run['model']} ({run['dtype']})")
            for p, a in zip(prompts, run["answers"], strict=True):
                print(f"> {p}\n{a}\n")
            print(f"{len(prompts)} prompts, {run['new_tokens']} new tokens in {run['generate_s']:.2f} s "
                  f"({run['tokens_per_s']:.1f} tok/s batched; engine start {run['startup_s']:.1f} s)")
    from common.bench import stamp_dict
    from common.report import emit_json

    first = runs[0]
    emit_json({"bench": "ch03_env.vllm_offline", "prompts": prompts, "answers": first["answers"],
               "new_tokens": first["new_tokens"], "generate_s": first["generate_s"], "startup_s": first["startup_s"],
               "tokens_per_s": first["tokens_per_s"], "runs": runs,
               "hardware": stamp_dict(dtype=first["dtype"], engine="vllm")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
