// Products of matrices a few floats wide: attention heads 4 or 8 wide, as in LST's side network.
//
// OpenBLAS spends most of such a call outside its kernel (clearing C, packing both operands
// into its own layout, a kernel tuned for wide tiles), about 2 µs for a 50 × 50 × 4 product on
// a 2.5 GHz AVX2 core; this packs op(B) once into rows padded to the vector width and sweeps
// op(A) a few rows at a time. Each C[i, j] is Σ_p a(i, p)·b(p, j) as one chain of fused
// multiply-adds in order of p, whatever the vector width, so every build (AVX-512, AVX2,
// portable) gives the same bits.

#include "CKernels.h"
#include "clones.h"

#include <string.h>

#pragma clang fp contract(off)

typedef float v4f __attribute__((ext_vector_type(4)));
typedef float v8f __attribute__((ext_vector_type(8)));
typedef float v16f __attribute__((ext_vector_type(16)));
typedef float v4fu __attribute__((ext_vector_type(4), aligned(4), may_alias));
typedef float v8fu __attribute__((ext_vector_type(8), aligned(4), may_alias));
typedef float v16fu __attribute__((ext_vector_type(16), aligned(4), may_alias));

#define FMA(a, b, c) __builtin_elementwise_fma(a, b, c)

/// One tile: `rows` (≤ R) rows of C from row i of op(A), `width` (≤ W) columns from column j,
/// for vectors V of W lanes. `ar`/`ac`: op(A)'s row and column strides.
#define TILE(V, VU, W, R)                                                                       \
  INLINE void tile##W(const float *a, ptrdiff_t ar, ptrdiff_t ac, const float *packed,         \
                      ptrdiff_t stride, ptrdiff_t k, float alpha, float *c, ptrdiff_t ldc,     \
                      ptrdiff_t rows, ptrdiff_t width) {                                       \
    const float *row[R];                                                                       \
    for (int r = 0; r < R; r++) row[r] = a + (r < rows ? r : rows - 1) * ar;                   \
    V acc[R];                                                                                  \
    for (int r = 0; r < R; r++) acc[r] = (V)0;                                                 \
    for (ptrdiff_t p = 0; p < k; p++) {                                                        \
      const V b = *(const VU *)(packed + p * stride);                                          \
      for (int r = 0; r < R; r++) acc[r] = FMA((V)row[r][p * ac], b, acc[r]);                  \
    }                                                                                          \
    for (ptrdiff_t r = 0; r < rows; r++) {                                                     \
      const V out = acc[r] * alpha;                                                            \
      if (width == W) {                                                                        \
        *(VU *)(c + r * ldc) = out;                                                            \
      } else {                                                                                 \
        float t[W];                                                                            \
        *(VU *)t = out;                                                                        \
        for (ptrdiff_t j = 0; j < width; j++) c[r * ldc + j] = t[j];                           \
      }                                                                                        \
    }                                                                                          \
  }

// Rows per tile: enough independent accumulators to cover the multiply-add latency.
TILE(v4f, v4fu, 4, 8)
TILE(v8f, v8fu, 8, 6)
TILE(v16f, v16fu, 16, 4)

GRAFT_CLONES
void graft_small_sgemm(int transA, int transB, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                       const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *c,
                       ptrdiff_t ldc) {
  if (m <= 0 || n <= 0) return;
  const ptrdiff_t w = n <= 4 ? 4 : n <= 8 ? 8 : 16;
  const ptrdiff_t stride = (n + w - 1) / w * w;
  float packed[GRAFT_SMALL_SGEMM_PACK] __attribute__((aligned(64)));
  for (ptrdiff_t p = 0; p < k; p++) {
    float *dst = packed + p * stride;
    if (transB) {
      for (ptrdiff_t j = 0; j < n; j++) dst[j] = b[j * ldb + p];
    } else {
      memcpy(dst, b + p * ldb, (size_t)n * sizeof(float));
    }
    for (ptrdiff_t j = n; j < stride; j++) dst[j] = 0;
  }
  const ptrdiff_t ar = transA ? 1 : lda, ac = transA ? lda : 1;
  if (k == 0) {
    for (ptrdiff_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(float));
    return;
  }
  if (w == 4) {
    for (ptrdiff_t i = 0; i < m; i += 8)
      tile4(a + i * ar, ar, ac, packed, stride, k, alpha, c + i * ldc, ldc, m - i < 8 ? m - i : 8,
            n);
  } else if (w == 8) {
    for (ptrdiff_t i = 0; i < m; i += 6)
      tile8(a + i * ar, ar, ac, packed, stride, k, alpha, c + i * ldc, ldc, m - i < 6 ? m - i : 6,
            n);
  } else {
    for (ptrdiff_t i = 0; i < m; i += 4)
      for (ptrdiff_t j = 0; j < n; j += 16)
        tile16(a + i * ar, ar, ac, packed + j, stride, k, alpha, c + i * ldc + j, ldc,
               m - i < 4 ? m - i : 4, n - j < 16 ? n - j : 16);
  }
}
