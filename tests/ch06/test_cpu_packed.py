"""ch06 cpu_packed: the one-stream-per-thread fp32 layout gives F.linear's results for 1..8 rows."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from ch06_quantization.cpu_gemv import gemv_problem
from ch06_quantization.cpu_packed import can_pack, gemv_packed, main, pack_rows

pytestmark = pytest.mark.skipif(gemv_problem() is not None, reason=f"no C++ toolchain: {gemv_problem()}")


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("shape", [(96, 64), (20, 136)])  # (out, in): one block count odd, K not a power of 2
def test_packed_gemv_equals_f_linear(rows, shape):
    torch.manual_seed(0)
    w, x = torch.randn(*shape), torch.randn(rows, shape[1])
    p = pack_rows(w)
    assert p.shape == (shape[0] // 4, shape[1] // 8, 32)
    torch.testing.assert_close(p[0, 1, 8:16], w[1, 8:16])  # block 0, columns 8..15, second row
    torch.testing.assert_close(gemv_packed(x, p), F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_shapes_that_do_not_fit_are_refused():
    assert not can_pack(torch.randn(6, 64)) and not can_pack(torch.randn(8, 60))
    assert not can_pack(torch.randn(8, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match="divisible by 4"):
        pack_rows(torch.randn(6, 64))


def test_cli_smoke_prints_a_table_and_json(capsys, embedded_model_dir):
    assert main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "packed vs row-major" in out
    data = json.loads(out.strip().splitlines()[-1])
    assert data["linears"] == 14 and data["packed_vs_row_major_1_row"] > 0
