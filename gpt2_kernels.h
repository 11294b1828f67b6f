/* gpt2_kernels.h — the compute kernels, written once over a vector type and compiled by gpt2.c
 * for each instruction set it may run on: the build's own, and on x86-64 also AVX2 and AVX-512
 * (under target pragmas, for one portable binary), and always plain C, the reference the others
 * are tested against. gpt2.c picks the best the CPU has when a context is made.
 *
 * Before including: KERNELS_ISA (ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON) and KERNEL(name),
 * which names this copy's functions (name##_avx2, ...; plain names for the build's own, which
 * the trainer calls directly). Each copy defines a table, KERNEL(kernels_table).
 *
 * A matmul y[t][o] = b[o] + Σ_i W[o][i]·x[t][i] comes in two shapes. Decoding a position reads
 * every weight once for two FLOPs: a race through memory, so the weights stay in their stored
 * type and are widened in registers, one dot product per output along a weight row; q8_0 and
 * q4_0 multiply them as integers with the activations quantized to 8 bits the same way (blocks
 * of 32 with a scale), as the fast runtimes do. A batch of positions uses each weight T times:
 * bound by arithmetic, so the batch is transposed once, weight rows (widened to f32 a tile at a
 * time) are broadcast against vectors of positions by the GEMM micro-kernel, and no vector
 * needs reducing. Every output is summed in one fixed order whatever the tiling and the thread
 * count, so results do not depend on how the work is split. */

#if KERNELS_ISA == ISA_AVX512
#define VEC_WIDTH 16
#define vec __m512
#define vec_zero() _mm512_setzero_ps()
#define vec_set1(x) _mm512_set1_ps(x)
#define vec_load(p) _mm512_loadu_ps(p)
#define vec_store(p, v) _mm512_storeu_ps(p, v)
#define vec_fma(a, b, acc) _mm512_fmadd_ps(a, b, acc)
#define vec_sum(v) _mm512_reduce_add_ps(v)
#define vec_load_f16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define vec_load_bf16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define BATCH_ROWS 8  /* a batched tile: 8 weight rows × 2 vectors of positions = 16 accumulators */
#define BATCH_VECS 2
#define KERNELS_NAME "avx512"
#elif KERNELS_ISA == ISA_AVX2
#define VEC_WIDTH 8
#define vec __m256
#define vec_zero() _mm256_setzero_ps()
#define vec_set1(x) _mm256_set1_ps(x)
#define vec_load(p) _mm256_loadu_ps(p)
#define vec_store(p, v) _mm256_storeu_ps(p, v)
#define vec_fma(a, b, acc) _mm256_fmadd_ps(a, b, acc)
#define vec_sum(v) KERNEL(sum8)(v)
#define vec_load_f16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define vec_load_bf16(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define BATCH_ROWS 6  /* 12 accumulators + 2 inputs + 1 broadcast of 16 registers */
#define BATCH_VECS 2
#define KERNELS_NAME "avx2"
#elif KERNELS_ISA == ISA_NEON
#define VEC_WIDTH 4
#define vec float32x4_t
#define vec_zero() vdupq_n_f32(0.0f)
#define vec_set1(x) vdupq_n_f32(x)
#define vec_load(p) vld1q_f32(p)
#define vec_store(p, v) vst1q_f32(p, v)
#define vec_fma(a, b, acc) vfmaq_f32(acc, a, b)
#define vec_sum(v) vaddvq_f32(v)
#define vec_load_f16(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)))
#define vec_load_bf16(p) vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16))
#define BATCH_ROWS 8
#define BATCH_VECS 2
#define KERNELS_NAME "neon"
#else  /* plain C: a "vector" of one float */
#define VEC_WIDTH 1
#define vec float
#define vec_zero() 0.0f
#define vec_set1(x) (x)
#define vec_load(p) (*(p))
#define vec_store(p, v) (*(p) = (v))
#define vec_fma(a, b, acc) ((acc) + (a) * (b))
#define vec_sum(v) (v)
#define vec_load_f16(p) f16_to_f32(*(p))
#define vec_load_bf16(p) bf16_to_f32(*(p))
#define BATCH_ROWS 4
#define BATCH_VECS 4
#define KERNELS_NAME "scalar"
#endif
#if KERNELS_ISA == ISA_AVX512 || KERNELS_ISA == ISA_AVX2
#define scalar_f16(h) _cvtsh_ss(h)  /* one half, by the instruction (F16C) */
#else
#define scalar_f16(h) f16_to_f32(h)
#endif
#define DOT_ROWS 4    /* weight rows a decoding tile reads side by side */
#define TILE_MAX_ROWS 8
#define TILE_MAX_VECS 4

#if KERNELS_ISA == ISA_AVX2
static inline float KERNEL(sum8)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

/* e^x to within 3e-7 relative, from arithmetic the compiler vectorizes (libm's expf and tanhf
 * are calls, one element at a time, and GELU and the softmaxes run millions of them):
 * e^x = 2^n · e^r with n = round(x / ln 2), r = x - n·ln 2 (ln 2 split in two, so r is exact
 * to float precision) and e^r by its Taylor polynomial to r^6 (|r| ≤ ln2/2: error < 1e-7).
 * Inputs are clamped to where 2^n is a normal float; below, the result is ~1e-38, not 0. */
static inline float KERNEL(exp_approx)(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    const float round_magic = 12582912.0f;  /* 1.5 · 2^23: adding and subtracting it rounds */
    /* two statements: each assignment rounds to float, also where arithmetic is wider (x87) */
    float n = x * 1.44269504088896341f + round_magic;
    n -= round_magic;
    float r = (x - n * 0.693145751953125f) - n * 1.428606765330187045e-06f;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* 2^n, built in the exponent field. NaN gives NaN (through p), but never reaches the int
     * conversion, where it would be undefined behaviour. */
    int32_t bits = ((int32_t)(n == n ? n : 0.0f) + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* GELU, tanh form (GPT-2's "gelu_new"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))),
 * computed as x / (1 + e^(-2u)) with u the tanh argument, since 0.5·(1 + tanh u) = 1/(1 + e^(-2u)).
 * A loop over an array, so that it vectorizes; out may be in. */
static void KERNEL(gelu)(float *out, const float *in, size_t n) {
    const float sqrt_2_over_pi = 0.7978845608028654f;
    for (size_t i = 0; i < n; i++) {
        float x = in[i], u = sqrt_2_over_pi * (x + 0.044715f * x * x * x);
        out[i] = x / (1.0f + KERNEL(exp_approx)(-2.0f * u));
    }
}

/* ---- the micro-kernel of every product ---------------------------------------------------- */

/* tile[r][0, vecs·VEC_WIDTH) = Σ_{k<K} A[r·a_row + k·a_k] · B[k·b_k + (0, vecs·VEC_WIDTH)], r < rows.
 * Each A element is broadcast against vectors of one B row, so no vector needs reducing at
 * the end; with constant rows and vecs the sums live in registers. The batched matmul, both
 * products of attention and the trainer's backward matmuls are this with other strides. */
static ALWAYS_INLINE void KERNEL(gemm_tile)(float *tile, size_t tile_stride, const float *A, size_t a_row, size_t a_k,
                                            const float *B, size_t b_k, int K, const int rows, const int vecs) {
    vec acc[TILE_MAX_ROWS][TILE_MAX_VECS];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) acc[r][v] = vec_zero();
    for (int k = 0; k < K; k++) {
        vec b[TILE_MAX_VECS];
        for (int v = 0; v < vecs; v++) b[v] = vec_load(B + (size_t)k * b_k + v * VEC_WIDTH);
        for (int r = 0; r < rows; r++) {
            vec a = vec_set1(A[r * a_row + (size_t)k * a_k]);
            for (int v = 0; v < vecs; v++) acc[r][v] = vec_fma(a, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) vec_store(tile + r * tile_stride + v * VEC_WIDTH, acc[r][v]);
}

/* ---- decoding: dot products along weight rows, in the weights' own type -------------------- */

/* `rows` outputs of position t from f32, f16 or bf16 rows (decided at compile time by LOAD). */
#define DOT_TILE(NAME, TYPE, LOAD, ONE)                                                                       \
    static ALWAYS_INLINE void KERNEL(NAME)(const Matmul *m, int o, int t, const int rows) {                  \
        const int n = m->n_in, nv = n - n % VEC_WIDTH;                                                        \
        const size_t ws = m->row_bytes / sizeof(TYPE);                                                        \
        const TYPE *w = (const TYPE *)m->w + (size_t)o * ws;                                                  \
        const float *x = m->in + (size_t)t * n;                                                               \
        vec acc[DOT_ROWS];                                                                                    \
        for (int r = 0; r < rows; r++) acc[r] = vec_zero();                                                   \
        for (int i = 0; i < nv; i += VEC_WIDTH) {                                                             \
            vec xv = vec_load(x + i);                                                                         \
            for (int r = 0; r < rows; r++) {                                                                  \
                PREFETCH(w + (r + rows) * ws + i);  /* the next tile's rows, a tile ahead */                   \
                acc[r] = vec_fma(LOAD(w + r * ws + i), xv, acc[r]);                                           \
            }                                                                                                 \
        }                                                                                                     \
        for (int r = 0; r < rows; r++) {                                                                      \
            float s = vec_sum(acc[r]);                                                                        \
            for (int i = nv; i < n; i++) s += ONE(w[r * ws + i]) * x[i];                                      \
            matmul_store(m, o + r, t, s);                                                                     \
        }                                                                                                     \
    }
#define F32_ONE(v) (v)
DOT_TILE(dot_tile_f32, float, vec_load, F32_ONE)
DOT_TILE(dot_tile_f16, uint16_t, vec_load_f16, f16_to_f32)
DOT_TILE(dot_tile_bf16, uint16_t, vec_load_bf16, bf16_to_f32)
#undef DOT_TILE
#undef F32_ONE

/* Σ_k w[k]·x[k] over one block of 32 8-bit values: q8_0 weights (signed) or q4_0 nibbles
 * (0..15, unpacked), times quantized activations (signed). */
#if KERNELS_ISA == ISA_AVX512 || KERNELS_ISA == ISA_AVX2
/* 8 partial sums in 32-bit lanes: maddubs multiplies unsigned by signed bytes and adds pairs
 * (no saturation here: |q8| ≤ 127 goes unsigned through its sign, nibbles are ≤ 15), then madd
 * adds the pairs' pairs. */
static inline __m256i KERNEL(dot_i8_q8)(const int8_t *w, const int8_t *x) {
    const __m256i wv = _mm256_loadu_si256((const __m256i *)w), xv = _mm256_loadu_si256((const __m256i *)x);
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
static inline __m256i KERNEL(dot_i8_q4)(const uint8_t *nibbles, const int8_t *x) {
    const __m128i packed = _mm_loadu_si128((const __m128i *)nibbles), low = _mm_set1_epi8(0x0F);
    const __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low), _mm_and_si128(packed, low));
    const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
#define QDOT_ACC __m256
#define qdot_zero() _mm256_setzero_ps()
#define qdot_fma(sums, scale, acc) _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(scale), acc)
static inline float KERNEL(qdot_sum)(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#elif KERNELS_ISA == ISA_NEON
static inline int32x4_t KERNEL(dot16)(int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(vdupq_n_s32(0), a, b);
#else
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));  /* |a·b| ≤ 127·127 twice: fits in 16 bits */
    return vpaddlq_s16(p);
#endif
}
static inline int32x4_t KERNEL(dot_i8_q8)(const int8_t *w, const int8_t *x) {
    return vaddq_s32(KERNEL(dot16)(vld1q_s8(w), vld1q_s8(x)), KERNEL(dot16)(vld1q_s8(w + 16), vld1q_s8(x + 16)));
}
static inline int32x4_t KERNEL(dot_i8_q4)(const uint8_t *nibbles, const int8_t *x) {
    const uint8x16_t packed = vld1q_u8(nibbles);
    const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F))), hi = vreinterpretq_s8_u8(vshrq_n_u8(packed, 4));
    return vaddq_s32(KERNEL(dot16)(lo, vld1q_s8(x)), KERNEL(dot16)(hi, vld1q_s8(x + 16)));
}
#define QDOT_ACC float32x4_t
#define qdot_zero() vdupq_n_f32(0.0f)
#define qdot_fma(sums, scale, acc) vfmaq_n_f32(acc, vcvtq_f32_s32(sums), scale)
static inline float KERNEL(qdot_sum)(float32x4_t v) { return vaddvq_f32(v); }
#else
static inline int32_t KERNEL(dot_i8_q8)(const int8_t *w, const int8_t *x) {
    int32_t s = 0;
    for (int k = 0; k < QBLOCK; k++) s += w[k] * x[k];
    return s;
}
static inline int32_t KERNEL(dot_i8_q4)(const uint8_t *nibbles, const int8_t *x) {
    int32_t s = 0;
    for (int k = 0; k < QBLOCK / 2; k++) s += (nibbles[k] & 0xF) * x[k] + (nibbles[k] >> 4) * x[k + QBLOCK / 2];
    return s;
}
#define QDOT_ACC float
#define qdot_zero() 0.0f
#define qdot_fma(sums, scale, acc) ((acc) + (float)(sums) * (scale))
static inline float KERNEL(qdot_sum)(float v) { return v; }
#endif

/* `rows` outputs of position t from q8_0 or q4_0 rows: Σ_b d_w[b]·d_x[b]·(Σ_k q_w·q_x), less, for
 * q4_0 (whose nibbles are q + 8), 8·d_w[b]·d_x[b]·Σ_k q_x. The activations were quantized into
 * m->xq (see quantize_activations). */
#if KERNELS_ISA == ISA_AVX512
/* Two blocks per 512-bit vector, their products by vpdpbusd (unsigned weights: q8_0's flipped to
 * q + 128, q4_0's nibbles as they are, each block's offset × its activation sum taken off at the
 * end); the scales d_w·d_x of 16 blocks at a time are one vector, spread to the two blocks'
 * lanes by a permute. */
static ALWAYS_INLINE void KERNEL(qdot_tile)(const Matmul *m, int o, int t, const int rows, const bool q4) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const size_t ws = m->row_bytes, block_bytes = q4 ? QBLOCK / 2 : QBLOCK, quants = (size_t)nb * block_bytes;
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * ws;
    const int8_t *xq = m->xq + (size_t)t * nb * QBLOCK;
    const float *xd = m->xd + (size_t)t * nb;
    const int32_t *xsum = m->xsum + (size_t)t * nb;
    const float offset = q4 ? 8.0f : 128.0f;
    /* q4_0: 16 bytes of nibbles per block; [b0, b0, b1, b1] then low nibbles of the first copy,
     * high of the second: the two blocks' 64 values in order */
    const __m512i spread = _mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0), low = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8((char)0x80);
    const __m512i shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    const __m512i lanes = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);  /* block 2j, 2j + 1 */
    __m512 acc[DOT_ROWS], correction[DOT_ROWS];
    for (int r = 0; r < rows; r++) acc[r] = correction[r] = _mm512_setzero_ps();
    for (int g = 0; g < nb; g += 16) {  /* 16 blocks: their scales as one vector */
        const int n = nb - g < 16 ? nb - g : 16;
        const __mmask16 in_group = (__mmask16)((1u << n) - 1);
        const __m512 dx = _mm512_maskz_loadu_ps(in_group, xd + g);
        const __m512 sx = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(in_group, xsum + g)), _mm512_set1_ps(offset));
        __m512 scale[DOT_ROWS];
        for (int r = 0; r < rows; r++) {
            PREFETCH(w + (r + rows) * ws + quants + 2 * (size_t)g);
            const __m256i d16 = _mm256_maskz_loadu_epi16(in_group, w + r * ws + quants + 2 * (size_t)g);
            scale[r] = _mm512_mul_ps(_mm512_cvtph_ps(d16), dx);
            correction[r] = _mm512_fmadd_ps(scale[r], sx, correction[r]);
        }
        for (int j = 0; j < n; j += 2) {
            const int b = g + j;
            const __mmask64 in_pair = j + 1 < n ? ~(__mmask64)0 : (__mmask64)0xFFFFFFFF;  /* an odd last block: half a vector */
            const __m512i x = _mm512_maskz_loadu_epi8(in_pair, xq + (size_t)b * QBLOCK);
            const __m512i index = _mm512_add_epi32(lanes, _mm512_set1_epi32(j));
            for (int r = 0; r < rows; r++) {
                const uint8_t *row = w + r * ws + (size_t)b * block_bytes;
                PREFETCH(row + rows * ws);
                __m512i q;
                if (q4) {
                    const __m512i packed = _mm512_castsi256_si512(_mm256_maskz_loadu_epi8((__mmask32)in_pair, row));
                    q = _mm512_and_si512(_mm512_srlv_epi64(_mm512_permutexvar_epi64(spread, packed), shifts), low);
                } else {
                    q = _mm512_xor_si512(_mm512_maskz_loadu_epi8(in_pair, row), flip);
                }
                const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, x);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_permutexvar_ps(index, scale[r]), acc[r]);
            }
        }
    }
    for (int r = 0; r < rows; r++) matmul_store(m, o + r, t, _mm512_reduce_add_ps(acc[r]) - _mm512_reduce_add_ps(correction[r]));
}
#else
static ALWAYS_INLINE void KERNEL(qdot_tile)(const Matmul *m, int o, int t, const int rows, const bool q4) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const size_t ws = m->row_bytes, quants = (size_t)nb * (q4 ? QBLOCK / 2 : QBLOCK);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * ws;
    const int8_t *xq = m->xq + (size_t)t * nb * QBLOCK;
    const float *xd = m->xd + (size_t)t * nb;
    const int32_t *xsum = m->xsum + (size_t)t * nb;
    QDOT_ACC acc[DOT_ROWS];
    float correction[DOT_ROWS] = {0};
    for (int r = 0; r < rows; r++) acc[r] = qdot_zero();
    for (int b = 0; b < nb; b++) {
        for (int r = 0; r < rows; r++) {
            const uint8_t *row = w + r * ws;
            PREFETCH(row + rows * ws + (size_t)b * (q4 ? QBLOCK / 2 : QBLOCK));
            uint16_t d16;
            memcpy(&d16, row + quants + 2 * (size_t)b, 2);
            const float scale = scalar_f16(d16) * xd[b];
            if (q4) {
                acc[r] = qdot_fma(KERNEL(dot_i8_q4)(row + (size_t)b * (QBLOCK / 2), xq + (size_t)b * QBLOCK), scale, acc[r]);
                correction[r] += scale * (float)(8 * xsum[b]);
            } else {
                acc[r] = qdot_fma(KERNEL(dot_i8_q8)((const int8_t *)row + (size_t)b * QBLOCK, xq + (size_t)b * QBLOCK), scale, acc[r]);
            }
        }
    }
    for (int r = 0; r < rows; r++) matmul_store(m, o + r, t, KERNEL(qdot_sum)(acc[r]) - correction[r]);
}
#endif

static void KERNEL(matmul_dot_task)(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    (void)thread;
    int o = begin;
#define ROWS(R)                                                                        \
    for (int t = 0; t < m->T; t++) switch (m->dtype) {                                 \
        case GPT2_F32: KERNEL(dot_tile_f32)(m, o, t, R); break;                        \
        case GPT2_F16: KERNEL(dot_tile_f16)(m, o, t, R); break;                        \
        case GPT2_BF16: KERNEL(dot_tile_bf16)(m, o, t, R); break;                      \
        case GPT2_Q8_0: KERNEL(qdot_tile)(m, o, t, R, false); break;                   \
        case GPT2_Q4_0: KERNEL(qdot_tile)(m, o, t, R, true); break;                    \
        }
    for (; o + DOT_ROWS <= end; o += DOT_ROWS) ROWS(DOT_ROWS)
    for (; o < end; o++) ROWS(1)
#undef ROWS
    matmul_finish(m, begin, end);
}

/* ---- a batch: the GEMM micro-kernel over transposed positions ------------------------------ */

/* `rows` outputs × `vecs` vectors of positions from t, from f32 weight rows w (ws apart). */
static ALWAYS_INLINE void KERNEL(batch_tile)(const Matmul *m, const float *w, size_t ws, int o, int t, const int rows,
                                             const int vecs) {
    float tile[TILE_MAX_ROWS][TILE_MAX_VECS * VEC_WIDTH];
    KERNEL(gemm_tile)(&tile[0][0], TILE_MAX_VECS * VEC_WIDTH, w, ws, 1, m->in_t + t, m->T_padded, m->n_in, rows, vecs);
    const int n = m->T - t < vecs * VEC_WIDTH ? m->T - t : vecs * VEC_WIDTH;  /* padding lanes are dropped */
    matmul_store_tile(m, o, rows, t, n, &tile[0][0], TILE_MAX_VECS * VEC_WIDTH);
}

/* Weight rows [o, o + rows) as f32 rows n_in apart, in this thread's tile: a row of f32 weights
 * is used where it lies, another type widened once for all the batch's positions. */
static const float *KERNEL(f32_rows)(const Matmul *m, int o, int rows, int thread, size_t *stride) {
    if (m->dtype == GPT2_F32) {
        *stride = m->row_bytes / sizeof(float);
        return (const float *)m->w + (size_t)o * *stride;
    }
    float *tile = m->w_tiles + (size_t)thread * TILE_MAX_ROWS * m->n_in;
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)m->w + (size_t)(o + r) * m->row_bytes;
        float *out = tile + (size_t)r * m->n_in;
        int i = 0;
        if (m->dtype == GPT2_F16)
            for (; i + VEC_WIDTH <= m->n_in; i += VEC_WIDTH) vec_store(out + i, vec_load_f16((const uint16_t *)row + i));
        else if (m->dtype == GPT2_BF16)
            for (; i + VEC_WIDTH <= m->n_in; i += VEC_WIDTH) vec_store(out + i, vec_load_bf16((const uint16_t *)row + i));
        else
            dequantize_row(row, m->dtype, m->n_in, out), i = m->n_in;
        if (i < m->n_in) dequantize_row(row + 2 * (size_t)i, m->dtype, m->n_in - i, out + i);  /* f16/bf16's last few */
    }
    *stride = (size_t)m->n_in;
    return tile;
}

static void KERNEL(matmul_batch_task)(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    const int tile = BATCH_VECS * VEC_WIDTH;
    size_t ws;
    int o = begin;
    for (; o + BATCH_ROWS <= end; o += BATCH_ROWS) {
        const float *w = KERNEL(f32_rows)(m, o, BATCH_ROWS, thread, &ws);
        prefetch_rows(m, o + BATCH_ROWS, BATCH_ROWS, end);
        int t = 0;
        for (; t + tile <= m->T_padded; t += tile) KERNEL(batch_tile)(m, w, ws, o, t, BATCH_ROWS, BATCH_VECS);
        for (; t < m->T_padded; t += VEC_WIDTH) KERNEL(batch_tile)(m, w, ws, o, t, BATCH_ROWS, 1);
    }
    for (; o < end; o++) {
        const float *w = KERNEL(f32_rows)(m, o, 1, thread, &ws);
        for (int t = 0; t < m->T_padded; t += VEC_WIDTH) KERNEL(batch_tile)(m, w, ws, o, t, 1, 1);
    }
    matmul_finish(m, begin, end);
}

#if KERNELS_ISA == ISA_AVX512
/* ---- a batch with q8_0 or q4_0 weights: 8-bit integer products (AVX-512 VNNI) -------------- */

/* vpdpbusd adds to each 32-bit lane the 4 products of 4 unsigned bytes by 4 signed ones: 64
 * multiply-adds an instruction, four times the f32 FMA's 16. The weights are the unsigned side,
 * offset to 0 … 255 (q8_0: q + 128; q4_0's nibbles already are q + 8), the activations the
 * signed one, quantized as decoding quantizes them; the offset × the block's activation sum
 * starts each block's integer sum (quantize_batch_task), and the scales d_w·d_x apply per block.
 * A thread unpacks INT8_ROWS weight rows to bytes once, for all the batch's positions. */
#define INT8_ROWS 4

static void KERNEL(unpack_int8_rows)(const Matmul *m, int o, int rows, uint8_t *q, float *d) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const bool q4 = m->dtype == GPT2_Q4_0;
    const size_t quants = (size_t)nb * (q4 ? QBLOCK / 2 : QBLOCK);
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)m->w + (size_t)(o + r) * m->row_bytes;
        uint8_t *out = q + (size_t)r * nb * QBLOCK;
        for (int b = 0; b < nb; b++) {
            const __m128i lo = _mm_loadu_si128((const __m128i *)(row + (size_t)b * (q4 ? QBLOCK / 2 : QBLOCK)));
            if (q4) {
                const __m128i low = _mm_set1_epi8(0x0F);
                _mm_storeu_si128((__m128i *)(out + (size_t)b * QBLOCK), _mm_and_si128(lo, low));
                _mm_storeu_si128((__m128i *)(out + (size_t)b * QBLOCK + 16), _mm_and_si128(_mm_srli_epi16(lo, 4), low));
            } else {
                const __m128i hi = _mm_loadu_si128((const __m128i *)(row + (size_t)b * QBLOCK + 16)), flip = _mm_set1_epi8((char)0x80);
                _mm_storeu_si128((__m128i *)(out + (size_t)b * QBLOCK), _mm_xor_si128(lo, flip));
                _mm_storeu_si128((__m128i *)(out + (size_t)b * QBLOCK + 16), _mm_xor_si128(hi, flip));
            }
            uint16_t h;
            memcpy(&h, row + quants + 2 * (size_t)b, 2);
            d[(size_t)r * nb + b] = scalar_f16(h);
        }
    }
}

/* `rows` outputs × `vecs` vectors of 16 positions from t: for each block b,
 *     y += d_w[b] · d_x[t][b] · (Σ_k u_w[k]·q_x[t][k] − offset·Σ_k q_x[t][k]),
 * the integer sum exact, the blocks added in order. */
static ALWAYS_INLINE void KERNEL(int8_tile)(const Matmul *m, const uint8_t *wq, const float *wd, int o, int t, const int rows,
                                            const int vecs) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK, Tp = m->T_padded;
    const uint32_t *xq = (const uint32_t *)m->xq;
    __m512 acc[INT8_ROWS][2];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) acc[r][v] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m512i sums[INT8_ROWS][2];
        for (int v = 0; v < vecs; v++) {
            const __m512i start = _mm512_loadu_si512(m->xsum + (size_t)b * Tp + t + 16 * v);
            for (int r = 0; r < rows; r++) sums[r][v] = start;
        }
        for (int g = 0; g < QBLOCK / 4; g++) {
            __m512i x[2];
            for (int v = 0; v < vecs; v++) x[v] = _mm512_loadu_si512(xq + ((size_t)b * (QBLOCK / 4) + g) * Tp + t + 16 * v);
            for (int r = 0; r < rows; r++) {
                uint32_t w4;
                memcpy(&w4, wq + ((size_t)r * nb + b) * QBLOCK + 4 * g, 4);
                const __m512i w = _mm512_set1_epi32((int)w4);
                for (int v = 0; v < vecs; v++) sums[r][v] = _mm512_dpbusd_epi32(sums[r][v], w, x[v]);
            }
        }
        for (int v = 0; v < vecs; v++) {
            const __m512 dx = _mm512_loadu_ps(m->xd + (size_t)b * Tp + t + 16 * v);
            for (int r = 0; r < rows; r++)
                acc[r][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[r][v]), _mm512_mul_ps(_mm512_set1_ps(wd[(size_t)r * nb + b]), dx),
                                            acc[r][v]);
        }
    }
    float tile[INT8_ROWS][32];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) _mm512_storeu_ps(&tile[r][16 * v], acc[r][v]);
    matmul_store_tile(m, o, rows, t, m->T - t < 16 * vecs ? m->T - t : 16 * vecs, &tile[0][0], 32);
}

static void KERNEL(matmul_int8_task)(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    uint8_t *wq = (uint8_t *)(m->w_tiles + (size_t)thread * TILE_MAX_ROWS * m->n_in);
    float *wd = (float *)(wq + (size_t)INT8_ROWS * nb * QBLOCK);  /* (a tile holds 32 bytes a weight: room for both) */
    for (int o = begin; o < end; o += INT8_ROWS) {
        const int rows = end - o < INT8_ROWS ? end - o : INT8_ROWS;
        KERNEL(unpack_int8_rows)(m, o, rows, wq, wd);
        prefetch_rows(m, o + rows, INT8_ROWS, end);
        int t = 0;
        if (rows == INT8_ROWS) {
            for (; t + 32 <= m->T_padded; t += 32) KERNEL(int8_tile)(m, wq, wd, o, t, INT8_ROWS, 2);
            for (; t < m->T_padded; t += 16) KERNEL(int8_tile)(m, wq, wd, o, t, INT8_ROWS, 1);
        } else {
            for (int r = 0; r < rows; r++)
                for (t = 0; t < m->T_padded; t += 16) KERNEL(int8_tile)(m, wq + (size_t)r * nb * QBLOCK, wd + (size_t)r * nb, o + r, t, 1, 1);
        }
    }
    matmul_finish(m, begin, end);
}
#endif

/* out (T, w.rows) ⟵ in (T, w.cols) · wᵀ + bias, with the epilogue, split by output rows over
 * the pool; more than MATMUL_POSITIONS positions go in chunks of that many. */
static void KERNEL(matmul)(gpt2_pool *pool, const MatmulScratch *scratch, float *out, const float *in, const Tensor *w,
                           const float *bias, int T, Epilogue epilogue) {
    for (int t0 = 0; t0 < T; t0 += MATMUL_POSITIONS) {
        const int n = T - t0 < MATMUL_POSITIONS ? T - t0 : MATMUL_POSITIONS;
        Matmul m = {out + (size_t)t0 * w->rows, in + (size_t)t0 * w->cols, scratch->in_t, (n + VEC_WIDTH - 1) / VEC_WIDTH * VEC_WIDTH,
                    w->data, w->dtype, w->row_bytes, scratch->w_tiles, scratch->xq, scratch->xd, scratch->xsum, bias, n, w->cols,
                    w->rows, epilogue, KERNEL(gelu)};
        const bool quantized = w->dtype == GPT2_Q8_0 || w->dtype == GPT2_Q4_0;
#if KERNELS_ISA == ISA_AVX512
        if (quantized && n >= BATCH_MIN) {
            m.T_padded = (n + 15) / 16 * 16;
            const int nb = (m.n_in + QBLOCK - 1) / QBLOCK;
            pool_run(pool, quantize_batch_task, &m, nb, pool_chunk(pool, nb, 1));
            pool_run(pool, KERNEL(matmul_int8_task), &m, m.n_out, pool_chunk(pool, m.n_out, INT8_ROWS));
            continue;
        }
#endif
        /* q8_0 and q4_0 are integer products on quantized activations at any batch size (here:
         * the decoding kernel, a few weight rows at a time against every position), so that each
         * instruction set computes the same sums */
        if (n < BATCH_MIN || quantized) {
            if (quantized) quantize_activations(&m);
            pool_run(pool, KERNEL(matmul_dot_task), &m, m.n_out, pool_chunk(pool, m.n_out, DOT_ROWS));
            continue;
        }
        pool_run(pool, transpose_task, &m, m.n_in, pool_chunk(pool, m.n_in, 16));
        pool_run(pool, KERNEL(matmul_batch_task), &m, m.n_out, pool_chunk(pool, m.n_out, BATCH_ROWS));
    }
}

/* ---- attention ---------------------------------------------------------------------------- */

static void KERNEL(attention_task)(void *arg, int begin, int end, int thread) {
    const Attention *a = arg;
    const int HS = a->HS, ks = a->key_stride;
    const float scale = 1.0f / sqrtf((float)HS);
    float *scores = a->scores + (size_t)thread * ks;
    for (int item = begin; item < end; item++) {
        /* head-major: a thread takes consecutive positions of one head, whose keys and values
         * then stay in cache from one query to the next */
        int h = item / a->T, t = item % a->T, n_keys = a->pos0 + t + 1;
        const float *q = a->q + (size_t)t * a->q_stride + h * HS;
        const float *keys = a->keys + (size_t)h * HS * ks;
        const float *values = a->values + h * a->value_head_stride;
        float *out = a->out + (size_t)t * a->out_stride + h * HS;
        float *p = a->probs ? a->probs + ((size_t)h * a->T + t) * ks : scores;
        /* p = softmax(q·kᵀ / √HS), subtracting the max so exp cannot overflow */
        int j = 0;  /* scores of VEC_WIDTH keys at a time: Σ_d q[d] · (channel d of those keys) */
        for (; j + 4 * VEC_WIDTH <= n_keys; j += 4 * VEC_WIDTH) KERNEL(gemm_tile)(p + j, 0, q, 0, 1, keys + j, ks, HS, 1, 4);
        for (; j + VEC_WIDTH <= n_keys; j += VEC_WIDTH) KERNEL(gemm_tile)(p + j, 0, q, 0, 1, keys + j, ks, HS, 1, 1);
        for (; j < n_keys; j++) {
            float s = 0.0f;
            for (int d = 0; d < HS; d++) s += q[d] * keys[(size_t)d * ks + j];
            p[j] = s;
        }
        float max = -INFINITY, sum = 0.0f;
        for (j = 0; j < n_keys; j++) {
            p[j] *= scale;
            if (p[j] > max) max = p[j];
        }
        for (j = 0; j < n_keys; j++) p[j] = KERNEL(exp_approx)(p[j] - max);
        for (j = 0; j < n_keys; j++) sum += p[j];
        float inv_sum = 1.0f / sum;
        for (j = 0; j < n_keys; j++) p[j] *= inv_sum;
        if (a->probs)  /* the masked keys, 0 in the stored softmax: its backward reads whole columns */
            for (j = n_keys; j < a->pos0 + a->T; j++) p[j] = 0.0f;
        /* out = Σ_j p_j · v_j */
        int i = 0;
        for (; i + 4 * VEC_WIDTH <= HS; i += 4 * VEC_WIDTH) KERNEL(gemm_tile)(out + i, 0, p, 0, 1, values + i, a->value_stride, n_keys, 1, 4);
        for (; i + VEC_WIDTH <= HS; i += VEC_WIDTH) KERNEL(gemm_tile)(out + i, 0, p, 0, 1, values + i, a->value_stride, n_keys, 1, 1);
        for (; i < HS; i++) {
            float s = 0.0f;
            for (j = 0; j < n_keys; j++) s += p[j] * values[(size_t)j * a->value_stride + i];
            out[i] = s;
        }
    }
}

static void KERNEL(attention)(gpt2_pool *pool, const Attention *a) {
    pool_run(pool, KERNEL(attention_task), (void *)a, a->T * a->NH, pool_chunk(pool, a->T * a->NH, 1));
}

/* ---- reading bandwidth -------------------------------------------------------------------- */

/* Sums blocks [begin, end) of the data, as floats (any bits will do: nothing is checked but
 * that the loads happen), four independent sums so that loads, not adds, set the pace. */
static void KERNEL(read_task)(void *arg, int begin, int end, int thread) {
    const ReadTask *r = arg;
    vec acc[4] = {vec_zero(), vec_zero(), vec_zero(), vec_zero()};
    for (int b = begin; b < end; b++) {
        const size_t from = (size_t)b * READ_BLOCK, to = from + READ_BLOCK < r->bytes ? from + READ_BLOCK : r->bytes;
        for (size_t i = from; i + 4 * VEC_WIDTH * sizeof(float) <= to; i += 4 * VEC_WIDTH * sizeof(float))
            for (int k = 0; k < 4; k++) {
                vec v;
                memcpy(&v, r->data + i + (size_t)k * VEC_WIDTH * sizeof(float), sizeof v);
                acc[k] = vec_fma(v, vec_set1(0.0f), acc[k]);  /* 0·v: denormal and NaN bits cost nothing */
            }
    }
    r->sink[thread] += vec_sum(acc[0]) + vec_sum(acc[1]) + vec_sum(acc[2]) + vec_sum(acc[3]);
}

static const Kernels KERNEL(kernels_table) = {KERNELS_NAME, KERNEL(matmul), KERNEL(attention), KERNEL(gelu), KERNEL(read_task)};

#undef vec
#undef vec_zero
#undef vec_set1
#undef vec_load
#undef vec_store
#undef vec_fma
#undef vec_sum
#undef vec_load_f16
#undef vec_load_bf16
#undef QDOT_ACC
#undef qdot_zero
#undef qdot_fma
#undef scalar_f16
#undef KERNELS_NAME
#undef INT8_ROWS
#ifndef KERNELS_KEEP  /* the build's own copy keeps its names for the rest of gpt2.c and the trainer */
#undef VEC_WIDTH
#undef BATCH_ROWS
#undef BATCH_VECS
#undef DOT_ROWS
#undef TILE_MAX_ROWS
#undef TILE_MAX_VECS
#endif
#undef KERNELS_ISA
#undef KERNEL
