// oneDNN's BF16 matrix product behind C functions that return status codes.
//
// Graft's thread pool splits every large product into row blocks and calls these functions from
// each pool thread; each call runs oneDNN single-threaded on the calling thread (no OpenMP team
// is ever started), so there is never more than one busy thread per core.
#ifndef GRAFT_DNNL_H
#define GRAFT_DNNL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Status codes.
enum {
  GRAFT_DNNL_OK = 0,
  /// This CPU has no native BF16 matmul kernel in oneDNN (it would run emulated, slower than FP32).
  GRAFT_DNNL_NO_NATIVE_KERNEL = 1,
  /// oneDNN returned an error; `graft_dnnl_last_error` has its status.
  GRAFT_DNNL_LIBRARY_ERROR = 2,
  /// An argument out of range (a non-positive extent).
  GRAFT_DNNL_BAD_ARGUMENT = 3,
  /// Memory for the product's scratch space could not be allocated.
  GRAFT_DNNL_OUT_OF_MEMORY = 4,
};

/// Whether oneDNN has a native BF16 matmul kernel on this CPU: GRAFT_DNNL_OK, or
/// GRAFT_DNNL_NO_NATIVE_KERNEL / GRAFT_DNNL_LIBRARY_ERROR. The name of the kernel it would use
/// (for example "brg:avx512_core_bf16") is copied into `kernel` (at most `kernel_size` bytes,
/// NUL-terminated) either way.
int graft_dnnl_bf16_probe(char *kernel, size_t kernel_size);

/// C[m, n] = alpha · A[m, k] · B[k, n] + bias, A and B in BF16, C and the optional `bias` [n]
/// (added to every row) in FP32, with FP32 accumulation. A is row-major with row stride `lda`. When `b_transposed`, B is read
/// from a row-major [n, k] matrix with row stride `ldb` (B = that matrix transposed: a linear
/// layer's weight in its forward, or the keys in attention scores); otherwise from a row-major
/// [k, n] matrix with row stride `ldb`. C is row-major with row stride `ldc`. Runs on the calling
/// thread only.
int graft_dnnl_bf16_gemm(const uint16_t *a, int64_t lda, const uint16_t *b, int64_t ldb,
                         int b_transposed, const float *bias, float *c, int64_t ldc, int64_t m,
                         int64_t n, int64_t k, float alpha);

/// Whether oneDNN has a native int8 matmul kernel (VNNI or AMX) on this CPU, as
/// `graft_dnnl_bf16_probe` answers for BF16.
int graft_dnnl_s8_probe(char *kernel, size_t kernel_size);

/// C[m, n] = (A[m, k] · Wᵀ)[i, j] · column_scales[j]: A and W in s8 (A row-major with row stride
/// `lda`; W stored [n, k] row-major with row stride `ldw`), int32 accumulation, C in FP32 with
/// row stride `ldc`. Runs on the calling thread only.
int graft_dnnl_s8_gemm(const int8_t *a, int64_t lda, const int8_t *w, int64_t ldw,
                       const float *column_scales, float *c, int64_t ldc, int64_t m, int64_t n,
                       int64_t k);

/// Quantizes `rows` rows of `cols` floats (row stride `ld`) to s8, one symmetric scale per row:
/// scales[r] = max|x[r, :]| / 127 (1 for an all-zero row), q[r, j] = x[r, j] / scales[r] rounded
/// to nearest even (q row-major with row stride `cols`). Needs AVX-512 (BW); call it only where
/// `graft_dnnl_s8_probe` succeeded.
void graft_dnnl_quantize_rows(const float *x, int64_t rows, int64_t cols, int64_t ld, int8_t *q,
                              float *scales);

/// Rounds `count` floats to bfloat16 bit patterns (nearest, ties to even; NaN stays NaN). With
/// AVX-512 BF16 this is the hardware's `vcvtneps2bf16`, which also flushes subnormal inputs to
/// zero; elsewhere a portable loop that keeps them.
void graft_dnnl_round_to_bf16(const float *src, uint16_t *dst, int64_t count);

/// The oneDNN status of the last GRAFT_DNNL_LIBRARY_ERROR on the calling thread.
int graft_dnnl_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
