"""Exercise 9.3: tiled attention with an online softmax equals standard attention for any block size, and
never materialises the (N, M) score matrix.

The mechanism is checked while the reader's function runs under a ``TorchDispatchMode`` that sees every
aten op: no op may produce a tensor of more than a quarter of N x M elements (the full score matrix, or
its softmax, is N x M), no matrix product may have a dimension of M (one query row against every key is
not a K/V tile either), and no fused attention op (``scaled_dot_product_attention``, flash kernels) may
run - they would tile for the reader.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ch09_advanced.flash_attention import standard_attention

MATMULS = ("mm", "bmm", "addmm", "baddbmm", "matmul", "dot", "mv", "einsum")


class OpShapes(TorchDispatchMode):
    """Record (op name, output shape) of every aten op."""

    def __init__(self):
        super().__init__()
        self.ops: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.ops.append((name, tuple(t.shape)))
        return out


def check_matches_standard(mod, blocks=(1, 7, 64, 500)) -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(50, 16), torch.randn(130, 16), torch.randn(130, 16)
    ref = standard_attention(q[None, None], k[None, None], v[None, None])[0, 0]
    for block in blocks:
        torch.testing.assert_close(mod.tiled_attention(q, k, v, block), ref, msg=lambda m, b=block: f"block {b}: {m}")


def check_never_materialises_scores(mod) -> None:
    n, m, d, block = 48, 256, 8, 16
    torch.manual_seed(1)
    q, k, v = torch.randn(n, d), torch.randn(m, d), torch.randn(m, d)
    with OpShapes() as seen:
        got = mod.tiled_attention(q, k, v, block)
    torch.testing.assert_close(got, standard_attention(q[None, None], k[None, None], v[None, None])[0, 0])
    fused = sorted({op for op, _ in seen.ops if "scaled_dot_product" in op or "flash" in op or "attention" in op})
    assert not fused, f"tiled_attention must tile itself, not call {fused}"
    big = [(op, s) for op, s in seen.ops if torch.Size(s).numel() > n * m // 4]
    assert not big, f"with block={block}, an op produced {big[0][1]}: the (N={n}, M={m}) scores were materialised"
    full_rows = [(op, s) for op, s in seen.ops if op in MATMULS and m in s]
    assert not full_rows, f"a matrix product {full_rows[0][1]} spans all M={m} keys: walk K/V in blocks of {block}"


@pytest.mark.parametrize("block", [1, 7, 64, 500])
def test_tiled_attention_matches_standard(exercise, block):
    check_matches_standard(exercise("ch09_advanced", "ex9_3_tiled_attention"), (block,))


def test_tiled_attention_never_holds_the_full_score_matrix(exercise):
    check_never_materialises_scores(exercise("ch09_advanced", "ex9_3_tiled_attention"))
