"""ch06 gguf_llama_cpp: the GGUF writer keeps metadata and dequantizes every tensor exactly (F32) or re-quantizes
the matrices to llama.cpp's Q8_0 / Q4_0 (norms stay F32); with llama-cpp-python installed, llama.cpp's greedy
tokens on the embedded model's F32 file equal ours."""

from __future__ import annotations

import numpy as np
import pytest

from ch06_quantization.gguf_llama_cpp import llama_cpp_problem, write_gguf


def _tiny_q8_gguf(path):
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.quants import quantize

    rng = np.random.default_rng(0)
    w = GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_token_list(["<s>", "a", "b"])  # a string array, as a tokenizer stores it
    w.add_context_length(64)
    weight = rng.standard_normal((4, 64)).astype(np.float32)
    w.add_tensor("blk.0.attn_q.weight", quantize(weight, GGMLQuantizationType.Q8_0),  # (4, 68) bytes
                 raw_dtype=GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_f32_gguf_keeps_metadata_and_dequantized_tensors(tmp_path):
    from gguf import GGMLQuantizationType, GGUFReader, LlamaFileType
    from gguf.quants import dequantize

    src = GGUFReader(_tiny_q8_gguf(tmp_path / "q8.gguf"))
    out = GGUFReader(write_gguf(tmp_path / "q8.gguf", tmp_path / "f32.gguf"))
    assert not (tmp_path / "f32.gguf.partial").exists()
    assert out.fields["general.file_type"].contents() == LlamaFileType.ALL_F32
    for key in ("general.architecture", "llama.block_count", "llama.context_length", "tokenizer.ggml.tokens"):
        assert out.fields[key].contents() == src.fields[key].contents()
    for a, b in zip(src.tensors, out.tensors, strict=True):
        assert a.name == b.name and b.tensor_type == GGMLQuantizationType.F32
        np.testing.assert_array_equal(dequantize(b.data, b.tensor_type), dequantize(a.data, a.tensor_type))


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0"])
def test_quantized_gguf_requantizes_the_matrices_and_keeps_the_norms(tmp_path, kind):
    from gguf import GGMLQuantizationType, GGUFReader, LlamaFileType
    from gguf.quants import dequantize

    src = GGUFReader(_tiny_q8_gguf(tmp_path / "q8.gguf"))
    out = GGUFReader(write_gguf(tmp_path / "q8.gguf", tmp_path / f"{kind}.gguf", kind))
    qtype = GGMLQuantizationType[kind]
    assert out.fields["general.file_type"].contents() == LlamaFileType[f"MOSTLY_{kind}"]
    by_name = {t.name: t for t in out.tensors}
    assert by_name["blk.0.attn_q.weight"].tensor_type == qtype
    assert by_name["output_norm.weight"].tensor_type == GGMLQuantizationType.F32
    for a in src.tensors:
        want = dequantize(a.data, a.tensor_type)
        got = dequantize(by_name[a.name].data, by_name[a.name].tensor_type)
        bound = 0 if a.name.endswith("norm.weight") else np.abs(want).max() / (127 if kind == "Q8_0" else 7)
        assert got.shape == want.shape and np.abs(got - want).max() <= bound  # within one step of its block's scale


def test_unknown_kinds_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Q4_0"):
        write_gguf(tmp_path / "any.gguf", tmp_path / "out.gguf", "Q5_K")


@pytest.mark.slow
@pytest.mark.skipif(llama_cpp_problem() is not None, reason="llama-cpp-python is not installed (optional)")
def test_llama_cpp_greedy_tokens_equal_ours_on_the_embedded_model(embedded_llama_fp32):
    from ch04_kvcache.generate import generate
    from ch06_quantization.gguf_llama_cpp import gguf_path, llama_cpp_decode

    prompt = [1, 504, 3458, 282, 4649, 314, 2030, 47]
    ours = generate(embedded_llama_fp32, prompt, 12, cache="contiguous", eos_token_id=None).token_ids
    run = llama_cpp_decode(gguf_path("F32"), prompt, 12, threads=2)
    assert run.tokens == ours and run.decode_tok_s > 0


@pytest.fixture(scope="module")
def embedded_llama_fp32(embedded_model_dir):
    from ch04_kvcache.model import LlamaModel

    return LlamaModel.from_pretrained(embedded_model_dir).eval()


@pytest.mark.slow
@pytest.mark.skipif(llama_cpp_problem() is not None, reason="llama-cpp-python is not installed (optional)")
def test_llama_cpp_q4_0_row_reads_what_our_int4_model_reads():
    """kernel_bench's peer row: llama.cpp decodes our Q4_0 file, and the file's bytes per token are within 10% of
    our int4 g64 model's (blocks of 32 with an fp16 scale vs groups of 64 with a scale and a zero: 0.56 vs 0.55 B)."""
    from ch06_quantization.gguf_llama_cpp import llama_cpp_rows

    (row,) = llama_cpp_rows([1, 504, 3458, 282], 4, threads=2, repeats=1, kinds=("Q4_0",))
    assert row["weights"] == "llama.cpp Q4_0" and row["tok/s"] > 0 and len(row["tokens"]) == 4
    assert 0.9 * 73.7 < row["MB read / token"] < 1.1 * 73.7
