// W8A8: int8 weights times int8 activations with exact integer dot products (book 6.2, 6.5).
#pragma once

#include <cstdint>

// y[m, n] (+)= sx[m] * sw[n] * (xq[m] . wq[n]) for M activation rows x (M, K) and N int8 weight rows with
// one scale s[n] each; the rows are rounded to int8 (one scale per row) inside. Defined in w8a8.cpp.
void w8a8_rows(const float* xp, int64_t M, int64_t K, const int8_t* w, int64_t N, const float* s, float* op,
               bool accumulate);
