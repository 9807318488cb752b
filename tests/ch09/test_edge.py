"""ONNX export of the ch04 model runs in onnxruntime with the same logits (fp32)."""

import pytest
import torch

from ch09_advanced import edge


@pytest.mark.slow
@pytest.mark.skipif(not edge.HAS_ORT, reason="onnx/onnxruntime not installed (pip install -e '.[edge]')")
def test_onnx_fp32_matches_torch_and_int8_is_smaller(tiny_hf_model, tmp_path):
    import onnxruntime as ort

    from ch04_kvcache.model import LlamaModel

    model = LlamaModel.from_pretrained(tiny_hf_model[1]).eval()
    path = edge.export(model, 8, tmp_path / "tiny.onnx")
    ids = torch.randint(0, 256, (1, 8))
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input_ids": ids.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(ids), atol=1e-4, rtol=1e-4)
    q = edge.quantize_int8(path, tmp_path / "tiny-int8.onnx")
    assert edge.file_mb(q) < edge.file_mb(path)
