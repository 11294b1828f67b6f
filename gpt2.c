/* gpt2.c — GPT-2 inference in one file of C: libc, libm and pthreads, nothing else.
 *
 * Read it top to bottom: the model file and its loader, the thread pool, the kernels, the
 * forward pass in the order data flows through it, sampling, and generation one token at a
 * time. The tokenizer lives in tokenizer.c, which is #included below (one translation unit).
 * The command-line program is main.c; it uses gpt2.h only, like any other program.
 *
 * Dimensions used in comments and names:
 *   L  layers            T  positions in the batch being computed
 *   C  channels (n_embd)  NH heads, HS = C / NH channels per head
 *   V  vocabulary size   P  context length (positions the model has learned, n_ctx)
 * A shape written (T, C) is a row-major array: T rows of C floats.
 */
#define _GNU_SOURCE  /* sched_getaffinity, CPU_COUNT; harmless elsewhere */
#define _FILE_OFFSET_BITS 64  /* files past 2 GB on 32-bit systems too */
#include "gpt2.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Nothing here enables floating-point exceptions, so no arithmetic of the engine traps; told so,
 * gcc if-converts comparisons of floats into vector selects where the instruction set has no
 * masked operations (AVX2, NEON), and the loops of GELU and of the softmaxes vectorize there
 * (exp_approx's clamps kept them scalar). Values do not change: it allows no reordering. Clang
 * assumes it unless told otherwise. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include "tokenizer.c"

/* Every a·b + c rounds twice, as written, unless a kernel asks for a fused multiply-add: clang
 * would otherwise fuse where it sees fit (gcc does not in ISO C mode, -std=c11), and the plain-C
 * kernels would round differently from one compiler to the next; q8_0 and q4_0, which round
 * activations to 8 bits, then tell them apart by a quantization step. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ============================================================================================
 * Small utilities
 * ========================================================================================== */

/* Writes a one-line message into err (when the caller gave room for one) and returns -1. */
static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* The text of an errno value. strerror may return a buffer it shares between threads;
 * strerror_r does not, but comes in two flavours: GNU's returns the text, POSIX's fills buf. */
static const char *errno_text(int errnum, char *buf, size_t len) {
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(errnum, buf, len);
#else
    return strerror_r(errnum, buf, len) == 0 ? buf : "unknown error";
#endif
}
#define ERRNO_TEXT(e) errno_text((e), (char[128]){0}, 128)

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint32_t read_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t read_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static float read_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }
static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Overflow-checked size arithmetic: returns false instead of wrapping. */
static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}
static bool add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return false;
    *out = a + b;
    return true;
}
static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

/* ============================================================================================
 * The model file (docs/FORMAT.md): header, tensor table, tokenizer, 64-byte aligned tensors
 * ========================================================================================== */

/* Sanity caps: far above any GPT-2, low enough that sizes computed from them stay in range. */
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_EMBD 65536
#define MAX_CTX (1 << 20)
#define MAX_VOCAB (1 << 24)

/* Weight types: a row of `cols` weights is ceil(cols / block) blocks of block_bytes. */
static const struct { const char *name; int block, block_bytes; } dtypes[GPT2_N_DTYPES] = {
    [GPT2_F32] = {"f32", 1, 4},    [GPT2_F16] = {"f16", 1, 2},     [GPT2_BF16] = {"bf16", 1, 2},
    [GPT2_Q8_0] = {"q8_0", 32, 34}, [GPT2_Q4_0] = {"q4_0", 32, 18},
};

const char *gpt2_dtype_name(gpt2_dtype dtype) {
    return (unsigned)dtype < GPT2_N_DTYPES ? dtypes[dtype].name : NULL;
}

static uint64_t dtype_row_bytes(gpt2_dtype dtype, uint64_t cols) {
    return (cols + dtypes[dtype].block - 1) / dtypes[dtype].block * dtypes[dtype].block_bytes;
}

/* ---- the weight types' numbers --------------------------------------------------------------
 * f16 and bf16 are converted in software here (the kernels use the CPU's instructions where it
 * has them); q8_0 and q4_0 are blocks of 32 weights with an f16 scale d (FORMAT.md). */

static float f32_from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = h >> 10 & 0x1F, mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0x1F) bits = sign | 0x7F800000 | mant << 13;                   /* inf, NaN */
    else if (exp) bits = sign | (exp + 112) << 23 | mant << 13;               /* normal: rebias 15 → 127 */
    else if (!mant) bits = sign;                                              /* ±0 */
    else {                                                                    /* subnormal: normalize */
        int e = -1;
        uint32_t m = mant;
        do m <<= 1, e++; while (!(m & 0x400));
        bits = sign | (uint32_t)(112 - e) << 23 | (m & 0x3FF) << 13;
    }
    return f32_from_bits(bits);
}

/* Round to nearest, ties to even; past the largest f16, infinity; NaN stays NaN. */
static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)(x >> 16 & 0x8000);
    const uint32_t abs = x & 0x7FFFFFFF;
    if (abs >= 0x7F800000) return sign | 0x7C00 | (abs > 0x7F800000 ? 0x200 : 0);
    if (abs >= 0x477FF000) return sign | 0x7C00;             /* rounds past 65504 */
    if (abs < 0x38800000) {                                  /* below 2^-14: a subnormal (or 0) */
        if (abs < 0x33000000) return sign;                   /* below half the smallest: 0 */
        const uint32_t m = (abs & 0x7FFFFF) | 0x800000, shift = 126 - (abs >> 23);
        uint32_t h = m >> shift, rest = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (h & 1))) h++;
        return sign | (uint16_t)h;
    }
    uint32_t h = ((abs >> 23) - 112) << 10 | (abs >> 13 & 0x3FF), rest = abs & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;   /* (a carry into the exponent is right) */
    return sign | (uint16_t)h;
}

static float bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)(x >> 16 | 0x40);  /* NaN stays NaN */
    return (uint16_t)((x + 0x7FFF + (x >> 16 & 1)) >> 16);
}

/* x at bf16's precision (nearest, ties to even), still an f32: bf16 weights multiply
 * activations rounded so, in every kernel (see bf16_round_rows) */
static float bf16_round(float x) { return bf16_to_f32(f32_to_bf16(x)); }

#define QBLOCK 32  /* weights per q8_0 or q4_0 block */

/* One row of `cols` floats in the given type, into row_bytes bytes (the gap zeroed). */
static void quantize_row(gpt2_dtype dtype, const float *x, int cols, uint8_t *out, size_t row_bytes) {
    memset(out, 0, row_bytes);
    const int nb = (cols + QBLOCK - 1) / QBLOCK;
    switch (dtype) {
    case GPT2_F32: memcpy(out, x, (size_t)cols * 4); break;
    case GPT2_F16: for (int i = 0; i < cols; i++) { uint16_t h = f32_to_f16(x[i]); memcpy(out + 2 * i, &h, 2); } break;
    case GPT2_BF16: for (int i = 0; i < cols; i++) { uint16_t h = f32_to_bf16(x[i]); memcpy(out + 2 * i, &h, 2); } break;
    case GPT2_Q8_0:
    case GPT2_Q4_0:
        for (int b = 0; b < nb; b++) {
            float v[QBLOCK] = {0}, amax = 0, extreme = 0;  /* (past cols: zero weights) */
            for (int k = 0; k < QBLOCK && b * QBLOCK + k < cols; k++) v[k] = x[b * QBLOCK + k];
            for (int k = 0; k < QBLOCK; k++)
                if (fabsf(v[k]) > amax) amax = fabsf(v[k]), extreme = v[k];
            /* q8_0: d = max|x| / 127, q = round(x / d). q4_0: d = (the extreme value) / -8, q = round(x / d) + 8,
             * so that the extreme is exactly -8·d and the grid runs -8 … 7. The stored d is f16:
             * quantize with it, not with the exact one. */
            const uint16_t d16 = f32_to_f16(dtype == GPT2_Q8_0 ? amax / 127.0f : extreme / -8.0f);
            const float d = f16_to_f32(d16), inv = d != 0 ? 1.0f / d : 0.0f;
            memcpy(out + (size_t)nb * (dtype == GPT2_Q8_0 ? QBLOCK : QBLOCK / 2) + 2 * (size_t)b, &d16, 2);
            for (int k = 0; k < QBLOCK; k++) {
                float q = roundf(v[k] * inv);
                if (dtype == GPT2_Q8_0) {
                    out[(size_t)b * QBLOCK + k] = (uint8_t)(int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
                } else {
                    q += 8;
                    uint8_t n = (uint8_t)(q > 15 ? 15 : q < 0 ? 0 : q);
                    out[(size_t)b * (QBLOCK / 2) + k % 16] |= (uint8_t)(k < 16 ? n : n << 4);
                }
            }
        }
        break;
    }
}

/* The floats of row r of a tensor of any type. */
static void dequantize_row(const uint8_t *row, gpt2_dtype dtype, int cols, float *out) {
    const int nb = (cols + QBLOCK - 1) / QBLOCK;
    for (int i = 0; i < cols; i++) {
        uint16_t h;
        switch (dtype) {
        case GPT2_F32: memcpy(&out[i], row + 4 * (size_t)i, 4); break;
        case GPT2_F16: memcpy(&h, row + 2 * (size_t)i, 2); out[i] = f16_to_f32(h); break;
        case GPT2_BF16: memcpy(&h, row + 2 * (size_t)i, 2); out[i] = bf16_to_f32(h); break;
        case GPT2_Q8_0:
            memcpy(&h, row + (size_t)nb * QBLOCK + 2 * (size_t)(i / QBLOCK), 2);
            out[i] = f16_to_f32(h) * (float)(int8_t)row[i];
            break;
        case GPT2_Q4_0: {
            const int b = i / QBLOCK, k = i % QBLOCK;
            memcpy(&h, row + (size_t)nb * (QBLOCK / 2) + 2 * (size_t)b, 2);
            const uint8_t byte = row[(size_t)b * (QBLOCK / 2) + k % 16];
            out[i] = f16_to_f32(h) * (float)((k < 16 ? byte & 0xF : byte >> 4) - 8);
            break;
        }
        }
    }
}

gpt2_weight_types gpt2_default_types(gpt2_dtype matrices) {
    return (gpt2_weight_types){matrices, matrices == GPT2_Q4_0 ? GPT2_Q8_0 : matrices};
}

/* The twelve tensors of one block, in file order, and their shapes in multiples of C. */
static const struct { const char *name; int rows, cols; } block_tensors[12] = {
    /* rows = 0 means a vector (1 row); otherwise rows·C × cols·C */
    {"ln_1.weight", 0, 1},       {"ln_1.bias", 0, 1},
    {"attn.c_attn.weight", 3, 1}, {"attn.c_attn.bias", 0, 3},
    {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 0, 1},
    {"ln_2.weight", 0, 1},       {"ln_2.bias", 0, 1},
    {"mlp.c_fc.weight", 4, 1},   {"mlp.c_fc.bias", 0, 4},
    {"mlp.c_proj.weight", 1, 4}, {"mlp.c_proj.bias", 0, 1},
};
#define N_BLOCK_TENSORS 12

int gpt2_tensor_count(const gpt2_config *cfg) { return 4 + N_BLOCK_TENSORS * cfg->n_layer; }

int gpt2_tensor_info(const gpt2_config *cfg, int i, char *name, size_t name_len, int *rows, int *cols) {
    int C = cfg->n_embd, n = gpt2_tensor_count(cfg), r, c;
    char buf[64];
    if (i < 0 || i >= n) return -1;
    if (i == 0) { snprintf(buf, sizeof buf, "wte.weight"); r = cfg->vocab_size; c = C; }
    else if (i == 1) { snprintf(buf, sizeof buf, "wpe.weight"); r = cfg->n_ctx; c = C; }
    else if (i >= n - 2) { snprintf(buf, sizeof buf, "ln_f.%s", i == n - 2 ? "weight" : "bias"); r = 1; c = C; }
    else {
        int layer = (i - 2) / N_BLOCK_TENSORS, k = (i - 2) % N_BLOCK_TENSORS;
        snprintf(buf, sizeof buf, "h.%d.%s", layer, block_tensors[k].name);
        r = block_tensors[k].rows ? block_tensors[k].rows * C : 1;
        c = block_tensors[k].cols * C;
    }
    if (name && name_len) snprintf(name, name_len, "%s", buf);
    if (rows) *rows = r;
    if (cols) *cols = c;
    return 0;
}

int64_t gpt2_parameter_count(const gpt2_config *cfg) {
    int64_t n = 0;
    for (int i = 0; i < gpt2_tensor_count(cfg); i++) {
        int rows = 0, cols = 0;
        gpt2_tensor_info(cfg, i, NULL, 0, &rows, &cols);
        n += (int64_t)rows * cols;
    }
    return n;
}

/* One check of a config, shared by the loader and the writer. */
static int check_config(const gpt2_config *c, char *err, size_t errlen) {
    if (c->n_layer < 1 || c->n_layer > MAX_LAYERS) return fail(err, errlen, "n_layer %d is outside [1, %d]", c->n_layer, MAX_LAYERS);
    if (c->n_embd < 1 || c->n_embd > MAX_EMBD) return fail(err, errlen, "n_embd %d is outside [1, %d]", c->n_embd, MAX_EMBD);
    if (c->n_head < 1 || c->n_head > MAX_HEADS) return fail(err, errlen, "n_head %d is outside [1, %d]", c->n_head, MAX_HEADS);
    if (c->n_embd % c->n_head) return fail(err, errlen, "n_embd %d is not divisible by n_head %d", c->n_embd, c->n_head);
    if (c->n_ctx < 1 || c->n_ctx > MAX_CTX) return fail(err, errlen, "n_ctx %d is outside [1, %d]", c->n_ctx, MAX_CTX);
    if (c->vocab_size < 1 || c->vocab_size > MAX_VOCAB) return fail(err, errlen, "vocab_size %d is outside [1, %d]", c->vocab_size, MAX_VOCAB);
    if (!(c->ln_eps > 0.0f && c->ln_eps < 1.0f)) return fail(err, errlen, "layer-norm epsilon %g is outside (0, 1)", (double)c->ln_eps);
    if (c->eot_token < 0 || c->eot_token >= c->vocab_size) return fail(err, errlen, "eot_token %d is outside the vocabulary of %d", c->eot_token, c->vocab_size);
    return 0;
}

/* ---- tensors and the weights struct ------------------------------------------------------- */

/* One entry of the tensor table: where a tensor lives, relative to some base, and its type. */
typedef struct {
    gpt2_dtype dtype;
    int rows, cols;
    uint64_t row_bytes;  /* from one row to the next */
    uint64_t offset, nbytes;
} TensorEntry;

/* A weight matrix as the kernels see it. */
typedef struct {
    gpt2_dtype dtype;
    int rows, cols;
    size_t row_bytes;
    const void *data;
} Tensor;

typedef struct {
    const float *ln1_w, *ln1_b;  /* (C) */
    Tensor qkv_w;                /* (3C, C): rows q, then k, then v */
    const float *qkv_b;          /* (3C) */
    Tensor attn_proj_w;          /* (C, C) */
    const float *attn_proj_b;    /* (C) */
    const float *ln2_w, *ln2_b;  /* (C) */
    Tensor fc_w;                 /* (4C, C) */
    const float *fc_b;           /* (4C) */
    Tensor fc_proj_w;            /* (C, 4C) */
    const float *fc_proj_b;      /* (C) */
} LayerWeights;

typedef struct {
    Tensor wte;                  /* (V, C) token embeddings, also the LM head */
    Tensor wpe;                  /* (P, C) position embeddings */
    LayerWeights *layers;        /* [L] */
    const float *lnf_w, *lnf_b;  /* (C) final layer norm */
} Weights;

/* Lays out the tensors from `offset` on, each at the next multiple of GPT2_ALIGN, in the given
 * types (vectors f32). Returns the end of the last one. */
static uint64_t layout_tensors(const gpt2_config *c, gpt2_weight_types types, uint64_t offset, TensorEntry *table) {
    for (int i = 0; i < gpt2_tensor_count(c); i++) {
        TensorEntry *e = &table[i];
        gpt2_tensor_info(c, i, NULL, 0, &e->rows, &e->cols);
        e->dtype = e->rows == 1 ? GPT2_F32 : i < 2 ? types.embeddings : types.matrices;
        e->row_bytes = dtype_row_bytes(e->dtype, (uint64_t)e->cols);
        e->offset = offset = align_up(offset, GPT2_ALIGN);
        e->nbytes = (uint64_t)e->rows * e->row_bytes;
        offset += e->nbytes;
    }
    return offset;
}

/* Points a Weights struct at tensors laid out by `table` from `base`: into the mapped file for
 * the loader, into a buffer of parameters for a trainer. layers must have room for L. */
static void weights_init(Weights *w, const gpt2_config *c, const TensorEntry *table, const void *base) {
#define TENSOR(i) ((Tensor){table[i].dtype, table[i].rows, table[i].cols, (size_t)table[i].row_bytes, \
                            (const uint8_t *)base + table[i].offset})
#define VECTOR(i) ((const float *)((const uint8_t *)base + table[i].offset))
    const int n = gpt2_tensor_count(c);
    w->wte = TENSOR(0);
    w->wpe = TENSOR(1);
    for (int l = 0; l < c->n_layer; l++) {
        const int b = 2 + N_BLOCK_TENSORS * l;
        w->layers[l] = (LayerWeights){
            .ln1_w = VECTOR(b + 0), .ln1_b = VECTOR(b + 1), .qkv_w = TENSOR(b + 2), .qkv_b = VECTOR(b + 3),
            .attn_proj_w = TENSOR(b + 4), .attn_proj_b = VECTOR(b + 5), .ln2_w = VECTOR(b + 6), .ln2_b = VECTOR(b + 7),
            .fc_w = TENSOR(b + 8), .fc_b = VECTOR(b + 9), .fc_proj_w = TENSOR(b + 10), .fc_proj_b = VECTOR(b + 11),
        };
    }
    w->lnf_w = VECTOR(n - 2);
    w->lnf_b = VECTOR(n - 1);
#undef TENSOR
#undef VECTOR
}

/* ---- loading ------------------------------------------------------------------------------ */

/* Header field offsets (FORMAT.md, "Header"). */
enum {
    H_MAGIC = 0, H_VERSION = 4, H_HEADER_SIZE = 8, H_N_LAYER = 12, H_N_HEAD = 16, H_N_EMBD = 20,
    H_N_CTX = 24, H_VOCAB = 28, H_LN_EPS = 32, H_REQUIRED = 36, H_EOT = 40, H_N_TENSORS = 44,
    H_TABLE_OFFSET = 48, H_TOKENIZER_OFFSET = 56, H_TOKENIZER_SIZE = 64, H_FILE_SIZE = 72,
    H_OPTIONAL = 80, H_RESERVED = 84
};
#define KNOWN_REQUIRED_FEATURES GPT2_REQUIRED_TIED_HEAD

struct gpt2_model {
    gpt2_config config;
    int version;            /* of the file */
    Weights weights;        /* pointing into the mapping */
    TensorEntry *table;     /* where each tensor is in it */
    Tokenizer tokenizer;
    void *map;              /* the whole file, mapped read-only */
    size_t map_size;
    double load_ms;
};

/* Validates the tokenizer section at [off, off + size) and builds the encoder on it. */
static int load_tokenizer(gpt2_model *m, const uint8_t *base, uint64_t off, uint64_t size, char *err, size_t errlen) {
    const uint8_t *p = base + off;
    if (size < 16) return fail(err, errlen, "tokenizer section is %llu bytes, too small", (unsigned long long)size);
    uint32_t n_tokens = read_u32(p), n_merges = read_u32(p + 4), n_special = read_u32(p + 8);
    if (read_u32(p + 12)) return fail(err, errlen, "tokenizer section: reserved field is not zero");
    if ((int64_t)n_tokens != m->config.vocab_size)
        return fail(err, errlen, "tokenizer has %u tokens but the header's vocab_size is %d", n_tokens, m->config.vocab_size);
    if (n_merges > (uint32_t)MAX_VOCAB || n_special > n_tokens)
        return fail(err, errlen, "tokenizer counts are absurd (%u merges, %u special tokens)", n_merges, n_special);
    uint64_t fixed = 16 + 4 * ((uint64_t)n_tokens + 1) + 8 * (uint64_t)n_merges + 4 * (uint64_t)n_special;
    if (fixed > size) return fail(err, errlen, "tokenizer section is %llu bytes, its tables alone need %llu",
                                  (unsigned long long)size, (unsigned long long)fixed);
    const uint32_t *offsets = (const uint32_t *)(p + 16);
    const uint32_t *merges = offsets + n_tokens + 1;
    const uint32_t *special = merges + 2 * (uint64_t)n_merges;
    const uint8_t *bytes = p + fixed;
    if (offsets[0] != 0) return fail(err, errlen, "tokenizer: first token offset is %u, not 0", offsets[0]);
    for (uint32_t i = 0; i < n_tokens; i++)
        if (offsets[i + 1] < offsets[i]) return fail(err, errlen, "tokenizer: offsets decrease at token %u", i);
    if (fixed + offsets[n_tokens] != size)
        return fail(err, errlen, "tokenizer section is %llu bytes, its counts say %llu",
                    (unsigned long long)size, (unsigned long long)(fixed + offsets[n_tokens]));
    for (uint32_t i = 0; i < n_special; i++)
        if (special[i] >= n_tokens) return fail(err, errlen, "tokenizer: special token id %u is outside the vocabulary", special[i]);
    return tokenizer_init(&m->tokenizer, (int)n_tokens, offsets, bytes, (int)n_merges, merges, (int)n_special, special,
                          err, errlen);
}

/* Reads and validates the tensor table into table[]. `data_start` is the end of the
 * tokenizer section: tensors live after it, in order, without overlapping. */
static int load_table(const gpt2_model *m, const uint8_t *base, uint64_t file_size, uint64_t data_start, TensorEntry *table,
                      char *err, size_t errlen) {
    const gpt2_config *c = &m->config;
    uint64_t prev_end = data_start;
    for (int i = 0; i < gpt2_tensor_count(c); i++) {
        const uint8_t *e = base + GPT2_HEADER_SIZE + (uint64_t)i * GPT2_TENSOR_ENTRY_SIZE;
        uint32_t dtype = read_u32(e), rows = read_u32(e + 4), cols = read_u32(e + 8), row_bytes = read_u32(e + 12);
        uint64_t off = read_u64(e + 16), nbytes = read_u64(e + 24), want_bytes = 0, end;
        char name[64];
        int want_rows, want_cols;
        gpt2_tensor_info(c, i, name, sizeof name, &want_rows, &want_cols);
        if (rows != (uint32_t)want_rows || cols != (uint32_t)want_cols)
            return fail(err, errlen, "tensor %s has shape [%u, %u], expected [%d, %d]", name, rows, cols, want_rows, want_cols);
        if (dtype >= GPT2_N_DTYPES)
            return fail(err, errlen, "tensor %s has dtype %u, which this build does not know (HINT: update gpt2.c)", name, dtype);
        if (m->version == 1) {
            if (dtype != GPT2_F32) return fail(err, errlen, "tensor %s has dtype %s, but version-1 files are f32", name, dtypes[dtype].name);
            if (row_bytes) return fail(err, errlen, "tensor %s: reserved field is not zero", name);
            row_bytes = 4 * cols;
        }
        if (rows == 1 && dtype != GPT2_F32)
            return fail(err, errlen, "tensor %s is a vector of dtype %s; vectors must be f32", name, dtypes[dtype].name);
        uint64_t need = dtype_row_bytes(dtype, cols);
        if (row_bytes < need || row_bytes % (dtype == GPT2_F32 ? 4 : 2))
            return fail(err, errlen, "tensor %s has rows %u bytes apart; a row of %u %s weights needs %llu (and a multiple of %d)",
                        name, row_bytes, cols, dtypes[dtype].name, (unsigned long long)need, dtype == GPT2_F32 ? 4 : 2);
        if (!mul_u64(rows, row_bytes, &want_bytes) || nbytes != want_bytes)
            return fail(err, errlen, "tensor %s is %llu bytes, its shape needs %llu", name,
                        (unsigned long long)nbytes, (unsigned long long)want_bytes);
        if (off % GPT2_ALIGN) return fail(err, errlen, "tensor %s offset %llu is not a multiple of %d", name, (unsigned long long)off, GPT2_ALIGN);
        if (off < prev_end) return fail(err, errlen, "tensor %s at offset %llu overlaps what precedes it (ends at %llu)", name,
                                        (unsigned long long)off, (unsigned long long)prev_end);
        if (!add_u64(off, nbytes, &end) || end > file_size)
            return fail(err, errlen, "tensor %s [%llu, +%llu) runs past the end of the file (%llu bytes)", name,
                        (unsigned long long)off, (unsigned long long)nbytes, (unsigned long long)file_size);
        prev_end = end;
        table[i] = (TensorEntry){(gpt2_dtype)dtype, (int)rows, (int)cols, row_bytes, off, nbytes};
    }
    return 0;
}

/* Reads and checks the header; fills m->config and m->version. Everything is checked
 * against the real size. */
static int load_header(gpt2_model *m, const uint8_t *h, uint64_t file_size, char *err, size_t errlen) {
    uint32_t magic = read_u32(h + H_MAGIC), version = read_u32(h + H_VERSION);
    if (magic != GPT2_MAGIC) {
        if (h[8] == '{') return fail(err, errlen, "not a gpt2.c model (this looks like a safetensors file: convert its directory with export/convert)");
        if (magic == 20240326u) return fail(err, errlen, "not a gpt2.c model (this looks like an llm.c checkpoint: convert the HuggingFace model with export/convert)");
        return fail(err, errlen, "not a gpt2.c model file (bad magic 0x%08x)", magic);
    }
    if (version != 1 && version != 2)
        return fail(err, errlen, "file format version %u, but this build reads versions 1 and 2 (HINT: %s)", version,
                    version > GPT2_VERSION ? "update gpt2.c" : "re-convert the model with this build's export/convert");
    m->version = (int)version;
    if (read_u32(h + H_HEADER_SIZE) != GPT2_HEADER_SIZE)
        return fail(err, errlen, "header size %u, expected %d", read_u32(h + H_HEADER_SIZE), GPT2_HEADER_SIZE);
    uint64_t declared = read_u64(h + H_FILE_SIZE);
    if (declared != file_size)
        return fail(err, errlen, "file is %llu bytes but its header says %llu (%s)", (unsigned long long)file_size,
                    (unsigned long long)declared, file_size < declared ? "truncated download or copy?" : "trailing data");
    if (version == 1)  /* version 2 ignores them: optional features may use them */
        for (int i = H_OPTIONAL; i < GPT2_HEADER_SIZE; i++)
            if (h[i]) return fail(err, errlen, "header byte %d is reserved and must be zero", i);

    /* Range-check the u32 fields before they become ints; check_config does the rest. */
    static const struct { const char *name; int offset; uint32_t max; } dims[] = {
        {"n_layer", H_N_LAYER, MAX_LAYERS}, {"n_head", H_N_HEAD, MAX_HEADS}, {"n_embd", H_N_EMBD, MAX_EMBD},
        {"n_ctx", H_N_CTX, MAX_CTX},        {"vocab_size", H_VOCAB, MAX_VOCAB}, {"eot_token", H_EOT, MAX_VOCAB - 1},
    };
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
        uint32_t v = read_u32(h + dims[i].offset);
        if (v > dims[i].max) return fail(err, errlen, "bad header: %s %u is above the limit of %u", dims[i].name, v, dims[i].max);
    }
    gpt2_config *c = &m->config;
    c->n_layer = (int)read_u32(h + H_N_LAYER);
    c->n_head = (int)read_u32(h + H_N_HEAD);
    c->n_embd = (int)read_u32(h + H_N_EMBD);
    c->n_ctx = (int)read_u32(h + H_N_CTX);
    c->vocab_size = (int)read_u32(h + H_VOCAB);
    c->ln_eps = read_f32(h + H_LN_EPS);
    c->eot_token = (int)read_u32(h + H_EOT);
    char why[GPT2_ERR_MAX];
    if (check_config(c, why, sizeof why)) return fail(err, errlen, "bad header: %s", why);
    uint32_t required = read_u32(h + H_REQUIRED);
    if (required & ~KNOWN_REQUIRED_FEATURES)
        return fail(err, errlen, "the file needs features this build does not have (required flags 0x%x; HINT: update gpt2.c)",
                    required & ~KNOWN_REQUIRED_FEATURES);
    if (!(required & GPT2_REQUIRED_TIED_HEAD))
        return fail(err, errlen, "the file's LM head is not tied to the token embeddings, which this build cannot run");
    if (read_u32(h + H_N_TENSORS) != (uint32_t)gpt2_tensor_count(c))
        return fail(err, errlen, "header says %u tensors, %d layers need %d", read_u32(h + H_N_TENSORS), c->n_layer, gpt2_tensor_count(c));
    uint64_t table_end = GPT2_HEADER_SIZE + (uint64_t)gpt2_tensor_count(c) * GPT2_TENSOR_ENTRY_SIZE;
    if (read_u64(h + H_TABLE_OFFSET) != GPT2_HEADER_SIZE)
        return fail(err, errlen, "tensor table offset %llu, expected %d", (unsigned long long)read_u64(h + H_TABLE_OFFSET), GPT2_HEADER_SIZE);
    if (table_end > file_size) return fail(err, errlen, "file ends inside the tensor table (truncated?)");
    return 0;
}

gpt2_model *gpt2_load(const char *path, char *err, size_t errlen) {
    double t0 = now_ms();
    char why[GPT2_ERR_MAX] = "";
    if (!host_is_little_endian()) { fail(err, errlen, "%s: this build reads model files on little-endian hosts only", path); return NULL; }
    gpt2_model *m = calloc(1, sizeof *m);
    if (!m) { fail(err, errlen, "%s: out of memory", path); return NULL; }
    int fd = open(path, O_RDONLY);
    if (fd < 0) { fail(err, errlen, "%s: %s", path, ERRNO_TEXT(errno)); free(m); return NULL; }
    struct stat st;
    int stat_rc = fstat(fd, &st);
    if (stat_rc != 0 || !S_ISREG(st.st_mode)) {
        fail(err, errlen, "%s: %s", path, stat_rc ? ERRNO_TEXT(errno) : S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
        close(fd); free(m); return NULL;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < GPT2_HEADER_SIZE) {
        fail(err, errlen, "%s: file is %llu bytes, too small to be a model (the header alone is %d)", path,
             (unsigned long long)size, GPT2_HEADER_SIZE);
        close(fd); free(m); return NULL;
    }
    if (size > SIZE_MAX) {
        fail(err, errlen, "%s: the file is %.1f GB, more than this machine's address space can map", path, size / 1e9);
        close(fd); free(m); return NULL;
    }
    m->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);  /* the mapping keeps the file alive */
    if (m->map == MAP_FAILED) { fail(err, errlen, "%s: mmap: %s", path, ERRNO_TEXT(map_errno)); free(m); return NULL; }
    m->map_size = (size_t)size;
#ifdef MADV_HUGEPAGE
    /* A hint (Linux): read the file into the page cache in 2 MB pieces and map them whole where
     * the filesystem can. Decoding streams every weight once a token; on 4 KB pages that is a
     * page walk every 4 KB, and the hardware prefetcher stops at each page's end (f32 decoding
     * on one core: ~1.1x). Refused or unsupported, nothing changes. */
    (void)madvise(m->map, m->map_size, MADV_HUGEPAGE);
#endif
    const uint8_t *base = m->map;

    uint64_t tok_off, tok_size, tok_end;
    TensorEntry *table = NULL;
    if (load_header(m, base, size, why, sizeof why)) goto bad;
    tok_off = read_u64(base + H_TOKENIZER_OFFSET);
    tok_size = read_u64(base + H_TOKENIZER_SIZE);
    if (tok_off < GPT2_HEADER_SIZE + (uint64_t)gpt2_tensor_count(&m->config) * GPT2_TENSOR_ENTRY_SIZE || tok_off % 4 ||
        !add_u64(tok_off, tok_size, &tok_end) || tok_end > size) {
        fail(why, sizeof why, "tokenizer section [%llu, +%llu) is misplaced or runs past the end of the file",
             (unsigned long long)tok_off, (unsigned long long)tok_size);
        goto bad;
    }
    if (load_tokenizer(m, base, tok_off, tok_size, why, sizeof why)) goto bad;
    table = malloc((size_t)gpt2_tensor_count(&m->config) * sizeof *table);
    m->weights.layers = malloc((size_t)m->config.n_layer * sizeof *m->weights.layers);
    if (!table || !m->weights.layers) { fail(why, sizeof why, "out of memory"); goto bad; }
    if (load_table(m, base, size, tok_end, table, why, sizeof why)) goto bad;
    weights_init(&m->weights, &m->config, table, base);
    m->table = table;
    m->load_ms = now_ms() - t0;
    return m;
bad:
    free(table);
    fail(err, errlen, "%s: %s", path, why);
    gpt2_free(m);
    return NULL;
}

void gpt2_free(gpt2_model *m) {
    if (!m) return;
    tokenizer_free(&m->tokenizer);
    free(m->weights.layers);
    free(m->table);
    if (m->map && m->map != MAP_FAILED) munmap(m->map, m->map_size);
    free(m);
}

const gpt2_config *gpt2_model_config(const gpt2_model *m) { return &m->config; }
double gpt2_model_load_ms(const gpt2_model *m) { return m->load_ms; }
size_t gpt2_model_file_size(const gpt2_model *m) { return m->map_size; }
int gpt2_model_version(const gpt2_model *m) { return m->version; }
gpt2_dtype gpt2_model_dtype(const gpt2_model *m) { return m->weights.layers[0].fc_w.dtype; }

void gpt2_model_vocab(const gpt2_model *m, gpt2_vocab *v) {
    const uint8_t *p = (const uint8_t *)m->map + read_u64((const uint8_t *)m->map + H_TOKENIZER_OFFSET);
    v->n_tokens = (int)read_u32(p), v->n_merges = (int)read_u32(p + 4), v->n_special = (int)read_u32(p + 8);
    v->offsets = (const uint32_t *)(p + 16);
    v->merges = v->offsets + v->n_tokens + 1;
    v->special = v->merges + 2 * (size_t)v->n_merges;
    v->bytes = (const unsigned char *)(v->special + v->n_special);
}

int gpt2_tensor_read(const gpt2_model *m, int i, float *out, gpt2_dtype *dtype) {
    if (i < 0 || i >= gpt2_tensor_count(&m->config)) return -1;
    const TensorEntry *e = &m->table[i];
    for (int r = 0; r < e->rows; r++)
        dequantize_row((const uint8_t *)m->map + e->offset + (size_t)r * e->row_bytes, e->dtype, e->cols, out + (size_t)r * e->cols);
    if (dtype) *dtype = e->dtype;
    return 0;
}

int *gpt2_tokenize(const gpt2_model *m, const char *text, size_t len, int flags, size_t *n_tokens) {
    return tokenizer_encode(&m->tokenizer, text, len, flags & GPT2_ALLOW_SPECIAL, n_tokens);
}
const char *gpt2_token_bytes(const gpt2_model *m, int token, size_t *len) { return tokenizer_token(&m->tokenizer, token, len); }
size_t gpt2_utf8_incomplete_tail(const char *buf, size_t n) { return utf8_incomplete_tail(buf, n); }

size_t gpt2_utf8_valid_prefix(const char *buf, size_t n) {
    const uint8_t *s = (const uint8_t *)buf;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t len = s[i] < 0x80 ? 1 : utf8_decode(s + i, n - i, &cp);
        if (!len) break;
        i += len;
    }
    return i;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* The writer writes in 4 MB pieces at multiples of 4 MB (stdio writes whole buffers): the page
 * cache then holds a new file in large folios, which the engine can map as 2 MB pages (see
 * gpt2_load). Written 4 KB at a time (stdio's default), a model just written was mapped in 4 KB
 * pages until the kernel merged them, and decoding it ran 6-9% slower (f16 and q4_0, one and
 * two Zen 5 cores). (glibc ignores setvbuf's size without a buffer of ours.) */
#define WRITE_BUFFER (4 << 20)

struct gpt2_writer {
    FILE *f;
    char *buffer;         /* f's: WRITE_BUFFER bytes */
    char *path, *tmp_path;
    gpt2_config config;
    TensorEntry *table;   /* where each tensor goes */
    int next_tensor;      /* tensors written so far */
    uint64_t offset;      /* bytes written so far */
};

/* fwrite of n items that accepts data = NULL when n = 0 (an empty table may have no array) */
static bool write_items(FILE *f, const void *data, size_t size, size_t n) {
    return n == 0 || fwrite(data, size, n, f) == n;
}

static bool write_zeros(FILE *f, uint64_t n) {
    static const char zeros[GPT2_ALIGN];
    for (; n > 0; n -= n < GPT2_ALIGN ? n : GPT2_ALIGN)
        if (fwrite(zeros, 1, n < GPT2_ALIGN ? n : GPT2_ALIGN, f) != (n < GPT2_ALIGN ? n : GPT2_ALIGN)) return false;
    return true;
}

static int check_vocab(const gpt2_config *c, const gpt2_vocab *v, char *err, size_t errlen) {
    if (v->n_tokens != c->vocab_size) return fail(err, errlen, "vocabulary has %d tokens, config says %d", v->n_tokens, c->vocab_size);
    if (v->n_merges < 0 || v->n_special < 0 || v->n_special > v->n_tokens) return fail(err, errlen, "bad merge or special-token count");
    if (v->offsets[0] != 0) return fail(err, errlen, "token offsets must start at 0");
    for (int i = 0; i < v->n_tokens; i++)
        if (v->offsets[i + 1] < v->offsets[i]) return fail(err, errlen, "token offsets decrease at token %d", i);
    for (int i = 0; i < 2 * v->n_merges; i++)
        if (v->merges[i] >= (uint32_t)v->n_tokens) return fail(err, errlen, "merge %d names token %u, outside the vocabulary", i / 2, v->merges[i]);
    for (int i = 0; i < v->n_special; i++)
        if (v->special[i] >= (uint32_t)v->n_tokens) return fail(err, errlen, "special token %u is outside the vocabulary", v->special[i]);
    return 0;
}

static void writer_free(gpt2_writer *w) {  /* (after fclose: the stream used the buffer) */
    free(w->buffer);
    free(w->path);
    free(w->tmp_path);
    free(w->table);
    free(w);
}

gpt2_writer *gpt2_writer_open(const char *path, const gpt2_config *c, const gpt2_vocab *v, char *err, size_t errlen) {
    const gpt2_weight_types f32 = {GPT2_F32, GPT2_F32};
    return gpt2_writer_open_typed(path, c, v, &f32, err, errlen);
}

gpt2_writer *gpt2_writer_open_typed(const char *path, const gpt2_config *c, const gpt2_vocab *v, const gpt2_weight_types *types,
                                    char *err, size_t errlen) {
    char why[GPT2_ERR_MAX];
    if ((unsigned)types->matrices >= GPT2_N_DTYPES || (unsigned)types->embeddings >= GPT2_N_DTYPES) {
        fail(err, errlen, "%s: unknown weight type", path);
        return NULL;
    }
    if (!host_is_little_endian()) { fail(err, errlen, "writing model files needs a little-endian host"); return NULL; }
    if (check_config(c, why, sizeof why) || check_vocab(c, v, why, sizeof why)) { fail(err, errlen, "%s: %s", path, why); return NULL; }
    gpt2_writer *w = calloc(1, sizeof *w);
    size_t plen = strlen(path);
    if (!w || !(w->path = malloc(plen + 1)) || !(w->tmp_path = malloc(plen + 5)) || !(w->buffer = malloc(WRITE_BUFFER)) ||
        !(w->table = malloc((size_t)gpt2_tensor_count(c) * sizeof *w->table))) {
        if (w) writer_free(w);
        fail(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(w->path, path, plen + 1);
    snprintf(w->tmp_path, plen + 5, "%s.tmp", path);
    w->config = *c;
    if (!(w->f = fopen(w->tmp_path, "wb"))) {
        fail(err, errlen, "%s: %s", w->tmp_path, ERRNO_TEXT(errno));
        writer_free(w);
        return NULL;
    }
    (void)setvbuf(w->f, w->buffer, _IOFBF, WRITE_BUFFER);

    /* Lay the file out: header, table, tokenizer, then each tensor at the next multiple of 64. */
    int n = gpt2_tensor_count(c);
    uint64_t table_end = GPT2_HEADER_SIZE + (uint64_t)n * GPT2_TENSOR_ENTRY_SIZE;
    uint64_t tok_off = align_up(table_end, GPT2_ALIGN);
    uint64_t tok_fixed = 16 + 4 * ((uint64_t)v->n_tokens + 1) + 8 * (uint64_t)v->n_merges + 4 * (uint64_t)v->n_special;
    uint64_t tok_size = tok_fixed + v->offsets[v->n_tokens];
    uint64_t file_size = layout_tensors(c, *types, tok_off + tok_size, w->table);
    uint8_t *table = calloc((size_t)n, GPT2_TENSOR_ENTRY_SIZE);
    if (!table) { fail(err, errlen, "out of memory"); gpt2_writer_abort(w); return NULL; }
    for (int i = 0; i < n; i++) {
        const TensorEntry *t = &w->table[i];
        uint8_t *e = table + (size_t)i * GPT2_TENSOR_ENTRY_SIZE;
        put_u32(e, t->dtype); put_u32(e + 4, (uint32_t)t->rows); put_u32(e + 8, (uint32_t)t->cols);
        put_u32(e + 12, (uint32_t)t->row_bytes); put_u64(e + 16, t->offset); put_u64(e + 24, t->nbytes);
    }
    uint8_t h[GPT2_HEADER_SIZE] = {0};
    put_u32(h + H_MAGIC, GPT2_MAGIC); put_u32(h + H_VERSION, GPT2_VERSION); put_u32(h + H_HEADER_SIZE, GPT2_HEADER_SIZE);
    put_u32(h + H_N_LAYER, (uint32_t)c->n_layer); put_u32(h + H_N_HEAD, (uint32_t)c->n_head);
    put_u32(h + H_N_EMBD, (uint32_t)c->n_embd); put_u32(h + H_N_CTX, (uint32_t)c->n_ctx);
    put_u32(h + H_VOCAB, (uint32_t)c->vocab_size); memcpy(h + H_LN_EPS, &c->ln_eps, 4);
    put_u32(h + H_REQUIRED, GPT2_REQUIRED_TIED_HEAD); put_u32(h + H_EOT, (uint32_t)c->eot_token);
    put_u32(h + H_N_TENSORS, (uint32_t)n); put_u64(h + H_TABLE_OFFSET, GPT2_HEADER_SIZE);
    put_u64(h + H_TOKENIZER_OFFSET, tok_off); put_u64(h + H_TOKENIZER_SIZE, tok_size); put_u64(h + H_FILE_SIZE, file_size);
    uint8_t counts[16] = {0};
    put_u32(counts, (uint32_t)v->n_tokens); put_u32(counts + 4, (uint32_t)v->n_merges); put_u32(counts + 8, (uint32_t)v->n_special);
    bool ok = write_items(w->f, h, 1, sizeof h) && write_items(w->f, table, GPT2_TENSOR_ENTRY_SIZE, (size_t)n) &&
              write_zeros(w->f, tok_off - table_end) && write_items(w->f, counts, 1, 16) &&
              write_items(w->f, v->offsets, 4, (size_t)v->n_tokens + 1) && write_items(w->f, v->merges, 8, (size_t)v->n_merges) &&
              write_items(w->f, v->special, 4, (size_t)v->n_special) && write_items(w->f, v->bytes, 1, v->offsets[v->n_tokens]);
    free(table);
    if (!ok) { fail(err, errlen, "%s: write failed: %s", w->tmp_path, ERRNO_TEXT(errno)); gpt2_writer_abort(w); return NULL; }
    w->offset = tok_off + tok_size;
    return w;
}

int gpt2_writer_tensor(gpt2_writer *w, const float *data, char *err, size_t errlen) {
    if (w->next_tensor == gpt2_tensor_count(&w->config))
        return fail(err, errlen, "all %d tensors were already written", gpt2_tensor_count(&w->config));
    const TensorEntry *t = &w->table[w->next_tensor];
    uint8_t *row = malloc(t->row_bytes);
    if (!row) return fail(err, errlen, "out of memory");
    bool ok = write_zeros(w->f, t->offset - w->offset);
    for (int r = 0; ok && r < t->rows; r++) {
        quantize_row(t->dtype, data + (size_t)r * t->cols, t->cols, row, t->row_bytes);
        ok = fwrite(row, 1, t->row_bytes, w->f) == t->row_bytes;
    }
    free(row);
    if (!ok) return fail(err, errlen, "%s: write failed: %s", w->tmp_path, ERRNO_TEXT(errno));
    w->offset = t->offset + t->nbytes;
    w->next_tensor++;
    return 0;
}

int gpt2_writer_close(gpt2_writer *w, char *err, size_t errlen) {
    int n = gpt2_tensor_count(&w->config), rc = 0;
    if (w->next_tensor != n) {
        rc = fail(err, errlen, "%s: only %d of %d tensors were written", w->path, w->next_tensor, n);
    } else if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) {
        rc = fail(err, errlen, "%s: write failed: %s", w->tmp_path, ERRNO_TEXT(errno));
    }
    if (fclose(w->f) != 0 && rc == 0) rc = fail(err, errlen, "%s: write failed: %s", w->tmp_path, ERRNO_TEXT(errno));
    w->f = NULL;
    if (rc == 0) {  /* what the loader refuses must not replace what was there */
        char why[GPT2_ERR_MAX];
        gpt2_model *check = gpt2_load(w->tmp_path, why, sizeof why);
        if (!check) rc = fail(err, errlen, "the written model does not load: %s", why);
        gpt2_free(check);
    }
    if (rc == 0 && rename(w->tmp_path, w->path) != 0) rc = fail(err, errlen, "%s: %s", w->path, ERRNO_TEXT(errno));
    if (rc != 0) remove(w->tmp_path);
    writer_free(w);
    return rc;
}

void gpt2_writer_abort(gpt2_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    remove(w->tmp_path);
    writer_free(w);
}

/* ============================================================================================
 * Thread pool: persistent workers; a task is split into chunks claimed from an atomic counter
 * ========================================================================================== */

/* Processes items [begin, end). `thread` (0 = the caller) indexes per-thread scratch. Each item's
 * result must not depend on which thread computes it or with which other items: then results
 * are identical for any thread count. */
typedef void (*task_fn)(void *arg, int begin, int end, int thread);

int gpt2_available_cores(void) {
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

typedef struct { gpt2_pool *pool; int index; } Worker;

/* Waiting is a spin, then a sleep. A forward pass runs a task every few microseconds, too
 * often to pay for a futex wake-up each time; between forward passes threads go to sleep.
 * With more threads than cores, a spinning thread would hold the core its partner needs:
 * then threads only sleep. */
#define SPIN_NS 100000
#define MAX_THREADS 1024

struct gpt2_pool {
    int n_threads;             /* including the calling thread */
    double spin_ms;            /* how long a waiting thread spins before it sleeps */
    pthread_t *threads;        /* [n_threads - 1] */
    Worker *workers;
    pthread_mutex_t run_lock;  /* one task at a time: contexts sharing the pool take turns */
    /* the current task, published by the release increment of `generation` */
    task_fn fn;
    void *arg;
    int n_items;
    int grab_min, grab_max, unit;  /* a grab: a share of what is left, within these, whole units */
    atomic_int next_item;      /* first item nobody has claimed yet */
    atomic_uint generation;    /* one more for every task; workers wait for it to change */
    atomic_int running;        /* workers still busy with the current task */
    atomic_bool quit;
    /* sleeping: a sleeper announces itself before its last check, and a waker checks for
     * sleepers after its change (all sequentially consistent), so no wake-up is lost */
    pthread_mutex_t lock;
    pthread_cond_t start, finished;
    atomic_int sleepers;       /* workers asleep on `start` */
    atomic_bool caller_asleep; /* the calling thread is asleep on `finished` */
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* A bounded spin: `while (!condition && spin_more(&spin)) {}` spins up to spin_ms. */
typedef struct { double deadline; int rounds; } Spin;
static Spin spin_start(const gpt2_pool *p) { return (Spin){p->spin_ms > 0 ? now_ms() + p->spin_ms : 0, 0}; }
static bool spin_more(Spin *s) {
    if (s->deadline == 0) return false;
    if (++s->rounds % 256 == 0 && now_ms() > s->deadline) return false;  /* a clock read now and then */
    cpu_relax();
    return true;
}

static void pool_work(gpt2_pool *p, int thread) {
    int begin = atomic_load_explicit(&p->next_item, memory_order_relaxed);
    while (begin < p->n_items) {
        int size = (p->n_items - begin) / (2 * p->n_threads);
        size = size < p->grab_min ? p->grab_min : size > p->grab_max ? p->grab_max : (size + p->unit - 1) / p->unit * p->unit;
        const int end = p->n_items - begin < size ? p->n_items : begin + size;
        /* (on failure, begin becomes what another thread left) */
        if (atomic_compare_exchange_weak_explicit(&p->next_item, &begin, end, memory_order_relaxed, memory_order_relaxed)) {
            p->fn(p->arg, begin, end, thread);
            begin = atomic_load_explicit(&p->next_item, memory_order_relaxed);
        }
    }
}

static void *pool_worker(void *arg) {
    Worker *self = arg;
    gpt2_pool *p = self->pool;
    unsigned seen = 0;
    for (;;) {
        Spin spin = spin_start(p);
        while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen && spin_more(&spin)) {}
        if (atomic_load_explicit(&p->generation, memory_order_acquire) == seen) {
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->generation) == seen) pthread_cond_wait(&p->start, &p->lock);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->lock);
        }
        seen = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (atomic_load(&p->quit)) return NULL;
        pool_work(p, self->index);
        if (atomic_fetch_sub(&p->running, 1) == 1 && atomic_load(&p->caller_asleep)) {
            pthread_mutex_lock(&p->lock);  /* the caller holds it until it is really waiting */
            pthread_cond_signal(&p->finished);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

/* Publishes a new generation (a task, or quit) and wakes sleeping workers. */
static void pool_publish(gpt2_pool *p) {
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->start);
        pthread_mutex_unlock(&p->lock);
    }
}

/* Runs fn over [0, n_items) on all threads, each taking grab_min … grab_max items at a time
 * (whole units); returns when done. */
static void pool_run_grabs(gpt2_pool *p, task_fn fn, void *arg, int n_items, int grab_min, int grab_max, int unit) {
    if (n_items <= 0) return;
    if (p->n_threads == 1 || n_items <= grab_min) { fn(arg, 0, n_items, 0); return; }
    pthread_mutex_lock(&p->run_lock);
    p->fn = fn; p->arg = arg; p->n_items = n_items; p->grab_min = grab_min; p->grab_max = grab_max; p->unit = unit;
    atomic_store_explicit(&p->next_item, 0, memory_order_relaxed);
    atomic_store_explicit(&p->running, p->n_threads - 1, memory_order_relaxed);
    pool_publish(p);
    pool_work(p, 0);
    Spin spin = spin_start(p);
    while (atomic_load_explicit(&p->running, memory_order_acquire) != 0 && spin_more(&spin)) {}
    if (atomic_load_explicit(&p->running, memory_order_acquire) != 0) {
        pthread_mutex_lock(&p->lock);
        /* an exchange, not a store: a read-modify-write orders this before the load of `running`
         * below on any machine and emulator (a plain store then load is the pair the Dekker
         * handshake with the workers needs ordered; qemu-user's ARM-on-x86 did not always) */
        atomic_exchange(&p->caller_asleep, true);
        while (atomic_load(&p->running) != 0) pthread_cond_wait(&p->finished, &p->lock);
        atomic_store(&p->caller_asleep, false);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&p->run_lock);
}

/* Runs fn over [0, n_items) in chunks of `chunk` items on all threads; returns when done. */
static void pool_run(gpt2_pool *p, task_fn fn, void *arg, int n_items, int chunk) {
    if (chunk < 1) chunk = 1;
    pool_run_grabs(p, fn, arg, n_items, chunk, chunk, chunk);
}

/* The same with shrinking grabs, for decoding's matmuls: what is left over twice the threads,
 * down to a sixteenth of a thread's share, whole `unit`s. The threads finish closer together
 * than with four equal chunks each (threads waiting for each other: 6% of decoding f16 on two
 * Zen 4 cores, 2% with these), and the grabs stay few: each starts without prefetched lines. */
static void pool_run_guided(gpt2_pool *p, task_fn fn, void *arg, int n_items, int unit) {
    const int grab_min = (n_items / (16 * p->n_threads) + unit - 1) / unit * unit;
    pool_run_grabs(p, fn, arg, n_items, grab_min > unit ? grab_min : unit, n_items, unit);
}

/* A chunk size giving each thread about four chunks (for balance), a multiple of `unit`. */
static int pool_chunk(const gpt2_pool *p, int n_items, int unit) {
    int chunk = (n_items + 4 * p->n_threads - 1) / (4 * p->n_threads);
    return (chunk + unit - 1) / unit * unit;
}

gpt2_pool *gpt2_pool_new(int n_threads, char *err, size_t errlen) {
    if (n_threads == 0) n_threads = gpt2_available_cores();
    if (n_threads < 1 || n_threads > MAX_THREADS) { fail(err, errlen, "thread count %d is outside [1, %d]", n_threads, MAX_THREADS); return NULL; }
    gpt2_pool *p = calloc(1, sizeof *p);
    if (!p) { fail(err, errlen, "out of memory"); return NULL; }
    p->n_threads = 1;  /* until the workers have started */
    p->spin_ms = n_threads <= gpt2_available_cores() ? SPIN_NS / 1e6 : 0;
    atomic_init(&p->next_item, 0);
    atomic_init(&p->generation, 0);
    atomic_init(&p->running, 0);
    atomic_init(&p->quit, false);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_asleep, false);
    pthread_mutex_init(&p->run_lock, NULL);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->finished, NULL);
    if (n_threads == 1) return p;
    p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
    p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
    if (!p->threads || !p->workers) { fail(err, errlen, "out of memory"); gpt2_pool_free(p); return NULL; }
    for (int i = 0; i < n_threads - 1; i++) {
        p->workers[i] = (Worker){p, i + 1};
        int rc = pthread_create(&p->threads[i], NULL, pool_worker, &p->workers[i]);
        if (rc) {
            fail(err, errlen, "cannot start thread %d of %d: %s", i + 2, n_threads, ERRNO_TEXT(rc));
            gpt2_pool_free(p);  /* joins those that started */
            return NULL;
        }
        p->n_threads = i + 2;
    }
    return p;
}

void gpt2_pool_free(gpt2_pool *p) {
    if (!p) return;
    atomic_store(&p->quit, true);
    pool_publish(p);
    for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    free(p->workers);
    pthread_mutex_destroy(&p->run_lock);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->finished);
    free(p);
}

int gpt2_pool_threads(const gpt2_pool *p) { return p->n_threads; }

/* ============================================================================================
 * Kernels: plain functions of explicit shapes. The SIMD ones are in gpt2_kernels.h, written
 * once and compiled here for each instruction set this build may meet; embedding and layer
 * norm are here, plain C (they touch each number once).
 * ========================================================================================== */

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* Decoding streams each weight once: fetching the next tile's bytes while this one computes
 * keeps many cache misses in flight (the hardware prefetcher alone left q8_0 decoding at a fifth
 * of the bandwidth). A hint: it cannot fault, past the end of a tensor too.
 * PREFETCH brings a line to L1, for the batched kernels' next panel. PREFETCH_STREAM, decoding's,
 * stops at L2 (prefetcht1; PLDL2KEEP on Arm): an L1 prefetch holds one of the core's few L1
 * miss buffers until its line comes from memory, which capped one Zen 4 core at 10-17 GB/s of
 * the 28 it streams; to L2, decoding reached 20-25 GB/s, and the L2 hits it leaves the loads
 * cost little beside that. A Zen 5 core is the other way round: its decoding of q8_0 ran 30-40%
 * faster with the same prefetches to L1 (f16 and q4_0 5-10%), so to_l1 is chosen by the CPU
 * (decode_prefetch_to_l1) and is a constant in each copy of the decoding loops. */
#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch((p), 0, 3)
#define PREFETCH_STREAM(p, to_l1) ((to_l1) ? __builtin_prefetch((p), 0, 3) : __builtin_prefetch((p), 0, 2))
#else
#define PREFETCH(p) ((void)(p))
#define PREFETCH_STREAM(p, to_l1) ((void)(p), (void)(to_l1))
#endif

#define BATCH_MIN 4          /* from this many positions on, a matmul uses the batched kernel */
/* Positions a batched matmul computes together: their transposed inputs (at most 4C × 64
 * floats, 786 KB for GPT-2's 768 channels) stay in cache while every weight row passes. */
#define MATMUL_POSITIONS 64
/* Positions the AMX kernels take in one pass over the weights, and so the batches of a forward
 * pass on them: a pass reads (and for q4_0 unpacks) every weight once, and on a Xeon with AMX
 * batches of 256 ran prompts of 512 ~20% faster than batches of 64 (bf16, q8_0). */
#define AMX_BATCH 256
#define MAX_TILE_ROWS 8      /* weight rows one thread widens to f32 at a time (TILE_MAX_ROWS) */
/* A thread's tile, in floats per input channel (rounded up to whole blocks): MAX_TILE_ROWS
 * rows widened to f32, or the integer GEMM's panel of 32 rows, a byte a weight and a 4-byte
 * scale a block of 32 (36 bytes a channel; AMX's 16 unpacked q4_0 rows take less) */
#define TILE_FLOATS_PER_CHANNEL 9  /* max(MAX_TILE_ROWS, 36 / 4) */
/* The batch laid out for the matmul, in floats per input channel: transposed (MATMUL_POSITIONS
 * and a vector), or bf16 pairs (half a float a position, for as many as a pass takes) */
static size_t in_t_floats_per_channel(int positions) { return positions / 2 > MATMUL_POSITIONS + 16 ? (size_t)positions / 2 : MATMUL_POSITIONS + 16; }
/* Widened rows lie TILE_ROW_PAD floats past a multiple of 32 apart: rows a multiple of 4 KB
 * apart (3072 channels: 12 KB) would share one set of the L1 cache, and the 8 rows of a tile
 * evict each other. */
#define TILE_ROW_PAD 16
static size_t whole_blocks(int n_in) { return (size_t)((n_in + QBLOCK - 1) / QBLOCK * QBLOCK); }
static size_t tile_row_floats(int n_in) { return whole_blocks(n_in) + TILE_ROW_PAD; }
static size_t tile_floats(int n_in) { return TILE_FLOATS_PER_CHANNEL * whole_blocks(n_in) + MAX_TILE_ROWS * TILE_ROW_PAD; }
/* f16 on AMX (split_amx_task) splits the batch into two planes of bf16, rows of split_row
 * values: a cache line more than n_in, as rows a multiple of 4 KB apart (3072 channels: 6 KB)
 * put a tile's 16 rows into a few sets of the L1 cache, and the planes' tiles evicted each other
 * (at 3072 channels, the matmul ran ~30% slower); and its thread splits 32 weight rows into two
 * planes of pairs, 32 floats a channel. Passes of more than MATMUL_POSITIONS are AMX's. */
static size_t split_row(int n_in) { return (size_t)n_in + 32; }
static size_t split_batch_floats(int n_in, int positions) { return (size_t)positions * split_row(n_in) + 16; }
static size_t split_tile_floats(int n_in) { return 32 * (size_t)n_in; }
static size_t thread_tile_floats(int n_in, int positions) {
    return positions > MATMUL_POSITIONS && split_tile_floats(n_in) > tile_floats(n_in) ? split_tile_floats(n_in) : tile_floats(n_in);
}
static size_t in_t_floats(int n_in, int positions) {
    const size_t floats = (size_t)n_in * in_t_floats_per_channel(positions);
    return positions > MATMUL_POSITIONS && split_batch_floats(n_in, positions) > floats ? split_batch_floats(n_in, positions) : floats;
}

/* What a matmul does with each result y = b[o] + Σ_i W[o][i]·x[t][i]. */
typedef enum { STORE, STORE_GELU, ACCUMULATE } Epilogue;  /* y, gelu(y), out += y */

/* Work space of the matmuls: the transposed batch, each thread's widened weight tile, and the
 * quantized activations of q8_0 and q4_0 matmuls: 8-bit values, a scale and a sum per block,
 * position by position when decoding, interleaved for the integer GEMM in a batch. */
typedef struct {
    int positions;     /* the most a pass over the weights takes: MATMUL_POSITIONS, or AMX_BATCH */
    float *in_t;       /* in_t_floats(n_in, positions) */
    float *w_tiles;    /* (threads, thread_tile_floats(n_in, positions)) */
    int8_t *xq;        /* (positions, n_in rounded up to QBLOCK) */
    float *xd;         /* (positions, blocks) */
    int32_t *xsum;     /* (positions, blocks) */
    unsigned stream_to_l1; /* the weight types (a bit each) whose decoding prefetches to L1 (PREFETCH_STREAM) */
} MatmulScratch;

typedef struct {
    float *out;               /* (T, n_out) */
    const float *in;          /* (T, n_in) */
    float *in_t;              /* (n_in, T_padded): the batch transposed, for the batched kernel */
    int T_padded;             /* T rounded up to whole vectors */
    const void *w;            /* (n_out, n_in) of w_type, rows row_bytes apart */
    gpt2_dtype dtype;
    size_t row_bytes;
    float *w_tiles;           /* MatmulScratch's */
    int8_t *xq;
    float *xd;
    int32_t *xsum;
    const float *bias;        /* (n_out) or NULL */
    int T, n_in, n_out;
    Epilogue epilogue;
    void (*gelu)(float *out, const float *in, size_t n);  /* the kernels' own */
    bool stream_to_l1;        /* MatmulScratch's, for this dtype */
} Matmul;

/* The matmul of positions t0 … t0 + n - 1 (of out ⟵ in · wᵀ + bias), T_padded n rounded up to
 * whole vectors of `width` positions. */
static Matmul matmul_args(const MatmulScratch *s, float *out, const float *in, const Tensor *w, const float *bias, int t0, int n,
                          int width, Epilogue epilogue, void (*gelu)(float *, const float *, size_t)) {
    return (Matmul){out + (size_t)t0 * w->rows, in + (size_t)t0 * w->cols, s->in_t, (n + width - 1) / width * width, w->data,
                    w->dtype, w->row_bytes, s->w_tiles, s->xq, s->xd, s->xsum, bias, n, w->cols, w->rows, epilogue, gelu,
                    s->stream_to_l1 >> w->dtype & 1};
}

/* `bytes` starting at a multiple of `alignment` (a power of two, of pointers), or NULL */
static void *aligned_block(size_t alignment, size_t bytes) {
    void *p = NULL;
    return posix_memalign(&p, alignment, bytes ? bytes : 1) ? NULL : p;
}
/* Buffers that vectors and tiles load from start on a cache line: a 64-byte load from a
 * 16-byte aligned malloc straddles two lines (the batched f32 kernel ran at 147 GFLOP/s so,
 * 167 aligned, on one core of a Xeon). */
static void *cache_alloc(size_t bytes) { return aligned_block(64, bytes); }

static bool matmul_scratch_init(MatmulScratch *s, int n_threads, int max_n_in, int positions) {
    const size_t nb = (size_t)(max_n_in + QBLOCK - 1) / QBLOCK;
    s->positions = positions;
    s->in_t = cache_alloc(in_t_floats(max_n_in, positions) * sizeof(float));
    s->w_tiles = cache_alloc((size_t)n_threads * thread_tile_floats(max_n_in, positions) * sizeof(float));
    s->xq = cache_alloc((size_t)positions * nb * QBLOCK);
    s->xd = cache_alloc((size_t)positions * nb * sizeof(float));
    s->xsum = cache_alloc((size_t)positions * nb * sizeof(int32_t));
    s->stream_to_l1 = 0;
    return s->in_t && s->w_tiles && s->xq && s->xd && s->xsum;
}

static void matmul_scratch_free(MatmulScratch *s) {
    free(s->in_t), free(s->w_tiles), free(s->xq), free(s->xd), free(s->xsum);
}

static inline void matmul_store(const Matmul *m, int o, int t, float y) {
    float *out = m->out + (size_t)t * m->n_out + o;
    if (m->bias) y += m->bias[o];
    if (m->epilogue == ACCUMULATE) *out += y;
    else *out = y;  /* STORE_GELU: gelu runs over the finished rows, see matmul_finish */
}

/* How far ahead of its reads decoding prefetches weights: whole tiles of `rows` rows, at least
 * PREFETCH_BYTES, about what reading at full speed covers while one miss to memory is
 * outstanding. (One tile ahead was too near for short rows: q4_0's 432-byte rows of GPT-2
 * arrived late, and decoding ran at half the bandwidth. At least 4 KB, three of its tiles,
 * decoded q4_0 ~5% slower on one Zen 4 core than 6 KB, four; GPT-2's f16, bf16 and q8_0
 * tiles already span 6 KB or more.) */
#define PREFETCH_BYTES 6144
static inline size_t prefetch_ahead(size_t row_bytes, int rows) {
    const size_t tile = row_bytes * (size_t)rows;
    return tile * ((PREFETCH_BYTES + tile - 1) / tile);
}

/* A tile of outputs o … o + rows - 1 at positions t … t + n - 1, tile[r][l] for output o + r at
 * position t + l (tile rows `stride` apart): the same as matmul_store on each, with the
 * epilogue decided once a position. Position by position, so that each position's run of
 * outputs is written at once (positions lie n_out floats apart: for n_out = 3072, 12 KB, one
 * set of the L1 cache for all of them). */
static inline void matmul_store_tile(const Matmul *m, int o, int rows, int t, int n, const float *tile, int stride) {
    const float *bias = m->bias ? m->bias + o : NULL;
    for (int l = 0; l < n; l++) {
        float *out = m->out + (size_t)(t + l) * m->n_out + o;
        const float *y = tile + l;
        if (m->epilogue == ACCUMULATE)
            for (int r = 0; r < rows; r++) out[r] += y[(size_t)r * stride] + (bias ? bias[r] : 0.0f);
        else
            for (int r = 0; r < rows; r++) out[r] = y[(size_t)r * stride] + (bias ? bias[r] : 0.0f);
    }
}

static void matmul_finish(const Matmul *m, int begin, int end) {
    if (m->epilogue == STORE_GELU)
        for (int t = 0; t < m->T; t++) {
            float *row = m->out + (size_t)t * m->n_out + begin;
            m->gelu(row, row, (size_t)(end - begin));
        }
}

/* in_t[i][t] = in[t][i], zero past T: one task item per TRANSPOSE_CHANNELS input channels,
 * read a cache line of each position at a time (channel by channel, the positions' lines lie
 * n_in floats apart, 12 KB for 3072 channels, all in one set of the L1 cache). */
#define TRANSPOSE_CHANNELS 16
static void transpose_task(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    const bool bf16 = m->dtype == GPT2_BF16;  /* the activations rounded, see bf16_round_rows */
    (void)thread;
    for (int block = begin; block < end; block++) {
        const int i0 = block * TRANSPOSE_CHANNELS, i1 = i0 + TRANSPOSE_CHANNELS < m->n_in ? i0 + TRANSPOSE_CHANNELS : m->n_in;
        for (int t = 0; t < m->T; t++)
            for (int i = i0; i < i1; i++) {
                const float x = m->in[(size_t)t * m->n_in + i];
                m->in_t[(size_t)i * m->T_padded + t] = bf16 ? bf16_round(x) : x;
            }
        for (int i = i0; i < i1; i++)
            for (int t = m->T; t < m->T_padded; t++) m->in_t[(size_t)i * m->T_padded + t] = 0.0f;
    }
}

/* bf16 weights multiply activations rounded to bf16, with f32 sums, in every kernel set and
 * path: what the CPUs' bf16 dot products (AVX-512 BF16's vdpbf16ps, AMX) compute, so the
 * kernel sets without them compute the same products. The cost: one rounding of each
 * activation to 8 significant bits, as the weights already are. (Decoding rounds a copy.) */
static const float *bf16_round_rows(const float *in, size_t n, float *copy) {
    for (size_t i = 0; i < n; i++) copy[i] = bf16_round(in[i]);
    return copy;
}

/* Decoding with q8_0 or q4_0 weights multiplies integers: each row of activations is
 * quantized as the weights are, in blocks of 32 with a scale d = max|x| / 127 (and the sum of
 * the block's values, which q4_0's offset of 8 needs). The cost in accuracy: one rounding of
 * each activation to 8 bits, ~0.2% of its block's largest value. */
static float quantize_block(const float *x, int n, int8_t q[QBLOCK], int32_t *sum) {
    float amax = 0;
    for (int k = 0; k < n; k++) amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
    const float d = amax / 127.0f, inv = d > 0 ? 1.0f / d : 0.0f;
    int32_t s = 0;
    for (int k = 0; k < QBLOCK; k++) {
        /* round to nearest, ties to even, as lrintf does, by adding and taking away 1.5·2²³
         * (|v| ≤ 127: the sum's last bit is the units); plain arithmetic, which vectorizes */
        const float v = k < n ? x[k] * inv : 0.0f;
        float rounded = v + 12582912.0f;  /* (an assignment rounds to float, on x87 too) */
        rounded -= 12582912.0f;
        q[k] = (int8_t)(rounded >= -127.0f && rounded <= 127.0f ? rounded : 0.0f);  /* NaN (from inf or NaN inputs): 0 */
        s += q[k];
    }
    *sum = s;
    return d;
}

#define ATT_QUERIES 4  /* queries of one head that attention computes together, reading each key once for all */

/* Keys are kept transposed, channels as rows, so that a vector holds one channel of several
 * positions and scores need no sums across lanes; and in blocks of KEY_BLOCK positions, so that
 * a head's keys lie in one run of memory, block after block:
 *     keys[h][j / KEY_BLOCK][d][j % KEY_BLOCK] = k_j[h·HS + d],
 * a row of a block being one cache line in f32. (Whole rows of every position, key_stride
 * apart, put each of a head's 64 rows in a page of its own: decoding read them at half the
 * speed of one run, at depths 64 to 512 on one Zen 4 core.) */
#define KEY_BLOCK 16
static inline size_t key_index(int channel, int position, int HS, int key_stride) {
    const int h = channel / HS, d = channel % HS;
    return ((size_t)h * key_stride + (size_t)(position / KEY_BLOCK * KEY_BLOCK)) * HS + (size_t)d * KEY_BLOCK +
           position % KEY_BLOCK;
}

/* A batch's keys and values into the cache, channels [begin, end) of both (task items: channels).
 * Decoding's attention appends each head's own, see Attention. */
typedef struct {
    void *k_cache, *v_cache;  /* the layer's: (NH, key_stride / KEY_BLOCK, HS, KEY_BLOCK) and (NH, n_ctx, HS) */
    const float *qkv;         /* (T, 3C) */
    int C, HS, n_ctx, key_stride, pos, T;
    bool f16;
} KvAppend;
static void kv_append_task(void *arg, int begin, int end, int thread) {
    const KvAppend *a = arg;
    (void)thread;
    /* The keys a block of positions at a time, channel by channel: each block row is written
     * in order, from the block's positions' rows of qkv. (Channel by channel over all T
     * positions, those rows are 9 KB apart for GPT-2, so 128 of them fall in 4 sets of the L1
     * cache and the reads missed. With that order and a division a value below, appending took
     * 6.3% of a q8_0 prompt of 128 on one core of a Xeon; 2.6% in these orders.) */
    for (int t0 = 0, t1; t0 < a->T; t0 = t1) {
        t1 = t0 + KEY_BLOCK - (a->pos + t0) % KEY_BLOCK;
        if (t1 > a->T) t1 = a->T;
        for (int i = begin; i < end; i++)
            for (int t = t0; t < t1; t++) {
                const size_t at = key_index(i, a->pos + t, a->HS, a->key_stride);
                const float key = a->qkv[(size_t)t * 3 * a->C + a->C + i];
                if (a->f16) ((uint16_t *)a->k_cache)[at] = f32_to_f16(key);
                else ((float *)a->k_cache)[at] = key;
            }
    }
    /* the values position by position, in runs: a head's channels of a position are consecutive
     * in the cache (one division a run, not one a value) */
    for (int t = 0; t < a->T; t++) {
        const float *value = a->qkv + (size_t)t * 3 * a->C + 2 * a->C;
        for (int i = begin, run; i < end; i += run) {
            const int h = i / a->HS, d = i % a->HS;
            run = end - i < a->HS - d ? end - i : a->HS - d;
            const size_t at = ((size_t)h * a->n_ctx + a->pos + t) * a->HS + d;
            if (a->f16)
                for (int j = 0; j < run; j++) ((uint16_t *)a->v_cache)[at + j] = f32_to_f16(value[i + j]);
            else memcpy((float *)a->v_cache + at, value + i, (size_t)run * sizeof(float));
        }
    }
}

/* Causal self-attention of T queries at positions pos0 … pos0 + T - 1, for each head h:
 *     out_h[t] = Σ_j softmax_j(q_h[t] · k_h[j] / √HS) · v_h[j],   j = 0 … pos0 + t,
 * the mask being the bound on j: a query never scores the keys after its own position. */
typedef struct {
    float *out;            /* (T, out_stride): head h at channels h·HS … */
    int out_stride;
    const float *q;        /* (T, q_stride): head h at channels h·HS … */
    int q_stride;
    const void *keys;      /* (NH, key_stride / KEY_BLOCK, HS, KEY_BLOCK): see key_index */
    int key_stride;        /* a multiple of KEY_BLOCK, ≥ pos0 + T */
    const void *values;    /* v_j of head h at values + h·value_head_stride + j·value_stride */
    bool f16;              /* keys and values are f16, not f32 */
    size_t value_head_stride, value_stride;
    float *scores;         /* (threads, ATT_QUERIES, key_stride) scratch */
    float *probs;          /* NULL, or (NH, T, key_stride): the softmax of every query (0 past it), for training */
    const KvAppend *append; /* NULL, or (T = 1) the position's keys and values, which each head appends
                              * before it attends: one pass over the pool less, and both threads append */
    int T, pos0, NH, HS;
} Attention;

/* What decoding prefetches while a tile runs, step bytes of each of two runs a step, up to
 * their bytes. A head's keys (in blocks) and its values are runs of HS elements a position, so
 * the bytes of positions [c, c + m) lie at the same offsets in both. While the scores of one
 * query read keys [c, c + m), it prefetches the values of [c, c + m) and the keys of the next m;
 * while its values' sums read values [0, n), the keys of the task's next head. Then every read
 * but the first head's first tile finds its lines on the way (without, a head's two runs
 * started cold, 288 runs a token for GPT-2 small: on one Zen 4 core, decoding's attention at
 * depth 64 read ~10 GB/s, against a read of ~28). */
typedef struct {
    const uint8_t *at[2];
    size_t bytes[2], step;
} AttentionPrefetch;

typedef struct { const uint8_t *data; size_t bytes; float *sink; } ReadTask;
#define READ_BLOCK (64 * 1024)

/* One instruction set's kernels. */
typedef struct {
    const char *name;
    void (*matmul)(gpt2_pool *pool, const MatmulScratch *scratch, float *out, const float *in, const Tensor *w,
                   const float *bias, int T, Epilogue epilogue);
    void (*attention)(gpt2_pool *pool, const Attention *a);
    void (*gelu)(float *out, const float *in, size_t n);
    task_fn read;
    int batch;  /* prompt positions a forward pass takes together (its matmuls' scratch holds them) */
} Kernels;

#define ISA_SCALAR 0
#define ISA_AVX2 1
#define ISA_AVX512 2
#define ISA_NEON 3

#if defined(__x86_64__) && !defined(GPT2_SCALAR)
#include <cpuid.h>
#include <immintrin.h>
#define X86_VARIANTS 1  /* AVX2 and AVX-512 copies, for the CPUs that have them */
#endif
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(GPT2_SCALAR)
#include <arm_neon.h>
#if !defined(__ARM_FEATURE_DOTPROD) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#include <sys/auxv.h>
#define ARM_VARIANTS 1  /* a copy with the dot-product instructions (ARMv8.2+), for the CPUs that have them */
#endif
#endif

/* the build's own instruction set: what the compiler was told it may use */
#if defined(GPT2_SCALAR)
#define NATIVE_ISA ISA_SCALAR
#elif defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__AVX512VNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define NATIVE_ISA ISA_AVX512
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define NATIVE_ISA ISA_AVX2
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define NATIVE_ISA ISA_NEON
#else
#define NATIVE_ISA ISA_SCALAR
#endif

/* the plain C reference, named _scalar (unless it is the build's own) */
#if NATIVE_ISA != ISA_SCALAR
#define KERNELS_ISA ISA_SCALAR
#define KERNELS_DOTPROD 0
#define KERNEL(name) name##_scalar
#include "gpt2_kernels.h"
#endif

/* AVX2 and AVX-512 copies for a build that does not assume them: compiled for those
 * instructions by a target pragma, run only where the CPU has them */
#if defined(X86_VARIANTS) && NATIVE_ISA != ISA_AVX2
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#define KERNELS_ISA ISA_AVX2
#define KERNELS_DOTPROD 0
#define KERNEL(name) name##_avx2
#include "gpt2_kernels.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
#if defined(X86_VARIANTS) && NATIVE_ISA != ISA_AVX512
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#endif
#define KERNELS_ISA ISA_AVX512
#define KERNELS_DOTPROD 0
#define KERNEL(name) name##_avx512
#include "gpt2_kernels.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
/* NEON with dot products for a build that does not assume them (ARMv8.0: a Raspberry Pi 3 or 4
 * lacks them, a Pi 5 has them), run where the kernel reports them (gcc on Linux: its arm_neon.h
 * offers the instructions to functions compiled for them) */
#if defined(ARM_VARIANTS)
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")  /* (arm_neon.h offers vdotq to this target) */
#define KERNELS_ISA ISA_NEON
#define KERNELS_DOTPROD 1
#define KERNEL(name) name##_neondot
#include "gpt2_kernels.h"
#pragma GCC pop_options
#endif

/* the build's own copy, last: its names stay plain (matmul, gemm_tile, VEC_WIDTH, ...) for the
 * rest of this file and for the trainer, which #includes it */
#define KERNELS_ISA NATIVE_ISA
#if defined(__ARM_FEATURE_DOTPROD) && NATIVE_ISA == ISA_NEON
#define KERNELS_DOTPROD 1
#else
#define KERNELS_DOTPROD 0
#endif
#define KERNEL(name) name
#define KERNELS_KEEP
#include "gpt2_kernels.h"

#if defined(X86_VARIANTS)
/* ---- bf16 weights with AVX-512 BF16: two products a lane an instruction ------------------------
 *
 * vdpbf16ps adds to each f32 lane i the products of the lane's pair of bf16 values in two
 * operands: acc[i] += a[2i]·b[2i] + a[2i+1]·b[2i+1], 32 multiply-adds an instruction, twice the
 * f32 FMA's 16, and the weights go in as they lie in the file, unwidened. One operand is a pair
 * of consecutive weights of a row, broadcast; the other, 16 positions' pairs of the same two
 * activation channels, rounded to bf16 (as every kernel set rounds them, bf16_round_rows). Its
 * tiles are the batched f32 kernel's: BF16_ROWS rows × BF16_VECS vectors of positions in
 * registers, the next rows prefetched during the first vectors. */
#if NATIVE_ISA == ISA_AVX512
#define AVX512(name) name
#else
#define AVX512(name) name##_avx512
#endif
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c")))
#define BF16_ROWS 8
#define BF16_VECS 2

/* pairs[k][t] = bf16(x[t][2k]) | bf16(x[t][2k + 1]) << 16 (0 past n_in and past T): the batch
 * transposed by pairs of channels, one task item per 16 channels, which vcvtneps2bf16 rounds
 * (to nearest even, as f32_to_bf16) into the 8 pairs of a position at once. */
_Static_assert(TRANSPOSE_CHANNELS == 16, "a block of channels is one vector");
BF16_TARGET static void bf16_pairs_task(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    uint32_t *pairs = (uint32_t *)m->in_t;
    const int n_pairs = (m->n_in + 1) / 2;
    (void)thread;
    for (int block = begin; block < end; block++) {
        const int i0 = block * 16, k0 = i0 / 2, k1 = k0 + 8 < n_pairs ? k0 + 8 : n_pairs;
        const __mmask16 channels = m->n_in - i0 >= 16 ? 0xFFFF : (__mmask16)((1u << (m->n_in - i0)) - 1);
        for (int t = 0; t < m->T; t++) {
            uint32_t row[8];
            const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(channels, m->in + (size_t)t * m->n_in + i0));
            _mm256_storeu_si256((__m256i *)row, (__m256i)h);
            for (int k = k0; k < k1; k++) pairs[(size_t)k * m->T_padded + t] = row[k - k0];
        }
        for (int k = k0; k < k1; k++)
            for (int t = m->T; t < m->T_padded; t++) pairs[(size_t)k * m->T_padded + t] = 0;
    }
}

/* acc[r][v] += the products of pair k of row r (w + r·row_bytes) and of vector v of positions;
 * `whole`: false for an odd last channel, whose weight is alone (and the activations' other
 * half 0). */
BF16_TARGET static ALWAYS_INLINE void bf16_step(__m512 acc[BF16_ROWS][BF16_VECS], const Matmul *m, const uint32_t *pairs,
                                                const uint8_t *w, size_t k, const int rows, const int vecs, const bool whole) {
    __m512bh b[BF16_VECS];
    for (int v = 0; v < vecs; v++) b[v] = (__m512bh)_mm512_loadu_si512(pairs + k * (size_t)m->T_padded + 16 * v);
    for (int r = 0; r < rows; r++) {
        uint32_t pair = 0;
        memcpy(&pair, w + (size_t)r * m->row_bytes + 4 * k, whole ? 4 : 2);  /* (x86: the low half first) */
        const __m512bh a = (__m512bh)_mm512_set1_epi32((int32_t)pair);
        for (int v = 0; v < vecs; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
    }
}

/* Sums of rows × 16·vecs positions from t, from the bf16 rows at w, into sums[r][0, 16·vecs)
 * (rows MATMUL_POSITIONS floats apart). */
BF16_TARGET static ALWAYS_INLINE void bf16_tile(const Matmul *m, const uint8_t *w, float *sums, int t, const int rows, const int vecs,
                                                const uint8_t *prefetch, size_t prefetch_step) {
    const uint32_t *pairs = (const uint32_t *)m->in_t + t;
    const size_t K = (size_t)m->n_in / 2;
    __m512 acc[BF16_ROWS][BF16_VECS];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) acc[r][v] = _mm512_setzero_ps();
    for (size_t k = 0; k < K; k++) {
        if (prefetch) _mm_prefetch((const char *)prefetch + k * prefetch_step, _MM_HINT_T0);
        bf16_step(acc, m, pairs, w, k, rows, vecs, true);
    }
    if (m->n_in % 2) bf16_step(acc, m, pairs, w, K, rows, vecs, false);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) _mm512_storeu_ps(sums + (size_t)r * MATMUL_POSITIONS + 16 * v, acc[r][v]);
}

/* Rows [o, end) in groups (see GROUP_ROWS), each in tiles of BF16_ROWS rows, then one by one,
 * MATMUL_POSITIONS positions at a time (an AMX pass leaves its last rows here with up to
 * AMX_BATCH). */
_Static_assert(GROUP_ROWS % BF16_ROWS == 0, "a group is whole tiles");
BF16_TARGET static ALWAYS_INLINE void bf16_rows(const Matmul *m, int o, int end) {
    const int tile = 16 * BF16_VECS;
    const size_t step = BF16_ROWS * m->row_bytes / (size_t)((m->n_in + 1) / 2);  /* the next rows over one pass of pairs */
    _Alignas(64) float sums[GROUP_ROWS * MATMUL_POSITIONS];
    for (int group = o; group < end; group += GROUP_ROWS) {
        const int group_end = end - group < GROUP_ROWS ? end : group + GROUP_ROWS;
        for (int t0 = 0; t0 < m->T_padded; t0 += MATMUL_POSITIONS) {
            const int t1 = m->T_padded - t0 < MATMUL_POSITIONS ? m->T_padded : t0 + MATMUL_POSITIONS;
            int r = group;
            for (; r + BF16_ROWS <= group_end; r += BF16_ROWS) {
                const uint8_t *w = (const uint8_t *)m->w + (size_t)r * m->row_bytes;
                const uint8_t *next = t0 == 0 && r + 2 * BF16_ROWS <= end ? w + BF16_ROWS * m->row_bytes : NULL;
                float *s = sums + (size_t)(r - group) * MATMUL_POSITIONS;
                int t = t0;
                for (; t + tile <= t1; t += tile) bf16_tile(m, w, s + (t - t0), t, BF16_ROWS, BF16_VECS, t > t0 ? NULL : next, step);
                for (; t < t1; t += 16) bf16_tile(m, w, s + (t - t0), t, BF16_ROWS, 1, t > t0 ? NULL : next, step);
            }
            for (; r < group_end; r++)
                for (int t = t0; t < t1; t += 16)
                    bf16_tile(m, (const uint8_t *)m->w + (size_t)r * m->row_bytes, sums + (size_t)(r - group) * MATMUL_POSITIONS + (t - t0), t, 1, 1,
                              NULL, 0);
            const int n = (m->T < t1 ? m->T : t1) - t0;  /* (padding positions are dropped) */
            if (n > 0) AVX512(store_group)(m, group, group_end - group, t0, n, sums);
        }
    }
}

BF16_TARGET static void bf16_batch_task(void *arg, int begin, int end, int thread) {
    (void)thread;
    bf16_rows(arg, begin, end);
    matmul_finish(arg, begin, end);
}

/* ---- bf16 weights with AMX: a 16 × 16 tile of sums an instruction ------------------------------
 *
 * An AMX tile register holds 16 rows of 64 bytes. tdpbf16ps adds to tile C (16 × 16 f32) the
 * products of tiles A and B (16 rows of 16 bf16 pairs each): C[i][j] += Σ_k A[i][2k]·B[k][2j] +
 * A[i][2k+1]·B[k][2j+1], 8192 multiply-adds, 256 times vdpbf16ps's. A is 16 weight rows × 32
 * channels, loaded as they lie in the file (row_bytes apart); B 16 pairs of channels × 16
 * positions, as bf16_pairs_task lays them out. Two of each make 4 C tiles: 32 rows × 32
 * positions. It needs n_in a multiple of 32 (GPT-2's are); the last n_out % 32 rows go to
 * bf16_tile. Linux hands a process the tile registers' state only when asked (amx_usable). */
#define AMX_TARGET __attribute__((target("amx-tile,amx-bf16,amx-int8,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,avx2,fma,f16c")))
#ifndef AMX_STATE  /* (the tests define an emulation of these, to run the kernels' logic anywhere) */
#define AMX_STATE
#define AMX_CONFIG(config) _tile_loadconfig(config)
#define AMX_RELEASE() _tile_release()
#define AMX_ZERO(tile) _tile_zero(tile)
#define AMX_LOAD(tile, p, stride) _tile_loadd(tile, p, stride)
#define AMX_STORE(tile, p, stride) _tile_stored(tile, p, stride)
#define AMX_DPBF16PS(c, a, b) _tile_dpbf16ps(c, a, b)
#define AMX_DPBSSD(c, a, b) _tile_dpbssd(c, a, b)
#define AMX_DPBUSD(c, a, b) _tile_dpbusd(c, a, b)
#endif
#define AMX_ZERO_SUMS() do { AMX_ZERO(0); AMX_ZERO(1); AMX_ZERO(2); AMX_ZERO(3); } while (0)  /* tiles 0-3: C */
#define AMX_ROWS 32
typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t bytes_per_row[16]; uint8_t rows[16]; } AmxConfig;

/* A tile of sums c[r][l], 16 outputs o … o + 15 (r) at 16 positions t … (l), to the outputs of
 * the first n positions, transposed in registers. Element by element, through
 * matmul_store_tile, it took 9-13% of a q8_0 prompt on one core of a Xeon: the transpose made
 * bf16 and q8_0 prompts 8-18% faster. */
AMX_TARGET static void amx_store_sums(const Matmul *m, int o, int t, int n, float c[16][16]) {
    AVX512(store_transposed)(m, o, t, n, &c[0][0], 16);
}

AMX_TARGET static void bf16_amx_task(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    const uint32_t *pairs = (const uint32_t *)m->in_t;
    const size_t pairs_stride = (size_t)m->T_padded * sizeof(uint32_t);
    AmxConfig config = {.palette = 1};  /* tiles 0-3: C, 4-5: A (weights), 6-7: B (pairs) */
    for (int i = 0; i < 8; i++) config.bytes_per_row[i] = 64, config.rows[i] = 16;
    float c[16][16];
    AMX_STATE;
    (void)thread;
    AMX_CONFIG(&config);
    int o = begin;
    for (; o + AMX_ROWS <= end; o += AMX_ROWS) {
        const uint8_t *w = (const uint8_t *)m->w + (size_t)o * m->row_bytes, *w16 = w + 16 * m->row_bytes;
        for (int t = 0; t < m->T_padded; t += 32) {
            const bool two = t + 32 <= m->T_padded;  /* 32 positions, or the last 16 */
            AMX_ZERO_SUMS();
            for (int k = 0; k < m->n_in; k += 32) {
                const uint32_t *b = pairs + (size_t)(k / 2) * m->T_padded + t;
                AMX_LOAD(4, w + 2 * (size_t)k, m->row_bytes);
                AMX_LOAD(5, w16 + 2 * (size_t)k, m->row_bytes);
                AMX_LOAD(6, b, pairs_stride);
                AMX_DPBF16PS(0, 4, 6);
                AMX_DPBF16PS(2, 5, 6);
                if (two) {
                    AMX_LOAD(7, b + 16, pairs_stride);
                    AMX_DPBF16PS(1, 4, 7);
                    AMX_DPBF16PS(3, 5, 7);
                }
            }
            const int n = m->T - t < 16 ? m->T - t : 16;  /* padding positions are dropped */
            AMX_STORE(0, &c[0][0], 64);
            amx_store_sums(m, o, t, n, c);
            AMX_STORE(2, &c[0][0], 64);
            amx_store_sums(m, o + 16, t, n, c);
            if (two && m->T > t + 16) {
                const int n2 = m->T - t - 16 < 16 ? m->T - t - 16 : 16;
                AMX_STORE(1, &c[0][0], 64);
                amx_store_sums(m, o, t + 16, n2, c);
                AMX_STORE(3, &c[0][0], 64);
                amx_store_sums(m, o + 16, t + 16, n2, c);
            }
        }
    }
    AMX_RELEASE();
    bf16_rows(m, o, end);
    matmul_finish(m, begin, end);
}

/* ---- q8_0 and q4_0 weights with AMX: 16 × 16 integer sums an instruction -----------------------
 *
 * tdpbssd (signed × signed bytes) and tdpbusd (unsigned × signed) add to tile C (16 × 16 int32)
 * the products of A, 16 weight rows × one block of 32 bytes, and B, the block's activations as
 * quantize_batch_task lays them out for vpdpbusd (8 groups of 4 bytes × 16 positions):
 * C[i][j] += Σ_k A[i][k]·B[k/4][4j + k%4], 8192 multiply-adds. Each block has its own scales, so
 * a block's sums leave the tile before the next: stored, then each row scaled into 16 f32 sums
 * in registers, y += float(C[i])·(d_w[i]·d_x), the blocks in order, as panel_tile does, so the
 * results are the avx512 set's to the bit. q8_0's weights go in as they lie in the file, signed
 * (tdpbssd, from 0); q4_0's nibbles, q + 8, unpacked into the thread's tile (tdpbusd, from
 * −8·Σ_k q_x of each position: a tile of 16 equal rows, loaded with a stride of 0). Two C tiles
 * take the blocks in turn: the tile unit runs one while the vector unit scales the other. It
 * needs n_in a multiple of 32; the last n_out % 16 rows go to the AVX-512 panels. */
#define AMX_INT8_ROWS 16

/* Block b's sums into tile C (from tiles A and B) */
#define INT8_AMX_BLOCK(C, A, B, b)                                                                   \
    do {                                                                                             \
        if (q4) AMX_LOAD(C, m->xsum + (size_t)(b) * m->T_padded + t, 0);                             \
        else AMX_ZERO(C);                                                                            \
        AMX_LOAD(A, a + (size_t)(b) * QBLOCK, a_stride);                                             \
        AMX_LOAD(B, m->xq + 4 * ((size_t)(b) * (QBLOCK / 4) * m->T_padded + t), 4 * (size_t)m->T_padded); \
        if (q4) AMX_DPBUSD(C, A, B);                                                                 \
        else AMX_DPBSSD(C, A, B);                                                                    \
    } while (0)

/* acc[i] += float(c[i])·(dw[i·nb]·dx): one block's sums of 16 rows at 16 positions */
AMX_TARGET static ALWAYS_INLINE void int8_amx_scale(__m512 acc[16], const int32_t c[16][16], const float *dw, int nb, __m512 dx) {
    for (int i = 0; i < 16; i++)
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(c[i])), _mm512_mul_ps(_mm512_set1_ps(dw[i * nb]), dx), acc[i]);
}

AMX_TARGET static void int8_amx_task(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    const bool q4 = m->dtype == GPT2_Q4_0;
    const int nb = m->n_in / QBLOCK;
    const size_t quants = (size_t)nb * (q4 ? QBLOCK / 2 : QBLOCK);
    uint8_t *unpacked = (uint8_t *)(m->w_tiles + (size_t)thread * tile_floats(m->n_in));  /* 16 rows of n_in bytes */
    float *dw = (float *)(unpacked + (size_t)AMX_INT8_ROWS * m->n_in);                     /* [16 rows][b] */
    const size_t a_stride = q4 ? (size_t)m->n_in : m->row_bytes;
    AmxConfig config = {.palette = 1};  /* tiles 0-1: C, 2-3: A (weights), 4-5: B (activations) */
    for (int i = 0; i < 6; i++) config.bytes_per_row[i] = i == 2 || i == 3 ? QBLOCK : 64, config.rows[i] = i >= 4 ? QBLOCK / 4 : 16;
    int32_t c[2][16][16];
    AMX_STATE;
    AMX_CONFIG(&config);
    int o = begin;
    for (; o + AMX_INT8_ROWS <= end; o += AMX_INT8_ROWS) {
        const uint8_t *w = (const uint8_t *)m->w + (size_t)o * m->row_bytes;
        for (int i = 0; i < AMX_INT8_ROWS; i++) {
            const uint8_t *row = w + (size_t)i * m->row_bytes;
            for (int b = 0; b < nb; b += 16) {
                const __mmask16 k = nb - b >= 16 ? 0xFFFF : (__mmask16)((1u << (nb - b)) - 1);
                _mm512_mask_storeu_ps(dw + i * nb + b, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, row + quants + 2 * (size_t)b)));
            }
            if (q4)  /* weights 0 … 15 of a block in the low nibbles, 16 … 31 in the high */
                for (int b = 0; b < nb; b++) {
                    const __m128i packed = _mm_loadu_si128((const __m128i *)(row + (size_t)b * (QBLOCK / 2))), low = _mm_set1_epi8(0x0F);
                    _mm_storeu_si128((__m128i *)(unpacked + (size_t)i * m->n_in + (size_t)b * QBLOCK), _mm_and_si128(packed, low));
                    _mm_storeu_si128((__m128i *)(unpacked + (size_t)i * m->n_in + (size_t)b * QBLOCK + 16), _mm_and_si128(_mm_srli_epi16(packed, 4), low));
                }
        }
        const uint8_t *a = q4 ? unpacked : w;
        /* the next 16 rows (contiguous) to L2 while these compute, spread over the first
         * position tile's blocks: read when unpacked, they stalled on every line */
        const uint8_t *next = w + AMX_INT8_ROWS * m->row_bytes;
        const uint8_t *next_end = o + 2 * AMX_INT8_ROWS <= end ? next + AMX_INT8_ROWS * m->row_bytes : next;
        const size_t next_step = 64 * ((AMX_INT8_ROWS * m->row_bytes / 64 + nb) / nb) * 2;  /* bytes a pair of blocks */
        for (int t = 0; t < m->T_padded; t += 16) {
            __m512 acc[16];
            for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
            int b = 0;
            for (; b + 1 < nb; b += 2) {
                for (const uint8_t *line_end = next + next_step; next < next_end && next < line_end; next += 64)
                    _mm_prefetch((const char *)next, _MM_HINT_T1);
                INT8_AMX_BLOCK(0, 2, 4, b);
                INT8_AMX_BLOCK(1, 3, 5, b + 1);
                AMX_STORE(0, &c[0][0][0], 64);
                int8_amx_scale(acc, c[0], dw + b, nb, _mm512_loadu_ps(m->xd + (size_t)b * m->T_padded + t));
                AMX_STORE(1, &c[1][0][0], 64);
                int8_amx_scale(acc, c[1], dw + b + 1, nb, _mm512_loadu_ps(m->xd + (size_t)(b + 1) * m->T_padded + t));
            }
            if (b < nb) {  /* an odd last block */
                INT8_AMX_BLOCK(0, 2, 4, b);
                AMX_STORE(0, &c[0][0][0], 64);
                int8_amx_scale(acc, c[0], dw + b, nb, _mm512_loadu_ps(m->xd + (size_t)b * m->T_padded + t));
            }
            float sums[16][16];
            for (int i = 0; i < 16; i++) _mm512_storeu_ps(sums[i], acc[i]);
            amx_store_sums(m, o, t, m->T - t < 16 ? m->T - t : 16, sums);  /* padding positions are dropped */
        }
    }
    AMX_RELEASE();
    AVX512(int8_rows)(m, o, end, thread);
    matmul_finish(m, begin, end);
}
#undef INT8_AMX_BLOCK

/* ---- f16 weights with AMX: weights and activations in two bf16 parts each ----------------------
 *
 * An f16 weight (11 significant bits) is exactly w_hi + w_lo, two bf16 (8 bits each): w_hi the
 * weight to nearest bf16, w_lo the rest. An activation is carried as x_hi + x_lo, to 16 bits.
 * w·x then is w_hi·x_hi + w_hi·x_lo + w_lo·x_hi, three tile products a weight (products of two
 * bf16 are exact in f32), leaving out w_lo·x_lo and what x_lo misses of x, each at most 2⁻¹⁶ of
 * |w·x|: a sum on tiles differs from the FMA kernels' by at most 2⁻¹⁵ of Σ|w·x|, a sixteenth of
 * what rounding the weights to f16 (2⁻¹¹) already did. (Exact f32 products would take 5 tile
 * products a weight, activations in 3 parts; on a Xeon with AMX that ran below the FMA.)
 *
 * Here the activations are tile A, 16 positions × 32 channels, as they lie (split into two
 * planes of rows); the weights tile B, 16 pairs of channels × 16 outputs, so that C is 16
 * positions × 16 outputs, rows of the output. A thread splits 32 weight rows at a time into its
 * tile, two planes of pairs, reused by every position of the pass; 4 C tiles take 32 positions
 * × 32 outputs, and the order of the products, x_lo × w_hi, x_hi × w_hi, x_hi × w_lo, loads 8
 * tiles for 12 of them. An inf or a NaN (or an activation that rounds to inf as bf16) has no
 * parts: its row's or position's sums are taken plainly instead. */
#define SPLIT_MIN_POSITIONS 16  /* fewer: AVX-512's FMA (a tile's 16 positions mostly padding) */

AMX_TARGET static inline __m512 bf16_widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

/* The lanes of v that split: finite, and below 0x1.ff8p127 (0x7F7F8000), which rounds to inf */
AMX_TARGET static ALWAYS_INLINE __mmask16 bf16_splits(__m512 v) {
    const __m512i magnitude = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF));
    return _mm512_cmplt_epu32_mask(magnitude, _mm512_set1_epi32(0x7F7F8000));
}
/* v = hi + lo (+ at most 2⁻¹⁶|v|) in bf16, lo 0 where v does not split */
AMX_TARGET static ALWAYS_INLINE void bf16_split(__m512 v, __mmask16 split, __m256i *hi, __m256i *lo) {
    *hi = (__m256i)_mm512_cvtneps_pbh(v);
    *lo = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_sub_ps(split, v, bf16_widen(*hi)));
}

/* The batch split into planes x_hi[t][i] and x_lo[t][i] (rows split_row(n_in) apart, zero at
 * the padding positions), one task item per 16 channels; and in m->xq, a byte for each item and
 * position: whether one of its values does not split. */
AMX_TARGET static void split_batch_task(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    const size_t row = split_row(m->n_in);
    uint16_t *x_hi = (uint16_t *)m->in_t, *x_lo = x_hi + (size_t)m->T_padded * row + 32;
    (void)thread;
    for (int block = begin; block < end; block++)
        for (int t = 0; t < m->T_padded; t++) {
            __m256i hi = _mm256_setzero_si256(), lo = hi;
            __mmask16 split = 0xFFFF;
            if (t < m->T) {
                const __m512 x = _mm512_loadu_ps(m->in + (size_t)t * m->n_in + 16 * (size_t)block);
                split = bf16_splits(x);
                bf16_split(x, split, &hi, &lo);
            }
            m->xq[(size_t)block * m->T_padded + t] = split != 0xFFFF;
            _mm256_storeu_si256((__m256i *)(x_hi + (size_t)t * row + 16 * (size_t)block), hi);
            _mm256_storeu_si256((__m256i *)(x_lo + (size_t)t * row + 16 * (size_t)block), lo);
        }
}

/* rows[i] = the i-th column of the 16 × 16 matrix of 32-bit lanes rows[0 … 15] */
AMX_TARGET static ALWAYS_INLINE void transpose16(__m512i rows[16]) {
    __m512i a[16], b[16];
    for (int i = 0; i < 16; i += 2) {  /* pairs of rows, lanes interleaved */
        a[i] = _mm512_unpacklo_epi32(rows[i], rows[i + 1]);
        a[i + 1] = _mm512_unpackhi_epi32(rows[i], rows[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)
        for (int j = 0; j < 2; j++) {  /* 4 rows, lanes in order */
            b[i + 2 * j] = _mm512_unpacklo_epi64(a[i + j], a[i + j + 2]);
            b[i + 2 * j + 1] = _mm512_unpackhi_epi64(a[i + j], a[i + j + 2]);
        }
    /* each 128-bit lane of b[i] now holds 4 columns' entries of 4 rows; gather the lanes */
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 4; j++) {
            a[i + j] = _mm512_shuffle_i32x4(b[i + j], b[i + j + 4], 0x88);
            a[i + j + 4] = _mm512_shuffle_i32x4(b[i + j], b[i + j + 4], 0xDD);
        }
    for (int j = 0; j < 8; j++) {
        rows[j] = _mm512_shuffle_i32x4(a[j], a[j + 8], 0x88);
        rows[j + 8] = _mm512_shuffle_i32x4(a[j], a[j + 8], 0xDD);
    }
}

/* Rows o … o + AMX_ROWS - 1 (zero from `end` on) split into planes of pairs, w[k][r] = channels
 * 2k and 2k + 1 of row o + r, a row of 32 pairs (128 bytes) each k: tile B of 16 outputs is
 * 16 of them. Returns the rows holding an inf or a NaN, a bit each. */
AMX_TARGET static uint32_t split_rows(const Matmul *m, int o, int end, uint32_t *w_hi, uint32_t *w_lo) {
    uint32_t special = 0;
    for (int half = 0; half < AMX_ROWS; half += 16)
        for (int i = 0; i < m->n_in; i += 32) {
            __m512i hi[16], lo[16];  /* row r's 16 pairs of channels i … i + 31 */
            for (int r = 0; r < 16; r++) {
                __m256i h[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()}, l[2] = {h[0], h[0]};
                if (o + half + r < end) {
                    const uint16_t *row = (const uint16_t *)((const uint8_t *)m->w + (size_t)(o + half + r) * m->row_bytes) + i;
                    for (int j = 0; j < 2; j++) {
                        const __m512 w = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 16 * j)));
                        const __mmask16 split = bf16_splits(w);
                        if (split != 0xFFFF) special |= 1u << (half + r);
                        bf16_split(w, split, &h[j], &l[j]);
                    }
                }
                hi[r] = _mm512_inserti64x4(_mm512_castsi256_si512(h[0]), h[1], 1);
                lo[r] = _mm512_inserti64x4(_mm512_castsi256_si512(l[0]), l[1], 1);
            }
            transpose16(hi);
            transpose16(lo);
            for (int k = 0; k < 16; k++) {
                _mm512_storeu_si512(w_hi + (size_t)(i / 2 + k) * AMX_ROWS + half, hi[k]);
                _mm512_storeu_si512(w_lo + (size_t)(i / 2 + k) * AMX_ROWS + half, lo[k]);
            }
        }
    return special;
}

/* C tile's sums (c[l][j], position t + l, output o + j) of n positions and `rows` outputs to the
 * outputs, those of a special row (a bit of `rows_special`) or position (of positions_special)
 * taken plainly */
AMX_TARGET static void split_store(const Matmul *m, int o, int rows, int t, int n, float c[16][16], uint32_t rows_special,
                                   const uint64_t *positions_special) {
    const __mmask16 valid = (__mmask16)((1u << rows) - 1);
    for (int l = 0; l < n; l++) {
        const bool position_special = positions_special[(t + l) / 64] >> (t + l) % 64 & 1;
        if (position_special || (rows_special & valid))
            for (int j = 0; j < rows; j++)
                if (position_special || rows_special >> j & 1) {
                    const uint16_t *w = (const uint16_t *)((const uint8_t *)m->w + (size_t)(o + j) * m->row_bytes);
                    const float *x = m->in + (size_t)(t + l) * m->n_in;
                    float y = 0.0f;
                    for (int i = 0; i < m->n_in; i++) y += f16_to_f32(w[i]) * x[i];
                    c[l][j] = y;
                }
        float *out = m->out + (size_t)(t + l) * m->n_out + o;
        __m512 y = _mm512_loadu_ps(c[l]);
        if (m->bias) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(valid, m->bias + o));
        if (m->epilogue == ACCUMULATE) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(valid, out));
        _mm512_mask_storeu_ps(out, valid, y);
    }
}

/* The 4 C tiles += A (tiles 4, 5: positions t, t + 16, from a) × B (tiles 6, 7: outputs o,
 * o + 16, from b), A or B already loaded if !load_a or !load_b; with one position tile (!two),
 * C tiles 0, 1 */
#define SPLIT_PRODUCTS(a, load_a, b, load_b)                         \
    do {                                                             \
        if (load_a) AMX_LOAD(4, a, a_stride);                        \
        if (load_b) AMX_LOAD(6, b, b_stride);                        \
        if (load_b) AMX_LOAD(7, (b) + 16, b_stride);                 \
        AMX_DPBF16PS(0, 4, 6);                                       \
        AMX_DPBF16PS(1, 4, 7);                                       \
        if (two) {                                                   \
            if (load_a) AMX_LOAD(5, (a) + 16 * a_row, a_stride);     \
            AMX_DPBF16PS(2, 5, 6);                                   \
            AMX_DPBF16PS(3, 5, 7);                                   \
        }                                                            \
    } while (0)

AMX_TARGET static void split_amx_task(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    uint32_t *w_hi = (uint32_t *)(m->w_tiles + (size_t)thread * split_tile_floats(m->n_in)), *w_lo = w_hi + (size_t)m->n_in / 2 * AMX_ROWS;
    const size_t a_row = split_row(m->n_in), a_stride = 2 * a_row, b_stride = AMX_ROWS * sizeof(uint32_t);
    const uint16_t *x_hi = (const uint16_t *)m->in_t, *x_lo = x_hi + (size_t)m->T_padded * a_row + 32;
    AmxConfig config = {.palette = 1};  /* tiles 0-3: C, 4-5: A (activations' parts), 6-7: B (weights' parts) */
    for (int i = 0; i < 8; i++) config.bytes_per_row[i] = 64, config.rows[i] = 16;
    uint64_t positions_special[AMX_BATCH / 64] = {0};  /* (T ≤ AMX_BATCH) */
    for (int block = 0; block < m->n_in / 16; block++)
        for (int t = 0; t < m->T; t++) positions_special[t / 64] |= (uint64_t)(m->xq[(size_t)block * m->T_padded + t] != 0) << t % 64;
    float c[16][16];
    AMX_STATE;
    AMX_CONFIG(&config);
    for (int o = begin; o < end; o += AMX_ROWS) {
        const int rows = end - o < AMX_ROWS ? end - o : AMX_ROWS;
        const uint32_t rows_special = split_rows(m, o, end, w_hi, w_lo);
        /* the next block's rows, to L2 while the last positions' products run: split_rows reads
         * 16 rows at a time a line of each, which the hardware's prefetchers did not foresee, and
         * lines fetched earlier, during the first positions, were gone by then (prompts of 128 on
         * one core: 950 tokens/s without, 1100-1200 with) */
        const int next_rows = end - (o + AMX_ROWS) < 0 ? 0 : end - (o + AMX_ROWS) < AMX_ROWS ? end - (o + AMX_ROWS) : AMX_ROWS;
        const uint8_t *next = (const uint8_t *)m->w + (size_t)(o + AMX_ROWS) * m->row_bytes, *next_end = next + (size_t)next_rows * m->row_bytes;
        const size_t next_step = 64 * (size_t)AMX_ROWS;  /* bytes a step of 32 channels (2 · 32 · 32 rows) */
        for (int t = 0; t < m->T_padded; t += 32) {
            const bool two = t + 32 <= m->T_padded;  /* 32 positions, or the last 16 */
            AMX_ZERO_SUMS();
            for (int k = 0; k < m->n_in; k += 32) {
                const size_t a = (size_t)t * a_row + (size_t)k, b = (size_t)(k / 2) * AMX_ROWS;
                if (t + 32 >= m->T_padded)
                    for (const uint8_t *line_end = next + next_step; next < next_end && next < line_end; next += 64)
                        _mm_prefetch((const char *)next, _MM_HINT_T1);
                SPLIT_PRODUCTS(x_lo + a, true, w_hi + b, true);
                SPLIT_PRODUCTS(x_hi + a, true, w_hi + b, false);
                SPLIT_PRODUCTS(x_hi + a, false, w_lo + b, true);
            }
            /* positions t … (C tiles 0, 1) and t + 16 … (2, 3); padding rows and positions are dropped */
#define SPLIT_STORE(C, r, t_tile)                                                                                         \
    if ((r) < rows && (t_tile) < m->T) {                                                                                 \
        AMX_STORE(C, &c[0][0], 64);                                                                                      \
        split_store(m, o + (r), rows - (r) < 16 ? rows - (r) : 16, t_tile, m->T - (t_tile) < 16 ? m->T - (t_tile) : 16, c, \
                    rows_special >> (r), positions_special);                                                             \
    }
            SPLIT_STORE(0, 0, t);
            SPLIT_STORE(1, 16, t);
            if (two) {
                SPLIT_STORE(2, 0, t + 16);
                SPLIT_STORE(3, 16, t + 16);
            }
#undef SPLIT_STORE
        }
    }
    AMX_RELEASE();
    matmul_finish(m, begin, end);
}
#undef SPLIT_PRODUCTS

/* A batch on bf16 or integer products: `prepare` lays the activations out, one task item per
 * `channels` input channels, then `task` takes groups of `unit` rows. */
static void tiled_matmul(gpt2_pool *pool, const MatmulScratch *scratch, float *out, const float *in, const Tensor *w, const float *bias,
                         int T, Epilogue epilogue, task_fn prepare, int channels, task_fn task, int unit, int positions) {
    for (int t0 = 0; t0 < T; t0 += positions) {
        const int n = T - t0 < positions ? T - t0 : positions;
        Matmul m = matmul_args(scratch, out, in, w, bias, t0, n, 16, epilogue, AVX512(gelu));
        const int items = (m.n_in + channels - 1) / channels;
        pool_run(pool, prepare, &m, items, pool_chunk(pool, items, 1));
        pool_run(pool, task, &m, m.n_out, pool_chunk(pool, m.n_out, unit));
    }
}

/* The AVX-512 kernels, but for a batch of bf16 weights: AVX-512 BF16; or AMX, which takes batches
 * of f16, bf16, q8_0 and q4_0 weights. f32 stays on the FMA: exact on tiles, its products need
 * each float split into 3 bf16 parts and 6 tile products a weight, and on a Xeon with AMX that
 * ran slower than AVX-512 (prompts of 128: 351 against 563 tokens/s on one core). */
static void matmul_avx512bf16(gpt2_pool *pool, const MatmulScratch *scratch, float *out, const float *in, const Tensor *w,
                              const float *bias, int T, Epilogue epilogue) {
    if (w->dtype == GPT2_BF16 && T >= BATCH_MIN)
        tiled_matmul(pool, scratch, out, in, w, bias, T, epilogue, bf16_pairs_task, TRANSPOSE_CHANNELS, bf16_batch_task, BF16_ROWS,
                     MATMUL_POSITIONS);
    else AVX512(matmul)(pool, scratch, out, in, w, bias, T, epilogue);
}
static void matmul_amx(gpt2_pool *pool, const MatmulScratch *scratch, float *out, const float *in, const Tensor *w,
                       const float *bias, int T, Epilogue epilogue) {
    if (T < BATCH_MIN || w->cols % 32 != 0 || w->dtype == GPT2_F32 || (w->dtype == GPT2_F16 && T < SPLIT_MIN_POSITIONS))
        matmul_avx512bf16(pool, scratch, out, in, w, bias, T, epilogue);
    else if (w->dtype == GPT2_F16)
        tiled_matmul(pool, scratch, out, in, w, bias, T, epilogue, split_batch_task, TRANSPOSE_CHANNELS, split_amx_task, AMX_ROWS,
                     scratch->positions);
    else if (w->dtype == GPT2_BF16)
        tiled_matmul(pool, scratch, out, in, w, bias, T, epilogue, bf16_pairs_task, TRANSPOSE_CHANNELS, bf16_amx_task, AMX_ROWS,
                     scratch->positions);
    else
        tiled_matmul(pool, scratch, out, in, w, bias, T, epilogue, AVX512(quantize_batch_task), QBLOCK, int8_amx_task,
                     AMX_INT8_ROWS, scratch->positions);
}
static const Kernels kernels_table_avx512bf16 = {"avx512bf16", matmul_avx512bf16, AVX512(attention), AVX512(gelu), AVX512(read_task),
                                                 MATMUL_POSITIONS};
static const Kernels kernels_table_amx = {"amx", matmul_amx, AVX512(attention), AVX512(gelu), AVX512(read_task), AMX_BATCH};

/* Whether the integer kernel gives the AVX-512 panels' results to the bit: 32 rows of 3 blocks
 * (a pair and an odd one) × 20 positions (two position tiles, the second part padding). */
static bool amx_int8_check(gpt2_dtype type) {
    enum { ROWS = 32, COLS = 96, T = 20, T_PADDED = 32, BLOCKS = COLS / QBLOCK, TILE = TILE_FLOATS_PER_CHANNEL * COLS + MAX_TILE_ROWS * TILE_ROW_PAD };
    float weights[COLS], x[T][COLS], out[T][ROWS], want[T][ROWS], tile[TILE], xd[BLOCKS * T_PADDED];
    uint8_t w[ROWS][128];
    int8_t xq[T_PADDED * COLS];
    int32_t xsum[BLOCKS * T_PADDED];
    for (int r = 0; r < ROWS; r++) {
        for (int i = 0; i < COLS; i++) weights[i] = (float)((r * 7 + i * 3) % 23 - 11) / (float)(1 + r % 5);
        quantize_row(type, weights, COLS, w[r], sizeof w[r]);
    }
    for (int t = 0; t < T; t++)
        for (int i = 0; i < COLS; i++) x[t][i] = (float)((t * 5 + i * 13) % 19 - 9) * (float)(1 + i / QBLOCK);
    Matmul m = {.out = &out[0][0], .in = &x[0][0], .T_padded = T_PADDED, .w = w, .dtype = type, .row_bytes = sizeof w[0],
                .w_tiles = tile, .xq = xq, .xd = xd, .xsum = xsum, .T = T, .n_in = COLS, .n_out = ROWS, .epilogue = STORE};
    AVX512(quantize_batch_task)(&m, 0, BLOCKS, 0);
    int8_amx_task(&m, 0, ROWS, 0);
    m.out = &want[0][0];
    AVX512(int8_rows)(&m, 0, ROWS, 0);
    return !memcmp(out, want, sizeof out);
}

/* Whether the split products give f16 sums to the bit where every sum is exact: 40 rows (a
 * block of 32 and 8 of the next) of 32 channels × 20 positions (two position tiles, the second
 * part padding), once with weights of 10 bits (both their parts) by small integers, once the
 * other way round (both the activations' parts). */
static bool amx_split_check(void) {
    enum { ROWS = 40, COLS = 32, T = 20, T_PADDED = 32 };
    uint16_t w[ROWS][COLS];
    float x[T][COLS], out[T][ROWS], want[T][ROWS], tile[32 * COLS];
    uint16_t pairs[2 * T_PADDED * (COLS + 32) + 32];
    int8_t special[COLS / 16 * T_PADDED];
    for (int rich_x = 0; rich_x < 2; rich_x++) {
        /* |sums| < 32 · 4 · 1007 < 2²⁴: integers, exact in any order */
        for (int r = 0; r < ROWS; r++)
            for (int i = 0; i < COLS; i++) {
                const int small = (r * 7 + i * 3) % 9 - 4;
                w[r][i] = f32_to_f16((float)(rich_x ? small : small * 251 + 1));
            }
        for (int t = 0; t < T; t++)
            for (int i = 0; i < COLS; i++) {
                const int small = (t * 5 + i * 13) % 9 - 4;
                x[t][i] = (float)(rich_x ? small * 251 + 3 : small);
            }
        for (int t = 0; t < T; t++)
            for (int r = 0; r < ROWS; r++) {
                want[t][r] = 0;
                for (int i = 0; i < COLS; i++) want[t][r] += f16_to_f32(w[r][i]) * x[t][i];
            }
        Matmul m = {.out = &out[0][0], .in = &x[0][0], .in_t = (float *)pairs, .T_padded = T_PADDED, .w = w, .dtype = GPT2_F16,
                    .row_bytes = sizeof w[0], .w_tiles = tile, .xq = special, .T = T, .n_in = COLS, .n_out = ROWS, .epilogue = STORE};
        split_batch_task(&m, 0, COLS / 16, 0);
        split_amx_task(&m, 0, ROWS, 0);
        if (memcmp(out, want, sizeof out)) return false;
    }
    return true;
}

/* Whether the AMX kernels compute what they should: for bf16, 32 rows of 64 channels × 20
 * positions (two position tiles, the second part padding) against plain sums of the same rounded
 * products; for f16, amx_split_check; for q8_0 and q4_0, amx_int8_check. */
static bool amx_self_check(void) {
    enum { ROWS = 32, COLS = 64, T = 20 };
    uint16_t w[ROWS][COLS];
    float x[T][COLS], out[T][ROWS], want[T][ROWS];
    uint32_t pairs[COLS / 2 * 32];
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < COLS; i++) w[r][i] = f32_to_bf16((float)((r * 7 + i * 3) % 11 - 5) / 4);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < COLS; i++) x[t][i] = (float)((t * 5 + i * 13) % 9 - 4) / 8;
    for (int t = 0; t < T; t++)
        for (int r = 0; r < ROWS; r++) {
            want[t][r] = 0;  /* small integers over powers of two: every sum exact */
            for (int i = 0; i < COLS; i++) want[t][r] += bf16_to_f32(w[r][i]) * x[t][i];
        }
    Matmul m = {.out = &out[0][0], .in = &x[0][0], .in_t = (float *)pairs, .T_padded = 32, .w = w, .dtype = GPT2_BF16,
                .row_bytes = sizeof w[0], .T = T, .n_in = COLS, .n_out = ROWS, .epilogue = STORE};
    bf16_pairs_task(&m, 0, COLS / TRANSPOSE_CHANNELS, 0);
    bf16_amx_task(&m, 0, ROWS, 0);
    return !memcmp(out, want, sizeof out) && amx_split_check() && amx_int8_check(GPT2_Q8_0) && amx_int8_check(GPT2_Q4_0);
}

#if defined(__linux__)
#include <sys/syscall.h>
#endif
/* AMX-TILE and AMX-BF16 (cpuid leaf 7: edx bits 24 and 22), and the kernel's leave to use their
 * registers (Linux: arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, 18). */
static bool amx_granted(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 24 & 1) || !(d >> 22 & 1)) return false;
#if defined(__linux__)
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    return false;
#endif
}
#ifndef AMX_USABLE  /* (the tests' emulation: where AVX-512 BF16 is) */
#define AMX_USABLE() (amx_granted() && amx_self_check())
#endif
#endif

/* The weight types whose decoding prefetches go to L1 rather than L2 (see PREFETCH_STREAM), a
 * bit each: all on AMD's Zen 5 (family 1Ah) and later, where that was faster; q4_0 on Intel,
 * whose unpacking of nibbles then had its lines at hand (one core of a Xeon with AMX: 240 → 265-275
 * tokens/s, two 470-490 → 500-515; q8_0 was 8-10% slower on one core, f16 the same); L2
 * elsewhere (Zen 4 measured). */
static unsigned decode_prefetch_to_l1_types(void) {
#if defined(X86_VARIANTS)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    if (b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e) return 1u << GPT2_Q4_0;  /* GenuineIntel */
    if (b != 0x68747541 || d != 0x69746e65 || c != 0x444d4163 || !__get_cpuid(1, &a, &b, &c, &d)) return 0;  /* AuthenticAMD */
    unsigned family = a >> 8 & 0xF;
    if (family == 0xF) family += a >> 20 & 0xFF;
    return family >= 0x1A ? ~0u : 0;
#else
    return 0;
#endif
}

/* The kernel sets in order of preference, each with whether this CPU can run it. */
static bool cpu_has(const char *isa) {
#if defined(X86_VARIANTS)
    __builtin_cpu_init();
    if (!strcmp(isa, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma");
    if (!strcmp(isa, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(isa, "avx512bf16")) {
        unsigned a, b, c, d;  /* AVX512_BF16: cpuid leaf 7, subleaf 1, eax bit 5 */
        return cpu_has("avx512") && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1);
    }
    if (!strcmp(isa, "amx")) return cpu_has("avx512bf16") && AMX_USABLE();
#endif
#if defined(ARM_VARIANTS)
    if (!strcmp(isa, "neondot")) return getauxval(AT_HWCAP) & HWCAP_ASIMDDP;
#endif
    /* plain C anywhere; NEON (with dot products or not) only where the build is */
    return !strcmp(isa, "scalar") || !strcmp(isa, "neon") || !strcmp(isa, "neondot");
}

static const Kernels *const kernel_sets[] = {  /* the widest vectors first */
#if defined(X86_VARIANTS)
    &kernels_table_amx,
    &kernels_table_avx512bf16,
#endif
#if NATIVE_ISA == ISA_AVX512
    &kernels_table,
#elif defined(X86_VARIANTS)
    &kernels_table_avx512,
#endif
#if NATIVE_ISA == ISA_AVX2
    &kernels_table,
#elif defined(X86_VARIANTS)
    &kernels_table_avx2,
#endif
#if defined(ARM_VARIANTS)
    &kernels_table_neondot,
#endif
#if NATIVE_ISA == ISA_NEON || NATIVE_ISA == ISA_SCALAR
    &kernels_table,
#endif
#if NATIVE_ISA != ISA_SCALAR
    &kernels_table_scalar,
#endif
};

/* The kernels named (NULL: the best this CPU can run). */
static const Kernels *choose_kernels(const char *name, char *err, size_t errlen) {
    for (size_t i = 0; i < sizeof kernel_sets / sizeof *kernel_sets; i++) {
        const Kernels *k = kernel_sets[i];
        if (name && strcmp(name, k->name)) continue;
        if (cpu_has(k->name)) return k;
        if (name) {
            fail(err, errlen, "kernels \"%s\": this CPU does not have those instructions", name);
            return NULL;
        }
    }
    char list[64] = "";
    for (size_t i = 0; i < sizeof kernel_sets / sizeof *kernel_sets; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", kernel_sets[i]->name);
    fail(err, errlen, "kernels \"%s\": this build has %s", name ? name : "", list);
    return NULL;
}

const char *gpt2_kernel_name(void) {
    const Kernels *k = choose_kernels(NULL, NULL, 0);
    return k ? k->name : "scalar";
}

const char *gpt2_kernels_available(void) {
    static const char *const names =  /* (a constant: computed by the preprocessor) */
#if defined(X86_VARIANTS)
        "amx avx512bf16 avx512 avx2 scalar";
#elif defined(ARM_VARIANTS)
        "neondot neon scalar";
#elif NATIVE_ISA == ISA_NEON && defined(__ARM_FEATURE_DOTPROD)
        "neondot scalar";
#elif NATIVE_ISA == ISA_NEON
        "neon scalar";
#else
        "scalar";
#endif
    return names;
}

/* x = wte[token] + wpe[position] for T tokens at positions pos0, pos0 + 1, ...; the rows are
 * widened from their type (scratch: C floats). */
static void embed(float *x, const Tensor *wte, const Tensor *wpe, const int *tokens, int pos0, int T, float *scratch) {
    const int C = wte->cols;
    for (int t = 0; t < T; t++) {
        float *row = x + (size_t)t * C;
        dequantize_row((const uint8_t *)wte->data + (size_t)tokens[t] * wte->row_bytes, wte->dtype, C, row);
        dequantize_row((const uint8_t *)wpe->data + (size_t)(pos0 + t) * wpe->row_bytes, wpe->dtype, C, scratch);
        for (int i = 0; i < C; i++) row[i] += scratch[i];
    }
}

/* Σ_i (x[i] - center)^power, power 1 or 2, as LN_LANES interleaved partial sums added at the
 * end: independent chains, which the compiler can put in one vector, where a single sum would
 * wait on each addition in turn. */
#define LN_LANES 16
static float layernorm_sum(const float *x, int C, float center, int power) {
    float part[LN_LANES] = {0};
    int i = 0;
    for (; i + LN_LANES <= C; i += LN_LANES)
        for (int l = 0; l < LN_LANES; l++) {
            const float d = x[i + l] - center;
            part[l] += power == 2 ? d * d : d;
        }
    for (int l = 0; i < C; i++, l++) {
        const float d = x[i] - center;
        part[l] += power == 2 ? d * d : d;
    }
    float sum = 0.0f;
    for (int l = 0; l < LN_LANES; l++) sum += part[l];
    return sum;
}

/* LayerNorm over each of T rows of C: y = (x - mean) / sqrt(var + eps) · w + b, with the
 * biased variance (divided by C), as GPT-2 does. mean and rstd (T each), when not NULL,
 * receive what the backward pass needs. */
static void layernorm(float *out, const float *in, const float *w, const float *b, int T, int C, float eps,
                      float *mean_out, float *rstd_out) {
    for (int t = 0; t < T; t++) {
        const float *x = in + (size_t)t * C;
        float *y = out + (size_t)t * C;
        const float mean = layernorm_sum(x, C, 0.0f, 1) / C, var = layernorm_sum(x, C, mean, 2) / C;
        float rstd = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < C; i++) y[i] = (x[i] - mean) * rstd * w[i] + b[i];
        if (mean_out) mean_out[t] = mean;
        if (rstd_out) rstd_out[t] = rstd;
    }
}

/* Positions of a layer norm or a cache append below which the caller does the work alone:
 * waking the pool costs more than it saves. */
#define SHARE_MIN_POSITIONS 16

/* Layer norm of T rows split over the pool, a row a task item. */
typedef struct { float *out; const float *in, *w, *b; int C; float eps; } LayerNormRows;
static void layernorm_task(void *arg, int begin, int end, int thread) {
    const LayerNormRows *a = arg;
    (void)thread;
    layernorm(a->out + (size_t)begin * a->C, a->in + (size_t)begin * a->C, a->w, a->b, end - begin, a->C, a->eps, NULL, NULL);
}
static void layernorm_rows(gpt2_pool *pool, float *out, const float *in, const float *w, const float *b, int T, int C, float eps) {
    LayerNormRows a = {out, in, w, b, C, eps};
    pool_run(pool, layernorm_task, &a, T, T < SHARE_MIN_POSITIONS ? T : pool_chunk(pool, T, 1));
}

/* ---- reading bandwidth ------------------------------------------------------------------------ */

size_t gpt2_decode_bytes(const gpt2_model *m) {
    const Weights *w = &m->weights;
    const gpt2_config *c = &m->config;
    size_t bytes = (size_t)w->wte.rows * w->wte.row_bytes + w->wte.row_bytes + w->wpe.row_bytes;
    for (int l = 0; l < c->n_layer; l++) {
        const LayerWeights *lw = &w->layers[l];
        const Tensor *mats[4] = {&lw->qkv_w, &lw->attn_proj_w, &lw->fc_w, &lw->fc_proj_w};
        for (int k = 0; k < 4; k++) bytes += (size_t)mats[k]->rows * mats[k]->row_bytes;
        bytes += sizeof(float) * (size_t)c->n_embd * 13;  /* 2 layer norms (w, b), 4 biases: 1 + 3 + 1 + 4 + 1 (C each) */
    }
    return bytes + 2 * sizeof(float) * (size_t)c->n_embd;
}

double gpt2_memory_bandwidth(const gpt2_model *m, int n_threads) {
    char err[GPT2_ERR_MAX];
    gpt2_pool *pool = gpt2_pool_new(n_threads, err, sizeof err);
    const Kernels *k = choose_kernels(NULL, NULL, 0);
    if (!pool || !k) { gpt2_pool_free(pool); return 0; }
    /* the weights: from the first tensor to the end of the mapping */
    const uint8_t *first = m->weights.wte.data;
    ReadTask r = {first, m->map_size - (size_t)(first - (const uint8_t *)m->map), calloc((size_t)pool->n_threads, sizeof(float))};
    const int blocks = (int)((r.bytes + READ_BLOCK - 1) / READ_BLOCK);
    double best = 0;
    for (int pass = 0; r.sink && pass < 4; pass++) {
        double t0 = now_ms();
        pool_run(pool, k->read, &r, blocks, pool_chunk(pool, blocks, 1));
        double gbps = (double)r.bytes / ((now_ms() - t0) / 1e3) / 1e9;
        if (pass > 0 && gbps > best) best = gbps;  /* the first pass warms the pages in */
    }
    free(r.sink);
    gpt2_pool_free(pool);
    return best;
}

/* ============================================================================================
 * The forward pass
 * ========================================================================================== */

_Static_assert(MATMUL_POSITIONS % 16 == 0 && AMX_BATCH % 32 == 0, "a batch is whole vectors and tiles of positions");

struct gpt2_context {
    const gpt2_model *model;
    gpt2_pool *pool;
    bool owns_pool;
    int n_ctx;           /* positions the cache holds */
    int pos;             /* positions filled */
    int *tokens;         /* (n_ctx + 1): the ids at positions 0 … pos - 1, then the pending one */
    bool has_pending;    /* tokens[pos] was chosen by gpt2_next and is not in the cache yet */
    int logits_pos;      /* logits hold the prediction after this many positions (-1: none) */
    void *k_cache;       /* (L, NH, key_stride / KEY_BLOCK, HS, KEY_BLOCK): keys, in blocks (see key_index) */
    int key_stride;      /* n_ctx rounded up to whole blocks */
    void *v_cache;       /* (L, NH, n_ctx, HS): values, each head's one run that attention reads in order */
    size_t kv_size;      /* bytes of a key or value element: 4 (f32) or 2 (f16) */
    /* activations of one batch of up to k->batch positions */
    float *x;            /* (k->batch, C) the residual stream */
    float *xn;           /* (batch, C) layer-norm output */
    float *qkv;          /* (batch, 3C) queries, keys, values */
    float *attn;         /* (batch, C) attention output, heads side by side */
    float *fc;           /* (batch, 4C) MLP hidden layer */
    MatmulScratch mm;    /* the matmuls' work space */
    const Kernels *k;    /* the kernels for this CPU (or the ones asked for) */
    float *scores;       /* (threads, ATT_QUERIES, key_stride) attention weights, scratch per thread */
    float *logits;       /* (V) of the last position */
};

/* The buffers of a context, in elements; false if their bytes would pass `limit` (SIZE_MAX;
 * the tests also try what a 32-bit machine would say). */
typedef struct { size_t k_cache, v_cache, batch_C, scores, logits, tokens; } ContextSizes;
static bool context_sizes(const gpt2_config *c, int n_ctx, int key_stride, int n_threads, int batch, uint64_t kv_size, uint64_t limit,
                          ContextSizes *s) {
    const uint64_t LC = (uint64_t)c->n_layer * (uint64_t)c->n_embd;
    uint64_t k_cache, v_cache, batch_C = (uint64_t)batch * (uint64_t)c->n_embd, total;
    if (!mul_u64(LC, (uint64_t)key_stride, &k_cache) || !mul_u64(LC, (uint64_t)n_ctx, &v_cache)) return false;
    /* the matmuls' scratch: the transposed batch, a tile of weight rows per thread, and the
     * quantized batch (a byte per value, and two 4-byte numbers per block of 32) */
    const uint64_t scratch = in_t_floats(4 * c->n_embd, batch) + (uint64_t)n_threads * thread_tile_floats(4 * c->n_embd, batch) +
                             (uint64_t)c->n_embd * batch * 2;
    const uint64_t scores = (uint64_t)n_threads * ATT_QUERIES * (uint64_t)key_stride, logits = (uint64_t)c->vocab_size;
    const uint64_t tokens = (uint64_t)n_ctx + 1;
    /* the cache's elements are kv_size bytes, the others 4 (float or int); x, xn and attn are
     * batch_C, qkv 3 and fc 4 of it */
    uint64_t kv_bytes;
    if (!add_u64(k_cache, v_cache, &kv_bytes) || !mul_u64(kv_bytes, kv_size, &kv_bytes) ||
        !mul_u64(10 * batch_C + scratch + scores + logits + tokens, 4, &total) || !add_u64(total, kv_bytes, &total) ||
        total > limit || total > SIZE_MAX)  /* (SIZE_MAX: a 32-bit size_t) */
        return false;
    *s = (ContextSizes){(size_t)k_cache, (size_t)v_cache, (size_t)batch_C, (size_t)scores, (size_t)logits, (size_t)tokens};
    return true;
}

/* The KV cache in 2 MB pages where the kernel gives them (Linux: MADV_HUGEPAGE, a hint): a
 * layer's cache spans several MB, and decoding reads a little of it at many places. (When every
 * channel's keys were one row of all positions, a token's keys were written a page each, and on
 * 4 KB pages appending them took more of a decoded token than attention.) */
static void *huge_alloc(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    if (bytes < huge) return cache_alloc(bytes);
    void *p = aligned_block(huge, bytes);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, bytes / huge * huge, MADV_HUGEPAGE);
#endif
    return p;
}

gpt2_context *gpt2_context_new(const gpt2_model *m, const gpt2_context_params *params, char *err, size_t errlen) {
    const gpt2_context_params defaults = {0};
    const gpt2_config *c = &m->config;
    if (!params) params = &defaults;
    int n_ctx = params->n_ctx ? params->n_ctx : c->n_ctx;
    if (n_ctx < 1 || n_ctx > c->n_ctx) {
        fail(err, errlen, "context size %d is outside [1, %d] (the model's positions)", n_ctx, c->n_ctx);
        return NULL;
    }
    gpt2_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) { fail(err, errlen, "out of memory"); return NULL; }
    ctx->model = m;
    ctx->n_ctx = n_ctx;
    ctx->logits_pos = -1;
    ctx->key_stride = (n_ctx + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    if (params->pool) ctx->pool = params->pool;
    else if ((ctx->pool = gpt2_pool_new(params->n_threads, err, errlen))) ctx->owns_pool = true;
    else { free(ctx); return NULL; }

    if (!(ctx->k = choose_kernels(params->kernels, err, errlen))) {
        gpt2_context_free(ctx);
        return NULL;
    }
    ContextSizes s;
    if (params->kv_type != GPT2_F32 && params->kv_type != GPT2_F16) {
        fail(err, errlen, "the KV cache's type must be f32 or f16 (type %d asked for)", (int)params->kv_type);
        gpt2_context_free(ctx);
        return NULL;
    }
    ctx->kv_size = params->kv_type == GPT2_F16 ? 2 : 4;
    if (!context_sizes(c, n_ctx, ctx->key_stride, ctx->pool->n_threads, ctx->k->batch, ctx->kv_size, SIZE_MAX, &s)) {
        fail(err, errlen, "a context of %d positions for this model needs more memory than this machine can address", n_ctx);
        gpt2_context_free(ctx);
        return NULL;
    }
    ctx->tokens = malloc(s.tokens * sizeof(int));
    ctx->k_cache = huge_alloc(s.k_cache * ctx->kv_size);
    ctx->v_cache = huge_alloc(s.v_cache * ctx->kv_size);
    ctx->x = cache_alloc(s.batch_C * sizeof(float));
    ctx->xn = cache_alloc(s.batch_C * sizeof(float));
    ctx->attn = cache_alloc(s.batch_C * sizeof(float));
    ctx->qkv = cache_alloc(3 * s.batch_C * sizeof(float));
    ctx->fc = cache_alloc(4 * s.batch_C * sizeof(float));
    bool scratch = matmul_scratch_init(&ctx->mm, ctx->pool->n_threads, 4 * c->n_embd, ctx->k->batch);
    ctx->mm.stream_to_l1 = decode_prefetch_to_l1_types();
    ctx->scores = cache_alloc(s.scores * sizeof(float));
    ctx->logits = cache_alloc(s.logits * sizeof(float));
    if (!ctx->tokens || !ctx->k_cache || !ctx->v_cache || !ctx->x || !ctx->xn || !ctx->attn || !ctx->qkv || !ctx->fc ||
        !scratch || !ctx->scores || !ctx->logits) {
        fail(err, errlen, "out of memory for a context of %d positions (the KV cache needs %.1f MB)", n_ctx,
             (double)(s.k_cache + s.v_cache) * ctx->kv_size / 1e6);
        gpt2_context_free(ctx);
        return NULL;
    }
    return ctx;
}

void gpt2_context_free(gpt2_context *ctx) {
    if (!ctx) return;
    if (ctx->owns_pool) gpt2_pool_free(ctx->pool);
    free(ctx->tokens);
    free(ctx->k_cache); free(ctx->v_cache);
    free(ctx->x); free(ctx->xn); free(ctx->attn); free(ctx->qkv); free(ctx->fc);
    matmul_scratch_free(&ctx->mm);
    free(ctx->scores); free(ctx->logits);
    free(ctx);
}

const gpt2_model *gpt2_context_model(const gpt2_context *ctx) { return ctx->model; }
const char *gpt2_context_kernels(const gpt2_context *ctx) { return ctx->k->name; }
int gpt2_context_threads(const gpt2_context *ctx) { return ctx->pool->n_threads; }
int gpt2_context_size(const gpt2_context *ctx) { return ctx->n_ctx; }
size_t gpt2_context_kv_bytes(const gpt2_context *ctx) {
    const gpt2_config *c = &ctx->model->config;
    return ctx->kv_size * (size_t)c->n_layer * (size_t)c->n_embd * (size_t)(ctx->key_stride + ctx->n_ctx);
}
int gpt2_context_position(const gpt2_context *ctx) { return ctx->pos; }
int gpt2_context_pending(const gpt2_context *ctx) { return ctx->has_pending ? ctx->tokens[ctx->pos] : -1; }
const int *gpt2_context_tokens(const gpt2_context *ctx, int *n_tokens) {
    *n_tokens = ctx->pos + ctx->has_pending;
    return ctx->tokens;
}
void gpt2_context_rewind(gpt2_context *ctx, int position) {
    if (position < 0) position = 0;
    if (position < ctx->pos) ctx->pos = position;
    ctx->has_pending = false;
}

/* Runs the T ≤ ctx->k->batch tokens at tokens[pos … pos + T - 1] through the model, appending their
 * keys and values to the cache. The logits of the last position go to ctx->logits; if
 * all_logits is not NULL, those of positions first … T - 1 of the batch go there, (T - first, V). */
static void forward(gpt2_context *ctx, int T, float *all_logits, int first) {
    const gpt2_config *c = &ctx->model->config;
    const Weights *w = &ctx->model->weights;
    const int C = c->n_embd, NH = c->n_head, HS = C / NH, pos = ctx->pos, ks = ctx->key_stride;
    gpt2_pool *pool = ctx->pool;
    const Kernels *k = ctx->k;
    const MatmulScratch *mm = &ctx->mm;
    float *x = ctx->x, *xn = ctx->xn, *qkv = ctx->qkv, *attn = ctx->attn, *fc = ctx->fc;

    embed(x, &w->wte, &w->wpe, ctx->tokens + pos, pos, T, xn);

    for (int l = 0; l < c->n_layer; l++) {
        const LayerWeights *lw = &w->layers[l];
        uint8_t *k_cache = (uint8_t *)ctx->k_cache + (size_t)l * C * ks * ctx->kv_size;          /* (NH, ks / KEY_BLOCK, HS, KEY_BLOCK) */
        uint8_t *v_cache = (uint8_t *)ctx->v_cache + (size_t)l * ctx->n_ctx * C * ctx->kv_size;  /* (NH, n_ctx, HS) */

        /* attention: x += proj(attention(ln_1(x))) */
        layernorm_rows(pool, xn, x, lw->ln1_w, lw->ln1_b, T, C, c->ln_eps);
        k->matmul(pool, mm, qkv, xn, &lw->qkv_w, lw->qkv_b, T, STORE);
        /* append this batch's keys (transposed, in blocks: see key_index) and values; a decoded
         * token's, head by head in attention's own tasks */
        const bool f16 = ctx->kv_size == 2;
        KvAppend append = {k_cache, v_cache, qkv, C, HS, ctx->n_ctx, ks, pos, T, f16};
        if (T > 1) pool_run(pool, kv_append_task, &append, C, T < SHARE_MIN_POSITIONS ? C : pool_chunk(pool, C, 16));
        k->attention(pool, &(Attention){.out = attn, .out_stride = C, .q = qkv, .q_stride = 3 * C, .keys = k_cache,
                                     .key_stride = ks, .values = v_cache, .value_head_stride = (size_t)ctx->n_ctx * HS,
                                     .value_stride = HS, .f16 = f16, .scores = ctx->scores, .append = T == 1 ? &append : NULL,
                                     .T = T, .pos0 = pos, .NH = NH, .HS = HS});
        k->matmul(pool, mm, x, attn, &lw->attn_proj_w, lw->attn_proj_b, T, ACCUMULATE);

        /* MLP: x += proj(gelu(fc(ln_2(x)))) */
        layernorm_rows(pool, xn, x, lw->ln2_w, lw->ln2_b, T, C, c->ln_eps);
        k->matmul(pool, mm, fc, xn, &lw->fc_w, lw->fc_b, T, STORE_GELU);
        k->matmul(pool, mm, x, fc, &lw->fc_proj_w, lw->fc_proj_b, T, ACCUMULATE);
    }

    /* logits = ln_f(x) · wteᵀ, for every position only when asked: the LM head is the biggest
     * matmul (V rows). xn keeps ln_f's output (of the last position alone, when not asked). */
    const int V = c->vocab_size;
    if (all_logits && first < T) {
        layernorm_rows(pool, xn, x + (size_t)first * C, w->lnf_w, w->lnf_b, T - first, C, c->ln_eps);
        k->matmul(pool, mm, all_logits, xn, &w->wte, NULL, T - first, STORE);
        memcpy(ctx->logits, all_logits + (size_t)(T - 1 - first) * V, (size_t)V * sizeof(float));
    } else {
        layernorm(xn, x + (size_t)(T - 1) * C, w->lnf_w, w->lnf_b, 1, C, c->ln_eps, NULL, NULL);
        k->matmul(pool, mm, ctx->logits, xn, &w->wte, NULL, 1, STORE);
    }
    ctx->pos += T;
    ctx->logits_pos = ctx->pos;
}

const float *gpt2_forward(gpt2_context *ctx, const int *tokens, int n, float *all_logits) {
    const int V = ctx->model->config.vocab_size, pending = ctx->has_pending;
    if (n < 1 || n > ctx->n_ctx - ctx->pos - pending) return NULL;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) return NULL;
    memcpy(ctx->tokens + ctx->pos + pending, tokens, (size_t)n * sizeof *tokens);
    ctx->has_pending = false;
    /* the pending token leads the first batch; its logits are not the caller's */
    for (int done = 0, total = n + pending; done < total;) {
        const int batch = ctx->k->batch;
        int T = total - done < batch ? total - done : batch, first = done == 0 ? pending : 0;
        forward(ctx, T, all_logits ? all_logits + (size_t)(done + first - pending) * V : NULL, first);
        done += T;
    }
    return ctx->logits;
}

/* ============================================================================================
 * Sampling: temperature → top-k → min-p → top-p → draw
 * ========================================================================================== */

typedef struct { float value; int id; } Candidate;  /* value: a logit, then a probability */

struct gpt2_sampler {
    gpt2_sampling params;   /* as given, except top_p: 1 when off */
    int vocab_size;
    uint64_t rng;           /* xorshift64* state, never 0 */
    Candidate *candidates;  /* (V) scratch */
};

/* splitmix64: spreads any seed (0, 1, 2, ...) into a well-mixed, non-zero state */
static uint64_t mix_seed(uint64_t seed) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : 1;
}

/* xorshift64*: a uniform double in [0, 1) from the top 53 bits */
static double random_uniform(uint64_t *state) {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (double)((*state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

gpt2_sampler *gpt2_sampler_new(const gpt2_model *m, const gpt2_sampling *p, char *err, size_t errlen) {
    if (!(p->temperature >= 0.0f && p->temperature <= 1e6f)) { fail(err, errlen, "temperature %g is outside [0, 1e6]", (double)p->temperature); return NULL; }
    if (p->top_k < 0) { fail(err, errlen, "top-k %d must be >= 0", p->top_k); return NULL; }
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f)) { fail(err, errlen, "top-p %g is outside [0, 1]", (double)p->top_p); return NULL; }
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) { fail(err, errlen, "min-p %g is outside [0, 1]", (double)p->min_p); return NULL; }
    gpt2_sampler *s = calloc(1, sizeof *s);
    if (!s || !(s->candidates = malloc((size_t)m->config.vocab_size * sizeof *s->candidates))) {
        free(s);
        fail(err, errlen, "out of memory");
        return NULL;
    }
    s->params = *p;
    if (s->params.top_p == 0.0f) s->params.top_p = 1.0f;
    s->vocab_size = m->config.vocab_size;
    s->rng = mix_seed(p->seed);
    return s;
}

void gpt2_sampler_free(gpt2_sampler *s) {
    if (!s) return;
    free(s->candidates);
    free(s);
}

/* Orders candidates by value, largest first; ties by id, so the order is total and the
 * result is the same on every platform's qsort. */
static int by_value_desc(const void *pa, const void *pb) {
    const Candidate *a = pa, *b = pb;
    if (a->value != b->value) return a->value < b->value ? 1 : -1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Keeps the k largest of cand[0, n) in cand[0, k), in no particular order (quickselect). */
static void select_top_k(Candidate *cand, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        Candidate pivot = cand[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (by_value_desc(&cand[i], &pivot) < 0) i++;
            while (by_value_desc(&cand[j], &pivot) > 0) j--;
            if (i <= j) { Candidate tmp = cand[i]; cand[i] = cand[j]; cand[j] = tmp; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else return;
    }
}

/* A float's order as an integer: its magnitude's bits, negated for negative floats (−0 and +0
 * both 0) and for NaN, whose magnitudes lie above infinity's, so that NaN ranks below −inf.
 * Arithmetic without branches, so that a loop of it vectorizes (with floats, gcc keeps
 * `x > max ? x : max` scalar for NaN's sake). */
static inline int32_t logit_rank(float v) {
    union { float f; uint32_t u; } bits = {.f = v};
    const int32_t magnitude = (int32_t)(bits.u & 0x7fffffffu);
    const int32_t negate = -(int32_t)(bits.u >> 31) | -(int32_t)((uint32_t)(0x7f800000 - magnitude) >> 31);  /* 0 or -1 */
    return (magnitude ^ negate) - negate;
}

/* The first of the largest logits; NaN counts as impossible (all NaN: the last). Two passes
 * that vectorize: the largest rank, then the least index holding a logit equal to it, as a
 * minimum over j or j + n (the scalar loop carrying the best index along took ~0.5% of
 * decoding q8_0 on one Zen 4 core). n ≤ MAX_VOCAB, so j + n does not overflow. */
static int argmax_logit(const float *logits, int n) {
    int32_t best = INT32_MIN;
    for (int i = 0; i < n; i++) {
        const int32_t rank = logit_rank(logits[i]);
        best = rank > best ? rank : best;
    }
    if (best < -0x7f800000) return n - 1;  /* all NaN */
    const union { uint32_t u; float f; } largest = {.u = best < 0 ? 0x80000000u | (uint32_t)-best : (uint32_t)best};
    int first = n;
    for (int j = 0; j < n; j++) {
        const int candidate = j + (int)(logits[j] != largest.f) * n;  /* −0 == +0, as ranked */
        first = candidate < first ? candidate : first;
    }
    return first;
}

/* A logit as a value the sampler can order: NaN is impossible (-inf), +inf certain (the
 * largest finite float: several certain tokens then share the draw evenly). */
static inline float sanitize_logit(float v) {
    return v != v ? -INFINITY : v > FLT_MAX ? FLT_MAX : v;
}

/* Keeps the candidates whose value is >= floor; returns how many. */
static int keep_at_least(Candidate *cand, int n, float floor) {
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (cand[i].value >= floor) cand[kept++] = cand[i];
    return kept;
}

static double total_value(const Candidate *cand, int n) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += cand[i].value;
    return sum;
}

int gpt2_sample(gpt2_sampler *s, const float *logits) {
    const gpt2_sampling *p = &s->params;
    const int V = s->vocab_size;
    if (p->temperature == 0.0f) return argmax_logit(logits, V);
    Candidate *cand = s->candidates;
    float max = -INFINITY;
    for (int i = 0; i < V; i++) {
        float v = sanitize_logit(logits[i] / p->temperature);
        cand[i] = (Candidate){v, i};
        if (v > max) max = v;
    }
    if (max == -INFINITY) return argmax_logit(logits, V);  /* nothing is possible: no draw */
    int n = V;

    /* top-k, on the logits (the k largest are the k most likely) */
    if (p->top_k > 0 && p->top_k < n) {
        select_top_k(cand, n, p->top_k);
        n = p->top_k;
    }
    /* softmax over what is left (its max is still `max`); impossible tokens go */
    n = keep_at_least(cand, n, -FLT_MAX);
    for (int i = 0; i < n; i++) cand[i].value = exp_approx(cand[i].value - max);
    double mass = total_value(cand, n);  /* the most likely token has e^0 = 1 of it */
    /* min-p: a ratio to the most likely, the same before and after renormalizing */
    if (p->min_p > 0.0f) {
        n = keep_at_least(cand, n, p->min_p);
        mass = total_value(cand, n);
    }
    /* top-p: the smallest prefix of the most likely whose share of `mass` reaches top_p. Sorting
     * a whole vocabulary would cost more than everything else here, so sort only the tokens
     * above a cutoff, when they alone reach top_p: they come first in the order, so the
     * prefix lies among them. The cutoff is a guess (tokens below it sum to at most
     * (1 - top_p)·mass when fewer than n of them are); the sum decides. */
    if (p->top_p < 1.0f) {
        const double target = p->top_p * mass;
        if (n > 1) {
            float cutoff = (float)((1.0 - p->top_p) * mass / (n - 1));
            int above = 0;
            double above_mass = 0.0;
            for (int i = 0; i < n; i++)
                if (cand[i].value >= cutoff) { above++; above_mass += cand[i].value; }
            if (above > 0 && above_mass >= target) n = keep_at_least(cand, n, cutoff);
        }
        qsort(cand, (size_t)n, sizeof *cand, by_value_desc);
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            cum += cand[i].value;
            if (cum >= target) { n = i + 1; break; }
        }
        mass = total_value(cand, n);
    }
    /* the draw walks the candidates in an order fixed by the logits alone (ids, or top-p's
     * sort), so a seed gives the same tokens everywhere */
    double r = random_uniform(&s->rng) * mass, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += cand[i].value;
        if (r < cum) return cand[i].id;
    }
    return cand[n - 1].id;  /* rounding left r at the very top */
}

/* ============================================================================================
 * One token at a time, and generation: the prompt as one batch, then a token per step
 * ========================================================================================== */

/* ln p(token) under softmax(logits), and the n_top most likely tokens with theirs:
 * ln p_i = (logit_i - max) - ln Σ_j e^(logit_j - max). */
static void token_info(const float *logits, int V, int token, int n_top, gpt2_token_info *info) {
    float max = -INFINITY;
    for (int i = 0; i < V; i++) {
        float v = sanitize_logit(logits[i]);
        if (v > max) max = v;
    }
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += exp((double)sanitize_logit(logits[i]) - max);
    const double log_sum = log(sum);
    #define LOGPROB(v) (max == -INFINITY ? -INFINITY : (float)(((double)(v) - max) - log_sum))
    info->token = token;
    info->logprob = LOGPROB(sanitize_logit(logits[token]));
    info->n_top = n_top < 0 ? 0 : n_top > GPT2_TOP_MAX ? GPT2_TOP_MAX : n_top > V ? V : n_top;
    /* insertion into a sorted list of n_top logits: one pass over the vocabulary */
    int filled = 0;
    for (int i = 0; i < V && info->n_top > 0; i++) {
        float v = sanitize_logit(logits[i]);
        if (filled == info->n_top && !(v > info->top_logprobs[filled - 1])) continue;
        int at = filled < info->n_top ? filled++ : filled - 1;
        while (at > 0 && v > info->top_logprobs[at - 1]) {
            info->top_logprobs[at] = info->top_logprobs[at - 1];
            info->top_tokens[at] = info->top_tokens[at - 1];
            at--;
        }
        info->top_logprobs[at] = v;
        info->top_tokens[at] = i;
    }
    for (int k = 0; k < filled; k++) info->top_logprobs[k] = LOGPROB(info->top_logprobs[k]);
    #undef LOGPROB
}

void gpt2_logprobs(const gpt2_model *m, const float *logits, int token, int n_top, gpt2_token_info *info) {
    token_info(logits, m->config.vocab_size, token, n_top, info);
}

int gpt2_next(gpt2_context *ctx, gpt2_sampler *sampler, int n_top, gpt2_token_info *info) {
    if (ctx->has_pending) {
        if (ctx->pos >= ctx->n_ctx) return -1;  /* it would not fit */
        ctx->has_pending = false;
        forward(ctx, 1, NULL, 0);
    } else if (ctx->logits_pos != ctx->pos) {  /* rewound: recompute the last position */
        if (ctx->pos == 0) return -1;
        ctx->pos--;
        forward(ctx, 1, NULL, 0);
    }
    int token = gpt2_sample(sampler, ctx->logits);
    if (info) token_info(ctx->logits, ctx->model->config.vocab_size, token, n_top, info);
    ctx->tokens[ctx->pos] = token;
    ctx->has_pending = true;
    return token;
}

/* Passes token bytes on without splitting a UTF-8 character across calls. */
typedef struct {
    char *buf;       /* held-back bytes followed by the new token's */
    size_t cap;
    size_t held;     /* bytes of an incomplete character waiting for the next token */
    gpt2_text_fn fn;
    void *user;
} TextStream;

static int stream_put(TextStream *s, const char *bytes, size_t len) {
    if (len == 0) return 0;  /* a padding id: no text (and no buffer yet, maybe) */
    if (s->held + len > s->cap) {
        size_t cap = (s->held + len) * 2;
        char *buf = realloc(s->buf, cap);
        if (!buf) return -1;
        s->buf = buf;
        s->cap = cap;
    }
    memcpy(s->buf + s->held, bytes, len);
    size_t n = s->held + len, tail = utf8_incomplete_tail(s->buf, n);
    int stop = (n > tail && s->fn) ? s->fn(s->user, s->buf, n - tail) : 0;
    memmove(s->buf, s->buf + n - tail, tail);
    s->held = tail;
    return stop;
}

static int stream_finish(TextStream *s) {
    int stop = (s->held && s->fn) ? s->fn(s->user, s->buf, s->held) : 0;  /* as they are */
    free(s->buf);
    return stop;
}

int gpt2_generate(gpt2_context *ctx, gpt2_sampler *sampler, const int *prompt, int n_prompt, int max_new_tokens,
                  int ignore_eot, gpt2_text_fn on_text, void *user, gpt2_stats *stats) {
    const gpt2_model *m = ctx->model;
    gpt2_stats st = {.n_prompt = n_prompt, .stop = GPT2_STOP_ERROR};
    TextStream text = {.fn = on_text, .user = user};
    double t0 = now_ms();
    const float *logits = n_prompt > 0 ? gpt2_forward(ctx, prompt, n_prompt, NULL) : NULL;
    st.prefill_ms = now_ms() - t0;
    if (!logits) {
        if (stats) *stats = st;
        return -1;
    }
    t0 = now_ms();
    for (;;) {
        if (max_new_tokens >= 0 && st.n_generated >= max_new_tokens) { st.stop = GPT2_STOP_LENGTH; break; }
        int token = gpt2_next(ctx, sampler, 0, NULL);
        if (token < 0) { st.stop = GPT2_STOP_CONTEXT; break; }
        if (token == m->config.eot_token && !ignore_eot) { st.stop = GPT2_STOP_EOT; break; }
        st.n_generated++;
        size_t len = 0;
        const char *bytes = gpt2_token_bytes(m, token, &len);
        if (stream_put(&text, bytes, len)) { st.stop = GPT2_STOP_CALLBACK; break; }
    }
    if (stream_finish(&text) && st.stop != GPT2_STOP_CALLBACK) st.stop = GPT2_STOP_CALLBACK;
    st.decode_ms = now_ms() - t0;
    if (stats) *stats = st;
    return st.n_generated;
}
