// Hot elementwise and softmax loops of GraftTensor, in C so that x86-64 builds can carry an
// AVX-512 variant picked at run time (target_clones) while the package stays portable and needs
// no unsafe compiler flags. Each function computes exactly what the Swift scalar functions in
// FastMath.swift compute, with the same coefficients and the same order of operations, so the
// results are bit for bit those of the Swift code (softmax: up to the summation order).
#ifndef GRAFT_CKERNELS_H
#define GRAFT_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// y[i] = GELU(x[i]) (exact erf form; Swift `fastGelu`), for i in 0..<n.
void graft_gelu_forward(const float *x, float *y, ptrdiff_t n);

/// dx[i] = g[i] * GELU'(x[i]) (Swift `g * fastGeluDerivative(x)`), for i in 0..<n.
void graft_gelu_backward(const float *g, const float *x, float *dx, ptrdiff_t n);

/// y[i] = e^x[i] (Swift `fastExp`), for i in 0..<n.
void graft_exp(const float *x, float *y, ptrdiff_t n);

/// Softmax (log_softmax when `log` is non-zero) of `rows` contiguous rows of `n` floats each,
/// max-subtracted; a NaN anywhere in a row makes the whole output row NaN (as PyTorch).
void graft_softmax_rows(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n, int log);

/// Floats of op(B) `graft_small_sgemm` can hold: k · n, n rounded up to 4, 8 or a multiple of
/// 16, must not exceed it (32 KiB, on the stack).
#define GRAFT_SMALL_SGEMM_PACK 8192

/// C[m, n] = alpha · op(A) · op(B) for small matrices (no beta: C is overwritten), row-major with
/// leading dimensions as BLAS; op transposes when `transA` / `transB` is non-zero. Each element
/// is one chain of fused multiply-adds in order of the inner index, so every instruction set
/// gives the same bits. Requires k · round(n) ≤ GRAFT_SMALL_SGEMM_PACK (see above).
void graft_small_sgemm(int transA, int transB, ptrdiff_t m, ptrdiff_t n, ptrdiff_t k, float alpha,
                       const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, float *c,
                       ptrdiff_t ldc);

/// The instruction set level the kernels run with on this CPU: 4 (x86-64-v4, AVX-512),
/// 3 (x86-64-v3, AVX2 + FMA), or 0 (the portable build: baseline x86-64 or another
/// architecture).
int graft_kernels_level(void);

/// Runs 16·`rounds` integer additions, each depending on the one before: one cycle each on
/// every x86-64 and AArch64 core of the last decade, so timing it measures the core's clock
/// (`graft bench` reports the clock it measured during the run).
void graft_dependent_adds(uint64_t rounds);

/// Runs `rounds` rounds of 24 fused multiply-adds into 12 independent accumulators on the
/// widest float vectors this CPU runs (AVX-512: 16 lanes; AVX2 + FMA: 8), enough in flight to
/// fill every FMA pipe of any current core, and returns the FLOPs done (2 per lane and FMA);
/// 0 where there is no FMA or the machine is not x86-64, so nothing ran. Timed against
/// `graft_dependent_adds`, it measures the FP32 FLOPs a core does per cycle.
uint64_t graft_fma_flops(uint64_t rounds);

/// Whether recording (autograd) is off in the calling thread: a C11 thread-local flag, 0 in
/// every new thread. GradMode keeps its state here rather than in a pthread key: a key's slot
/// is shared with whatever else the process loaded, and with FFmpeg's dependency tree linked
/// the release binary read the flag as set on the main thread, so nothing trained.
int graft_grad_disabled(void);

/// Sets the calling thread's flag (non-zero: recording off).
void graft_set_grad_disabled(int disabled);

#ifdef __cplusplus
}
#endif

#endif
