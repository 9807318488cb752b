"""Exercise 6.1, plausible but wrong: the integer formats' storage counts only the packed weights
(bits / 8 per weight) and forgets their scales, so int4-g64 looks like a clean 8x smaller than fp32."""

from ch06_quantization.solutions import ex6_1_compare_formats as ref

FORMATS, BITS, FormatResult = ref.FORMATS, ref.BITS, ref.FormatResult


def compare_formats(W, X, repeats=3):
    return [FormatResult(r.format, W.numel() * BITS[r.format] // 8, r.output_rel_err, r.matmul_s)
            for r in ref.compare_formats(W, X, repeats)]
