"""The engine backend on quantized weights (book 8.x with ch06): ``--quantization int8|int4`` quantizes at load,
and a GPTQ checkpoint written by ch06 is detected and served; both run ch06's packed C++ kernels inside
ch05's engine, and the server's greedy text is what that engine gives for the same model."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("ch05_scheduling.engine", reason="ch05's engine is not available")

from ch05_scheduling.config import EngineConfig  # noqa: E402
from ch05_scheduling.engine import LLMEngine  # noqa: E402
from ch05_scheduling.sequence import SamplingParams  # noqa: E402
from ch06_quantization.cpu_gemv import gemv_problem  # noqa: E402
from ch06_quantization.cpu_qgemv import PackedLinear  # noqa: E402
from ch06_quantization.engine_quant import load_engine_model  # noqa: E402

pytestmark = pytest.mark.skipif(gemv_problem() is not None, reason=f"no C++ toolchain: {gemv_problem()}")
PROMPT = "The capital of France is"


def _served_text(serve, backend) -> str:
    srv = serve(backend)
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", "prompt": PROMPT, "max_tokens": 8,
                                                      "temperature": 0, "ignore_eos": True}, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def _engine_text(model_spec: str, quantization: str | None, tokenizer) -> str:
    model = load_engine_model(model_spec, quantization, batch_hint=4)
    engine = LLMEngine(EngineConfig(num_blocks=64, max_num_seqs=4, max_model_len=256), model=model,
                       tokenizer=tokenizer)
    ids = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    return engine.generate([ids], SamplingParams(max_tokens=8, ignore_eos=True))[0].text


def test_quantization_flag_serves_packed_int4(serve, tiny_model_dir):
    from ch08_production.backends.engine import EngineBackend

    backend = EngineBackend(str(tiny_model_dir), "tiny", max_num_seqs=4, kv_cache_mib=4, quantization="int4")
    text = _served_text(serve, backend)
    assert backend.weights == "int4"
    assert sum(isinstance(m, PackedLinear) for m in backend.engine.model.modules()) == 2 * 7 + 1
    assert text == _engine_text(str(tiny_model_dir), "int4", backend.tokenizer)


def test_a_gptq_checkpoint_is_detected_and_served_on_the_packed_kernels(serve, tiny_model_dir, tmp_path):
    from ch04_kvcache.model import LlamaModel
    from ch06_quantization.checkpoints import save_quantized
    from ch06_quantization.rtn import QuantSpec, quantize_model_rtn
    from ch08_production.backends.engine import EngineBackend

    model = quantize_model_rtn(LlamaModel.from_pretrained(str(tiny_model_dir)), QuantSpec(4, "group", 64, True))
    folder = save_quantized(model, tmp_path / "gptq", "gptq", source=str(tiny_model_dir))
    backend = EngineBackend(str(folder), "tiny", max_num_seqs=4, kv_cache_mib=4)
    text = _served_text(serve, backend)
    assert backend.weights == "gptq"
    assert sum(isinstance(m, PackedLinear) for m in backend.engine.model.modules()) == 2 * 7
    assert text == _engine_text(str(folder), None, backend.tokenizer)
    with pytest.raises(ValueError, match="already a gptq checkpoint"):
        load_engine_model(str(folder), "int8")


def test_quantization_is_a_server_flag_for_the_engine_backend_only():
    from ch08_production.backends import make_backend
    from ch08_production.server import config_from_args

    assert config_from_args(["--quantization", "int8"]).quantization == "int8"
    with pytest.raises(SystemExit):
        config_from_args(["--quantization", "int3"])
    with pytest.raises(ValueError, match="inside the engine backend"):
        make_backend("transformers", "smollm2-135m", quantization="int4")
