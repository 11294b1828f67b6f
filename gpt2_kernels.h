/* gpt2_kernels.h — the compute kernels, written once over a vector type and compiled by gpt2.c
 * for each instruction set it may run on: the build's own, and on x86-64 also AVX2 and AVX-512
 * (under target pragmas, for one portable binary; on 64-bit ARM, NEON with dot products), and
 * always plain C, the reference the others are tested against. gpt2.c picks the best the CPU
 * has when a context is made.
 *
 * Before including: KERNELS_ISA (ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON), KERNELS_DOTPROD
 * (1: NEON's dot-product instructions may be used) and KERNEL(name), which names this copy's
 * functions (name##_avx2, ...; plain names for the build's own, which the trainer calls
 * directly). Each copy defines a table, KERNEL(kernels_table).
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
#define vec_mul(a, b) _mm512_mul_ps(a, b)
#define vec_add(a, b) _mm512_add_ps(a, b)
#define vec_max(a, b) _mm512_max_ps(a, b)
#define vec_sum(v) _mm512_reduce_add_ps(v)
#define vec_load_f16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define vec_load_bf16(p) _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define BATCH_ROWS 6  /* a batched tile: 6 weight rows × 4 vectors of positions = 24 accumulators */
#define BATCH_VECS 4
#define KERNELS_NAME "avx512"
#elif KERNELS_ISA == ISA_AVX2
#define VEC_WIDTH 8
#define vec __m256
#define vec_zero() _mm256_setzero_ps()
#define vec_set1(x) _mm256_set1_ps(x)
#define vec_load(p) _mm256_loadu_ps(p)
#define vec_store(p, v) _mm256_storeu_ps(p, v)
#define vec_fma(a, b, acc) _mm256_fmadd_ps(a, b, acc)
#define vec_mul(a, b) _mm256_mul_ps(a, b)
#define vec_add(a, b) _mm256_add_ps(a, b)
#define vec_max(a, b) _mm256_max_ps(a, b)
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
#define vec_mul(a, b) vmulq_f32(a, b)
#define vec_add(a, b) vaddq_f32(a, b)
#define vec_max(a, b) vmaxq_f32(a, b)
#define vec_sum(v) vaddvq_f32(v)
#define vec_load_f16(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)))
#define vec_load_bf16(p) vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16))
#define BATCH_ROWS 8
#define BATCH_VECS 2
#define KERNELS_NAME (KERNELS_DOTPROD ? "neondot" : "neon")
#else  /* plain C: a "vector" of one float */
#define VEC_WIDTH 1
#define vec float
#define vec_zero() 0.0f
#define vec_set1(x) (x)
#define vec_load(p) (*(p))
#define vec_store(p, v) (*(p) = (v))
#define vec_fma(a, b, acc) ((acc) + (a) * (b))
#define vec_mul(a, b) ((a) * (b))
#define vec_add(a, b) ((a) + (b))
#define vec_max(a, b) ((a) > (b) ? (a) : (b))
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
/* Weight rows a decoding tile reads side by side: f32 8 (more streams from memory at once:
 * on one core 6-14% faster than 4 on Zen 5, 12-19% on Zen 4), the narrower types 4 (q8_0: 8
 * was no faster on one Zen 5 core, and slower on two; f16 and bf16: 4 was 9-16% faster than 8
 * on one Zen 4 core, with the prefetches to L2). Where the prefetches go to L1 (Zen 5), f16,
 * bf16 and q4_0 read 8 too: one core then decoded f16 and bf16 at ~80% of the read the bench
 * measures, not ~66%; q4_0, whose unpacking of nibbles makes it the most instructions a byte,
 * multiplied an L2-resident matrix 15% faster (more independent sums in flight) and decoded
 * 3-5% faster on one core, 0-2% on two. */
#define DOT_ROWS 8
#define DOT_ROWS_NARROW 4
/* GELU and the softmaxes are loops the compiler vectorizes; with AVX-512, in 512-bit vectors.
 * (gcc tuned for Sapphire Rapids, as -march=native is there, chose 256 bits: in a q8_0 prompt
 * of 512 on one core, GELU took 167 ms and the softmaxes 163, against 118 and 126 so.) */
#if KERNELS_ISA == ISA_AVX512 && defined(__GNUC__) && !defined(__clang__)
#define WIDE_LOOPS __attribute__((target("prefer-vector-width=512")))
#else
#define WIDE_LOOPS
#endif
/* A batch with q8_0 or q4_0 weights is an integer GEMM on repacked panels where the instruction
 * set multiplies 4 bytes by 4 bytes into 32-bit lanes (AVX-512 VNNI; AVX2's maddubs and madd;
 * NEON's dot products); elsewhere, decoding's tiles a position at a time. */
#if KERNELS_ISA == ISA_AVX512 || KERNELS_ISA == ISA_AVX2 || (KERNELS_ISA == ISA_NEON && KERNELS_DOTPROD)
#define INT8_PANELS 1
#else
#define INT8_PANELS 0
#endif
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
WIDE_LOOPS static void KERNEL(gelu)(float *out, const float *in, size_t n) {
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
static ALWAYS_INLINE void KERNEL(gemm_tile_prefetching)(float *tile, size_t tile_stride, const float *A, size_t a_row, size_t a_k,
                                                        const float *B, size_t b_k, int K, const int rows, const int vecs,
                                                        const uint8_t *prefetch, size_t prefetch_step) {
    vec acc[TILE_MAX_ROWS][TILE_MAX_VECS];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) acc[r][v] = vec_zero();
    for (int k = 0; k < K; k++) {
        if (prefetch) PREFETCH(prefetch + (size_t)k * prefetch_step);
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

static ALWAYS_INLINE void KERNEL(gemm_tile)(float *tile, size_t tile_stride, const float *A, size_t a_row, size_t a_k,
                                            const float *B, size_t b_k, int K, const int rows, const int vecs) {
    KERNEL(gemm_tile_prefetching)(tile, tile_stride, A, a_row, a_k, B, b_k, K, rows, vecs, NULL, 0);
}

/* ---- decoding: dot products along weight rows, in the weights' own type -------------------- */

/* Weights of a row a decoding tile prefetches at a time: a vector's on x86 (once a cache line
 * was 5-8% slower for f16 and bf16 on one Zen 4 core); a cache line's elsewhere, where a vector
 * can be 8 bytes (NEON's of f16) and a prefetch a vector was 40% of the instructions. */
#if KERNELS_ISA == ISA_AVX512 || KERNELS_ISA == ISA_AVX2
#define DOT_PREFETCH_ELEMS(TYPE) VEC_WIDTH
#else
#define DOT_PREFETCH_ELEMS(TYPE) (64 / (int)sizeof(TYPE))
#endif

/* `rows` outputs of position t from f32, f16 or bf16 rows (decided at compile time by LOAD). */
#define DOT_TILE(NAME, TYPE, LOAD, ONE)                                                                       \
    static ALWAYS_INLINE void KERNEL(NAME)(const Matmul *m, int o, int t, const int rows, const bool to_l1) { \
        const int n = m->n_in, nv = n - n % VEC_WIDTH;                                                        \
        const size_t ws = m->row_bytes / sizeof(TYPE), ahead = prefetch_ahead(m->row_bytes, rows);            \
        const TYPE *w = (const TYPE *)m->w + (size_t)o * ws;                                                  \
        const float *x = m->in + (size_t)t * n;                                                               \
        vec acc[DOT_ROWS];                                                                                    \
        for (int r = 0; r < rows; r++) acc[r] = vec_zero();                                                   \
        const int line = DOT_PREFETCH_ELEMS(TYPE), nl = n - n % line;                                         \
        int i = 0;                                                                                            \
        for (; i < nl; i += line) {                                                                           \
            for (int r = 0; r < rows; r++) PREFETCH_STREAM((const uint8_t *)(w + r * ws + i) + ahead, to_l1); \
            for (int j = i; j < i + line; j += VEC_WIDTH) {                                                   \
                vec xv = vec_load(x + j);                                                                     \
                for (int r = 0; r < rows; r++) acc[r] = vec_fma(LOAD(w + r * ws + j), xv, acc[r]);            \
            }                                                                                                 \
        }                                                                                                     \
        for (; i < nv; i += VEC_WIDTH) {                                                                      \
            vec xv = vec_load(x + i);                                                                         \
            for (int r = 0; r < rows; r++) acc[r] = vec_fma(LOAD(w + r * ws + i), xv, acc[r]);                \
        }                                                                                                     \
        for (int r = 0; r < rows; r++) {                                                                      \
            float s = vec_sum(acc[r]);                                                                        \
            for (int k = nv; k < n; k++) s += ONE(w[r * ws + k]) * x[k];                                      \
            matmul_store(m, o + r, t, s);                                                                     \
        }                                                                                                     \
    }
#define F32_ONE(v) (v)
DOT_TILE(dot_tile_f32, float, vec_load, F32_ONE)
DOT_TILE(dot_tile_f16, uint16_t, vec_load_f16, f16_to_f32)
DOT_TILE(dot_tile_bf16, uint16_t, vec_load_bf16, bf16_to_f32)
#undef DOT_TILE
#undef DOT_PREFETCH_ELEMS
#undef F32_ONE

/* Σ_k w[k]·x[k] over one block of 32 8-bit values: q8_0 weights (signed) or q4_0 nibbles
 * (0..15, unpacked), times quantized activations (signed). (x86 has tiles of its own, below.) */
#if KERNELS_ISA == ISA_NEON
/* acc + the products of 16 signed bytes, a lane summing four */
static inline int32x4_t KERNEL(dot16)(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if KERNELS_DOTPROD
    return vdotq_s32(acc, a, b);
#else
    int16x8_t p = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    p = vmlal_s8(p, vget_high_s8(a), vget_high_s8(b));  /* |a·b| ≤ 128·127 twice (activations ±127): fits in 16 bits */
    return vpadalq_s16(acc, p);
#endif
}
/* acc + a block's products: q8_0's 32 weights, or q4_0's 16 bytes, whose low nibbles are the
 * block's first 16 values and high nibbles its last 16 */
static inline int32x4_t KERNEL(dot_block)(int32x4_t acc, const uint8_t *w, const int8_t *x, const bool q4) {
    int8x16_t first, second;
    if (q4) {
        const uint8x16_t packed = vld1q_u8(w);
        first = vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F)));
        second = vreinterpretq_s8_u8(vshrq_n_u8(packed, 4));
    } else {
        first = vld1q_s8((const int8_t *)w);
        second = vld1q_s8((const int8_t *)w + 16);
    }
    return KERNEL(dot16)(KERNEL(dot16)(acc, first, vld1q_s8(x)), second, vld1q_s8(x + 16));
}
#elif KERNELS_ISA == ISA_SCALAR
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
#endif

/* `rows` outputs of position t from q8_0 or q4_0 rows: Σ_b d_w[b]·d_x[b]·(Σ_k q_w·q_x), where
 * for q4_0, whose nibbles are q + 8, the block's integer sum is Σ_k nibble·q_x − 8·Σ_k q_x,
 * exact before it is scaled. The activations were quantized into m->xq (see
 * quantize_activations). */
#if KERNELS_ISA == ISA_AVX512
static inline __mmask64 KERNEL(first_bytes)(int n) {  /* a load's mask for n of its 64 bytes */
    return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : ((__mmask64)1 << n) - 1;
}
/* 16 blocks at a time: their scales d_w·d_x as one vector (the row's f16 scales converted and
 * multiplied by the activations'), and −offset × their activation sums as another (offset =
 * 2^log2_offset), each spread to the lanes of a block's sums by a permute. */
#define QDOT_GROUP(quants, log2_offset)                                                                                  \
    const int n = nb - g < 16 ? nb - g : 16;                                                                             \
    const __mmask16 in_group = (__mmask16)((1u << n) - 1);                                                               \
    const __m512 dx = _mm512_maskz_loadu_ps(in_group, xd + g);                                                           \
    const __m512i less = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_maskz_loadu_epi32(in_group, xsum + g), log2_offset)); \
    __m512 scale[DOT_ROWS];                                                                                              \
    for (int r = 0; r < rows; r++) {                                                                                     \
        PREFETCH_STREAM(w + r * ws + (quants) + 2 * (size_t)g + ahead, to_l1);                                           \
        scale[r] = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(in_group, w + r * ws + (quants) + 2 * (size_t)g)), dx); \
    }
/* q8_0: two blocks per 512-bit vector, their products by vpdpbusd (unsigned weights: flipped to
 * q + 128), starting from −128 × each block's activation sum in the block's first lane. Nothing
 * moves from general registers to vectors in the loop (the starts broadcast from scalars were 3%
 * slower on Zen 4); the scales spread by broadcasts instead of a permute, 10-20% slower. The 64
 * bytes read ahead are prefetched at their first and last byte: rows of 34·nb bytes (q4_0:
 * 18·nb) leave them astride two cache lines, and asking for both at once made decoding 5-6%
 * faster on Zen 4, one thread or two (q4_0: 4%). */
static ALWAYS_INLINE void KERNEL(qdot_tile_q8)(const Matmul *m, int o, int t, const int rows, const bool to_l1) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const size_t ws = m->row_bytes, quants = (size_t)nb * QBLOCK, ahead = prefetch_ahead(ws, rows);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * ws;
    const int8_t *xq = m->xq + (size_t)t * nb * QBLOCK;
    const float *xd = m->xd + (size_t)t * nb;
    const int32_t *xsum = m->xsum + (size_t)t * nb;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i lanes = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);  /* block 2j, 2j + 1 */
    __m512 acc[DOT_ROWS];
    for (int r = 0; r < rows; r++) acc[r] = _mm512_setzero_ps();
    for (int g = 0; g < nb; g += 16) {
        QDOT_GROUP(quants, 7)  /* −128 Σ q_x */
        __m512i index = lanes;
        for (int j = 0; j < n; j += 2, index = _mm512_add_epi32(index, _mm512_set1_epi32(2))) {
            const int b = g + j;
            const __mmask64 in_pair = KERNEL(first_bytes)((n - j) * QBLOCK);  /* an odd last block: half a vector */
            const __m512i x = _mm512_maskz_loadu_epi8(in_pair, xq + (size_t)b * QBLOCK);
            const __m512i start = _mm512_maskz_permutexvar_epi32(0x0101, index, less);  /* in each block's first lane */
            for (int r = 0; r < rows; r++) {
                const uint8_t *row = w + r * ws + (size_t)b * QBLOCK;
                PREFETCH_STREAM(row + ahead, to_l1);
                if (!to_l1) PREFETCH_STREAM(row + ahead + 63, false);
                const __m512i q = _mm512_xor_si512(_mm512_maskz_loadu_epi8(in_pair, row), flip);
                const __m512i sums = _mm512_dpbusd_epi32(start, q, x);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_permutexvar_ps(index, scale[r]), acc[r]);
            }
        }
    }
    for (int r = 0; r < rows; r++) matmul_store(m, o + r, t, _mm512_reduce_add_ps(acc[r]));
}
/* A position's quantized activations for q4_0 rows: each step of four blocks (k ≤ 4 at the
 * end) as the first halves of its blocks, then their second halves, 16·k bytes each. Done once
 * a matmul, not for every tile of rows. */
static void KERNEL(q4_order)(int8_t *xq, int nb) {
    const __m512i first_halves = _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0), second_halves = _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2);
    for (int b = 0; b < nb; b += 4) {
        const int k = nb - b < 4 ? nb - b : 4;
        int8_t *x = xq + (size_t)b * QBLOCK;
        const __m512i x01 = _mm512_maskz_loadu_epi8(KERNEL(first_bytes)(k * QBLOCK), x);
        const __m512i x23 = _mm512_maskz_loadu_epi8(KERNEL(first_bytes)(k * QBLOCK - 64), x + 64);
        const __mmask64 halves = KERNEL(first_bytes)(k * QBLOCK / 2);
        _mm512_mask_storeu_epi8(x, halves, _mm512_permutex2var_epi64(x01, first_halves, x23));
        _mm512_mask_storeu_epi8(x + k * QBLOCK / 2, halves, _mm512_permutex2var_epi64(x01, second_halves, x23));
    }
}
/* q4_0: four blocks a step. Their 64 bytes hold the first halves of the four blocks in the low
 * nibbles and the second halves in the high ones, and the activations were reordered to match
 * (q4_order), so the nibbles are multiplied where they lie, two vpdpbusd into the same sums:
 * each 128-bit lane of the sums is then one block, starting from −8 × its activation sum. One
 * conversion and one multiply-add per four blocks, not per two, and no permute of the weights:
 * on one Zen 4 core a matmul in L2 ran 32-39% faster than with two blocks a vector (the
 * nibbles spread by a permute), and decoding ~4% (its LM head is q8_0). */
static ALWAYS_INLINE void KERNEL(qdot_tile_q4)(const Matmul *m, int o, int t, const int rows, const bool to_l1) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const size_t ws = m->row_bytes, quants = (size_t)nb * (QBLOCK / 2), ahead = prefetch_ahead(ws, rows);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * ws;
    const int8_t *xq = m->xq + (size_t)t * nb * QBLOCK;
    const float *xd = m->xd + (size_t)t * nb;
    const int32_t *xsum = m->xsum + (size_t)t * nb;
    const __m512i low = _mm512_set1_epi8(0x0F);
    const __m512i lanes = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);  /* block 4j … 4j + 3 */
    __m512 acc[DOT_ROWS];
    for (int r = 0; r < rows; r++) acc[r] = _mm512_setzero_ps();
    for (int g = 0; g < nb; g += 16) {
        QDOT_GROUP(quants, 3)  /* −8 Σ q_x */
        __m512i index = lanes;
        for (int j = 0; j < n; j += 4, index = _mm512_add_epi32(index, _mm512_set1_epi32(4))) {
            const int b = g + j, k = n - j < 4 ? n - j : 4;  /* the blocks of this step */
            const int8_t *x = xq + (size_t)b * QBLOCK;
            const __mmask64 halves = KERNEL(first_bytes)(k * QBLOCK / 2);
            const __m512i x_first = _mm512_maskz_loadu_epi8(halves, x), x_second = _mm512_maskz_loadu_epi8(halves, x + k * QBLOCK / 2);
            const __m512i start = _mm512_maskz_permutexvar_epi32(0x1111, index, less);  /* in each block's first lane */
            for (int r = 0; r < rows; r++) {
                const uint8_t *row = w + r * ws + (size_t)b * (QBLOCK / 2);
                PREFETCH_STREAM(row + ahead, to_l1);
                if (!to_l1) PREFETCH_STREAM(row + ahead + 63, false);
                const __m512i packed = _mm512_maskz_loadu_epi8(halves, row);
                __m512i sums = _mm512_dpbusd_epi32(start, _mm512_and_si512(packed, low), x_first);
                sums = _mm512_dpbusd_epi32(sums, _mm512_and_si512(_mm512_srli_epi16(packed, 4), low), x_second);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_permutexvar_ps(index, scale[r]), acc[r]);
            }
        }
    }
    for (int r = 0; r < rows; r++) matmul_store(m, o + r, t, _mm512_reduce_add_ps(acc[r]));
}
#undef QDOT_GROUP
static ALWAYS_INLINE void KERNEL(qdot_tile)(const Matmul *m, int o, int t, const int rows, const bool q4, const bool to_l1) {
    if (q4) KERNEL(qdot_tile_q4)(m, o, t, rows, to_l1);
    else KERNEL(qdot_tile_q8)(m, o, t, rows, to_l1);
}
#elif KERNELS_ISA == ISA_AVX2
/* A position's quantized activations for q4_0 rows: each pair of blocks as the first halves of
 * its two blocks, then their second halves (an odd last block stays as it is). */
static void KERNEL(q4_order)(int8_t *xq, int nb) {
    for (int b = 0; b + 1 < nb; b += 2) {
        int8_t *x = xq + (size_t)b * QBLOCK;
        const __m256i first = _mm256_loadu_si256((const __m256i *)x), second = _mm256_loadu_si256((const __m256i *)(x + QBLOCK));
        _mm256_storeu_si256((__m256i *)x, _mm256_permute2x128_si256(first, second, 0x20));
        _mm256_storeu_si256((__m256i *)(x + QBLOCK), _mm256_permute2x128_si256(first, second, 0x31));
    }
}
/* `bytes` (32, or 16 and zeros) from p */
static inline __m256i KERNEL(load_bytes)(const void *p, int bytes) {
    return bytes == 32 ? _mm256_loadu_si256((const __m256i *)p) : _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)p));
}
/* n ≤ 8 f16 scales from h as floats, zeros after (a short group is the row's last: no reading past it) */
static inline __m256 KERNEL(load_scales)(const uint8_t *h, int n) {
    if (n == 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    uint16_t v[8] = {0};
    memcpy(v, h, 2 * (size_t)n);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)v));
}
/* 8 blocks at a time, their scales d_w·d_x converted together and spread to a block's lanes by a
 * permute, nothing moved from general registers to vectors in the loop. q8_0: one block a
 * vector, |q_x| · (q_w with q_x's sign) by maddubs, whose pairs' sums fit in 16 bits (2·127²).
 * q4_0: two blocks a vector, as their 32 bytes hold them: the first halves of both in the low
 * nibbles and the second halves in the high ones, the activations reordered to match
 * (q4_order), so each 128-bit lane of the sums is one block, starting from −8 × its activation
 * sum. On one Zen 4 core (forced to AVX2) decoding q4_0 went from 116 to 214 tokens/s, and
 * q8_0 from 94 to 165, against a block at a time with its scale converted and broadcast from a
 * general register. */
static ALWAYS_INLINE void KERNEL(qdot_tile)(const Matmul *m, int o, int t, const int rows, const bool q4, const bool to_l1) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const size_t ws = m->row_bytes, quants = (size_t)nb * (q4 ? QBLOCK / 2 : QBLOCK), ahead = prefetch_ahead(ws, rows);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * ws;
    const int8_t *xq = m->xq + (size_t)t * nb * QBLOCK;
    const float *xd = m->xd + (size_t)t * nb;
    const int32_t *xsum = m->xsum + (size_t)t * nb;
    const __m256i pairs = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F);
    __m256 acc[DOT_ROWS];
    for (int r = 0; r < rows; r++) acc[r] = _mm256_setzero_ps();
    for (int g = 0; g < nb; g += 8) {
        const int n = nb - g < 8 ? nb - g : 8;
        const __m256i in_group = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256 dx = _mm256_maskload_ps(xd + g, in_group);
        __m256 scale[DOT_ROWS];
        for (int r = 0; r < rows; r++) {
            PREFETCH_STREAM(w + r * ws + quants + 2 * (size_t)g + ahead, to_l1);
            scale[r] = _mm256_mul_ps(KERNEL(load_scales)(w + r * ws + quants + 2 * (size_t)g, n), dx);
        }
        if (q4) {
            const __m256i less = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_maskload_epi32(xsum + g, in_group), 3));
            __m256i index = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);  /* block 2j, 2j + 1 */
            for (int j = 0; j < n; j += 2, index = _mm256_add_epi32(index, _mm256_set1_epi32(2))) {
                const int b = g + j, half = n - j < 2 ? 16 : 32;  /* the step's bytes of first (or second) halves */
                const int8_t *x = xq + (size_t)b * QBLOCK;
                const __m256i x_first = KERNEL(load_bytes)(x, half), x_second = KERNEL(load_bytes)(x + half, half);
                const __m256i start = _mm256_blend_epi32(_mm256_setzero_si256(), _mm256_permutevar8x32_epi32(less, index), 0x11);
                for (int r = 0; r < rows; r++) {
                    const uint8_t *row = w + r * ws + (size_t)b * (QBLOCK / 2);
                    PREFETCH_STREAM(row + ahead, to_l1);
                    const __m256i packed = KERNEL(load_bytes)(row, half);
                    const __m256i products = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(packed, low), x_first),  /* ≤ 4·15·127 */
                                                              _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(packed, 4), low), x_second));
                    const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(products, pairs), start);
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_permutevar8x32_ps(scale[r], index), acc[r]);
                }
            }
        } else {
            __m256i index = _mm256_setzero_si256();
            for (int j = 0; j < n; j++, index = _mm256_add_epi32(index, _mm256_set1_epi32(1))) {
                const __m256i x = _mm256_loadu_si256((const __m256i *)(xq + (size_t)(g + j) * QBLOCK)), x_abs = _mm256_abs_epi8(x);
                for (int r = 0; r < rows; r++) {
                    const uint8_t *row = w + r * ws + (size_t)(g + j) * QBLOCK;
                    PREFETCH_STREAM(row + ahead, to_l1);
                    const __m256i products = _mm256_maddubs_epi16(x_abs, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)row), x));
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(products, pairs)), _mm256_permutevar8x32_ps(scale[r], index), acc[r]);
                }
            }
        }
    }
    for (int r = 0; r < rows; r++) matmul_store(m, o + r, t, vec_sum(acc[r]));
}
#elif KERNELS_ISA == ISA_NEON
/* Four blocks at a time: each row's four f16 scales converted together and multiplied by the
 * activations' (one vector), a block's integer sum scaled by its lane; the sums start from
 * −8 × the block's activation sum (q4_0) in the first lane. The blocks of a short last group are
 * left out one by one, so no weight past a row is read. The sums are those of a block at a time,
 * in the same order. That block at a time, its scale widened by integer arithmetic and the
 * accumulators kept in memory, took ~2.7 times the instructions (counted under qemu, a model of
 * 2 layers at GPT-2's width and its 50257-token head, with the dot-product instructions: a
 * decoded token's matmuls 54.7M → 20.0M for q8_0, 55.8M → 20.5M for q4_0; without them 62.9M →
 * 31.9M; a prompt's 14.9M → 5.6M a position). */
static inline float32x4_t KERNEL(load_scales)(const uint8_t *h, int n) {  /* n ≤ 4 f16, zeros after */
    uint16_t v[4] = {0};
    memcpy(v, h, 2 * (size_t)n);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(v)));
}
/* Blocks [g, g + n) of `rows` rows from w (ws apart) into acc; n = 4 but in a row's last group */
static ALWAYS_INLINE void KERNEL(qdot_group)(float32x4_t *acc, const uint8_t *w, size_t ws, size_t quants, size_t ahead, const int rows,
                                             const bool q4, const bool to_l1, const int8_t *xq, const float *xd, const int32_t *xsum, int g, const int n) {
    const int block_bytes = q4 ? QBLOCK / 2 : QBLOCK;
    float dx_short[4] = {0};
    if (n < 4) memcpy(dx_short, xd + g, sizeof(float) * (size_t)n);
    const float32x4_t dx = vld1q_f32(n == 4 ? xd + g : dx_short);
    int32x4_t start[4];
    for (int j = 0; j < 4; j++) start[j] = vsetq_lane_s32(q4 && j < n ? -8 * xsum[g + j] : 0, vdupq_n_s32(0), 0);
    const int8_t *x = xq + (size_t)g * QBLOCK;
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + r * ws, *q = row + (size_t)g * block_bytes, *h = row + quants + 2 * (size_t)g;
        for (int k = 0; k < 4 * block_bytes; k += 64) PREFETCH_STREAM(q + ahead + k, to_l1);
        PREFETCH_STREAM(q + ahead + 4 * block_bytes - 1, to_l1);  /* (rows are not whole cache lines) */
        PREFETCH_STREAM(h + ahead, to_l1);
        const float32x4_t scale = vmulq_f32(n == 4 ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)h))) : KERNEL(load_scales)(h, n), dx);
#define BLOCK(j) \
    if (j < n) acc[r] = vfmaq_laneq_f32(acc[r], vcvtq_f32_s32(KERNEL(dot_block)(start[j], q + j * block_bytes, x + j * QBLOCK, q4)), scale, j)
        BLOCK(0);
        BLOCK(1);
        BLOCK(2);
        BLOCK(3);
#undef BLOCK
    }
}
static ALWAYS_INLINE void KERNEL(qdot_tile)(const Matmul *m, int o, int t, const int rows, const bool q4, const bool to_l1) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const size_t ws = m->row_bytes, quants = (size_t)nb * (q4 ? QBLOCK / 2 : QBLOCK), ahead = prefetch_ahead(ws, rows);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * ws;
    const int8_t *xq = m->xq + (size_t)t * nb * QBLOCK;
    const float *xd = m->xd + (size_t)t * nb;
    const int32_t *xsum = m->xsum + (size_t)t * nb;
    float32x4_t acc[DOT_ROWS];
    for (int r = 0; r < rows; r++) acc[r] = vdupq_n_f32(0.0f);
    int g = 0;
    for (; g + 4 <= nb; g += 4) KERNEL(qdot_group)(acc, w, ws, quants, ahead, rows, q4, to_l1, xq, xd, xsum, g, 4);
    if (g < nb) KERNEL(qdot_group)(acc, w, ws, quants, ahead, rows, q4, to_l1, xq, xd, xsum, g, nb - g);
    for (int r = 0; r < rows; r++) matmul_store(m, o + r, t, vaddvq_f32(acc[r]));
}
#else
static ALWAYS_INLINE void KERNEL(qdot_tile)(const Matmul *m, int o, int t, const int rows, const bool q4, const bool to_l1) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const size_t ws = m->row_bytes, quants = (size_t)nb * (q4 ? QBLOCK / 2 : QBLOCK), ahead = prefetch_ahead(ws, rows);
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * ws;
    const int8_t *xq = m->xq + (size_t)t * nb * QBLOCK;
    const float *xd = m->xd + (size_t)t * nb;
    const int32_t *xsum = m->xsum + (size_t)t * nb;
    float acc[DOT_ROWS] = {0};
    for (int b = 0; b < nb; b++) {
        for (int r = 0; r < rows; r++) {
            const uint8_t *row = w + r * ws;
            PREFETCH_STREAM(row + ahead + (size_t)b * (q4 ? QBLOCK / 2 : QBLOCK), to_l1);
            uint16_t d16;
            memcpy(&d16, row + quants + 2 * (size_t)b, 2);
            const float scale = f16_to_f32(d16) * xd[b];
            const int32_t sums = q4 ? KERNEL(dot_i8_q4)(row + (size_t)b * (QBLOCK / 2), xq + (size_t)b * QBLOCK) - 8 * xsum[b]
                                    : KERNEL(dot_i8_q8)((const int8_t *)row + (size_t)b * QBLOCK, xq + (size_t)b * QBLOCK);
            acc[r] += (float)sums * scale;
        }
    }
    for (int r = 0; r < rows; r++) matmul_store(m, o + r, t, acc[r]);
}
#endif

static void KERNEL(matmul_dot_task)(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    (void)thread;
    int o = begin;
#define ROWS(R, L1)                                                                    \
    for (int t = 0; t < m->T; t++) switch (m->dtype) {                                 \
        case GPT2_F32: KERNEL(dot_tile_f32)(m, o, t, R, L1); break;                    \
        case GPT2_F16: KERNEL(dot_tile_f16)(m, o, t, R, L1); break;                    \
        case GPT2_BF16: KERNEL(dot_tile_bf16)(m, o, t, R, L1); break;                  \
        case GPT2_Q8_0: KERNEL(qdot_tile)(m, o, t, R, false, L1); break;               \
        case GPT2_Q4_0: KERNEL(qdot_tile)(m, o, t, R, true, L1); break;                \
        }
#define TILES(L1)                                                                      \
    if (m->dtype == GPT2_F32 || (L1 && m->dtype != GPT2_Q8_0))                         \
        for (; o + DOT_ROWS <= end; o += DOT_ROWS) ROWS(DOT_ROWS, L1)                  \
    else                                                                               \
        for (; o + DOT_ROWS_NARROW <= end; o += DOT_ROWS_NARROW) ROWS(DOT_ROWS_NARROW, L1) \
    for (; o < end; o++) ROWS(1, L1)
#if KERNELS_ISA == ISA_AVX512  /* (the hint a constant in each copy of the loops; L1 is for Zen 5) */
    if (m->stream_to_l1) { TILES(true) }
    else
#endif
    { TILES(false) }
#undef TILES
#undef ROWS
    matmul_finish(m, begin, end);
}

/* ---- a batch: the GEMM micro-kernel over transposed positions ------------------------------ */

/* `rows` outputs × `vecs` vectors of positions from t, from f32 weight rows w (ws apart), into
 * sums (rows MATMUL_POSITIONS floats apart). */
static ALWAYS_INLINE void KERNEL(batch_tile)(const Matmul *m, const float *w, size_t ws, float *sums, int t, const int rows,
                                             const int vecs, const uint8_t *prefetch, size_t prefetch_step) {
    KERNEL(gemm_tile_prefetching)(sums + t, MATMUL_POSITIONS, w, ws, 1, m->in_t + t, m->T_padded, m->n_in, rows, vecs, prefetch,
                                  prefetch_step);
}

#if KERNELS_ISA == ISA_AVX512
/* v[l][r] = s[r·stride + l]: 16 rows of 16 floats (rows past `rows` zero, lanes outside `lanes`
 * zero) transposed in registers: pairs, then quads within 128-bit lanes, then the lanes. */
static ALWAYS_INLINE void KERNEL(load_transposed)(__m512 v[16], const float *s, size_t stride, const int rows, __mmask16 lanes) {
    __m512 u[16];
    for (int r = 0; r < 16; r += 2) {  /* (loaded here: gcc made a loop of loads alone a call to memcpy) */
        const __m512 a = r < rows ? _mm512_maskz_loadu_ps(lanes, s + r * stride) : _mm512_setzero_ps();
        const __m512 b = r + 1 < rows ? _mm512_maskz_loadu_ps(lanes, s + (r + 1) * stride) : _mm512_setzero_ps();
        u[r] = _mm512_unpacklo_ps(a, b), u[r + 1] = _mm512_unpackhi_ps(a, b);
    }
    for (int r = 0; r < 16; r += 4) {  /* v[r + j], in 128-bit lane k: rows r … r + 3 at position 4k + j */
        v[r] = _mm512_shuffle_ps(u[r], u[r + 2], 0x44), v[r + 1] = _mm512_shuffle_ps(u[r], u[r + 2], 0xEE);
        v[r + 2] = _mm512_shuffle_ps(u[r + 1], u[r + 3], 0x44), v[r + 3] = _mm512_shuffle_ps(u[r + 1], u[r + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {  /* in place: v[4k + j], lane g = (before) v[4g + j], lane k */
        const __m512 s0 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0x44), s1 = _mm512_shuffle_f32x4(v[j], v[4 + j], 0xEE);
        const __m512 s2 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0x44), s3 = _mm512_shuffle_f32x4(v[8 + j], v[12 + j], 0xEE);
        v[j] = _mm512_shuffle_f32x4(s0, s2, 0x88), v[4 + j] = _mm512_shuffle_f32x4(s0, s2, 0xDD);
        v[8 + j] = _mm512_shuffle_f32x4(s1, s3, 0x88), v[12 + j] = _mm512_shuffle_f32x4(s1, s3, 0xDD);
    }
}

/* Sums s[r][l] of outputs o … o + 15 (r) at positions t … t + 15 (l; rows `stride` floats
 * apart), to the outputs of the first n positions: the same as matmul_store_tile, with a
 * position's 16 outputs as one vector. */
static ALWAYS_INLINE void KERNEL(store_transposed)(const Matmul *m, int o, int t, int n, const float *s, size_t stride) {
    __m512 v[16];
    KERNEL(load_transposed)(v, s, stride, 16, 0xFFFF);
    const __m512 bias = m->bias ? _mm512_loadu_ps(m->bias + o) : _mm512_setzero_ps();
#pragma GCC unroll 16  /* (so that v[l] is a register: as a loop to n, gcc spilled the tile to the stack) */
    for (int l = 0; l < 16; l++) {
        if (l >= n) break;
        float *out = m->out + (size_t)(t + l) * m->n_out + o;
        const __m512 y = _mm512_add_ps(v[l], bias);
        _mm512_storeu_ps(out, m->epilogue == ACCUMULATE ? _mm512_add_ps(_mm512_loadu_ps(out), y) : y);
    }
}

/* transpose_task, 16 positions × 16 channels at a time (not for bf16 weights, whose
 * activations it rounds) */
_Static_assert(TRANSPOSE_CHANNELS == 16, "a block of channels is one vector");
static void KERNEL(transpose_tiles_task)(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    (void)thread;
    for (int block = begin; block < end; block++) {
        const int i0 = block * TRANSPOSE_CHANNELS, channels = m->n_in - i0 < 16 ? m->n_in - i0 : 16;
        for (int t = 0; t < m->T_padded; t += 16) {  /* (the positions past T: zero rows) */
            __m512 v[16];
            KERNEL(load_transposed)(v, m->in + (size_t)t * m->n_in + i0, (size_t)m->n_in, m->T - t, (__mmask16)((1u << channels) - 1));
            for (int c = 0; c < channels; c++) _mm512_storeu_ps(m->in_t + (size_t)(i0 + c) * m->T_padded + t, v[c]);
        }
    }
}
#define TRANSPOSE_TASK KERNEL(transpose_tiles_task)
#else
#define TRANSPOSE_TASK transpose_task
#endif

#if KERNELS_ISA == ISA_AVX2
/* Sums s[r][l] of outputs o … o + 7 (r) at positions t … t + 7 (l; rows `stride` floats apart),
 * to the outputs of the first n positions, a position's 8 outputs as one vector: the tile
 * transposed in registers as AVX-512's 16 × 16 (pairs, quads within 128-bit lanes, the lanes). */
static ALWAYS_INLINE void KERNEL(store_transposed)(const Matmul *m, int o, int t, int n, const float *s, size_t stride) {
    __m256 u[8], v[8];
    for (int r = 0; r < 8; r += 2) {
        const __m256 a = _mm256_loadu_ps(s + r * stride), b = _mm256_loadu_ps(s + (r + 1) * stride);
        u[r] = _mm256_unpacklo_ps(a, b), u[r + 1] = _mm256_unpackhi_ps(a, b);
    }
    for (int r = 0; r < 8; r += 4) {  /* v[r + j], in 128-bit lane k: rows r … r + 3 at position 4k + j */
        v[r] = _mm256_shuffle_ps(u[r], u[r + 2], 0x44), v[r + 1] = _mm256_shuffle_ps(u[r], u[r + 2], 0xEE);
        v[r + 2] = _mm256_shuffle_ps(u[r + 1], u[r + 3], 0x44), v[r + 3] = _mm256_shuffle_ps(u[r + 1], u[r + 3], 0xEE);
    }
    for (int j = 0; j < 4; j++) {  /* position j: the low lanes of v[j] and v[4 + j]; position 4 + j: the high */
        const __m256 low = _mm256_permute2f128_ps(v[j], v[4 + j], 0x20), high = _mm256_permute2f128_ps(v[j], v[4 + j], 0x31);
        u[j] = low, u[4 + j] = high;
    }
    const __m256 bias = m->bias ? _mm256_loadu_ps(m->bias + o) : _mm256_setzero_ps();
    for (int l = 0; l < 8; l++) {
        if (l >= n) break;
        float *out = m->out + (size_t)(t + l) * m->n_out + o;
        const __m256 y = _mm256_add_ps(u[l], bias);
        _mm256_storeu_ps(out, m->epilogue == ACCUMULATE ? _mm256_add_ps(_mm256_loadu_ps(out), y) : y);
    }
}
#endif

/* A group's sums of outputs o … o + rows - 1 at positions t … t + n - 1, sums[r][l] (rows
 * MATMUL_POSITIONS floats apart), to the outputs: position by position, each position's run of
 * outputs written at once. */
static void KERNEL(store_group)(const Matmul *m, int o, int rows, int t, int n, const float *sums) {
    int r = 0;
#if KERNELS_ISA == ISA_AVX512 || KERNELS_ISA == ISA_AVX2  /* VEC_WIDTH × VEC_WIDTH at a time */
    for (; r + VEC_WIDTH <= rows; r += VEC_WIDTH)
        for (int l = 0; l < n; l += VEC_WIDTH)
            KERNEL(store_transposed)(m, o + r, t + l, n - l < VEC_WIDTH ? n - l : VEC_WIDTH, sums + (size_t)r * MATMUL_POSITIONS + l,
                                     MATMUL_POSITIONS);
#endif
    if (r < rows) matmul_store_tile(m, o + r, rows - r, t, n, sums + (size_t)r * MATMUL_POSITIONS, MATMUL_POSITIONS);
}

/* Weight rows [o, o + rows) as f32 rows *stride apart: a row of f32 weights is used where it
 * lies, another type widened once for all the batch's positions into this thread's tile. */
static const float *KERNEL(f32_rows)(const Matmul *m, int o, int rows, int thread, size_t *stride) {
    if (m->dtype == GPT2_F32) {
        *stride = m->row_bytes / sizeof(float);
        return (const float *)m->w + (size_t)o * *stride;
    }
    float *tile = m->w_tiles + (size_t)thread * tile_floats(m->n_in);
    const size_t tile_stride = tile_row_floats(m->n_in);
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = (const uint8_t *)m->w + (size_t)(o + r) * m->row_bytes;
        float *out = tile + (size_t)r * tile_stride;
        int i = 0;
        if (m->dtype == GPT2_F16)
            for (; i + VEC_WIDTH <= m->n_in; i += VEC_WIDTH) vec_store(out + i, vec_load_f16((const uint16_t *)row + i));
        else if (m->dtype == GPT2_BF16)
            for (; i + VEC_WIDTH <= m->n_in; i += VEC_WIDTH) vec_store(out + i, vec_load_bf16((const uint16_t *)row + i));
        else
            dequantize_row(row, m->dtype, m->n_in, out), i = m->n_in;
        if (i < m->n_in) dequantize_row(row + dtype_row_bytes(m->dtype, i), m->dtype, m->n_in - i, out + i);  /* the last few */
    }
    *stride = tile_stride;
    return tile;
}

/* Weight rows a batched task computes before their sums go to the outputs. A tile's outputs
 * are only 6 of a position's (BATCH_ROWS), and positions lie n_out floats apart (for 3072
 * outputs 12 KB, one set of the L1 cache for all 64): each output line left L1 between the 2-3
 * tiles that write it. Stored so, the sums took ~9% of an f32 prompt on one Xeon core. */
#define GROUP_ROWS 48
_Static_assert(GROUP_ROWS % BATCH_ROWS == 0 && GROUP_ROWS % 16 == 0, "a group is whole tiles, and whole transposes of 16");

static void KERNEL(matmul_batch_task)(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    const int tile = BATCH_VECS * VEC_WIDTH;
    _Alignas(64) float sums[GROUP_ROWS * MATMUL_POSITIONS];  /* (a pass is at most MATMUL_POSITIONS) */
    size_t ws;
    /* the next tile's weights, a little at every step of the first tile of positions (all at
     * once, before it, the prefetches queued and the loads behind them waited: one matmul of 64
     * positions ran at 130-165 GFLOP/s from memory, 190 from the cache) */
    const size_t step = BATCH_ROWS * m->row_bytes / (size_t)m->n_in;
    for (int group = begin; group < end; group += GROUP_ROWS) {
        const int group_end = end - group < GROUP_ROWS ? end : group + GROUP_ROWS;
        int o = group;
        for (; o + BATCH_ROWS <= group_end; o += BATCH_ROWS) {
            float *s = sums + (size_t)(o - group) * MATMUL_POSITIONS;
            const float *w = KERNEL(f32_rows)(m, o, BATCH_ROWS, thread, &ws);
            const uint8_t *next = o + 2 * BATCH_ROWS <= end ? (const uint8_t *)m->w + (size_t)(o + BATCH_ROWS) * m->row_bytes : NULL;
            int t = 0;
            for (; t + tile <= m->T_padded; t += tile) KERNEL(batch_tile)(m, w, ws, s, t, BATCH_ROWS, BATCH_VECS, t ? NULL : next, step);
            _Static_assert(BATCH_VECS <= 4, "the vectors left after the whole tiles are 1, 2 or 3");
            const uint8_t *prefetch = t ? NULL : next;
            switch ((m->T_padded - t) / VEC_WIDTH) {  /* what is left, as one tile */
            case 3: KERNEL(batch_tile)(m, w, ws, s, t, BATCH_ROWS, 3, prefetch, step); break;
            case 2: KERNEL(batch_tile)(m, w, ws, s, t, BATCH_ROWS, 2, prefetch, step); break;
            case 1: KERNEL(batch_tile)(m, w, ws, s, t, BATCH_ROWS, 1, prefetch, step); break;
            }
        }
        for (; o < group_end; o++) {
            const float *w = KERNEL(f32_rows)(m, o, 1, thread, &ws);
            for (int t = 0; t < m->T_padded; t += VEC_WIDTH)
                KERNEL(batch_tile)(m, w, ws, sums + (size_t)(o - group) * MATMUL_POSITIONS, t, 1, 1, NULL, 0);
        }
        KERNEL(store_group)(m, group, group_end - group, 0, m->T, sums);
    }
    matmul_finish(m, begin, end);
}

#if INT8_PANELS
/* Weight rows [o, o + rows) (none at or past `end`) on their way into the cache, 64 bytes a
 * line: the next panel's rows arrive while this one computes. */
static inline void KERNEL(prefetch_rows)(const Matmul *m, int o, int rows, int end) {
    if (o >= end) return;
    const uint8_t *first = (const uint8_t *)m->w + (size_t)o * m->row_bytes;
    for (size_t i = 0; i < (size_t)rows * m->row_bytes; i += 64) PREFETCH(first + i);
}
#endif

#if KERNELS_ISA == ISA_AVX512
/* ---- a batch with q8_0 or q4_0 weights: 8-bit integer products (AVX-512 VNNI) -------------- */

/* vpdpbusd adds to each 32-bit lane the 4 products of 4 unsigned bytes by 4 signed ones: 64
 * multiply-adds an instruction, four times the f32 FMA's 16. The weights are the unsigned side,
 * offset to 0 … 255 (q8_0: q + 128; q4_0's nibbles already are q + 8), the activations the
 * signed one, quantized as decoding quantizes them; the offset × the block's activation sum
 * starts each block's integer sum (quantize_batch_task), and the scales d_w·d_x apply per block.
 *
 * A thread repacks PANEL_ROWS weight rows at a time into a panel whose vectors hold 4
 * consecutive weights of 16 rows: such a vector times 4 activations of one position, broadcast,
 * is 16 rows' partial sums. PANEL_POSITIONS positions × 2 vectors of rows keep 12 integer and
 * 12 float sums in registers, so each load of weights serves 6 positions and each load of
 * activations 32 rows. A panel is, for each block b: its 8 groups of 4 weights as 2 vectors of
 * 16 rows each, then the 32 rows' scales as f32. */
#define PANEL_ROWS 32
#define PANEL_POSITIONS 6
#define PANEL_BLOCK_BYTES (PANEL_ROWS * QBLOCK + PANEL_ROWS * (int)sizeof(float))

/* rows[i]: the 8 groups of 4 bytes of one block of row i. Returns group g of rows 0 … 15 in
 * out[g]: a 16 × 8 transpose of 4-byte elements, as three exchanges of one bit of the
 * vector's number with the same bit of the lane's. */
static ALWAYS_INLINE void KERNEL(transpose_16x8)(const __m256i rows[16], __m512i out[8]) {
    /* vector i, lane l: row i + 8·(l / 8), group l % 8 */
    for (int i = 0; i < 8; i++) out[i] = _mm512_inserti64x4(_mm512_castsi256_si512(rows[i]), rows[i + 8], 1);
    /* for bit 1, 2, 4: lane l of the pair's vector without the bit, then of the one with it
     * (a lane of 16 or more is lane - 16 of the second vector) */
    static const int32_t take[3][2][16] = {
        {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}, {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}},
        {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}, {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
        {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}, {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}}};
    for (int step = 0, bit = 1; step < 3; step++, bit <<= 1) {
        const __m512i take_low = _mm512_loadu_si512(take[step][0]), take_high = _mm512_loadu_si512(take[step][1]);
        for (int i = 0; i < 8; i++)
            if (!(i & bit)) {
                const __m512i a = out[i], b = out[i + bit];
                out[i] = _mm512_permutex2var_epi32(a, take_low, b);
                out[i + bit] = _mm512_permutex2var_epi32(a, take_high, b);
            }
    }
}

/* One position's block of n ≤ 32 activations quantized as quantize_block does (the same
 * bytes, scale and sum), in two vectors: returns the scale, the 32 bytes in *q (0 past n). */
/* A block's bytes: its two halves x0 and x1 × inv, to nearest, ties to even (the default
 * rounding); outside ±127, which only inf or NaN (converted to INT_MIN) can reach: 0 (compared
 * unsigned, as |INT_MIN| is INT_MIN). */
static inline __m256i KERNEL(block_bytes)(__m512 x0, __m512 x1, __m512 inv) {
    const __m512i limit = _mm512_set1_epi32(127);
    __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, inv)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, inv));
    q0 = _mm512_maskz_mov_epi32(_mm512_cmple_epu32_mask(_mm512_abs_epi32(q0), limit), q0);
    q1 = _mm512_maskz_mov_epi32(_mm512_cmple_epu32_mask(_mm512_abs_epi32(q1), limit), q1);
    return _mm256_set_m128i(_mm512_cvtepi32_epi8(q1), _mm512_cvtepi32_epi8(q0));
}

static inline float KERNEL(quantize_block_vec)(const float *x, int n, __m256i *q, int32_t *sum) {
    const __mmask16 lo = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1), hi = n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    const __m512 sign = _mm512_set1_ps(-0.0f), zero = _mm512_setzero_ps();
    const __m512 x0 = _mm512_maskz_loadu_ps(lo, x), x1 = _mm512_maskz_loadu_ps(hi, x + 16);
    /* max|x|: max_ps(a, 0) is 0 where a is NaN, so a NaN never becomes the max, as in
     * quantize_block */
    const __m512 a0 = _mm512_max_ps(_mm512_andnot_ps(sign, x0), zero), a1 = _mm512_max_ps(_mm512_andnot_ps(sign, x1), zero);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1)), d = amax / 127.0f;
    *q = KERNEL(block_bytes)(x0, x1, _mm512_set1_ps(d > 0 ? 1.0f / d : 0.0f));
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(*q)), _mm512_cvtepi8_epi32(_mm256_extracti128_si256(*q, 1))));
    return d;
}

/* The largest lane of each of 16 vectors, as lane i of one: a tree of 15 maxima, each of two
 * vectors' halves side by side (v[i] holds groups of L lanes, one per vector below it; each
 * level halves L and doubles the groups, in order). */
static inline __m512 KERNEL(max_lanes_16)(__m512 v[16]) {
    static const int32_t take[4][2][16] = {
        {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}, {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
        {{0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27}, {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31}},
        {{0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29}, {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31}},
        {{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}, {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}}};
    for (int level = 0, n = 16; level < 4; level++, n /= 2) {
        const __m512i first = _mm512_loadu_si512(take[level][0]), second = _mm512_loadu_si512(take[level][1]);
        for (int i = 0; i < n / 2; i++)
            v[i] = _mm512_max_ps(_mm512_permutex2var_ps(v[2 * i], first, v[2 * i + 1]), _mm512_permutex2var_ps(v[2 * i], second, v[2 * i + 1]));
    }
    return v[0];
}

/* The batch's activations for the integer GEMM, one task item per block b of 32 channels,
 * each position's block quantized as quantize_block does (the same bytes, scale and sum), 16
 * positions at a time: for each group g of 4 channels, the 4 bytes of positions 0 … T_padded - 1
 * side by side (xq[b][g][t], transposed 16 positions at a time), the scale of each position's
 * block, and the block's sum × the weights' offset, negated: it starts the integer sums, which
 * is how the offset drops out. The 16 maxima come from one tree (max_lanes_16), the scales from
 * one division, and the sums from the transposed bytes (vpdpbusd by ones). */
static void KERNEL(quantize_batch_task)(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    (void)thread;
    const int Tp = m->T_padded, offset = m->dtype == GPT2_Q8_0 ? 128 : 8;
    const __m512 sign = _mm512_set1_ps(-0.0f), zero = _mm512_setzero_ps();
    for (int b = begin; b < end; b++) {
        const int n = m->n_in - b * QBLOCK < QBLOCK ? m->n_in - b * QBLOCK : QBLOCK;
        const __mmask16 lo = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1), hi = n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
        for (int t0 = 0; t0 < Tp; t0 += 16) {
            __m512 x0[16], x1[16], amax[16];
            for (int i = 0; i < 16; i++) {
                const float *x = m->in + (size_t)(t0 + i) * m->n_in + (size_t)b * QBLOCK;
                const bool real = t0 + i < m->T;  /* padding positions: 0 */
                x0[i] = _mm512_maskz_loadu_ps(real ? lo : 0, x);
                x1[i] = _mm512_maskz_loadu_ps(real ? hi : 0, x + 16);
                /* max_ps(a, 0) is 0 where a is NaN: a NaN never becomes the max */
                amax[i] = _mm512_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, x0[i]), zero), _mm512_max_ps(_mm512_andnot_ps(sign, x1[i]), zero));
            }
            const __m512 d = _mm512_div_ps(KERNEL(max_lanes_16)(amax), _mm512_set1_ps(127.0f));
            float inv[16];
            _mm512_storeu_ps(inv, _mm512_maskz_div_ps(_mm512_cmp_ps_mask(d, zero, _CMP_GT_OQ), _mm512_set1_ps(1.0f), d));
            __m256i q[16];
            for (int i = 0; i < 16; i++) q[i] = KERNEL(block_bytes)(x0[i], x1[i], _mm512_set1_ps(inv[i]));
            __m512i groups[8], sum = _mm512_setzero_si512();
            KERNEL(transpose_16x8)(q, groups);
            for (int g = 0; g < QBLOCK / 4; g++) {
                _mm512_storeu_si512(m->xq + 4 * (((size_t)b * (QBLOCK / 4) + g) * Tp + t0), groups[g]);
                sum = _mm512_dpbusd_epi32(sum, _mm512_set1_epi8(1), groups[g]);
            }
            _mm512_storeu_ps(m->xd + (size_t)b * Tp + t0, d);
            _mm512_storeu_si512(m->xsum + (size_t)b * Tp + t0, _mm512_mullo_epi32(sum, _mm512_set1_epi32(-offset)));
        }
    }
}

/* Weight rows [o, o + rows) into the panel, rows past `rows` zero. */
static void KERNEL(repack_panel)(const Matmul *m, int o, int rows, uint8_t *panel) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const bool q4 = m->dtype == GPT2_Q4_0;
    const size_t block_bytes = q4 ? QBLOCK / 2 : QBLOCK, quants = (size_t)nb * block_bytes;
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * m->row_bytes;
    for (int b = 0; b < nb; b++) {
        uint8_t *pb = panel + (size_t)b * PANEL_BLOCK_BYTES;
        for (int half = 0; half < 2; half++) {
            __m256i unpacked[16];
            for (int i = 0; i < 16; i++) {
                const int r = 16 * half + i;
                const uint8_t *q = r < rows ? w + (size_t)r * m->row_bytes + (size_t)b * block_bytes : NULL;
                if (!q) {
                    unpacked[i] = _mm256_setzero_si256();
                } else if (q4) {  /* weights 0 … 15 in the low nibbles, 16 … 31 in the high */
                    const __m128i packed = _mm_loadu_si128((const __m128i *)q), low = _mm_set1_epi8(0x0F);
                    unpacked[i] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low), _mm_and_si128(packed, low));
                } else {
                    unpacked[i] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)q), _mm256_set1_epi8((char)0x80));
                }
            }
            __m512i groups[8];
            KERNEL(transpose_16x8)(unpacked, groups);
            for (int g = 0; g < 8; g++) _mm512_storeu_si512(pb + g * 2 * 64 + half * 64, groups[g]);
        }
    }
    /* the scales, f16 to f32: two blocks' scales of 16 rows in one gather of 4 bytes a row */
    const __m512i row_offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                   _mm512_set1_epi32((int)m->row_bytes));
    for (int half = 0; half < 2; half++) {
        const int n = rows - 16 * half;
        float *scales = (float *)(panel + PANEL_ROWS * QBLOCK) + 16 * half;
        if (n <= 0) {
            for (int b = 0; b < nb; b++) _mm512_storeu_ps(scales + (size_t)b * PANEL_BLOCK_BYTES / 4, _mm512_setzero_ps());
            continue;
        }
        const __mmask16 in_rows = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
        const uint8_t *first = w + (size_t)16 * half * m->row_bytes + quants;
        int b = 0;
        for (; b + 1 < nb; b += 2) {
            const __m512i two = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), in_rows, row_offsets, first + 2 * (size_t)b, 1);
            _mm512_storeu_ps(scales + (size_t)b * PANEL_BLOCK_BYTES / 4, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(two)));
            _mm512_storeu_ps(scales + (size_t)(b + 1) * PANEL_BLOCK_BYTES / 4, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(two, 16))));
        }
        if (b < nb)  /* an odd last block: a 4-byte gather would read past the row */
            for (int i = 0; i < 16; i++) {
                uint16_t h = 0;
                if (i < n) memcpy(&h, first + (size_t)i * m->row_bytes + 2 * (size_t)b, 2);
                scales[(size_t)b * PANEL_BLOCK_BYTES / 4 + i] = scalar_f16(h);
            }
    }
}

/* The panel's rows at positions t … t + P - 1: for each block b,
 *     y += d_w[b] · d_x[t][b] · (Σ_k u_w[k]·q_x[t][k] − offset·Σ_k q_x[t][k]),
 * the integer sum exact, the blocks added in order. */
static ALWAYS_INLINE void KERNEL(panel_tile)(const Matmul *m, const uint8_t *panel, int o, int rows, int t, const int P) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK, Tp = m->T_padded;
    const int32_t *xq = (const int32_t *)m->xq;  /* [b][g][Tp]: 4 bytes of one position (quantize_batch_task) */
    __m512 acc[2][PANEL_POSITIONS];
    for (int p = 0; p < P; p++) acc[0][p] = acc[1][p] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *pb = panel + (size_t)b * PANEL_BLOCK_BYTES;
        __m512i sums[2][PANEL_POSITIONS];
        for (int p = 0; p < P; p++) sums[0][p] = sums[1][p] = _mm512_set1_epi32(m->xsum[(size_t)b * Tp + t + p]);
#pragma GCC unroll 8  /* (rolled, gcc rotates the 12 sums through other registers: 12 moves a group) */
        for (int g = 0; g < QBLOCK / 4; g++) {
            const __m512i w0 = _mm512_loadu_si512(pb + g * 128), w1 = _mm512_loadu_si512(pb + g * 128 + 64);
            for (int p = 0; p < P; p++) {
                const __m512i x = _mm512_set1_epi32(xq[((size_t)b * (QBLOCK / 4) + g) * Tp + t + p]);
                sums[0][p] = _mm512_dpbusd_epi32(sums[0][p], w0, x);
                sums[1][p] = _mm512_dpbusd_epi32(sums[1][p], w1, x);
            }
        }
        const __m512 d0 = _mm512_loadu_ps(pb + PANEL_ROWS * QBLOCK), d1 = _mm512_loadu_ps(pb + PANEL_ROWS * QBLOCK + 64);
        for (int p = 0; p < P; p++) {
            const __m512 dx = _mm512_set1_ps(m->xd[(size_t)b * Tp + t + p]);
            acc[0][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[0][p]), _mm512_mul_ps(d0, dx), acc[0][p]);
            acc[1][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums[1][p]), _mm512_mul_ps(d1, dx), acc[1][p]);
        }
    }
    /* lane l of half h is row o + 16h + l: positions' rows are contiguous in the output */
    for (int half = 0; half < 2; half++) {
        const int n = rows - 16 * half;
        if (n <= 0) break;
        const __mmask16 in_rows = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
        const __m512 bias = m->bias ? _mm512_maskz_loadu_ps(in_rows, m->bias + o + 16 * half) : _mm512_setzero_ps();
        for (int p = 0; p < P; p++) {
            float *out = m->out + (size_t)(t + p) * m->n_out + o + 16 * half;
            __m512 y = _mm512_add_ps(acc[half][p], bias);
            if (m->epilogue == ACCUMULATE) y = _mm512_add_ps(_mm512_maskz_loadu_ps(in_rows, out), y);
            _mm512_mask_storeu_ps(out, in_rows, y);
        }
    }
}

/* The repacked panel of rows [o, o + rows) at every position of the batch. */
static void KERNEL(panel_positions)(const Matmul *m, const uint8_t *panel, int o, int rows) {
    int t = 0;
    for (; t + PANEL_POSITIONS <= m->T; t += PANEL_POSITIONS) KERNEL(panel_tile)(m, panel, o, rows, t, PANEL_POSITIONS);
    switch (m->T - t) {  /* the last few positions */
    case 5: KERNEL(panel_tile)(m, panel, o, rows, t, 5); break;
    case 4: KERNEL(panel_tile)(m, panel, o, rows, t, 4); break;
    case 3: KERNEL(panel_tile)(m, panel, o, rows, t, 3); break;
    case 2: KERNEL(panel_tile)(m, panel, o, rows, t, 2); break;
    case 1: KERNEL(panel_tile)(m, panel, o, rows, t, 1); break;
    }
}

#elif KERNELS_ISA == ISA_AVX2
/* ---- a batch with q8_0 or q4_0 weights: 8-bit integer products (AVX2) ---------------------- */

/* AVX2 has no vpdpbusd. vpmaddubsw multiplies 32 unsigned bytes by 32 signed ones and adds each
 * pair into a 16-bit lane, saturating, and vpmaddwd by ones adds those pairs into 32-bit lanes:
 * 4 products a lane, as vpdpbusd, in two steps. So that no pair saturates:
 *   - q4_0: the nibbles (q + 8, 0 … 15) by the activations: pairs within ±3810, a block's 8
 *     groups within ±30480, so a 16-bit lane sums a whole block before one vpmaddwd;
 *   - q8_0: |activation| by the weight with the activation's sign (vpsignb), as decoding does:
 *     pairs within 2·127², one vpmaddwd a group; the weights stay signed (offset 0).
 * The layouts are AVX-512's: the activations xq[b][g][Tp], 4 bytes of one position, with their
 * scales and −offset × their sums (quantize_block's bytes); a panel of PANEL_ROWS rows holds,
 * for each block, its 8 groups of 4 weights as 4 vectors of 8 rows each, then the 32 rows'
 * scales as f32. PANEL_POSITIONS_AVX2 positions × 2 vectors of rows: 8 integer sums in the 16
 * registers, the float sums added once a block. */
#define PANEL_ROWS 32
#define PANEL_BLOCK_BYTES (PANEL_ROWS * QBLOCK + PANEL_ROWS * (int)sizeof(float))
#define PANEL_POSITIONS_AVX2 4

/* rows[i]: the 8 groups of 4 bytes of one block of row i. Returns group g of rows 0 … 7 in
 * rows[g]: an 8 × 8 transpose of 4-byte elements (pairs, then pairs of pairs, then halves). */
static ALWAYS_INLINE void KERNEL(transpose_8x8)(__m256i rows[8]) {
    __m256i pairs[8], quads[8];
    for (int i = 0; i < 8; i += 2) {  /* rows i, i + 1: groups 0 1 | 4 5 and 2 3 | 6 7, interleaved */
        pairs[i] = _mm256_unpacklo_epi32(rows[i], rows[i + 1]);
        pairs[i + 1] = _mm256_unpackhi_epi32(rows[i], rows[i + 1]);
    }
    for (int i = 0; i < 8; i += 4)  /* rows i … i + 3: one group a 128-bit half */
        for (int j = 0; j < 2; j++) {
            quads[i + 2 * j] = _mm256_unpacklo_epi64(pairs[i + j], pairs[i + 2 + j]);
            quads[i + 2 * j + 1] = _mm256_unpackhi_epi64(pairs[i + j], pairs[i + 2 + j]);
        }
    for (int g = 0; g < 4; g++) {  /* rows 0 … 3 and 4 … 7 side by side */
        rows[g] = _mm256_permute2x128_si256(quads[g], quads[4 + g], 0x20);
        rows[g + 4] = _mm256_permute2x128_si256(quads[g], quads[4 + g], 0x31);
    }
}

/* Weight rows [o, o + rows) into the panel, rows past `rows` zero (with scale 0). */
static void KERNEL(repack_panel)(const Matmul *m, int o, int rows, uint8_t *panel) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const bool q4 = m->dtype == GPT2_Q4_0;
    const size_t block_bytes = q4 ? QBLOCK / 2 : QBLOCK, quants = (size_t)nb * block_bytes;
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * m->row_bytes;
    for (int b = 0; b < nb; b++) {
        uint8_t *pb = panel + (size_t)b * PANEL_BLOCK_BYTES;
        for (int v = 0; v < PANEL_ROWS / 8; v++) {
            __m256i unpacked[8];
            for (int i = 0; i < 8; i++) {
                const int r = 8 * v + i;
                if (r >= rows) {
                    unpacked[i] = _mm256_setzero_si256();
                    continue;
                }
                const uint8_t *q = w + (size_t)r * m->row_bytes + (size_t)b * block_bytes;
                if (q4) {  /* weights 0 … 15 in the low nibbles, 16 … 31 in the high */
                    const __m128i packed = _mm_loadu_si128((const __m128i *)q), low = _mm_set1_epi8(0x0F);
                    unpacked[i] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low), _mm_and_si128(packed, low));
                } else {
                    unpacked[i] = _mm256_loadu_si256((const __m256i *)q);
                }
            }
            KERNEL(transpose_8x8)(unpacked);
            for (int g = 0; g < QBLOCK / 4; g++) _mm256_storeu_si256((__m256i *)(pb + (size_t)(g * 4 + v) * 32), unpacked[g]);
        }
        float *scales = (float *)(pb + PANEL_ROWS * QBLOCK);
        for (int r = 0; r < PANEL_ROWS; r++) {
            uint16_t h = 0;
            if (r < rows) memcpy(&h, w + (size_t)r * m->row_bytes + quants + 2 * (size_t)b, 2);
            scales[r] = scalar_f16(h);
        }
    }
}

/* Rows o + 16·half … + 15 of the panel at positions t … t + P - 1: for each block b,
 *     y += d_w[b] · d_x[t][b] · (Σ_k u_w[k]·q_x[t][k] − offset·Σ_k q_x[t][k]),
 * the integer sum exact, the blocks added in order. */
static ALWAYS_INLINE void KERNEL(panel_tile)(const Matmul *m, const uint8_t *panel, int o, int rows, int half, int t, const int P,
                                             const bool q4) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK, Tp = m->T_padded;
    const int32_t *xq = (const int32_t *)m->xq;  /* [b][g][Tp]: 4 bytes of one position (quantize_batch_task) */
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][PANEL_POSITIONS_AVX2];
    for (int p = 0; p < P; p++) acc[0][p] = acc[1][p] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *pb = panel + (size_t)b * PANEL_BLOCK_BYTES;
        const int32_t *xb = xq + (size_t)b * (QBLOCK / 4) * Tp + t;
        __m256i sums[2][PANEL_POSITIONS_AVX2];
        for (int p = 0; p < P; p++) sums[0][p] = sums[1][p] = _mm256_setzero_si256();
        for (int g = 0; g < QBLOCK / 4; g++) {
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(pb + (size_t)(g * 4 + 2 * half) * 32));
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(pb + (size_t)(g * 4 + 2 * half + 1) * 32));
            for (int p = 0; p < P; p++) {
                const __m256i x = _mm256_set1_epi32(xb[(size_t)g * Tp + p]);
                if (q4) {  /* 16-bit pairs, summed over the block */
                    sums[0][p] = _mm256_add_epi16(sums[0][p], _mm256_maddubs_epi16(w0, x));
                    sums[1][p] = _mm256_add_epi16(sums[1][p], _mm256_maddubs_epi16(w1, x));
                } else {
                    const __m256i magnitude = _mm256_abs_epi8(x);
                    sums[0][p] = _mm256_add_epi32(sums[0][p], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(w0, x)), ones));
                    sums[1][p] = _mm256_add_epi32(sums[1][p], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(w1, x)), ones));
                }
            }
        }
        const float *scales = (const float *)(pb + PANEL_ROWS * QBLOCK) + 16 * half;
        const __m256 d0 = _mm256_loadu_ps(scales), d1 = _mm256_loadu_ps(scales + 8);
        for (int p = 0; p < P; p++) {
            if (q4) {
                const __m256i start = _mm256_set1_epi32(m->xsum[(size_t)b * Tp + t + p]);
                sums[0][p] = _mm256_add_epi32(_mm256_madd_epi16(sums[0][p], ones), start);
                sums[1][p] = _mm256_add_epi32(_mm256_madd_epi16(sums[1][p], ones), start);
            }
            const __m256 dx = _mm256_set1_ps(m->xd[(size_t)b * Tp + t + p]);
            acc[0][p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[0][p]), _mm256_mul_ps(d0, dx), acc[0][p]);
            acc[1][p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[1][p]), _mm256_mul_ps(d1, dx), acc[1][p]);
        }
    }
    /* lane l of vector v is row o + 16·half + 8·v + l: positions' rows are contiguous in the output */
    for (int v = 0; v < 2; v++) {
        const int first = 16 * half + 8 * v, n = rows - first < 8 ? rows - first : 8;
        if (n <= 0) break;
        for (int p = 0; p < P; p++) {
            float y[8];
            _mm256_storeu_ps(y, acc[v][p]);
            float *out = m->out + (size_t)(t + p) * m->n_out + o + first;
            for (int l = 0; l < n; l++) {
                const float yl = y[l] + (m->bias ? m->bias[o + first + l] : 0.0f);
                out[l] = m->epilogue == ACCUMULATE ? out[l] + yl : yl;
            }
        }
    }
}

static ALWAYS_INLINE void KERNEL(panel_rows)(const Matmul *m, const uint8_t *panel, int o, int rows, const bool q4) {
    for (int half = 0; half < 2 && 16 * half < rows; half++) {
        int t = 0;
        for (; t + PANEL_POSITIONS_AVX2 <= m->T; t += PANEL_POSITIONS_AVX2)
            KERNEL(panel_tile)(m, panel, o, rows, half, t, PANEL_POSITIONS_AVX2, q4);
        switch (m->T - t) {  /* the last few positions */
        case 3: KERNEL(panel_tile)(m, panel, o, rows, half, t, 3, q4); break;
        case 2: KERNEL(panel_tile)(m, panel, o, rows, half, t, 2, q4); break;
        case 1: KERNEL(panel_tile)(m, panel, o, rows, half, t, 1, q4); break;
        }
    }
}

/* The repacked panel of rows [o, o + rows) at every position of the batch. */
static void KERNEL(panel_positions)(const Matmul *m, const uint8_t *panel, int o, int rows) {
    if (m->dtype == GPT2_Q4_0) KERNEL(panel_rows)(m, panel, o, rows, true);
    else KERNEL(panel_rows)(m, panel, o, rows, false);
}
#elif INT8_PANELS && KERNELS_ISA == ISA_NEON
/* ---- a batch with q8_0 or q4_0 weights: 8-bit integer products (NEON dot products) ---------- */

/* sdot by element adds to each 32-bit lane i the 4 products of bytes 4i … 4i + 3 of one vector
 * by the 4 bytes of one lane of another: with a vector of 4 weights of 4 rows and a vector of
 * 4 activations of 4 positions, 16 rows × positions' partial sums an instruction, 64 multiply-
 * adds. Both sides are signed (q8_0's weights as they are, q4_0's nibbles 0 … 15 with −8 × the
 * block's activation sum starting its sums), and the layouts are AVX2's: the activations
 * xq[b][g][Tp] (4 bytes of one position), a panel of PANEL_ROWS rows holding for each block its
 * 8 groups of 4 weights of the 32 rows in order, then the rows' scales as f32. A tile is 8 rows
 * (2 vectors) × 4 positions: 8 integer and 8 float sums in registers, each load of weights
 * serving 4 positions and each load of activations 8 rows. */
#define PANEL_ROWS 32
#define PANEL_BLOCK_BYTES (PANEL_ROWS * QBLOCK + PANEL_ROWS * (int)sizeof(float))

/* Weight rows [o, o + rows) into the panel, rows past `rows` zero (with scale 0): 4 rows' 16
 * bytes at a time, a 4 × 4 transpose of 4-byte groups. */
static void KERNEL(repack_panel)(const Matmul *m, int o, int rows, uint8_t *panel) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    const bool q4 = m->dtype == GPT2_Q4_0;
    const size_t block_bytes = q4 ? QBLOCK / 2 : QBLOCK, quants = (size_t)nb * block_bytes;
    const uint8_t *w = (const uint8_t *)m->w + (size_t)o * m->row_bytes;
    for (int b = 0; b < nb; b++) {
        uint8_t *pb = panel + (size_t)b * PANEL_BLOCK_BYTES;
        for (int r0 = 0; r0 < PANEL_ROWS; r0 += 4)
            for (int half = 0; half < 2; half++) {  /* groups 0 … 3, then 4 … 7 */
                uint32x4_t v[4];
                for (int i = 0; i < 4; i++) {
                    if (r0 + i >= rows) {
                        v[i] = vdupq_n_u32(0);
                        continue;
                    }
                    const uint8_t *q = w + (size_t)(r0 + i) * m->row_bytes + (size_t)b * block_bytes;
                    if (q4)  /* weights 0 … 15 in the low nibbles, 16 … 31 in the high */
                        v[i] = vreinterpretq_u32_u8(half ? vshrq_n_u8(vld1q_u8(q), 4) : vandq_u8(vld1q_u8(q), vdupq_n_u8(0x0F)));
                    else
                        v[i] = vreinterpretq_u32_u8(vld1q_u8(q + 16 * half));
                }
                const uint32x4_t pair0 = vtrn1q_u32(v[0], v[1]), pair1 = vtrn2q_u32(v[0], v[1]);  /* a0 b0 a2 b2, a1 b1 a3 b3 */
                const uint32x4_t pair2 = vtrn1q_u32(v[2], v[3]), pair3 = vtrn2q_u32(v[2], v[3]);
                const uint32x4_t g[4] = {
                    vreinterpretq_u32_u64(vtrn1q_u64(vreinterpretq_u64_u32(pair0), vreinterpretq_u64_u32(pair2))),
                    vreinterpretq_u32_u64(vtrn1q_u64(vreinterpretq_u64_u32(pair1), vreinterpretq_u64_u32(pair3))),
                    vreinterpretq_u32_u64(vtrn2q_u64(vreinterpretq_u64_u32(pair0), vreinterpretq_u64_u32(pair2))),
                    vreinterpretq_u32_u64(vtrn2q_u64(vreinterpretq_u64_u32(pair1), vreinterpretq_u64_u32(pair3)))};
                for (int j = 0; j < 4; j++) vst1q_u32((uint32_t *)(pb + (size_t)(4 * half + j) * PANEL_ROWS * 4 + (size_t)r0 * 4), g[j]);
            }
        float *scales = (float *)(pb + PANEL_ROWS * QBLOCK);
        for (int r = 0; r < PANEL_ROWS; r++) {
            uint16_t h = 0;
            if (r < rows) memcpy(&h, w + (size_t)r * m->row_bytes + quants + 2 * (size_t)b, 2);
            scales[r] = f16_to_f32(h);
        }
    }
}

/* Rows o + first … + 7 of the panel at positions t … t + 3 (those below T stored): for each
 * block b, y += d_w[b] · d_x[t][b] · (Σ_k q_w[k]·q_x[t][k] − offset·Σ_k q_x[t][k]), the integer
 * sum exact, the blocks added in order. */
static inline void KERNEL(panel_tile)(const Matmul *m, const uint8_t *panel, int o, int rows, int first, int t) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK, Tp = m->T_padded;
    float32x4_t acc[2][4];
    for (int p = 0; p < 4; p++) acc[0][p] = acc[1][p] = vdupq_n_f32(0.0f);
    for (int b = 0; b < nb; b++) {
        const uint8_t *pb = panel + (size_t)b * PANEL_BLOCK_BYTES + (size_t)first * 4;
        const int8_t *xb = m->xq + 4 * ((size_t)b * (QBLOCK / 4) * Tp + t);
        int32x4_t sums[2][4];
        for (int p = 0; p < 4; p++) sums[0][p] = sums[1][p] = vdupq_n_s32(m->xsum[(size_t)b * Tp + t + p]);
#pragma GCC unroll 2  /* (fully unrolled, gcc ran the groups position by position, loading each weight 4 times) */
        for (int g = 0; g < QBLOCK / 4; g++) {
            const int8x16_t w0 = vld1q_s8((const int8_t *)pb + (size_t)g * PANEL_ROWS * 4), w1 = vld1q_s8((const int8_t *)pb + (size_t)g * PANEL_ROWS * 4 + 16);
            const int8x16_t x = vld1q_s8(xb + 4 * (size_t)g * Tp);  /* 4 bytes of each of the 4 positions */
            sums[0][0] = vdotq_laneq_s32(sums[0][0], w0, x, 0), sums[1][0] = vdotq_laneq_s32(sums[1][0], w1, x, 0);
            sums[0][1] = vdotq_laneq_s32(sums[0][1], w0, x, 1), sums[1][1] = vdotq_laneq_s32(sums[1][1], w1, x, 1);
            sums[0][2] = vdotq_laneq_s32(sums[0][2], w0, x, 2), sums[1][2] = vdotq_laneq_s32(sums[1][2], w1, x, 2);
            sums[0][3] = vdotq_laneq_s32(sums[0][3], w0, x, 3), sums[1][3] = vdotq_laneq_s32(sums[1][3], w1, x, 3);
        }
        const float *scales = (const float *)(panel + (size_t)b * PANEL_BLOCK_BYTES + PANEL_ROWS * QBLOCK) + first;
        const float32x4_t d0 = vld1q_f32(scales), d1 = vld1q_f32(scales + 4);
        for (int p = 0; p < 4; p++) {
            const float dx = m->xd[(size_t)b * Tp + t + p];
            acc[0][p] = vfmaq_f32(acc[0][p], vcvtq_f32_s32(sums[0][p]), vmulq_n_f32(d0, dx));
            acc[1][p] = vfmaq_f32(acc[1][p], vcvtq_f32_s32(sums[1][p]), vmulq_n_f32(d1, dx));
        }
    }
    /* lane l of vector v is row o + first + 4·v + l: a position's rows are contiguous in the output */
    const int n_rows = rows - first < 8 ? rows - first : 8;
    for (int p = 0; p < 4 && t + p < m->T; p++) {
        float y[8];
        vst1q_f32(y, acc[0][p]), vst1q_f32(y + 4, acc[1][p]);
        float *out = m->out + (size_t)(t + p) * m->n_out + o + first;
        for (int l = 0; l < n_rows; l++) {
            const float yl = y[l] + (m->bias ? m->bias[o + first + l] : 0.0f);
            out[l] = m->epilogue == ACCUMULATE ? out[l] + yl : yl;
        }
    }
}

/* The repacked panel of rows [o, o + rows) at every position of the batch (padding positions,
 * zeros with scale 0, fill the last tile of 4). */
static void KERNEL(panel_positions)(const Matmul *m, const uint8_t *panel, int o, int rows) {
    for (int first = 0; first < rows; first += 8)
        for (int t = 0; t < m->T; t += 4) KERNEL(panel_tile)(m, panel, o, rows, first, t);
}
#endif
#if KERNELS_ISA == ISA_AVX2 || (INT8_PANELS && KERNELS_ISA == ISA_NEON)
/* The batch's activations, one task item per block b of 32 channels (see the AVX-512 version):
 * position by position with quantize_block, which the vector versions match byte for byte.
 * The weights' offset: q4_0's nibbles are q + 8; q8_0's weights are signed as they are. */
static void KERNEL(quantize_batch_task)(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    (void)thread;
    const int Tp = m->T_padded, offset = m->dtype == GPT2_Q4_0 ? 8 : 0;
    for (int b = begin; b < end; b++) {
        const int n = m->n_in - b * QBLOCK < QBLOCK ? m->n_in - b * QBLOCK : QBLOCK;
        for (int t = 0; t < Tp; t++) {
            int8_t q[QBLOCK] = {0};
            int32_t sum = 0;
            float d = 0.0f;  /* padding positions: 0 */
            if (t < m->T) d = quantize_block(m->in + (size_t)t * m->n_in + (size_t)b * QBLOCK, n, q, &sum);
            for (int g = 0; g < QBLOCK / 4; g++) memcpy(m->xq + 4 * (((size_t)b * (QBLOCK / 4) + g) * Tp + t), q + 4 * g, 4);
            m->xd[(size_t)b * Tp + t] = d;
            m->xsum[(size_t)b * Tp + t] = -offset * sum;
        }
    }
}

#endif

#if INT8_PANELS
/* Rows [begin, end) a panel at a time, in the thread's tile. */
static void KERNEL(int8_rows)(const Matmul *m, int begin, int end, int thread) {
    uint8_t *panel = (uint8_t *)(m->w_tiles + (size_t)thread * tile_floats(m->n_in));
    for (int o = begin; o < end; o += PANEL_ROWS) {
        const int rows = end - o < PANEL_ROWS ? end - o : PANEL_ROWS;
        KERNEL(repack_panel)(m, o, rows, panel);
        KERNEL(prefetch_rows)(m, o + PANEL_ROWS, PANEL_ROWS, end);
        KERNEL(panel_positions)(m, panel, o, rows);
    }
}

static void KERNEL(matmul_int8_task)(void *arg, int begin, int end, int thread) {
    KERNEL(int8_rows)(arg, begin, end, thread);
    matmul_finish(arg, begin, end);
}
#endif

/* Decoding's activations for the integer dot products, quantized position by position and
 * block by block as quantize_block does: with AVX-512, in vectors, and for q4_0 weights each
 * four blocks' values reordered as their nibbles lie (see qdot_tile_q4). */
static void KERNEL(quantize_activations)(Matmul *m) {
    const int nb = (m->n_in + QBLOCK - 1) / QBLOCK;
    for (int t = 0; t < m->T; t++) {
        for (int b = 0; b < nb; b++) {
            const size_t i = (size_t)t * nb + b;
            const int n = m->n_in - b * QBLOCK < QBLOCK ? m->n_in - b * QBLOCK : QBLOCK;
            const float *x = m->in + (size_t)t * m->n_in + (size_t)b * QBLOCK;
#if KERNELS_ISA == ISA_AVX512
            __m256i q;
            m->xd[i] = KERNEL(quantize_block_vec)(x, n, &q, &m->xsum[i]);
            _mm256_storeu_si256((__m256i *)(m->xq + i * QBLOCK), q);
#else
            m->xd[i] = quantize_block(x, n, m->xq + i * QBLOCK, &m->xsum[i]);
#endif
        }
#if KERNELS_ISA == ISA_AVX512 || KERNELS_ISA == ISA_AVX2
        if (m->dtype == GPT2_Q4_0) KERNEL(q4_order)(m->xq + (size_t)t * nb * QBLOCK, nb);
#endif
    }
}

/* out (T, w.rows) ⟵ in (T, w.cols) · wᵀ + bias, with the epilogue, split by output rows over
 * the pool; more than MATMUL_POSITIONS positions go in chunks of that many. */
static void KERNEL(matmul)(gpt2_pool *pool, const MatmulScratch *scratch, float *out, const float *in, const Tensor *w,
                           const float *bias, int T, Epilogue epilogue) {
    for (int t0 = 0; t0 < T; t0 += MATMUL_POSITIONS) {
        const int n = T - t0 < MATMUL_POSITIONS ? T - t0 : MATMUL_POSITIONS;
        Matmul m = matmul_args(scratch, out, in, w, bias, t0, n, VEC_WIDTH, epilogue, KERNEL(gelu));
        const bool quantized = w->dtype == GPT2_Q8_0 || w->dtype == GPT2_Q4_0;
#if INT8_PANELS
        if (quantized && n >= BATCH_MIN) {
            m.T_padded = (n + 15) / 16 * 16;
            const int nb = (m.n_in + QBLOCK - 1) / QBLOCK;
            pool_run(pool, KERNEL(quantize_batch_task), &m, nb, pool_chunk(pool, nb, 1));
            pool_run(pool, KERNEL(matmul_int8_task), &m, m.n_out, pool_chunk(pool, m.n_out, PANEL_ROWS));
            continue;
        }
#endif
        /* q8_0 and q4_0 are integer products on quantized activations at any batch size (here:
         * the decoding kernel, a few weight rows at a time against every position), so that each
         * instruction set computes the same sums */
        if (n < BATCH_MIN || quantized) {
            if (quantized) KERNEL(quantize_activations)(&m);
            if (w->dtype == GPT2_BF16) m.in = bf16_round_rows(m.in, (size_t)n * m.n_in, m.in_t);
            pool_run_guided(pool, KERNEL(matmul_dot_task), &m, m.n_out, DOT_ROWS);
            continue;
        }
        const int blocks = (m.n_in + TRANSPOSE_CHANNELS - 1) / TRANSPOSE_CHANNELS;
        pool_run(pool, w->dtype == GPT2_BF16 ? transpose_task : TRANSPOSE_TASK, &m, blocks, pool_chunk(pool, blocks, 1));
        pool_run(pool, KERNEL(matmul_batch_task), &m, m.n_out, pool_chunk(pool, m.n_out, BATCH_ROWS));
    }
}

/* ---- attention ---------------------------------------------------------------------------- */

/* The two products of attention for G ≤ ATT_QUERIES queries of one head over n keys, f32 or
 * f16 (decided at compile time by f16): scores p_g[j] = Σ_d q_g[d] · keys[d][j], and
 * out_g[i] = Σ_j p_g[j] · values[j][i]. Each key or value loaded serves all G queries. A query's
 * sums do not depend on G or n: a score is the same chain of fused multiply-adds in whichever
 * vector lane it falls, and a query's probabilities past its own keys are 0, which add nothing
 * to its values' sums. So a prompt computes the same logits whether it comes in one batch or
 * several. */
#define ATT_TILE (VEC_WIDTH == 8 ? 2 : 4)  /* vectors of keys or channels at a time (AVX2 has 16 registers) */
#define KV_LOAD(base, i) (f16 ? vec_load_f16((const uint16_t *)(base) + (i)) : vec_load((const float *)(base) + (i)))
#define KV_SCALAR(base, i) (f16 ? f16_to_f32(((const uint16_t *)(base))[i]) : ((const float *)(base))[i])

/* out_g[c, c + vecs·VEC_WIDTH) = Σ_{k<K} a_g[k] · B_k[c, c + vecs·VEC_WIDTH), g < G: the GEMM
 * micro-kernel with its rows given as pointers and B f32 or f16, B_k[col] lying at
 * B[k·b_k + col / KEY_BLOCK · b_block + col % KEY_BLOCK]. Scores are this with a = the queries
 * and B = the keys (K = HS; b_k = KEY_BLOCK, b_block = HS · KEY_BLOCK, see key_index), the
 * values' sums with a = the probabilities and B = the values (K = keys; b_k = value_stride,
 * b_block = KEY_BLOCK: plain rows). vecs and G are constants, so that the sums stay in
 * registers (with a run-time vecs, gcc kept them in memory and copied each row of B). */
static ALWAYS_INLINE void KERNEL(attention_tile)(float *const out[], const float *const a[], const int G, const uint8_t *B, size_t b_k,
                                                 size_t b_block, int K, int c, const int vecs, const bool f16,
                                                 const AttentionPrefetch *prefetch) {
    vec acc[ATT_QUERIES * ATT_TILE];
    size_t at[ATT_QUERIES * ATT_TILE];
    for (int v = 0; v < vecs; v++) {
        const int col = c + v * VEC_WIDTH;
        at[v] = (size_t)(col / KEY_BLOCK) * b_block + col % KEY_BLOCK;
    }
    for (int i = 0; i < G * vecs; i++) acc[i] = vec_zero();
    for (int k = 0; k < K; k++) {
        vec b[ATT_QUERIES * ATT_TILE];
        for (int v = 0; v < vecs; v++) b[v] = KV_LOAD(B, (size_t)k * b_k + at[v]);
        if (prefetch)
            for (int r = 0; r < 2; r++)
                for (size_t o = (size_t)k * prefetch->step; o < (size_t)(k + 1) * prefetch->step && o < prefetch->bytes[r]; o += 64)
                    PREFETCH_STREAM(prefetch->at[r] + o, false);
        for (int g = 0; g < G; g++) {
            const vec ak = vec_set1(a[g][k]);
            for (int v = 0; v < vecs; v++) acc[g * vecs + v] = vec_fma(ak, b[v], acc[g * vecs + v]);
        }
    }
    for (int g = 0; g < G; g++)
        for (int v = 0; v < vecs; v++) vec_store(out[g] + c + v * VEC_WIDTH, acc[g * vecs + v]);
}

/* Fewer queries take more keys at a time: always ATT_QUERIES · ATT_TILE sums in registers,
 * except for one query (decoding), which reads ATT_TILE vectors at a time: its keys come from
 * memory, and fewer blocks at once keep the reads nearer to one run. */
static ALWAYS_INLINE void KERNEL(attention_scores)(float *const p[], const float *const q[], const int G, const uint8_t *keys, int HS,
                                                   int n, const bool f16, const uint8_t *values) {
    const size_t b_block = (size_t)HS * KEY_BLOCK, kv_bytes = f16 ? 2 : 4, position_bytes = (size_t)HS * kv_bytes;
    const int wide = G == 1 ? ATT_TILE : ATT_QUERIES * ATT_TILE / G, width = wide * VEC_WIDTH;
    int j = 0;
    for (; j + width <= n; j += width) {
        const int next = n - (j + width) < width ? n - (j + width) : width;  /* positions of the next tile */
        const AttentionPrefetch ahead = {{values + j * position_bytes, keys + (j + width) * position_bytes},
                                         {(size_t)width * position_bytes, (size_t)next * position_bytes},
                                         (size_t)width * kv_bytes};
        KERNEL(attention_tile)(p, q, G, keys, KEY_BLOCK, b_block, HS, j, wide, f16, G == 1 ? &ahead : NULL);
    }
    /* the last few keys in a whole vector: a block has room (key_stride is whole blocks, and a
     * vector never spans two), and the lanes past n, scores of no key, are not read */
    for (; j < n; j += VEC_WIDTH) {
        const AttentionPrefetch ahead = {{values + j * position_bytes, NULL}, {(size_t)(n - j) * position_bytes, 0},
                                         (size_t)VEC_WIDTH * kv_bytes};
        KERNEL(attention_tile)(p, q, G, keys, KEY_BLOCK, b_block, HS, j, 1, f16, G == 1 ? &ahead : NULL);
    }
}

static ALWAYS_INLINE void KERNEL(attention_values)(float *const out[], const float *const p[], const int G, const void *values,
                                                   size_t vs, int HS, int n, const bool f16, const uint8_t *next_keys) {
    const size_t position_bytes = (size_t)HS * (f16 ? 2 : 4);
    const AttentionPrefetch ahead = {{next_keys, NULL}, {next_keys ? (size_t)n * position_bytes : 0, 0}, position_bytes};
    int i = 0;
    for (; i + ATT_TILE * VEC_WIDTH <= HS; i += ATT_TILE * VEC_WIDTH)
        KERNEL(attention_tile)(out, p, G, values, vs, KEY_BLOCK, n, i, ATT_TILE, f16, G == 1 && i == 0 ? &ahead : NULL);
    for (; i + VEC_WIDTH <= HS; i += VEC_WIDTH)
        KERNEL(attention_tile)(out, p, G, values, vs, KEY_BLOCK, n, i, 1, f16, G == 1 && i == 0 ? &ahead : NULL);
    for (; i < HS; i++)
        for (int g = 0; g < G; g++) {
            float s = 0.0f;
            for (int j = 0; j < n; j++) s += p[g][j] * KV_SCALAR(values, (size_t)j * vs + i);
            out[g][i] = s;
        }
}
#undef KV_LOAD
#undef KV_SCALAR

/* p[0 … n) = softmax(scale · p), subtracting the max so that exp cannot overflow. The max
 * and the sum go in vectors, the sum in VEC_WIDTH partial sums added in a fixed order: a
 * query's probabilities depend on its own scores alone. */
WIDE_LOOPS static void KERNEL(softmax)(float *p, int n, float scale) {
    vec max_v = vec_set1(-INFINITY), sum_v = vec_zero();
    int j = 0;
    for (; j + VEC_WIDTH <= n; j += VEC_WIDTH) {
        const vec x = vec_mul(vec_load(p + j), vec_set1(scale));
        vec_store(p + j, x);
        max_v = vec_max(max_v, x);
    }
    float lanes[VEC_WIDTH], max = -INFINITY, sum = 0.0f;
    vec_store(lanes, max_v);
    for (int l = 0; l < VEC_WIDTH; l++) max = lanes[l] > max ? lanes[l] : max;
    for (; j < n; j++) {
        p[j] *= scale;
        max = p[j] > max ? p[j] : max;
    }
    for (j = 0; j < n; j++) p[j] = KERNEL(exp_approx)(p[j] - max);
    for (j = 0; j + VEC_WIDTH <= n; j += VEC_WIDTH) sum_v = vec_add(sum_v, vec_load(p + j));
    sum = vec_sum(sum_v);
    for (; j < n; j++) sum += p[j];
    const float inv_sum = 1.0f / sum;
    for (j = 0; j < n; j++) p[j] *= inv_sum;
}

/* The G queries of one task item (G and f16 constants, so that the sums stay in registers):
 * their scores over keys 0 … n_max - 1, the softmaxes, and the sums of the values. */
static ALWAYS_INLINE void KERNEL(attend)(const Attention *a, float *const p[], const float *const q[], float *const out[],
                                         const int keys_of[], int n_max, const uint8_t *keys, const uint8_t *values,
                                         const uint8_t *next_keys, const int G, const bool f16) {
    const int HS = a->HS, ks = a->key_stride;
    const float scale = 1.0f / sqrtf((float)HS);
    KERNEL(attention_scores)(p, q, G, keys, HS, n_max, f16, values);
    /* p = softmax(q·kᵀ / √HS) over the query's keys; 0 for the group's later keys (and, stored
     * for training, to the row's end: its backward reads whole columns) */
    for (int g = 0; g < G; g++) {
        KERNEL(softmax)(p[g], keys_of[g], scale);
        for (int j = keys_of[g]; j < (a->probs ? ks : n_max); j++) p[g][j] = 0.0f;
    }
    /* out = Σ_j p_j · v_j */
    KERNEL(attention_values)(out, (const float *const *)p, G, values, a->value_stride, HS, n_max, f16, next_keys);
}

/* One task item: ATT_QUERIES consecutive query positions of one head (fewer at the batch's
 * end), so that the items, and so the sums, are the same on any number of threads. */
static void KERNEL(attention_task)(void *arg, int begin, int end, int thread) {
    const Attention *a = arg;
    const int HS = a->HS, ks = a->key_stride, groups = (a->T + ATT_QUERIES - 1) / ATT_QUERIES;
    const size_t kv_size = a->f16 ? 2 : 4;
    for (int item = begin; item < end; item++) {
        const int h = item / groups, t0 = item % groups * ATT_QUERIES, G = a->T - t0 < ATT_QUERIES ? a->T - t0 : ATT_QUERIES;
        if (a->append) kv_append_task((void *)a->append, h * HS, (h + 1) * HS, thread);  /* (T = 1: one item a head) */
        const uint8_t *keys = (const uint8_t *)a->keys + (size_t)h * HS * ks * kv_size;
        const uint8_t *values = (const uint8_t *)a->values + h * a->value_head_stride * kv_size;
        const float *q[ATT_QUERIES] = {0};  /* (G of each: the rest stay unused) */
        float *p[ATT_QUERIES] = {0}, *out[ATT_QUERIES] = {0};
        int keys_of[ATT_QUERIES] = {0}, n_max = 0;
        for (int g = 0; g < G; g++) {
            const int t = t0 + g, n_keys = a->pos0 + t + 1;  /* the causal mask: keys 0 … pos0 + t */
            keys_of[g] = n_keys;
            n_max = n_keys > n_max ? n_keys : n_max;
            q[g] = a->q + (size_t)t * a->q_stride + h * HS;
            out[g] = a->out + (size_t)t * a->out_stride + h * HS;
            p[g] = a->probs ? a->probs + ((size_t)h * a->T + t) * ks : a->scores + ((size_t)thread * ATT_QUERIES + g) * ks;
        }
        /* decoding: the next head's keys, if this task computes it (see AttentionPrefetch) */
        const uint8_t *next_keys = a->T == 1 && item + 1 < end ? keys + (size_t)HS * ks * kv_size : NULL;
#define ATTEND(GROUP) (a->f16 ? KERNEL(attend)(a, p, q, out, keys_of, n_max, keys, values, next_keys, GROUP, true) \
                            : KERNEL(attend)(a, p, q, out, keys_of, n_max, keys, values, next_keys, GROUP, false))
        if (G == ATT_QUERIES) ATTEND(ATT_QUERIES);
        else if (G == 1) ATTEND(1);
        else if (G == 2) ATTEND(2);
        else ATTEND(3);
#undef ATTEND
    }
}

static void KERNEL(attention)(gpt2_pool *pool, const Attention *a) {
    const int items = a->NH * ((a->T + ATT_QUERIES - 1) / ATT_QUERIES);
    pool_run(pool, KERNEL(attention_task), (void *)a, items, pool_chunk(pool, items, 1));
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

static const Kernels KERNEL(kernels_table) = {KERNELS_NAME, KERNEL(matmul), KERNEL(attention), KERNEL(gelu), KERNEL(read_task),
                                              MATMUL_POSITIONS};

#undef vec
#undef vec_zero
#undef vec_set1
#undef vec_load
#undef vec_store
#undef vec_fma
#undef vec_mul
#undef vec_add
#undef vec_max
#undef vec_sum
#undef vec_load_f16
#undef vec_load_bf16
#undef scalar_f16
#undef KERNELS_NAME
#undef PANEL_ROWS
#undef ATT_TILE
#undef PANEL_POSITIONS
#undef PANEL_BLOCK_BYTES
#undef INT8_PANELS
#ifndef KERNELS_KEEP  /* the build's own copy keeps its names for the rest of gpt2.c and the trainer */
#undef VEC_WIDTH
#undef BATCH_ROWS
#undef TRANSPOSE_TASK
#undef BATCH_VECS
#undef DOT_ROWS
#undef DOT_ROWS_NARROW
#undef WIDE_LOOPS
#undef TILE_MAX_ROWS
#undef TILE_MAX_VECS
#endif
#undef KERNELS_ISA
#undef KERNELS_DOTPROD
#undef KERNEL
