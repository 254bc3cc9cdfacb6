// GELU, exp and softmax loops on 16-float vectors (clang vector extensions).
//
// On x86-64 Linux each entry point is built three times (target_clones): for x86-64-v4 the
// vectors are single AVX-512 registers, for x86-64-v3 pairs of AVX2 registers, and a baseline
// version for older CPUs; the loader's ifunc resolver picks one when the library loads. Other
// platforms get one portable build (NEON on arm64).
//
// Every formula mirrors FastMath.swift operation for operation: fused multiply-adds where Swift
// calls addingProduct, nothing contracted implicitly, the same clamps with the same NaN
// behaviour, so results match the Swift scalar code bit for bit (tests check this).

#include "CKernels.h"
#include "clones.h"

#include <math.h>
#include <string.h>

#pragma clang fp contract(off)

typedef float v16f __attribute__((ext_vector_type(16)));
typedef unsigned v16u __attribute__((ext_vector_type(16)));
/// For loads and stores at any float address.
typedef float v16fu __attribute__((ext_vector_type(16), aligned(4), may_alias));

// Helpers take and return vectors through pointers: a 64-byte vector passed by value would
// change the calling convention between the clones (clang rejects that even when inlined).

#define LOAD(p) (*(const v16fu *)(p))
#define STORE(p, v) (*(v16fu *)(p) = (v))

/// The first `count` (< 16) floats at p, the other lanes `fill`.
INLINE void loadPartial(v16f *v, const float *p, ptrdiff_t count, float fill) {
  float t[16];
  for (int k = 0; k < 16; k++) t[k] = fill;
  memcpy(t, p, (size_t)count * sizeof(float));
  *v = LOAD(t);
}

INLINE void storePartial(float *p, const v16f *v, ptrdiff_t count) {
  float t[16];
  STORE(t, *v);
  memcpy(p, t, (size_t)count * sizeof(float));
}

/// Swift's max(x, c) and min(x, c): c >= x ? c : x and c < x ? c : x, so a NaN x passes.
#define MAX_OF(x, c) ((v16f)(c) >= (x) ? (v16f)(c) : (x))
#define MIN_OF(x, c) ((v16f)(c) < (x) ? (v16f)(c) : (x))

/// a·b + c rounded once (Swift's c.addingProduct(a, b)).
#define FMA(a, b, c) __builtin_elementwise_fma((v16f)(a), (v16f)(b), (v16f)(c))

/// FastMath.swift `expReduced`: e^c for c in [−88, 88.7] or NaN, in place.
INLINE void expReduced(v16f *v) {
  const v16f c = *v;
  const v16f shifter = 12582912.0f;
  v16f shifted = FMA(c, 1.442695f, shifter);
  v16f n = shifted - shifter;
  v16f r = FMA(-n, 0.693359375f, c);
  r = FMA(n, 2.1219444e-4f, r);
  v16f p = 1.3843651e-3f;
  p = FMA(p, r, 8.3741555e-3f);
  p = FMA(p, r, 4.1668e-2f);
  p = FMA(p, r, 1.6666432e-1f);
  p = FMA(p, r, 4.9999994e-1f);
  p = FMA(p, r, 1.0f);
  p = FMA(p, r, 1.0f);
  v16u bits = (__builtin_bit_cast(v16u, shifted) + 127u) << 23;
  *v = p * __builtin_bit_cast(v16f, bits);
}

/// FastMath.swift `fastExp`, in place.
INLINE void exp16(v16f *v) {
  *v = MIN_OF(MAX_OF(*v, -88.0f), 88.7f);
  expReduced(v);
}

/// FastMath.swift `fastExpNonPositive`, in place.
INLINE void expNonPositive16(v16f *v) {
  *v = MAX_OF(*v, -88.0f);
  expReduced(v);
}

/// FastMath.swift `fastGelu`, in place.
INLINE void gelu16(v16f *v) {
  const v16f x = *v;
  v16f h = 0.5f * x;
  v16f u = MIN_OF(MAX_OF(x, -5.5437174f), 5.5437174f);
  v16f z = u * u;
  v16f p = 4.529987e-8f;
  p = FMA(p, z, 1.2590007e-5f);
  p = FMA(p, z, 3.3283705e-4f);
  p = FMA(p, z, 9.324745e-3f);
  p = FMA(p, z, 6.7319065e-2f);
  p = FMA(p, z, 7.978845e-1f);
  v16f q = 1.1903445e-6f;
  q = FMA(q, z, 7.265813e-5f);
  q = FMA(q, z, 1.8711536e-3f);
  q = FMA(q, z, 2.8527323e-2f);
  q = FMA(q, z, 2.510383e-1f);
  q = FMA(q, z, 1.0f);
  *v = FMA(h, u * p / q, h);
}

/// g · FastMath.swift `fastGeluDerivative(x)`, into *g.
INLINE void geluBackward16(v16f *g, const v16f *xp) {
  const v16f x = *xp;
  v16f u = MIN_OF(MAX_OF(x, -6.25f), 6.25f);
  v16f z = u * u;
  v16f p = -3.130468e-11f;
  p = FMA(p, z, 1.5617449e-8f);
  p = FMA(p, z, 1.4894857e-6f);
  p = FMA(p, z, 3.1987085e-5f);
  p = FMA(p, z, 4.2127303e-4f);
  p = FMA(p, z, 1.32723665e-2f);
  p = FMA(p, z, -1.0544222e-2f);
  p = FMA(p, z, 7.9788446e-1f);
  v16f q = 4.6538455e-7f;
  q = FMA(q, z, 1.2569828e-5f);
  q = FMA(q, z, 2.9258235e-4f);
  q = FMA(q, z, 4.5349663e-3f);
  q = FMA(q, z, 4.8342634e-2f);
  q = FMA(q, z, 3.2011726e-1f);
  q = FMA(q, z, 1.0f);
  *g = *g * (0.5f + u * p / q);
}

GRAFT_CLONES
void graft_gelu_forward(const float *x, float *y, ptrdiff_t n) {
  ptrdiff_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16f v = LOAD(x + i);
    gelu16(&v);
    STORE(y + i, v);
  }
  if (i < n) {
    v16f v;
    loadPartial(&v, x + i, n - i, 0);
    gelu16(&v);
    storePartial(y + i, &v, n - i);
  }
}

GRAFT_CLONES
void graft_gelu_backward(const float *g, const float *x, float *dx, ptrdiff_t n) {
  ptrdiff_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16f d = LOAD(g + i), v = LOAD(x + i);
    geluBackward16(&d, &v);
    STORE(dx + i, d);
  }
  if (i < n) {
    v16f d, v;
    loadPartial(&d, g + i, n - i, 0);
    loadPartial(&v, x + i, n - i, 0);
    geluBackward16(&d, &v);
    storePartial(dx + i, &d, n - i);
  }
}

GRAFT_CLONES
void graft_exp(const float *x, float *y, ptrdiff_t n) {
  ptrdiff_t i = 0;
  for (; i + 16 <= n; i += 16) {
    v16f v = LOAD(x + i);
    exp16(&v);
    STORE(y + i, v);
  }
  if (i < n) {
    v16f v;
    loadPartial(&v, x + i, n - i, 0);
    exp16(&v);
    storePartial(y + i, &v, n - i);
  }
}

/// Lanes k + shift of v into lane k (the upper lanes get don't-care values). Reductions halve
/// the vector four times instead of walking 16 lanes one by one (a 16-step latency chain).
#define SHIFT_DOWN(v, shift)                                                                  \
  __builtin_shufflevector(v, v, (shift) + 0, (shift) + 1, (shift) + 2, (shift) + 3,           \
                          ((shift) + 4) & 15, ((shift) + 5) & 15, ((shift) + 6) & 15,         \
                          ((shift) + 7) & 15, ((shift) + 8) & 15, ((shift) + 9) & 15,         \
                          ((shift) + 10) & 15, ((shift) + 11) & 15, ((shift) + 12) & 15,      \
                          ((shift) + 13) & 15, ((shift) + 14) & 15, ((shift) + 15) & 15)

/// Largest lane of *v, whose lanes are never NaN (the max accumulators skip NaN inputs, as the
/// Swift `simdMax`); −inf when every lane is −inf.
INLINE float laneMax(const v16f *v) {
  v16f a = *v, b;
  b = SHIFT_DOWN(a, 8);
  a = b > a ? b : a;
  b = SHIFT_DOWN(a, 4);
  a = b > a ? b : a;
  b = SHIFT_DOWN(a, 2);
  a = b > a ? b : a;
  b = SHIFT_DOWN(a, 1);
  a = b > a ? b : a;
  return a[0];
}

/// Sum of the lanes of *v, pairwise: ((v0 + v8) + (v4 + v12)) + … in a fixed order.
INLINE float laneSum(const v16f *v) {
  v16f a = *v;
  a += SHIFT_DOWN(a, 8);
  a += SHIFT_DOWN(a, 4);
  a += SHIFT_DOWN(a, 2);
  a += SHIFT_DOWN(a, 1);
  return a[0];
}

/// Rows up to this length keep their exponentials in a stack buffer (16 KiB, in L1/L2), so
/// each output line is written once, by the final pass.
#define ROW_BUFFER 4096

/// One row: max (NaN lanes skipped, so a NaN reaches the exp and then the sum), e^(x − max)
/// with its sum, then the scale (or x − log-sum-exp). `ahead` is where to prefetch (a later
/// row), issued while this row computes its exponentials.
INLINE void softmaxRow(const float *x, float *y, ptrdiff_t n, int log, const float *ahead) {
  // Two accumulators per reduction: the loop-carried chains are half as long.
  v16f m0 = -INFINITY, m1 = -INFINITY, a, b;
  ptrdiff_t i = 0;
  for (; i + 32 <= n; i += 32) {
    a = LOAD(x + i);
    b = LOAD(x + i + 16);
    m0 = a > m0 ? a : m0;
    m1 = b > m1 ? b : m1;
  }
  for (; i + 16 <= n; i += 16) {
    a = LOAD(x + i);
    m0 = a > m0 ? a : m0;
  }
  if (i < n) {
    // A row of at least 16 ends on a full vector that overlaps the last one (the max does not
    // mind seeing an element twice); a partial vector assembled on the stack would stall its
    // load for the stores to arrive, once per row, which costs more than a 50-wide row's max.
    if (n >= 16) {
      a = LOAD(x + n - 16);
    } else {
      loadPartial(&a, x + i, n - i, -INFINITY);
    }
    m1 = a > m1 ? a : m1;
  }
  m0 = m1 > m0 ? m1 : m0;
  float m = laneMax(&m0);
  if (m == -INFINITY) m = 0;  // a fully masked row gives NaN (0/0) as PyTorch, not a crash

  // log_softmax needs only the sum; softmax keeps the exponentials (in y for long rows).
  float buffer[ROW_BUFFER] __attribute__((aligned(64)));
  float *e = n <= ROW_BUFFER ? buffer : y;
  v16f s0 = 0, s1 = 0;
  i = 0;
  for (; i + 32 <= n; i += 32) {
    __builtin_prefetch(ahead + i);
    __builtin_prefetch(ahead + i + 16);
    a = LOAD(x + i) - m;
    b = LOAD(x + i + 16) - m;
    expNonPositive16(&a);
    expNonPositive16(&b);
    if (!log) {
      STORE(e + i, a);
      STORE(e + i + 16, b);
    }
    s0 += a;
    s1 += b;
  }
  for (; i + 16 <= n; i += 16) {
    __builtin_prefetch(ahead + i);
    a = LOAD(x + i) - m;
    expNonPositive16(&a);
    if (!log) STORE(e + i, a);
    s0 += a;
  }
  if (i < n && n >= 16) {
    // The last 16 elements, overlapping the previous vector: only the new lanes, the last
    // n − i, join the sum. The overlap's exponentials are stored again (the same bits) unless
    // the row is long and in place, where the overlap no longer holds logits: then only the
    // new lanes are copied out.
    const v16u lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const ptrdiff_t fresh = n - i;
    a = LOAD(x + n - 16) - m;
    expNonPositive16(&a);
    if (!log && e == x) {
      float t[16];
      STORE(t, a);
      memcpy(e + i, t + 16 - fresh, (size_t)fresh * sizeof(float));
    } else if (!log) {
      STORE(e + n - 16, a);
    }
    s1 += lane >= (v16u)(unsigned)(16 - fresh) ? a : (v16f)0;
  } else if (i < n) {
    // Padding lanes hold −inf, whose exponential is 0 and adds nothing to the sum.
    loadPartial(&a, x + i, n - i, -INFINITY);
    a -= m;
    expNonPositive16(&a);
    if (!log) storePartial(e + i, &a, n - i);
    s1 += a;
  }
  s0 += s1;
  float total = laneSum(&s0);

  if (log) {
    float lse = m + logf(total);
    i = 0;
    for (; i + 16 <= n; i += 16) STORE(y + i, LOAD(x + i) - lse);
    for (; i < n; i++) y[i] = x[i] - lse;
  } else {
    float inv = 1 / total;
    i = 0;
    for (; i + 16 <= n; i += 16) STORE(y + i, LOAD(e + i) * inv);
    if (i < n && n >= 16 && e != y) {
      STORE(y + n - 16, LOAD(e + n - 16) * inv);  // the overlap gets the same values again
    } else {
      for (; i < n; i++) y[i] = e[i] * inv;
    }
  }
}

GRAFT_CLONES
void graft_softmax_rows(const float *x, float *y, ptrdiff_t rows, ptrdiff_t n, int log) {
  // Two rows ahead: far enough for the lines to arrive, near enough to stay in L1. Prefetches
  // past the last row are harmless hints.
  for (ptrdiff_t r = 0; r < rows; r++) softmaxRow(x + r * n, y + r * n, n, log, x + (r + 2) * n);
}

int graft_kernels_level(void) {
#if defined(__x86_64__) && defined(__linux__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return 4;
  if (__builtin_cpu_supports("x86-64-v3")) return 3;
#endif
  return 0;
}

void graft_dependent_adds(uint64_t rounds) {
  uint64_t x = 0;
  for (uint64_t i = 0; i < rounds; i++) {
#if defined(__x86_64__)
#define GRAFT_ADD4 "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
    __asm__ volatile(GRAFT_ADD4 GRAFT_ADD4 GRAFT_ADD4 GRAFT_ADD4 : "+r"(x));
#undef GRAFT_ADD4
#elif defined(__aarch64__)
#define GRAFT_ADD4 "add %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\tadd %0, %0, #1\n\t"
    __asm__ volatile(GRAFT_ADD4 GRAFT_ADD4 GRAFT_ADD4 GRAFT_ADD4 : "+r"(x));
#undef GRAFT_ADD4
#else
    // No assembly: a volatile chain (a load and a store per step, so slower than one cycle).
    volatile uint64_t y = x;
    for (int j = 0; j < 16; j++) y = y + 1;
    x = y;
#endif
  }
}

// One asm loop, so the compiler never touches the registers in between: register 0 and the
// twelve accumulators (1-12) start at zero and every FMA adds 0 × 0, so no denormal or NaN can
// slow a pipe. Two FMAs per accumulator a round cover latency 4-5 on two pipes, with room.
#define GRAFT_FMA(w, n) "vfmadd231ps %%" w "0, %%" w "0, %%" w #n "\n\t"
#define GRAFT_FMA12(w)                                                                         \
  GRAFT_FMA(w, 1) GRAFT_FMA(w, 2) GRAFT_FMA(w, 3) GRAFT_FMA(w, 4) GRAFT_FMA(w, 5)               \
  GRAFT_FMA(w, 6) GRAFT_FMA(w, 7) GRAFT_FMA(w, 8) GRAFT_FMA(w, 9) GRAFT_FMA(w, 10)              \
  GRAFT_FMA(w, 11) GRAFT_FMA(w, 12)
#define GRAFT_ZERO13(w)                                                                        \
  "vxorps %%" w "0, %%" w "0, %%" w "0\n\t"                                                  \
  "vmovaps %%" w "0, %%" w "1\n\tvmovaps %%" w "0, %%" w "2\n\tvmovaps %%" w "0, %%" w "3\n\t"  \
  "vmovaps %%" w "0, %%" w "4\n\tvmovaps %%" w "0, %%" w "5\n\tvmovaps %%" w "0, %%" w "6\n\t"  \
  "vmovaps %%" w "0, %%" w "7\n\tvmovaps %%" w "0, %%" w "8\n\tvmovaps %%" w "0, %%" w "9\n\t"  \
  "vmovaps %%" w "0, %%" w "10\n\tvmovaps %%" w "0, %%" w "11\n\tvmovaps %%" w "0, %%" w "12\n\t"
#define GRAFT_FMA_LOOP(w)                                                                      \
  __asm__ volatile(GRAFT_ZERO13(w) "1:\n\t" GRAFT_FMA12(w) GRAFT_FMA12(w)                     \
                   "dec %0\n\tjnz 1b\n\tvzeroupper\n\t"                                      \
                   : "+r"(n)                                                                   \
                   :                                                                           \
                   : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",    \
                     "xmm9", "xmm10", "xmm11", "xmm12", "cc")

uint64_t graft_fma_flops(uint64_t rounds) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  int lanes = __builtin_cpu_supports("avx512f")                                ? 16
              : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 8
                                                                                : 0;
  if (lanes == 0 || rounds == 0) return 0;
  uint64_t n = rounds;
  // vzeroupper at the end: dirty upper halves would slow the SSE code that follows.
  if (lanes == 16) {
    GRAFT_FMA_LOOP("zmm");
  } else {
    GRAFT_FMA_LOOP("ymm");
  }
  return rounds * 24 * 2 * (uint64_t)lanes;
#else
  (void)rounds;
  return 0;
#endif
}
#undef GRAFT_FMA_LOOP
#undef GRAFT_ZERO13
#undef GRAFT_FMA12
#undef GRAFT_FMA

static _Thread_local int gradDisabled;

int graft_grad_disabled(void) { return gradDisabled; }

void graft_set_grad_disabled(int disabled) { gradDisabled = disabled != 0; }
