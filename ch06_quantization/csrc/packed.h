// fp32 weights laid out for decode, one sequential stream per thread (book 6.2, 9.3).
#pragma once

#include <cstdint>

// Blocks of PACK rows; inside a block, for each group of 8 columns, the PACK rows' 8 values one after the
// other: (N/PACK, K/8, PACK*8). pack_rows (packed.cpp) makes the copy.
constexpr int PACK = 4;

// y[m, block*PACK + r] (+)= x[m] . w[block*PACK + r] on the packed layout ``p``. Defined in packed.cpp.
void gemv_packed(const float* xp, int64_t M, int64_t K, const float* p, int64_t N, float* op, bool accumulate);
