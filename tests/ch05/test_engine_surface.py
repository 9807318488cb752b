"""The engine's public surface a server reads (book 5.6, 8.1): config, stats(), max_model_len, RequestRejected.

The scheduler and :class:`EngineConfig` import without torch (ch08 parses its flags before torch loads),
ch08's server flags are generated from :class:`EngineConfig`'s fields, and a request the engine can never
run is refused with the typed error before it takes any blocks.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from ch04_kvcache.model import LlamaModel
from ch05_scheduling.config import EngineConfig, served_fields
from ch05_scheduling.engine import LLMEngine, RequestRejected
from ch05_scheduling.sequence import SamplingParams
from common.errors import UsageError


@pytest.fixture
def tiny_model(tiny_hf_model) -> LlamaModel:
    return LlamaModel.from_pretrained(tiny_hf_model[1])


def test_scheduler_engine_config_and_server_config_import_without_torch():
    code = ("import sys, ch05_scheduling.scheduler, ch05_scheduling.config, ch08_production.config, "
            "ch08_production.server; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_every_served_engine_field_is_a_server_flag_with_its_default_and_env():
    from ch08_production.server import build_parser, config_from_args

    dests = {a.dest: a for a in build_parser()._actions}  # noqa: SLF001 - reading argparse's table
    defaults = EngineConfig()
    assert served_fields(), "EngineConfig serves no fields"
    for f in served_fields():
        assert f.name in dests, f"--{f.name.replace('_', '-')} is not a server flag"
        assert dests[f.name].default == getattr(defaults, f.name)
        assert dests[f.name].help.startswith("engine: ")
    cfg = config_from_args(["--max-num-seqs", "7", "--num-blocks", "99", "--no-cpu-prepack", "--policy", "sjf"])
    assert (cfg.engine.max_num_seqs, cfg.engine.num_blocks, cfg.engine.cpu_prepack, cfg.engine.policy) == \
        (7, 99, False, "sjf")


def test_a_new_engine_field_becomes_a_flag_without_touching_ch08(monkeypatch):
    """The seam: one field with help metadata in ch05 is all ch08 needs to serve it (flag, env, config)."""
    import ch08_production.server as server

    knob = dataclasses.field(default=3, metadata={"help": "a knob added for this test", "choices": None})
    extended = dataclasses.make_dataclass("ExtendedEngineConfig", [("test_knob", int, knob)], bases=(EngineConfig,))
    monkeypatch.setattr(server, "EngineConfig", extended)
    action = next(a for a in server.build_parser()._actions if a.dest == "test_knob")  # noqa: SLF001
    assert action.option_strings == ["--test-knob"] and action.default == 3 and action.type is int
    assert server.config_from_args(["--test-knob", "5"]).engine.test_knob == 5
    monkeypatch.setenv("LLMIC_TEST_KNOB", "9")
    assert server.config_from_args([]).engine.test_knob == 9


def test_bad_engine_flag_is_one_sentence():
    out = subprocess.run([sys.executable, "-m", "ch08_production.server", "--max-num-seqs", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "error: max_num_seqs must be an integer >= 1, got 0"


def test_engine_config_rejects_bad_values_with_usage_errors():
    with pytest.raises(UsageError, match="policy must be one of"):
        EngineConfig(policy="lottery")
    with pytest.raises(UsageError, match="num_blocks must be >= 1"):
        EngineConfig(num_blocks=0)


def test_requests_that_can_never_fit_raise_request_rejected_and_take_no_blocks(tiny_model):
    engine = LLMEngine(EngineConfig(block_size=4, num_blocks=8, max_num_seqs=4, max_model_len=64), model=tiny_model)
    assert engine.max_model_len == 32                   # 8 blocks x 4 tokens < the 64-token context
    cases = [([1] * 64, SamplingParams(max_tokens=1)),          # prompt past max_model_len
             ([1] * 4, SamplingParams(max_tokens=60)),          # more KV than the cache holds
             ([1] * 4, SamplingParams(n=5, max_tokens=2)),      # more choices than seats
             ([1] * 4, SamplingParams(n=4, max_tokens=24))]     # four choices' blocks do not fit
    for prompt, params in cases:
        with pytest.raises(RequestRejected):
            engine.add_request(prompt, params)
    assert isinstance(RequestRejected("x"), UsageError)
    assert not engine.has_unfinished() and engine.stats().num_used_blocks == 0
    # max_choices agrees with what add_request accepts
    n = engine.max_choices(4, 8)
    assert 1 <= n <= 4
    engine.add_request([1] * 4, SamplingParams(n=n, max_tokens=8, temperature=1.0, seed=1))
    with pytest.raises(RequestRejected):
        engine.add_request([1] * 4, SamplingParams(n=n + 1, max_tokens=8, temperature=1.0, seed=1))


def test_stats_reports_the_batch_blocks_and_prefix_cache_in_tokens(tiny_model):
    engine = LLMEngine(EngineConfig(block_size=4, num_blocks=64, max_num_seqs=1, enable_prefix_caching=True),
                       model=tiny_model)
    before = engine.stats()
    assert (before.num_running, before.num_waiting, before.num_used_blocks, before.num_total_blocks) == (0, 0, 0, 64)
    system = list(range(40, 56))                          # 16 tokens = 4 full blocks shared by both prompts
    engine.add_request(system + [5, 6], SamplingParams(max_tokens=3, ignore_eos=True))
    engine.add_request(system + [7, 8], SamplingParams(max_tokens=3, ignore_eos=True))
    engine.step()
    mid = engine.stats()
    assert mid.num_running == 1 and mid.num_waiting == 1 and mid.num_used_blocks > 0
    assert mid.kv_usage == pytest.approx(mid.num_used_blocks / 64)
    while engine.has_unfinished():
        engine.step()
    after = engine.stats()
    assert after.prefix_cache_hits == 16                  # the second request found the 4 shared blocks
    assert after.prefix_cache_queries >= 32 and after.prefix_cache_queries % 4 == 0
    assert after.num_used_blocks == 0 and after.num_structured_requests == 0
