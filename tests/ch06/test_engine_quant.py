"""ch06 engine_quant: packed int8/int4 weights in ch05's engine, batched steps on the C++ kernels.

The engine's greedy tokens for a batch equal ``generate`` on the same packed model one prompt at a time
(every step on the kernel: a row's result does not depend on the rows beside it), the packed linears
really ran (their call count), and the benchmark's CLI prints its table and JSON keys. The tiny model runs
without ch04's C++ decode operator here: its random weights give near-tied logits, where the operator's
and SDPA's fp32 rounding may pick different tokens (that operator's agreement is tested on the real
model in tests/ch05/test_decode_kernel.py).
"""

from __future__ import annotations

import json

import pytest
import torch

from ch04_kvcache.generate import generate
from ch04_kvcache.model import LlamaModel
from ch06_quantization.cpu_gemv import gemv_problem
from ch06_quantization.cpu_qgemv import PackedLinear
from ch06_quantization.engine_quant import FORMATS, bench_prompts, engine_model, engine_tok_s

pytestmark = pytest.mark.skipif(gemv_problem() is not None, reason=f"no C++ toolchain: {gemv_problem()}")


@pytest.mark.parametrize("name", ["int8", "int4 g64"])
def test_engine_batch_equals_generate_alone_on_the_packed_model(tiny_hf_model, name):
    model = engine_model(LlamaModel.from_pretrained(tiny_hf_model[1]), FORMATS[name], batch_hint=4)
    model.decode_kernel = None
    packed = [m for m in model.modules() if isinstance(m, PackedLinear)]
    assert len(packed) == 2 * 7 + 1          # every linear of both blocks, and the LM head
    calls = []
    for m in packed:
        m.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].numel() // mod.in_features))
    prompts = bench_prompts(4, 12, model.config.vocab_size, seed=3)
    with torch.inference_mode():
        run = engine_tok_s(name, model, prompts, new_tokens=6, repeats=1)
        assert max(calls) >= 4                # batched steps: several rows per kernel call
        for p, got in zip(prompts, run.token_ids, strict=True):
            alone = generate(model, p, 6, cache="contiguous", eos_token_id=None).token_ids
            assert list(got) == alone
    assert run.output_tokens == 24 and run.decode_steps >= 4 and run.decode_tok_s > 0


def test_cli_smoke_prints_the_ratios(embedded_model_dir, capsys):
    from ch06_quantization.engine_quant import main

    assert main(["--smoke", "--batch", "4", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["benchmark"] == "ch06.engine_quant" and line["batch"] == 4
    assert set(line["engine_decode_tok_s"]) == set(FORMATS)
    assert all(v > 0 for v in line["engine_decode_tok_s"].values())
    ratio = line["engine_decode_tok_s"]["int4 g64"] / line["engine_decode_tok_s"]["fp32"]
    assert line["engine_int4_vs_fp32_tok_s"] == pytest.approx(ratio)
