"""Chapter 9's view of ch04's C++ paged decode operator: same object, and an engine using it keeps its tokens.

The operator's own equivalence tests (against ch04's naive reference) live in tests/ch04/test_cpp_paged_decode.py.
"""

from __future__ import annotations

import pytest

from common.cpp_ext import cpp_toolchain_problem

pytestmark = pytest.mark.skipif(cpp_toolchain_problem() is not None, reason="cannot build the C++ extension here")


def test_chapter_9_teaches_the_chapter_4_operator():
    import ch04_kvcache.paged_decode_cpu as ch04
    import ch09_advanced.paged_decode_bench as ch09

    assert ch09.kernel is ch04.kernel and ch09.random_case is ch04.random_case


def test_compare_reports_a_matching_kernel():
    from ch09_advanced.paged_decode_bench import compare

    row = compare(3, 40, repeats=1)
    assert row["max abs diff"] < 1e-4 and row["kernel ms"] > 0


def test_engine_with_the_kernel_gives_the_same_greedy_tokens(tiny_hf_model):
    from ch04_kvcache.model import LlamaModel
    from ch05_scheduling.engine import EngineConfig, LLMEngine
    from ch05_scheduling.sequence import SamplingParams
    from ch09_advanced.paged_decode_bench import install

    prompts = [[5, 9, 17, 3, 44], [7] * 3, list(range(20, 61))]
    params = [SamplingParams(max_tokens=n, ignore_eos=True) for n in (9, 14, 6)]
    model = LlamaModel.from_pretrained(tiny_hf_model[1])
    plain = LLMEngine(EngineConfig(block_size=4, num_blocks=64), model=model)
    assert plain.decode_kernel_name == "torch"  # a model passed in stays as given
    plain_out = plain.generate(prompts, params)
    engine = LLMEngine(EngineConfig(block_size=4, num_blocks=64), model=model)
    install(engine)
    try:
        fast = engine.generate(prompts, params)
    finally:
        model.decode_kernel = None
    assert [o.token_ids for o in fast] == [o.token_ids for o in plain_out]
