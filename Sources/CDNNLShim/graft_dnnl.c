#include "graft_dnnl.h"

#include <immintrin.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

// libgomp's: oneDNN here is built on OpenMP, and a thread's own thread count decides whether a
// primitive starts a team. One thread per call: Graft's pool does the splitting.
extern void omp_set_num_threads(int count);

static dnnl_engine_t engine;
static dnnl_status_t engine_status = dnnl_runtime_error;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void create_engine(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

static _Thread_local int last_error;
static _Thread_local dnnl_stream_t thread_stream;
static _Thread_local void *thread_scratch;
static _Thread_local size_t thread_scratch_size;

int graft_dnnl_last_error(void) { return last_error; }

#define CHECK(call)                                                                            \
  do {                                                                                         \
    dnnl_status_t status_ = (call);                                                            \
    if (status_ != dnnl_success) {                                                             \
      last_error = (int)status_;                                                               \
      goto fail;                                                                               \
    }                                                                                          \
  } while (0)

/// One compiled product shape.
typedef struct {
  int64_t m, n, k, lda, ldb, ldc;
  int b_transposed, has_bias;
  float alpha;
  /// 0: BF16 operands; 1: s8 operands, int32 accumulation, per-column scales given per call.
  int int8;
  dnnl_primitive_t primitive;
  dnnl_memory_desc_t a, b, bias, c, scratch, scales;
} product;

// Compiled shapes, kept for the process's life: a model has a handful (one per layer shape and
// row-block size). Past the limit a shape is compiled for each call and released after it.
enum { cache_capacity = 256 };
static product cache[cache_capacity];
static int cache_count;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static int engine_ready(void) {
  pthread_once(&engine_once, create_engine);
  if (engine_status != dnnl_success) {
    last_error = (int)engine_status;
    return 0;
  }
  return 1;
}

/// Compiles the product of `p`'s shape into `p` (primitive and descriptors).
static int compile(product *p) {
  dnnl_matmul_desc_t desc;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_dims_t a_dims = {p->m, p->k}, b_dims = {p->k, p->n}, c_dims = {p->m, p->n};
  dnnl_dims_t a_strides = {p->lda, 1}, c_strides = {p->ldc, 1};
  // A transposed B is read in place: element (i, j) of B at j·ldb + i.
  dnnl_dims_t b_strides = {p->b_transposed ? 1 : p->ldb, p->b_transposed ? p->ldb : 1};
  dnnl_data_type_t operands = p->int8 ? dnnl_s8 : dnnl_bf16;
  CHECK(dnnl_memory_desc_init_by_strides(&p->a, 2, a_dims, operands, a_strides));
  CHECK(dnnl_memory_desc_init_by_strides(&p->b, 2, b_dims, operands, b_strides));
  CHECK(dnnl_memory_desc_init_by_strides(&p->c, 2, c_dims, dnnl_f32, c_strides));
  dnnl_dims_t bias_dims = {1, p->n};
  if (p->has_bias) CHECK(dnnl_memory_desc_init_by_tag(&p->bias, 2, bias_dims, dnnl_f32, dnnl_ab));
  CHECK(dnnl_matmul_desc_init(&desc, &p->a, &p->b, p->has_bias ? &p->bias : NULL, &p->c));
  CHECK(dnnl_primitive_attr_create(&attr));
  // The caller's scratch space, so that threads may run the same primitive at once.
  CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  if (p->alpha != 1.0f) CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &p->alpha));
  if (p->int8) {
    // One scale per output column (mask: dimension 1), given at each call.
    const float runtime = DNNL_RUNTIME_F32_VAL;
    dnnl_dims_t scale_dims = {p->n};
    CHECK(dnnl_primitive_attr_set_output_scales(attr, 1, 1 << 1, &runtime));
    CHECK(dnnl_memory_desc_init_by_tag(&p->scales, 1, scale_dims, dnnl_f32, dnnl_a));
  }
  CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
  p->scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  CHECK(dnnl_primitive_create(&p->primitive, pd));
  dnnl_primitive_desc_destroy(pd);
  dnnl_primitive_attr_destroy(attr);
  return GRAFT_DNNL_OK;
fail:
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (attr) dnnl_primitive_attr_destroy(attr);
  return GRAFT_DNNL_LIBRARY_ERROR;
}

/// Whether oneDNN has a native kernel for a 64³ product of `operands` (BF16 or s8), naming it
/// in `kernel`.
static int probe(dnnl_data_type_t operands, const char *const *isas, char *kernel,
                 size_t kernel_size) {
  if (kernel && kernel_size) kernel[0] = 0;
  omp_set_num_threads(1);
  if (!engine_ready()) return GRAFT_DNNL_LIBRARY_ERROR;
  dnnl_memory_desc_t a, b, c;
  dnnl_matmul_desc_t desc;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_dims_t a_dims = {64, 64}, b_dims = {64, 64}, c_dims = {64, 64};
  CHECK(dnnl_memory_desc_init_by_tag(&a, 2, a_dims, operands, dnnl_ab));
  CHECK(dnnl_memory_desc_init_by_tag(&b, 2, b_dims, operands, dnnl_ba));
  CHECK(dnnl_memory_desc_init_by_tag(&c, 2, c_dims, dnnl_f32, dnnl_ab));
  CHECK(dnnl_matmul_desc_init(&desc, &a, &b, NULL, &c));
  // No implementation at all (oneDNN has no BF16 matmul for an AVX2-only CPU such as Zen 3)
  // is the same answer as a slow one: no native kernel here, not a library failure.
  dnnl_status_t created = dnnl_primitive_desc_create(&pd, &desc, NULL, engine, NULL);
  if (created == dnnl_unimplemented) return GRAFT_DNNL_NO_NATIVE_KERNEL;
  CHECK(created);
  const char *name = NULL;
  CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name));
  if (kernel && kernel_size && name) {
    strncpy(kernel, name, kernel_size - 1);
    kernel[kernel_size - 1] = 0;
  }
  int native = 0;
  for (const char *const *isa = isas; *isa; isa++) native |= name && strstr(name, *isa) != NULL;
  dnnl_primitive_desc_destroy(pd);
  return native ? GRAFT_DNNL_OK : GRAFT_DNNL_NO_NATIVE_KERNEL;
fail:
  if (pd) dnnl_primitive_desc_destroy(pd);
  return GRAFT_DNNL_LIBRARY_ERROR;
}

int graft_dnnl_bf16_probe(char *kernel, size_t kernel_size) {
  // Native kernels name their ISA ("avx512_core_bf16", "avx512_core_amx"); without one oneDNN
  // converts to FP32 inside the kernel ("brg:avx512_core") or runs its reference loop ("ref").
  static const char *const isas[] = {"bf16", "amx", NULL};
  return probe(dnnl_bf16, isas, kernel, kernel_size);
}

int graft_dnnl_s8_probe(char *kernel, size_t kernel_size) {
  // VNNI's vpdpbusd (or AMX); plain AVX-512 or AVX2 int8 kernels gain little over BF16/FP32.
  static const char *const isas[] = {"vnni", "amx", NULL};
  return probe(dnnl_s8, isas, kernel, kernel_size);
}

/// The compiled product for this shape, from the cache or compiled now; `*owned` tells the
/// caller to release it (the cache was full).
static product *lookup(product *key, int *owned) {
  *owned = 0;
  pthread_mutex_lock(&cache_lock);
  for (int i = 0; i < cache_count; i++) {
    product *p = &cache[i];
    if (p->m == key->m && p->n == key->n && p->k == key->k && p->lda == key->lda &&
        p->ldb == key->ldb && p->ldc == key->ldc && p->b_transposed == key->b_transposed &&
        p->has_bias == key->has_bias && p->alpha == key->alpha && p->int8 == key->int8) {
      pthread_mutex_unlock(&cache_lock);
      return p;
    }
  }
  // Compiling under the lock keeps two threads from compiling one shape twice; it happens once
  // per shape.
  product *slot = cache_count < cache_capacity ? &cache[cache_count] : key;
  if (slot != key) *slot = *key;
  if (compile(slot) != GRAFT_DNNL_OK) {
    pthread_mutex_unlock(&cache_lock);
    return NULL;
  }
  if (slot == key) {
    *owned = 1;
  } else {
    cache_count++;
  }
  pthread_mutex_unlock(&cache_lock);
  return slot;
}

/// Runs the product of `key`'s shape on the calling thread.
static int run(product *key, const void *a, const void *b, const float *bias, const float *scales,
               float *c) {
  omp_set_num_threads(1);
  if (!engine_ready()) return GRAFT_DNNL_LIBRARY_ERROR;
  if (!thread_stream) {
    dnnl_status_t status = dnnl_stream_create(&thread_stream, engine, dnnl_stream_default_flags);
    if (status != dnnl_success) {
      thread_stream = NULL;
      last_error = (int)status;
      return GRAFT_DNNL_LIBRARY_ERROR;
    }
  }
  int owned = 0;
  product *p = lookup(key, &owned);
  if (!p) return GRAFT_DNNL_LIBRARY_ERROR;

  int result = GRAFT_DNNL_LIBRARY_ERROR;
  dnnl_memory_t ma = NULL, mb = NULL, mbias = NULL, mscales = NULL, mc = NULL, ms = NULL;
  size_t scratch_size = dnnl_memory_desc_get_size(&p->scratch);
  if (scratch_size > thread_scratch_size) {
    free(thread_scratch);
    thread_scratch = aligned_alloc(64, (scratch_size + 63) / 64 * 64);
    thread_scratch_size = thread_scratch ? scratch_size : 0;
    if (!thread_scratch) {
      result = GRAFT_DNNL_OUT_OF_MEMORY;
      goto done;
    }
  }
  // oneDNN takes the buffers as mutable handles but only writes the destination.
  CHECK(dnnl_memory_create(&ma, &p->a, engine, (void *)a));
  CHECK(dnnl_memory_create(&mb, &p->b, engine, (void *)b));
  CHECK(dnnl_memory_create(&mc, &p->c, engine, c));
  CHECK(dnnl_memory_create(&ms, &p->scratch, engine, thread_scratch));
  dnnl_exec_arg_t args[6] = {{DNNL_ARG_SRC, ma},
                             {DNNL_ARG_WEIGHTS, mb},
                             {DNNL_ARG_DST, mc},
                             {DNNL_ARG_SCRATCHPAD, ms}};
  int count = 4;
  if (bias) {
    CHECK(dnnl_memory_create(&mbias, &p->bias, engine, (void *)bias));
    args[count++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, mbias};
  }
  if (p->int8) {
    CHECK(dnnl_memory_create(&mscales, &p->scales, engine, (void *)scales));
    args[count++] = (dnnl_exec_arg_t){DNNL_ARG_ATTR_OUTPUT_SCALES, mscales};
  }
  CHECK(dnnl_primitive_execute(p->primitive, thread_stream, count, args));
  CHECK(dnnl_stream_wait(thread_stream));
  result = GRAFT_DNNL_OK;
fail:
done:
  if (ma) dnnl_memory_destroy(ma);
  if (mb) dnnl_memory_destroy(mb);
  if (mbias) dnnl_memory_destroy(mbias);
  if (mscales) dnnl_memory_destroy(mscales);
  if (mc) dnnl_memory_destroy(mc);
  if (ms) dnnl_memory_destroy(ms);
  if (owned) dnnl_primitive_destroy(p->primitive);
  return result;
}

int graft_dnnl_bf16_gemm(const uint16_t *a, int64_t lda, const uint16_t *b, int64_t ldb,
                         int b_transposed, const float *bias, float *c, int64_t ldc, int64_t m,
                         int64_t n, int64_t k, float alpha) {
  if (m <= 0 || n <= 0 || k <= 0 || lda < k || ldc < n || ldb < (b_transposed ? k : n))
    return GRAFT_DNNL_BAD_ARGUMENT;
  product key = {m, n, k, lda, ldb, ldc, b_transposed ? 1 : 0, bias ? 1 : 0, alpha, 0};
  return run(&key, a, b, bias, NULL, c);
}

int graft_dnnl_s8_gemm(const int8_t *a, int64_t lda, const int8_t *w, int64_t ldw,
                       const float *column_scales, float *c, int64_t ldc, int64_t m, int64_t n,
                       int64_t k) {
  if (m <= 0 || n <= 0 || k <= 0 || lda < k || ldc < n || ldw < k || !column_scales)
    return GRAFT_DNNL_BAD_ARGUMENT;
  product key = {m, n, k, lda, ldw, ldc, 1, 0, 1.0f, 1};
  return run(&key, a, w, NULL, column_scales, c);
}

static uint16_t round_one(float x) {
  uint32_t bits;
  memcpy(&bits, &x, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
  return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bf16"))) static void round_avx512(const float *src,
                                                                         uint16_t *dst,
                                                                         int64_t count) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    __m256bh halves = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
    _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)halves);
  }
  for (; i < count; i++) dst[i] = round_one(src[i]);
}
#endif

void graft_dnnl_round_to_bf16(const float *src, uint16_t *dst, int64_t count) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512bf16")) {
    round_avx512(src, dst, count);
    return;
  }
#endif
  for (int64_t i = 0; i < count; i++) dst[i] = round_one(src[i]);
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw"))) static void quantize_row(const float *x, int64_t n,
                                                                      int8_t *q, float *scale) {
  __m512 top = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) top = _mm512_max_ps(top, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  float amax = _mm512_reduce_max_ps(top);
  for (; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
  float s = amax > 0 ? amax / 127.0f : 1.0f;
  float inv = 1.0f / s;
  __m512 vinv = _mm512_set1_ps(inv);
  for (i = 0; i + 16 <= n; i += 16) {
    // The default rounding mode: nearest, ties to even; |x|·inv ≤ 127 so nothing saturates.
    __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv));
    _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtsepi32_epi8(v));
  }
  for (; i < n; i++) {
    float r = nearbyintf(x[i] * inv);
    q[i] = (int8_t)(r > 127 ? 127 : r < -127 ? -127 : r);
  }
  *scale = s;
}
#endif

void graft_dnnl_quantize_rows(const float *x, int64_t rows, int64_t cols, int64_t ld, int8_t *q,
                              float *scales) {
#if defined(__x86_64__)
  for (int64_t r = 0; r < rows; r++) quantize_row(x + r * ld, cols, q + r * cols, scales + r);
#else
  for (int64_t r = 0; r < rows; r++) {
    const float *row = x + r * ld;
    float amax = 0;
    for (int64_t j = 0; j < cols; j++) amax = fmaxf(amax, fabsf(row[j]));
    float s = amax > 0 ? amax / 127.0f : 1.0f, inv = 1.0f / s;
    for (int64_t j = 0; j < cols; j++) {
      float v = nearbyintf(row[j] * inv);
      q[r * cols + j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
    }
    scales[r] = s;
  }
#endif
}
