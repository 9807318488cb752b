"""6.7.3 measured: at one memory budget, quantized weights leave more KV blocks and the engine runs more
sequences at once (tiny model; the embedded-model figures come from the module's CLI)."""

from __future__ import annotations

import pytest

from ch05_scheduling.workload import TraceRequest
from ch06_quantization.evaluate import weight_bytes
from ch06_quantization.qa_scheduling import MiB, quantized, run_at_budget
from ch06_quantization.rtn import QuantSpec
from common.cli import UsageError


def _trace(n: int = 6, prompt: int = 100, out: int = 4) -> list[TraceRequest]:
    return [TraceRequest(i, 0.0, tuple((7 * i + j) % 250 + 3 for j in range(prompt)), out) for i in range(n)]


def test_smaller_weights_buy_kv_blocks_and_a_larger_batch(tiny_model):
    per_block = int(tiny_model.config.kv_bytes_per_token(4)) * 16
    budget = (weight_bytes(tiny_model) + 36 * per_block) / MiB  # fp32: 36 blocks = 5 sequences of 7 blocks
    trace = _trace()
    fp32 = run_at_budget("fp32", tiny_model, None, trace, budget)
    int8 = run_at_budget("int8", quantized(tiny_model, QuantSpec(8, "channel")), None, trace, budget)
    assert fp32.kv_blocks == 36
    saved = weight_bytes(tiny_model) - weight_bytes(quantized(tiny_model, QuantSpec(8, "channel")))
    assert int8.kv_blocks == 36 + saved // per_block > 36
    # six 7-block sequences need 42 blocks: the fp32 pool runs out and preempts, the int8 pool does not
    assert fp32.preemptions > 0 and int8.preemptions == 0
    assert int8.max_running_seqs == 6
    for row in (fp32, int8):
        assert row.output_tokens == 6 * 4 and row.tok_s > 0


def test_a_budget_below_the_weights_is_refused_with_what_to_do(tiny_model):
    with pytest.raises(UsageError, match="raise --budget-mib"):
        run_at_budget("fp32", tiny_model, None, _trace(1), weight_bytes(tiny_model) / MiB)
