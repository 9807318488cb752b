"""EngineConfig.decode_kernel: ch04's C++ paged decode operator gives the torch path's greedy tokens, is used
only on models the engine loads itself, and a missing toolchain is one clear sentence."""

from __future__ import annotations

import pytest

from ch05_scheduling.engine import EngineConfig, LLMEngine
from ch05_scheduling.sequence import SamplingParams
from common.cli import UsageError
from common.cpp_ext import cpp_toolchain_problem

needs_toolchain = pytest.mark.skipif(cpp_toolchain_problem() is not None,
                                     reason=f"cannot build C++ extensions here: {cpp_toolchain_problem()}")


@needs_toolchain
def test_cpp_and_torch_decode_give_identical_greedy_tokens_on_sharegpt(embedded_model_dir, embedded_tokenizer):
    from ch04_kvcache.paged_decode_cpu import kernel
    from ch05_scheduling.workload import sharegpt_trace

    trace = sharegpt_trace(embedded_tokenizer, 3, seed=0, max_output=16, max_prompt=96)
    prompts = [list(r.prompt_token_ids) for r in trace]
    params = [SamplingParams(max_tokens=r.output_len, ignore_eos=True) for r in trace]
    tokens = {}
    for choice in ("cpp", "torch"):
        engine = LLMEngine(EngineConfig(model=str(embedded_model_dir), num_blocks=64, max_num_seqs=3,
                                        decode_kernel=choice))  # the engine loads the model itself
        assert engine.decode_kernel_name == choice
        assert engine.model.decode_kernel is (kernel if choice == "cpp" else None)
        tokens[choice] = [o.token_ids for o in engine.generate(prompts, params)]
    assert tokens["cpp"] == tokens["torch"]
    assert sum(len(t) for t in tokens["cpp"]) == sum(r.output_len for r in trace)


def test_auto_uses_the_operator_exactly_when_it_can_be_built(tiny_hf_model, embedded_tokenizer):
    _, folder = tiny_hf_model
    engine = LLMEngine(EngineConfig(model=str(folder), num_blocks=32), tokenizer=embedded_tokenizer)
    assert engine.decode_kernel_name == ("cpp" if cpp_toolchain_problem() is None else "torch")


def test_a_model_passed_in_keeps_its_decode_path(tiny_hf_model):
    from ch04_kvcache.model import LlamaModel

    given = LlamaModel.from_pretrained(tiny_hf_model[1])
    engine = LLMEngine(EngineConfig(num_blocks=32, decode_kernel="cpp"), model=given)
    assert given.decode_kernel is None and engine.decode_kernel_name == "torch"


def test_cpp_without_a_toolchain_is_one_clear_sentence(monkeypatch, tiny_hf_model):
    from common import cpp_ext

    monkeypatch.setattr(cpp_ext, "cpp_toolchain_problem", lambda: "no C++ compiler (c++) on PATH: install g++")
    with pytest.raises(UsageError, match=r"decode_kernel='cpp' is unavailable: .*install g\+\+") as err:
        LLMEngine(EngineConfig(model=str(tiny_hf_model[1]), num_blocks=32, decode_kernel="cpp"))
    assert "\n" not in str(err.value)
    auto = LLMEngine(EngineConfig(model=str(tiny_hf_model[1]), num_blocks=32, load_format="dummy"))
    assert auto.decode_kernel_name == "torch"  # auto falls back quietly


def test_unknown_decode_kernel_is_a_usage_error():
    with pytest.raises(UsageError, match="decode_kernel must be one of auto, cpp, torch"):
        EngineConfig(decode_kernel="triton")


def test_the_server_offers_the_same_choices():
    from ch05_scheduling.config import DECODE_KERNELS
    from ch08_production.server import build_parser, config_from_args

    action = next(a for a in build_parser()._actions if a.dest == "decode_kernel")  # noqa: SLF001
    assert tuple(action.choices) == DECODE_KERNELS
    assert config_from_args(["--decode-kernel", "torch"]).engine.decode_kernel == "torch"
