/* gpt2.c — GPT-2 inference in one file of C: libc, libm and pthreads, nothing else.
 *
 * Read it top to bottom: the model file and its loader, the thread pool, the kernels, the
 * forward pass in the order data flows through it, sampling, generation, the command line.
 * The tokenizer lives in tokenizer.c, which is #included below (one translation unit).
 *
 * Dimensions used in comments and names:
 *   L  layers            T  positions in the batch being computed
 *   C  channels (n_embd)  NH heads, HS = C / NH channels per head
 *   V  vocabulary size   P  context length (positions the model has learned, n_ctx)
 * A shape written (T, C) is a row-major array: T rows of C floats.
 *
 * Build the command-line tool with `make`; embed the engine with -DGPT2_NO_MAIN.
 */
#define _GNU_SOURCE  /* sched_getaffinity, CPU_COUNT; harmless elsewhere */
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tokenizer.c"

/* ============================================================================================
 * Small utilities
 * ========================================================================================== */

/* Writes a one-line message into err (when the caller gave room for one) and returns -1. */
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint32_t read_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t read_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static float read_f32(const uint8_t *p) { float v; memcpy(&v, p, 4); return v; }

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

/* The twelve tensors of one block, in file order, and their shapes in multiples of C. */
enum {
    LN1_W, LN1_B, QKV_W, QKV_B, ATTN_PROJ_W, ATTN_PROJ_B,
    LN2_W, LN2_B, FC_W, FC_B, FC_PROJ_W, FC_PROJ_B, N_BLOCK_TENSORS
};
static const struct { const char *name; int rows, cols; } block_tensors[N_BLOCK_TENSORS] = {
    /* rows = 0 means a vector (1 row); otherwise rows·C × cols·C */
    {"ln_1.weight", 0, 1},       {"ln_1.bias", 0, 1},
    {"attn.c_attn.weight", 3, 1}, {"attn.c_attn.bias", 0, 3},
    {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 0, 1},
    {"ln_2.weight", 0, 1},       {"ln_2.bias", 0, 1},
    {"mlp.c_fc.weight", 4, 1},   {"mlp.c_fc.bias", 0, 4},
    {"mlp.c_proj.weight", 1, 4}, {"mlp.c_proj.bias", 0, 1},
};

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

/* Header field offsets (FORMAT.md, "Header"). */
enum {
    H_MAGIC = 0, H_VERSION = 4, H_HEADER_SIZE = 8, H_N_LAYER = 12, H_N_HEAD = 16, H_N_EMBD = 20,
    H_N_CTX = 24, H_VOCAB = 28, H_LN_EPS = 32, H_FLAGS = 36, H_EOT = 40, H_N_TENSORS = 44,
    H_TABLE_OFFSET = 48, H_TOKENIZER_OFFSET = 56, H_TOKENIZER_SIZE = 64, H_FILE_SIZE = 72, H_RESERVED = 80
};

typedef struct {
    const float *w[N_BLOCK_TENSORS];  /* indexed by LN1_W ... FC_PROJ_B */
} BlockWeights;

struct gpt2_model {
    gpt2_config config;
    const float *wte;       /* (V, C) token embeddings, also the LM head */
    const float *wpe;       /* (P, C) position embeddings */
    BlockWeights *blocks;   /* [L] */
    const float *lnf_w, *lnf_b;  /* (C) final layer norm */
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

/* Validates the tensor table and points the weights into the mapping. `data_start` is the
 * end of the tokenizer section: tensors live after it, in order, without overlapping. */
static int load_tensors(gpt2_model *m, const uint8_t *base, uint64_t file_size, uint64_t data_start, char *err, size_t errlen) {
    const gpt2_config *c = &m->config;
    int n = gpt2_tensor_count(c);
    m->blocks = calloc((size_t)c->n_layer, sizeof *m->blocks);
    if (!m->blocks) return fail(err, errlen, "out of memory");
    uint64_t prev_end = data_start;
    for (int i = 0; i < n; i++) {
        const uint8_t *e = base + GPT2_HEADER_SIZE + (uint64_t)i * GPT2_TENSOR_ENTRY_SIZE;
        uint32_t dtype = read_u32(e), rows = read_u32(e + 4), cols = read_u32(e + 8), reserved = read_u32(e + 12);
        uint64_t off = read_u64(e + 16), nbytes = read_u64(e + 24), want_bytes = 0, end;
        char name[64];
        int want_rows, want_cols;
        gpt2_tensor_info(c, i, name, sizeof name, &want_rows, &want_cols);
        if (dtype != GPT2_F32)
            return fail(err, errlen, "tensor %s has dtype %u, which this build cannot read (it reads f32 = 0)", name, dtype);
        if (rows != (uint32_t)want_rows || cols != (uint32_t)want_cols)
            return fail(err, errlen, "tensor %s has shape [%u, %u], expected [%d, %d]", name, rows, cols, want_rows, want_cols);
        if (reserved) return fail(err, errlen, "tensor %s: reserved field is not zero", name);
        if (!mul_u64((uint64_t)rows * cols, sizeof(float), &want_bytes) || nbytes != want_bytes)
            return fail(err, errlen, "tensor %s is %llu bytes, its shape needs %llu", name,
                        (unsigned long long)nbytes, (unsigned long long)want_bytes);
        if (off % GPT2_ALIGN) return fail(err, errlen, "tensor %s offset %llu is not a multiple of %d", name, (unsigned long long)off, GPT2_ALIGN);
        if (off < prev_end) return fail(err, errlen, "tensor %s at offset %llu overlaps what precedes it (ends at %llu)", name,
                                        (unsigned long long)off, (unsigned long long)prev_end);
        if (!add_u64(off, nbytes, &end) || end > file_size)
            return fail(err, errlen, "tensor %s [%llu, +%llu) runs past the end of the file (%llu bytes)", name,
                        (unsigned long long)off, (unsigned long long)nbytes, (unsigned long long)file_size);
        prev_end = end;
        const float *data = (const float *)(base + off);
        if (i == 0) m->wte = data;
        else if (i == 1) m->wpe = data;
        else if (i == n - 2) m->lnf_w = data;
        else if (i == n - 1) m->lnf_b = data;
        else m->blocks[(i - 2) / N_BLOCK_TENSORS].w[(i - 2) % N_BLOCK_TENSORS] = data;
    }
    return 0;
}

/* Reads and checks the header; fills m->config. Everything is checked against the real size. */
static int load_header(gpt2_model *m, const uint8_t *h, uint64_t file_size, char *err, size_t errlen) {
    uint32_t magic = read_u32(h + H_MAGIC), version = read_u32(h + H_VERSION);
    if (magic != GPT2_MAGIC) {
        if (h[8] == '{') return fail(err, errlen, "not a gpt2.c model (this looks like a safetensors file: convert its directory with export/convert)");
        if (magic == 20240326u) return fail(err, errlen, "not a gpt2.c model (this looks like an llm.c checkpoint: convert the HuggingFace model with export/convert)");
        return fail(err, errlen, "not a gpt2.c model file (bad magic 0x%08x)", magic);
    }
    if (version != GPT2_VERSION)
        return fail(err, errlen, "file format version %u, but this build reads version %d (HINT: %s)", version, GPT2_VERSION,
                    version > GPT2_VERSION ? "update gpt2.c" : "re-convert the model with this build's export/convert");
    if (read_u32(h + H_HEADER_SIZE) != GPT2_HEADER_SIZE)
        return fail(err, errlen, "header size %u, expected %d", read_u32(h + H_HEADER_SIZE), GPT2_HEADER_SIZE);
    uint64_t declared = read_u64(h + H_FILE_SIZE);
    if (declared != file_size)
        return fail(err, errlen, "file is %llu bytes but its header says %llu (%s)", (unsigned long long)file_size,
                    (unsigned long long)declared, file_size < declared ? "truncated download or copy?" : "trailing data");
    for (int i = H_RESERVED; i < GPT2_HEADER_SIZE; i++)
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
    uint32_t flags = read_u32(h + H_FLAGS);
    if (flags != GPT2_FLAG_TIED_HEAD)
        return fail(err, errlen, "header flags 0x%x are not supported (version 1 requires exactly the tied-head flag)", flags);
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
    if (fd < 0) { fail(err, errlen, "%s: %s", path, strerror(errno)); free(m); return NULL; }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(err, errlen, "%s: %s", path, errno ? strerror(errno) : "not a regular file");
        close(fd); free(m); return NULL;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < GPT2_HEADER_SIZE) {
        fail(err, errlen, "%s: file is %llu bytes, too small to be a model (the header alone is %d)", path,
             (unsigned long long)size, GPT2_HEADER_SIZE);
        close(fd); free(m); return NULL;
    }
    if (size > SIZE_MAX) { fail(err, errlen, "%s: file too large for this address space", path); close(fd); free(m); return NULL; }
    m->map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);  /* the mapping keeps the file alive */
    if (m->map == MAP_FAILED) { fail(err, errlen, "%s: mmap: %s", path, strerror(errno)); free(m); return NULL; }
    m->map_size = (size_t)size;
    const uint8_t *base = m->map;

    uint64_t tok_off, tok_size, tok_end;
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
    if (load_tensors(m, base, size, tok_end, why, sizeof why)) goto bad;
    m->load_ms = now_ms() - t0;
    return m;
bad:
    fail(err, errlen, "%s: %s", path, why);
    gpt2_free(m);
    return NULL;
}

void gpt2_free(gpt2_model *m) {
    if (!m) return;
    tokenizer_free(&m->tokenizer);
    free(m->blocks);
    if (m->map && m->map != MAP_FAILED) munmap(m->map, m->map_size);
    free(m);
}

const gpt2_config *gpt2_model_config(const gpt2_model *m) { return &m->config; }
double gpt2_model_load_ms(const gpt2_model *m) { return m->load_ms; }
size_t gpt2_model_file_size(const gpt2_model *m) { return m->map_size; }

int *gpt2_tokenize(const gpt2_model *m, const char *text, size_t len, int flags, size_t *n_tokens) {
    return tokenizer_encode(&m->tokenizer, text, len, flags & GPT2_ALLOW_SPECIAL, n_tokens);
}
const char *gpt2_token_bytes(const gpt2_model *m, int token, size_t *len) { return tokenizer_token(&m->tokenizer, token, len); }
size_t gpt2_utf8_incomplete_tail(const char *buf, size_t n) { return utf8_incomplete_tail(buf, n); }

/* ---- writing ------------------------------------------------------------------------- */

struct gpt2_writer {
    FILE *f;
    char *path, *tmp_path;
    gpt2_config config;
    int next_tensor;      /* tensors written so far */
    uint64_t offset;      /* bytes written so far */
};

static bool write_zeros(FILE *f, uint64_t n) {
    static const char zeros[GPT2_ALIGN];
    for (; n > 0; n -= n < GPT2_ALIGN ? n : GPT2_ALIGN)
        if (fwrite(zeros, 1, n < GPT2_ALIGN ? n : GPT2_ALIGN, f) != (n < GPT2_ALIGN ? n : GPT2_ALIGN)) return false;
    return true;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

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

gpt2_writer *gpt2_writer_open(const char *path, const gpt2_config *c, const gpt2_vocab *v, char *err, size_t errlen) {
    char why[GPT2_ERR_MAX];
    if (!host_is_little_endian()) { fail(err, errlen, "writing model files needs a little-endian host"); return NULL; }
    if (check_config(c, why, sizeof why) || check_vocab(c, v, why, sizeof why)) { fail(err, errlen, "%s: %s", path, why); return NULL; }
    gpt2_writer *w = calloc(1, sizeof *w);
    size_t plen = strlen(path);
    if (!w || !(w->path = malloc(plen + 1)) || !(w->tmp_path = malloc(plen + 5))) {
        if (w) free(w->path);
        free(w);
        fail(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(w->path, path, plen + 1);
    snprintf(w->tmp_path, plen + 5, "%s.tmp", path);
    w->config = *c;
    if (!(w->f = fopen(w->tmp_path, "wb"))) {
        fail(err, errlen, "%s: %s", w->tmp_path, strerror(errno));
        free(w->path); free(w->tmp_path); free(w);
        return NULL;
    }

    /* Lay the file out: header, table, tokenizer, then each tensor at the next multiple of 64. */
    int n = gpt2_tensor_count(c);
    uint64_t table_end = GPT2_HEADER_SIZE + (uint64_t)n * GPT2_TENSOR_ENTRY_SIZE;
    uint64_t tok_off = align_up(table_end, GPT2_ALIGN);
    uint64_t tok_fixed = 16 + 4 * ((uint64_t)v->n_tokens + 1) + 8 * (uint64_t)v->n_merges + 4 * (uint64_t)v->n_special;
    uint64_t tok_size = tok_fixed + v->offsets[v->n_tokens];
    uint64_t off = tok_off + tok_size;
    uint8_t *table = calloc((size_t)n, GPT2_TENSOR_ENTRY_SIZE);
    if (!table) { fail(err, errlen, "out of memory"); gpt2_writer_abort(w); return NULL; }
    for (int i = 0; i < n; i++) {
        int rows = 0, cols = 0;
        gpt2_tensor_info(c, i, NULL, 0, &rows, &cols);
        uint64_t nbytes = (uint64_t)rows * (uint64_t)cols * sizeof(float);
        off = align_up(off, GPT2_ALIGN);
        uint8_t *e = table + (size_t)i * GPT2_TENSOR_ENTRY_SIZE;
        put_u32(e, GPT2_F32); put_u32(e + 4, (uint32_t)rows); put_u32(e + 8, (uint32_t)cols);
        put_u64(e + 16, off); put_u64(e + 24, nbytes);
        off += nbytes;
    }
    uint8_t h[GPT2_HEADER_SIZE] = {0};
    put_u32(h + H_MAGIC, GPT2_MAGIC); put_u32(h + H_VERSION, GPT2_VERSION); put_u32(h + H_HEADER_SIZE, GPT2_HEADER_SIZE);
    put_u32(h + H_N_LAYER, (uint32_t)c->n_layer); put_u32(h + H_N_HEAD, (uint32_t)c->n_head);
    put_u32(h + H_N_EMBD, (uint32_t)c->n_embd); put_u32(h + H_N_CTX, (uint32_t)c->n_ctx);
    put_u32(h + H_VOCAB, (uint32_t)c->vocab_size); memcpy(h + H_LN_EPS, &c->ln_eps, 4);
    put_u32(h + H_FLAGS, GPT2_FLAG_TIED_HEAD); put_u32(h + H_EOT, (uint32_t)c->eot_token);
    put_u32(h + H_N_TENSORS, (uint32_t)n); put_u64(h + H_TABLE_OFFSET, GPT2_HEADER_SIZE);
    put_u64(h + H_TOKENIZER_OFFSET, tok_off); put_u64(h + H_TOKENIZER_SIZE, tok_size); put_u64(h + H_FILE_SIZE, off);
    uint8_t counts[16] = {0};
    put_u32(counts, (uint32_t)v->n_tokens); put_u32(counts + 4, (uint32_t)v->n_merges); put_u32(counts + 8, (uint32_t)v->n_special);
    bool ok = fwrite(h, 1, sizeof h, w->f) == sizeof h &&
              fwrite(table, GPT2_TENSOR_ENTRY_SIZE, (size_t)n, w->f) == (size_t)n &&
              write_zeros(w->f, tok_off - table_end) &&
              fwrite(counts, 1, 16, w->f) == 16 &&
              fwrite(v->offsets, 4, (size_t)v->n_tokens + 1, w->f) == (size_t)v->n_tokens + 1 &&
              fwrite(v->merges, 8, (size_t)v->n_merges, w->f) == (size_t)v->n_merges &&
              fwrite(v->special, 4, (size_t)v->n_special, w->f) == (size_t)v->n_special &&
              fwrite(v->bytes, 1, v->offsets[v->n_tokens], w->f) == v->offsets[v->n_tokens];
    free(table);
    if (!ok) { fail(err, errlen, "%s: write failed: %s", w->tmp_path, strerror(errno)); gpt2_writer_abort(w); return NULL; }
    w->offset = tok_off + tok_size;
    return w;
}

int gpt2_writer_tensor(gpt2_writer *w, const float *data, char *err, size_t errlen) {
    int rows = 0, cols = 0;
    if (gpt2_tensor_info(&w->config, w->next_tensor, NULL, 0, &rows, &cols))
        return fail(err, errlen, "all %d tensors were already written", gpt2_tensor_count(&w->config));
    size_t count = (size_t)rows * (size_t)cols;
    uint64_t start = align_up(w->offset, GPT2_ALIGN);
    if (!write_zeros(w->f, start - w->offset) || fwrite(data, sizeof(float), count, w->f) != count)
        return fail(err, errlen, "%s: write failed: %s", w->tmp_path, strerror(errno));
    w->offset = start + count * sizeof(float);
    w->next_tensor++;
    return 0;
}

int gpt2_writer_close(gpt2_writer *w, char *err, size_t errlen) {
    int n = gpt2_tensor_count(&w->config), rc = 0;
    if (w->next_tensor != n) {
        rc = fail(err, errlen, "%s: only %d of %d tensors were written", w->path, w->next_tensor, n);
    } else if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) {
        rc = fail(err, errlen, "%s: write failed: %s", w->tmp_path, strerror(errno));
    }
    if (fclose(w->f) != 0 && rc == 0) rc = fail(err, errlen, "%s: write failed: %s", w->tmp_path, strerror(errno));
    w->f = NULL;
    if (rc == 0 && rename(w->tmp_path, w->path) != 0) rc = fail(err, errlen, "%s: %s", w->path, strerror(errno));
    if (rc != 0) remove(w->tmp_path);
    free(w->path); free(w->tmp_path); free(w);
    return rc;
}

void gpt2_writer_abort(gpt2_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    remove(w->tmp_path);
    free(w->path); free(w->tmp_path); free(w);
}

/* ============================================================================================
 * Thread pool: persistent workers; a task is split into chunks claimed from an atomic counter
 * ========================================================================================== */

/* Processes items [begin, end). `thread` (0 = the caller) indexes per-thread scratch. Each item's
 * result must not depend on which thread computes it or with which other items: then results
 * are identical for any thread count. */
typedef void (*task_fn)(void *arg, int begin, int end, int thread);

/* The cores this process may run on (its affinity mask), or the online count. */
static int available_cores(void) {
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

typedef struct ThreadPool ThreadPool;
typedef struct { ThreadPool *pool; int index; } Worker;

/* Waiting is a spin, then a sleep. A forward pass runs a task every few microseconds, too
 * often to pay for a futex wake-up each time; between forward passes threads go to sleep.
 * With more threads than cores, a spinning thread would hold the core its partner needs:
 * then threads only sleep. */
#define SPIN_NS 100000

struct ThreadPool {
    int n_threads;             /* including the calling thread */
    double spin_ms;            /* how long a waiting thread spins before it sleeps */
    pthread_t *threads;        /* [n_threads - 1] */
    Worker *workers;
    /* the current task, published by the release increment of `generation` */
    task_fn fn;
    void *arg;
    int n_items, chunk;
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
static Spin spin_start(const ThreadPool *p) { return (Spin){p->spin_ms > 0 ? now_ms() + p->spin_ms : 0, 0}; }
static bool spin_more(Spin *s) {
    if (s->deadline == 0) return false;
    if (++s->rounds % 256 == 0 && now_ms() > s->deadline) return false;  /* a clock read now and then */
    cpu_relax();
    return true;
}

static void pool_work(ThreadPool *p, int thread) {
    for (;;) {
        int begin = atomic_fetch_add_explicit(&p->next_item, p->chunk, memory_order_relaxed);
        if (begin >= p->n_items) return;
        p->fn(p->arg, begin, p->n_items - begin < p->chunk ? p->n_items : begin + p->chunk, thread);
    }
}

static void *pool_worker(void *arg) {
    Worker *self = arg;
    ThreadPool *p = self->pool;
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
static void pool_publish(ThreadPool *p) {
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->sleepers)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->start);
        pthread_mutex_unlock(&p->lock);
    }
}

/* Runs fn over [0, n_items) in chunks of `chunk` items on all threads; returns when done. */
static void pool_run(ThreadPool *p, task_fn fn, void *arg, int n_items, int chunk) {
    if (n_items <= 0) return;
    if (chunk < 1) chunk = 1;
    if (p->n_threads == 1 || n_items <= chunk) { fn(arg, 0, n_items, 0); return; }
    p->fn = fn; p->arg = arg; p->n_items = n_items; p->chunk = chunk;
    atomic_store_explicit(&p->next_item, 0, memory_order_relaxed);
    atomic_store_explicit(&p->running, p->n_threads - 1, memory_order_relaxed);
    pool_publish(p);
    pool_work(p, 0);
    Spin spin = spin_start(p);
    while (atomic_load_explicit(&p->running, memory_order_acquire) != 0 && spin_more(&spin)) {}
    if (atomic_load_explicit(&p->running, memory_order_acquire) != 0) {
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->caller_asleep, true);
        while (atomic_load(&p->running) != 0) pthread_cond_wait(&p->finished, &p->lock);
        atomic_store(&p->caller_asleep, false);
        pthread_mutex_unlock(&p->lock);
    }
}

/* A chunk size giving each thread about four chunks (for balance), a multiple of `unit`. */
static int pool_chunk(const ThreadPool *p, int n_items, int unit) {
    int chunk = (n_items + 4 * p->n_threads - 1) / (4 * p->n_threads);
    return (chunk + unit - 1) / unit * unit;
}

static int pool_init(ThreadPool *p, int n_threads, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    p->n_threads = n_threads;
    p->spin_ms = n_threads <= available_cores() ? SPIN_NS / 1e6 : 0;
    atomic_init(&p->next_item, 0);
    atomic_init(&p->generation, 0);
    atomic_init(&p->running, 0);
    atomic_init(&p->quit, false);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_asleep, false);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->finished, NULL);
    if (n_threads == 1) return 0;
    p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
    p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
    if (!p->threads || !p->workers) { p->n_threads = 1; return fail(err, errlen, "out of memory"); }
    for (int i = 0; i < n_threads - 1; i++) {
        p->workers[i] = (Worker){p, i + 1};
        int rc = pthread_create(&p->threads[i], NULL, pool_worker, &p->workers[i]);
        if (rc) {
            p->n_threads = i + 1;  /* join only those that started */
            return fail(err, errlen, "cannot start thread %d of %d: %s", i + 2, n_threads, strerror(rc));
        }
    }
    return 0;
}

static void pool_destroy(ThreadPool *p) {
    atomic_store(&p->quit, true);
    pool_publish(p);
    for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
    free(p->threads);
    free(p->workers);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->finished);
}


/* ============================================================================================
 * Kernels. One SIMD vector type per architecture and a plain C fallback.
 *
 * A matmul y[t][o] = b[o] + Σ_i W[o][i]·x[t][i] comes in two shapes. Decoding one position
 * reads every weight once for two FLOPs, so it is a race through memory: vectors run along a
 * weight row (one dot product per output, its vector reduced at the end). A batch of
 * positions uses each weight T times, so it is bound by arithmetic: the batch is transposed
 * once, each weight is broadcast and multiplied into VEC_WIDTH positions at a time, and no
 * vector needs reducing (3x the speed of dot products on a prompt).
 * In both, every output is summed in one fixed order whatever the tiling and the thread
 * count, so results do not depend on how the work is split. The two shapes round
 * differently (by ~1e-6; both are checked against the references).
 * ========================================================================================== */

#if defined(__AVX512F__) && !defined(GPT2_SCALAR)
#include <immintrin.h>
#define SIMD_NAME "avx512"
#define VEC_WIDTH 16
typedef __m512 vec;
#define vec_zero() _mm512_setzero_ps()
#define vec_set1(x) _mm512_set1_ps(x)
#define vec_load(p) _mm512_loadu_ps(p)
#define vec_store(p, v) _mm512_storeu_ps(p, v)
#define vec_fma(a, b, acc) _mm512_fmadd_ps(a, b, acc)
#define vec_sum(v) _mm512_reduce_add_ps(v)
#define BATCH_ROWS 8  /* a batched tile: 8 weight rows × 2 vectors of positions = 16 accumulators */
#define BATCH_VECS 2
#elif defined(__AVX2__) && defined(__FMA__) && !defined(GPT2_SCALAR)
#include <immintrin.h>
#define SIMD_NAME "avx2"
#define VEC_WIDTH 8
typedef __m256 vec;
#define vec_zero() _mm256_setzero_ps()
#define vec_set1(x) _mm256_set1_ps(x)
#define vec_load(p) _mm256_loadu_ps(p)
#define vec_store(p, v) _mm256_storeu_ps(p, v)
#define vec_fma(a, b, acc) _mm256_fmadd_ps(a, b, acc)
static inline float vec_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#define BATCH_ROWS 6  /* 12 accumulators + 2 inputs + 1 broadcast of 16 registers */
#define BATCH_VECS 2
#elif defined(__ARM_NEON) && defined(__aarch64__) && !defined(GPT2_SCALAR)
#include <arm_neon.h>
#define SIMD_NAME "neon"
#define VEC_WIDTH 4
typedef float32x4_t vec;
#define vec_zero() vdupq_n_f32(0.0f)
#define vec_set1(x) vdupq_n_f32(x)
#define vec_load(p) vld1q_f32(p)
#define vec_store(p, v) vst1q_f32(p, v)
#define vec_fma(a, b, acc) vfmaq_f32(acc, a, b)
#define vec_sum(v) vaddvq_f32(v)
#define BATCH_ROWS 8
#define BATCH_VECS 2
#else  /* plain C, also forced by -DGPT2_SCALAR: a "vector" of one float */
#define SIMD_NAME "scalar"
#define VEC_WIDTH 1
typedef float vec;
#define vec_zero() 0.0f
#define vec_set1(x) (x)
#define vec_load(p) (*(p))
#define vec_store(p, v) (*(p) = (v))
#define vec_fma(a, b, acc) ((acc) + (a) * (b))
#define vec_sum(v) (v)
#define BATCH_ROWS 4
#define BATCH_VECS 4
#endif
#define DOT_ROWS 4     /* weight rows a decoding tile reads side by side */
#define BATCH_MIN 4    /* from this many positions on, a matmul uses the batched kernel */

#if defined(__GNUC__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE inline
#endif

/* What a matmul does with each result y = b[o] + Σ_i W[o][i]·x[t][i]. */
typedef enum { STORE, STORE_GELU, ACCUMULATE } Epilogue;  /* y, gelu(y), out += y */

typedef struct {
    float *out;          /* (T, n_out) */
    const float *in;     /* (T, n_in) */
    float *in_t;         /* (n_in, T_padded): the batch transposed, for the batched kernel */
    int T_padded;        /* T rounded up to whole vectors */
    const float *w;      /* (n_out, n_in) */
    const float *bias;   /* (n_out) or NULL */
    int T, n_in, n_out;
    Epilogue epilogue;
} Matmul;

/* e^x to within 3e-7 relative, from arithmetic the compiler vectorizes (libm's expf and tanhf
 * are calls, one element at a time, and GELU and the softmaxes run millions of them):
 * e^x = 2^n · e^r with n = round(x / ln 2), r = x - n·ln 2 (ln 2 split in two, so r is exact
 * to float precision) and e^r by its Taylor polynomial to r^6 (|r| ≤ ln2/2: error < 1e-7).
 * Inputs are clamped to where 2^n is a normal float; below, the result is ~1e-38, not 0. */
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    const float round_magic = 12582912.0f;  /* 1.5 · 2^23: adding and subtracting it rounds */
    float n = (x * 1.44269504088896341f + round_magic) - round_magic;
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
 * A loop over an array, so that it vectorizes. */
static void gelu(float *x, int n) {
    const float sqrt_2_over_pi = 0.7978845608028654f;
    for (int i = 0; i < n; i++) {
        float u = sqrt_2_over_pi * (x[i] + 0.044715f * x[i] * x[i] * x[i]);
        x[i] = x[i] / (1.0f + exp_approx(-2.0f * u));
    }
}

static inline void matmul_store(const Matmul *m, int o, int t, float y) {
    float *out = m->out + (size_t)t * m->n_out + o;
    if (m->bias) y += m->bias[o];
    if (m->epilogue == ACCUMULATE) *out += y;
    else *out = y;  /* STORE_GELU: gelu runs over the finished rows, see matmul_finish */
}

static void matmul_finish(const Matmul *m, int begin, int end) {
    if (m->epilogue == STORE_GELU)
        for (int t = 0; t < m->T; t++) gelu(m->out + (size_t)t * m->n_out + begin, end - begin);
}

/* Decoding: `rows` outputs of position t, one dot product each, over weight rows read side by
 * side. With a constant `rows` the accumulators live in registers. */
static ALWAYS_INLINE void matmul_dot_tile(const Matmul *m, int o, int t, const int rows) {
    const int n = m->n_in, nv = n - n % VEC_WIDTH;
    const float *w = m->w + (size_t)o * n, *x = m->in + (size_t)t * n;
    vec acc[DOT_ROWS];
    for (int r = 0; r < rows; r++) acc[r] = vec_zero();
    for (int i = 0; i < nv; i += VEC_WIDTH) {
        vec xv = vec_load(x + i);
        for (int r = 0; r < rows; r++) acc[r] = vec_fma(vec_load(w + (size_t)r * n + i), xv, acc[r]);
    }
    for (int r = 0; r < rows; r++) {
        float s = vec_sum(acc[r]);
        for (int i = nv; i < n; i++) s += w[(size_t)r * n + i] * x[i];
        matmul_store(m, o + r, t, s);
    }
}

static void matmul_dot_task(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    (void)thread;
    int o = begin;
    for (; o + DOT_ROWS <= end; o += DOT_ROWS)
        for (int t = 0; t < m->T; t++) matmul_dot_tile(m, o, t, DOT_ROWS);
    for (; o < end; o++)
        for (int t = 0; t < m->T; t++) matmul_dot_tile(m, o, t, 1);
    matmul_finish(m, begin, end);
}

/* A batch: `rows` outputs × `vecs` vectors of positions from t. For each input channel i,
 * W[o][i] is broadcast and multiplied into the transposed batch's row i. */
static ALWAYS_INLINE void matmul_batch_tile(const Matmul *m, int o, int t, const int rows, const int vecs) {
    const int n = m->n_in;
    const float *w = m->w + (size_t)o * n;
    vec acc[BATCH_ROWS][BATCH_VECS];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) acc[r][v] = vec_zero();
    for (int i = 0; i < n; i++) {
        const float *x = m->in_t + (size_t)i * m->T_padded + t;
        vec xv[BATCH_VECS];
        for (int v = 0; v < vecs; v++) xv[v] = vec_load(x + v * VEC_WIDTH);
        for (int r = 0; r < rows; r++) {
            vec wv = vec_set1(w[(size_t)r * n + i]);
            for (int v = 0; v < vecs; v++) acc[r][v] = vec_fma(wv, xv[v], acc[r][v]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < vecs; v++) {
            float lanes[VEC_WIDTH];
            vec_store(lanes, acc[r][v]);
            for (int l = 0; l < VEC_WIDTH && t + v * VEC_WIDTH + l < m->T; l++)  /* padding lanes are dropped */
                matmul_store(m, o + r, t + v * VEC_WIDTH + l, lanes[l]);
        }
}

static void matmul_batch_task(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    (void)thread;
    const int tile = BATCH_VECS * VEC_WIDTH;
    int o = begin;
    for (; o + BATCH_ROWS <= end; o += BATCH_ROWS) {
        int t = 0;
        for (; t + tile <= m->T_padded; t += tile) matmul_batch_tile(m, o, t, BATCH_ROWS, BATCH_VECS);
        for (; t < m->T_padded; t += VEC_WIDTH) matmul_batch_tile(m, o, t, BATCH_ROWS, 1);
    }
    for (; o < end; o++)
        for (int t = 0; t < m->T_padded; t += VEC_WIDTH) matmul_batch_tile(m, o, t, 1, 1);
    matmul_finish(m, begin, end);
}

/* in_t[i][t] = in[t][i], zero past T: one task item per input channel. */
static void transpose_task(void *arg, int begin, int end, int thread) {
    const Matmul *m = arg;
    (void)thread;
    for (int i = begin; i < end; i++) {
        float *row = m->in_t + (size_t)i * m->T_padded;
        for (int t = 0; t < m->T; t++) row[t] = m->in[(size_t)t * m->n_in + i];
        for (int t = m->T; t < m->T_padded; t++) row[t] = 0.0f;
    }
}

/* out (T, n_out) ⟵ in (T, n_in) · wᵀ + bias, with the epilogue, split by output rows.
 * in_t is scratch for the transposed batch: n_in × (T rounded up to a vector) floats. */
static void matmul(ThreadPool *pool, float *in_t, float *out, const float *in, const float *w, const float *bias,
                   int T, int n_in, int n_out, Epilogue epilogue) {
    Matmul m = {out, in, in_t, (T + VEC_WIDTH - 1) / VEC_WIDTH * VEC_WIDTH, w, bias, T, n_in, n_out, epilogue};
    if (T < BATCH_MIN) {
        pool_run(pool, matmul_dot_task, &m, n_out, pool_chunk(pool, n_out, DOT_ROWS));
        return;
    }
    pool_run(pool, transpose_task, &m, n_in, pool_chunk(pool, n_in, 16));
    pool_run(pool, matmul_batch_task, &m, n_out, pool_chunk(pool, n_out, BATCH_ROWS));
}

/* LayerNorm over each of T rows of C: y = (x - mean) / sqrt(var + eps) · w + b, with the
 * biased variance (divided by C), as GPT-2 does. */
static void layernorm(float *out, const float *in, const float *w, const float *b, int T, int C, float eps) {
    for (int t = 0; t < T; t++) {
        const float *x = in + (size_t)t * C;
        float *y = out + (size_t)t * C;
        float mean = 0.0f, var = 0.0f;
        for (int i = 0; i < C; i++) mean += x[i];
        mean /= C;
        for (int i = 0; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
        var /= C;
        float rstd = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < C; i++) y[i] = (x[i] - mean) * rstd * w[i] + b[i];
    }
}

/* ============================================================================================
 * The forward pass
 * ========================================================================================== */

#define MAX_BATCH 64  /* prompt positions computed together: bounds activation memory */
_Static_assert(MAX_BATCH % 16 == 0, "a batch is whole vectors of positions for every VEC_WIDTH");

struct gpt2_context {
    const gpt2_model *model;
    int n_ctx;           /* positions the cache holds */
    int pos;             /* positions filled */
    float *k_cache;      /* (L, NH, HS, key_stride): keys, transposed: a row holds one channel of every position */
    int key_stride;      /* n_ctx rounded up and padded, so that rows are not a power of two apart (cache sets) */
    float *v_cache;      /* (L, NH, n_ctx, HS): values, a row per position */
    /* activations of one batch of up to MAX_BATCH positions */
    float *x;            /* (MAX_BATCH, C) the residual stream */
    float *xn;           /* (MAX_BATCH, C) layer-norm output */
    float *qkv;          /* (MAX_BATCH, 3C) queries, keys, values */
    float *attn;         /* (MAX_BATCH, C) attention output, heads side by side */
    float *fc;           /* (MAX_BATCH, 4C) MLP hidden layer */
    float *in_t;         /* (4C, MAX_BATCH) a matmul's input, transposed */
    float *scores;       /* (threads, n_ctx) attention weights, scratch per thread */
    float *logits;       /* (V) of the last position */
    ThreadPool pool;
};

gpt2_context *gpt2_context_new(const gpt2_model *m, int n_ctx, int n_threads, char *err, size_t errlen) {
    const gpt2_config *c = &m->config;
    if (n_ctx == 0) n_ctx = c->n_ctx;
    if (n_ctx < 1 || n_ctx > c->n_ctx) {
        fail(err, errlen, "context size %d is outside [1, %d] (the model's positions)", n_ctx, c->n_ctx);
        return NULL;
    }
    if (n_threads == 0) n_threads = available_cores();
    if (n_threads < 1 || n_threads > 1024) { fail(err, errlen, "thread count %d is outside [1, 1024]", n_threads); return NULL; }
    gpt2_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) { fail(err, errlen, "out of memory"); return NULL; }
    ctx->model = m;
    ctx->n_ctx = n_ctx;
    ctx->key_stride = (n_ctx + 15) / 16 * 16 + 16;
    size_t C = (size_t)c->n_embd, cache = (size_t)c->n_layer * (size_t)n_ctx * C;  /* sizes capped at load */
    ctx->k_cache = malloc((size_t)c->n_layer * C * (size_t)ctx->key_stride * sizeof(float));
    ctx->v_cache = malloc(cache * sizeof(float));
    ctx->x = malloc(MAX_BATCH * C * sizeof(float));
    ctx->xn = malloc(MAX_BATCH * C * sizeof(float));
    ctx->qkv = malloc(MAX_BATCH * 3 * C * sizeof(float));
    ctx->attn = malloc(MAX_BATCH * C * sizeof(float));
    ctx->fc = malloc(MAX_BATCH * 4 * C * sizeof(float));
    ctx->in_t = malloc(MAX_BATCH * 4 * C * sizeof(float));
    ctx->scores = malloc((size_t)n_threads * (size_t)n_ctx * sizeof(float));
    ctx->logits = malloc((size_t)c->vocab_size * sizeof(float));
    if (!ctx->k_cache || !ctx->v_cache || !ctx->x || !ctx->xn || !ctx->qkv || !ctx->attn || !ctx->fc || !ctx->in_t || !ctx->scores ||
        !ctx->logits) {
        fail(err, errlen, "out of memory for a context of %d positions (the KV cache needs %.1f MB)", n_ctx,
             2.0 * cache * sizeof(float) / 1e6);
        ctx->pool.n_threads = 0;
        gpt2_context_free(ctx);
        return NULL;
    }
    if (pool_init(&ctx->pool, n_threads, err, errlen)) { gpt2_context_free(ctx); return NULL; }
    return ctx;
}

void gpt2_context_free(gpt2_context *ctx) {
    if (!ctx) return;
    if (ctx->pool.n_threads) pool_destroy(&ctx->pool);
    free(ctx->k_cache); free(ctx->v_cache);
    free(ctx->x); free(ctx->xn); free(ctx->qkv); free(ctx->attn); free(ctx->fc); free(ctx->in_t);
    free(ctx->scores); free(ctx->logits);
    free(ctx);
}

int gpt2_context_threads(const gpt2_context *ctx) { return ctx->pool.n_threads; }
int gpt2_context_size(const gpt2_context *ctx) { return ctx->n_ctx; }
int gpt2_position(const gpt2_context *ctx) { return ctx->pos; }
void gpt2_rewind(gpt2_context *ctx, int position) {
    if (position >= 0 && position < ctx->pos) ctx->pos = position;
}

/* Causal self-attention for one layer: every (position, head) pair is one work item. */
typedef struct {
    gpt2_context *ctx;
    const float *k_cache, *v_cache;  /* this layer's (NH, HS, key_stride) and (NH, n_ctx, HS) */
    int pos0;                        /* absolute position of the batch's first row */
    int T;                           /* rows in the batch */
} Attention;

/* scores[j] = q·k_j for `blocks` vectors of keys from j: keys are stored transposed, so each
 * channel d of q is broadcast against VEC_WIDTH keys at once, and nothing needs reducing. */
static ALWAYS_INLINE void attention_scores(float *scores, const float *q, const float *keys, int stride, int HS, int j,
                                           const int blocks) {
    vec acc[4];
    for (int b = 0; b < blocks; b++) acc[b] = vec_zero();
    for (int d = 0; d < HS; d++) {
        vec qd = vec_set1(q[d]);
        for (int b = 0; b < blocks; b++) acc[b] = vec_fma(qd, vec_load(keys + (size_t)d * stride + j + b * VEC_WIDTH), acc[b]);
    }
    for (int b = 0; b < blocks; b++) vec_store(scores + j + b * VEC_WIDTH, acc[b]);
}

/* out[i] = Σ_j weights[j]·v_j[i] for `blocks` vectors of channels from i: the sums stay in
 * registers across all the keys (summed through memory, each key would wait on the last). */
static ALWAYS_INLINE void attention_values(float *out, const float *weights, const float *values, int n_keys, int HS, int i,
                                           const int blocks) {
    vec acc[4];
    for (int b = 0; b < blocks; b++) acc[b] = vec_zero();
    for (int j = 0; j < n_keys; j++) {
        vec wj = vec_set1(weights[j]);
        for (int b = 0; b < blocks; b++) acc[b] = vec_fma(wj, vec_load(values + (size_t)j * HS + i + b * VEC_WIDTH), acc[b]);
    }
    for (int b = 0; b < blocks; b++) vec_store(out + i + b * VEC_WIDTH, acc[b]);
}

static void attention_task(void *arg, int begin, int end, int thread) {
    const Attention *a = arg;
    const gpt2_context *ctx = a->ctx;
    const gpt2_config *c = &ctx->model->config;
    const int C = c->n_embd, NH = c->n_head, HS = C / NH, n_ctx = ctx->n_ctx;
    const float scale = 1.0f / sqrtf((float)HS);
    float *scores = ctx->scores + (size_t)thread * n_ctx;
    for (int item = begin; item < end; item++) {
        /* head-major: a thread takes consecutive positions of one head, whose keys and values
         * then stay in cache from one query to the next */
        int h = item / a->T, t = item % a->T, n_keys = a->pos0 + t + 1;  /* position pos0 + t sees 0..itself */
        const float *q = ctx->qkv + (size_t)t * 3 * C + h * HS;
        const float *keys = a->k_cache + (size_t)h * HS * ctx->key_stride;
        const float *values = a->v_cache + (size_t)h * n_ctx * HS;
        float *out = ctx->attn + (size_t)t * C + h * HS;
        /* scores = softmax(q·kᵀ / √HS), subtracting the max so exp cannot overflow */
        int j = 0;
        for (; j + 4 * VEC_WIDTH <= n_keys; j += 4 * VEC_WIDTH) attention_scores(scores, q, keys, ctx->key_stride, HS, j, 4);
        for (; j + VEC_WIDTH <= n_keys; j += VEC_WIDTH) attention_scores(scores, q, keys, ctx->key_stride, HS, j, 1);
        for (; j < n_keys; j++) {
            float s = 0.0f;
            for (int d = 0; d < HS; d++) s += q[d] * keys[(size_t)d * ctx->key_stride + j];
            scores[j] = s;
        }
        float max = -INFINITY, sum = 0.0f;
        for (j = 0; j < n_keys; j++) {
            scores[j] *= scale;
            if (scores[j] > max) max = scores[j];
        }
        for (j = 0; j < n_keys; j++) scores[j] = exp_approx(scores[j] - max);
        for (j = 0; j < n_keys; j++) sum += scores[j];
        /* out = Σ_j softmax_j · v_j */
        float inv_sum = 1.0f / sum;
        for (j = 0; j < n_keys; j++) scores[j] *= inv_sum;
        int i = 0;
        for (; i + 4 * VEC_WIDTH <= HS; i += 4 * VEC_WIDTH) attention_values(out, scores, values, n_keys, HS, i, 4);
        for (; i + VEC_WIDTH <= HS; i += VEC_WIDTH) attention_values(out, scores, values, n_keys, HS, i, 1);
        for (; i < HS; i++) {
            float s = 0.0f;
            for (j = 0; j < n_keys; j++) s += scores[j] * values[(size_t)j * HS + i];
            out[i] = s;
        }
    }
}

/* Runs T ≤ MAX_BATCH tokens at positions pos..pos+T-1 through the model. Writes the logits of
 * every position into all_logits (T, V) if given, and those of the last into ctx->logits. */
static void forward_batch(gpt2_context *ctx, const int *tokens, int T, float *all_logits) {
    const gpt2_model *m = ctx->model;
    const gpt2_config *c = &m->config;
    const int C = c->n_embd, NH = c->n_head, HS = C / NH, V = c->vocab_size, pos = ctx->pos;
    ThreadPool *pool = &ctx->pool;

    /* x = wte[token] + wpe[position] */
    for (int t = 0; t < T; t++) {
        const float *te = m->wte + (size_t)tokens[t] * C, *pe = m->wpe + (size_t)(pos + t) * C;
        for (int i = 0; i < C; i++) ctx->x[(size_t)t * C + i] = te[i] + pe[i];
    }

    for (int l = 0; l < c->n_layer; l++) {
        const float *const *w = m->blocks[l].w;
        float *k_cache = ctx->k_cache + (size_t)l * C * ctx->key_stride;  /* (NH, HS, key_stride) */
        float *v_cache = ctx->v_cache + (size_t)l * ctx->n_ctx * C;

        /* attention: x += proj(attention(ln_1(x))) */
        layernorm(ctx->xn, ctx->x, w[LN1_W], w[LN1_B], T, C, c->ln_eps);
        matmul(pool, ctx->in_t, ctx->qkv, ctx->xn, w[QKV_W], w[QKV_B], T, C, 3 * C, STORE);
        /* append this batch's keys (transposed) and values to the cache */
        for (int h = 0; h < NH; h++)
            for (int d = 0; d < HS; d++) {
                float *row = k_cache + ((size_t)h * HS + d) * ctx->key_stride + pos;
                for (int t = 0; t < T; t++) row[t] = ctx->qkv[(size_t)t * 3 * C + C + h * HS + d];
            }
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++)
                memcpy(v_cache + ((size_t)h * ctx->n_ctx + pos + t) * HS, ctx->qkv + (size_t)t * 3 * C + 2 * C + h * HS,
                       HS * sizeof(float));
        Attention att = {ctx, k_cache, v_cache, pos, T};
        pool_run(pool, attention_task, &att, T * NH, pool_chunk(pool, T * NH, 1));
        matmul(pool, ctx->in_t, ctx->x, ctx->attn, w[ATTN_PROJ_W], w[ATTN_PROJ_B], T, C, C, ACCUMULATE);

        /* MLP: x += proj(gelu(fc(ln_2(x)))) */
        layernorm(ctx->xn, ctx->x, w[LN2_W], w[LN2_B], T, C, c->ln_eps);
        matmul(pool, ctx->in_t, ctx->fc, ctx->xn, w[FC_W], w[FC_B], T, C, 4 * C, STORE_GELU);
        matmul(pool, ctx->in_t, ctx->x, ctx->fc, w[FC_PROJ_W], w[FC_PROJ_B], T, 4 * C, C, ACCUMULATE);
    }

    /* logits = ln_f(x) · wteᵀ, for every position only when asked (the LM head is the
     * biggest matmul: V rows) */
    if (all_logits) {
        layernorm(ctx->xn, ctx->x, m->lnf_w, m->lnf_b, T, C, c->ln_eps);
        matmul(pool, ctx->in_t, all_logits, ctx->xn, m->wte, NULL, T, C, V, STORE);
        memcpy(ctx->logits, all_logits + (size_t)(T - 1) * V, (size_t)V * sizeof(float));
    } else {
        layernorm(ctx->xn, ctx->x + (size_t)(T - 1) * C, m->lnf_w, m->lnf_b, 1, C, c->ln_eps);
        matmul(pool, ctx->in_t, ctx->logits, ctx->xn, m->wte, NULL, 1, C, V, STORE);
    }
    ctx->pos += T;
}

const float *gpt2_forward(gpt2_context *ctx, const int *tokens, int n, float *all_logits) {
    const int V = ctx->model->config.vocab_size;
    if (n < 1 || n > ctx->n_ctx - ctx->pos) return NULL;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) return NULL;
    for (int done = 0; done < n; done += MAX_BATCH) {
        int T = n - done < MAX_BATCH ? n - done : MAX_BATCH;
        forward_batch(ctx, tokens + done, T, all_logits ? all_logits + (size_t)done * V : NULL);
    }
    return ctx->logits;
}

/* ============================================================================================
 * Sampling: temperature → top-k → softmax → min-p → top-p → draw
 * ========================================================================================== */

typedef struct { float value; int id; } Candidate;  /* value: a logit, then a probability */

struct gpt2_sampler {
    gpt2_sampling params;
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
    if (!(p->temperature >= 0.0f && isfinite(p->temperature))) { fail(err, errlen, "temperature %g must be finite and >= 0", (double)p->temperature); return NULL; }
    if (p->top_k < 0) { fail(err, errlen, "top-k %d must be >= 0", p->top_k); return NULL; }
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) { fail(err, errlen, "top-p %g must be in (0, 1]", (double)p->top_p); return NULL; }
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f)) { fail(err, errlen, "min-p %g must be in [0, 1]", (double)p->min_p); return NULL; }
    gpt2_sampler *s = calloc(1, sizeof *s);
    if (!s || !(s->candidates = malloc((size_t)m->config.vocab_size * sizeof *s->candidates))) {
        free(s);
        fail(err, errlen, "out of memory");
        return NULL;
    }
    s->params = *p;
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

/* The first of the largest logits; NaN counts as impossible. */
static int argmax_logit(const float *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best] || logits[best] != logits[best]) best = i;
    return best;
}

int gpt2_sample(gpt2_sampler *s, const float *logits) {
    const gpt2_sampling *p = &s->params;
    const int V = s->vocab_size;
    if (p->temperature == 0.0f) return argmax_logit(logits, V);
    /* Logits as values the sorting and softmax below can order: a damaged model may give NaN
     * (impossible: -inf) or infinities (the largest finite floats). */
    Candidate *cand = s->candidates;
    int n = V;
    float max = -INFINITY;
    for (int i = 0; i < V; i++) {
        float v = logits[i] / p->temperature;
        v = v != v ? -INFINITY : v > FLT_MAX ? FLT_MAX : v < -FLT_MAX ? -INFINITY : v;
        cand[i] = (Candidate){v, i};
        if (v > max) max = v;
    }
    if (max == -INFINITY) return argmax_logit(logits, V);  /* nothing is possible: no draw */
    if (p->top_k > 0 && p->top_k < n) {
        select_top_k(cand, n, p->top_k);
        n = p->top_k;
    }
    int possible = 0;
    for (int i = 0; i < n; i++) if (cand[i].value > -INFINITY) cand[possible++] = cand[i];
    n = possible;
    /* softmax over the candidates (top-k kept the largest, so max is still theirs) */
    double sum = 0.0;
    for (int i = 0; i < n; i++) { cand[i].value = exp_approx(cand[i].value - max); sum += cand[i].value; }
    for (int i = 0; i < n; i++) cand[i].value = (float)(cand[i].value / sum);
    /* min-p: drop what is less likely than min_p × the most likely (whose probability is 1/sum) */
    if (p->min_p > 0.0f) {
        float floor_p = p->min_p * (float)(1.0 / sum);
        int kept = 0;
        for (int i = 0; i < n; i++) if (cand[i].value >= floor_p) cand[kept++] = cand[i];
        n = kept;
    }
    if (p->top_p < 1.0f) {
        /* Only tokens with probability >= (1 - top_p) / (n - 1) can be in the nucleus: if all
         * the others were smaller, they could not add up to 1 - top_p. Sort just those. */
        float cutoff = n > 1 ? (1.0f - p->top_p) / (float)(n - 1) : 0.0f;
        int kept = 0;
        for (int i = 0; i < n; i++) if (cand[i].value >= cutoff) cand[kept++] = cand[i];
        n = kept;
        qsort(cand, (size_t)n, sizeof *cand, by_value_desc);
        double cum = 0.0;
        for (int i = 0; i < n; i++) {
            cum += cand[i].value;
            if (cum >= p->top_p) { n = i + 1; break; }
        }
    } else {
        qsort(cand, (size_t)n, sizeof *cand, by_value_desc);  /* fixes the order the draw walks */
    }
    double mass = 0.0;
    for (int i = 0; i < n; i++) mass += cand[i].value;
    double r = random_uniform(&s->rng) * mass, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += cand[i].value;
        if (r < cum) return cand[i].id;
    }
    return cand[n - 1].id;  /* rounding left r at the very top */
}

/* ============================================================================================
 * Generation: prompt as one batch, then one token at a time from the KV cache
 * ========================================================================================== */

/* Passes token bytes on without splitting a UTF-8 character across calls. */
typedef struct {
    char *buf;       /* held-back bytes followed by the new token's */
    size_t cap;
    size_t held;     /* bytes of an incomplete character waiting for the next token */
    gpt2_text_fn fn;
    void *user;
} TextStream;

static int stream_put(TextStream *s, const char *bytes, size_t len) {
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
        int token = gpt2_sample(sampler, logits);
        if (token == m->config.eot_token && !ignore_eot) { st.stop = GPT2_STOP_EOT; break; }
        size_t len = 0;
        const char *bytes = gpt2_token_bytes(m, token, &len);
        st.n_generated++;
        int rc = stream_put(&text, bytes, len);
        if (rc) { st.stop = GPT2_STOP_CALLBACK; break; }
        if (max_new_tokens >= 0 && st.n_generated >= max_new_tokens) { st.stop = GPT2_STOP_LENGTH; break; }
        /* the last position's logits predicted this token; it cannot be fed back */
        if (ctx->pos >= ctx->n_ctx) { st.stop = GPT2_STOP_CONTEXT; break; }
        logits = gpt2_forward(ctx, &token, 1, NULL);
    }
    if (stream_finish(&text) && st.stop != GPT2_STOP_CALLBACK) st.stop = GPT2_STOP_CALLBACK;
    st.decode_ms = now_ms() - t0;
    if (stats) *stats = st;
    return st.n_generated;
}

/* ============================================================================================
 * The command-line tool
 * ========================================================================================== */
#ifndef GPT2_NO_MAIN

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("gpt2: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void usage(FILE *out) {
    fputs(
        "usage: gpt2 MODEL.bin [PROMPT] [options]\n"
        "Generates a continuation of PROMPT (default: none, start from <|endoftext|>).\n"
        "\n"
        "  -n, --n-predict N    tokens to generate (default 256)\n"
        "  -t, --temp T         temperature, 0 = greedy (default 0.8)\n"
        "  -k, --top-k K        sample from the K most likely tokens, 0 = all (default 40)\n"
        "  -p, --top-p P        sample from the smallest set with probability >= P, in (0, 1] (default 0.95)\n"
        "      --min-p P        drop tokens less likely than P x the most likely, in [0, 1] (default 0)\n"
        "  -s, --seed S         random seed (default: from the clock, printed in the stats)\n"
        "      --threads N      worker threads (default: the available cores)\n"
        "  -f, --file FILE      read the prompt from FILE (- = stdin)\n"
        "      --ignore-eos     keep going after <|endoftext|>\n"
        "      --allow-special  '<|endoftext|>' in the prompt is the special token, not text\n"
        "  -q, --quiet          no stats on stderr\n"
        "  -h, --help           this help\n"
        "\n"
        "Machine-readable modes:\n"
        "      --ids A,B,C      the prompt as token ids instead of text\n"
        "      --logits OUT     write the prompt's logits, float32 [T][vocab], to OUT (with -n 0, stdout stays empty)\n"
        "      --tokenize FILE  print the token ids of FILE's bytes (- = stdin) and exit\n"
        "      --bench          measure load time, prefill and decode speed, and memory\n",
        out);
}

/* Strict number parsing: the whole argument must be a number within [lo, hi]. */
static long parse_long(const char *flag, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) die("%s expects a whole number in [%ld, %ld], got '%s'", flag, lo, hi, s);
    return v;
}

static float parse_float(const char *flag, const char *s, float lo, float hi, bool lo_open, const char *range) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi || (lo_open && v == lo))
        die("%s expects a number in %s, got '%s'", flag, range, s);
    return v;
}

static uint64_t parse_seed(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *end || errno) die("-s expects a whole number in [0, 2^64), got '%s'", s);
    return v;
}

/* Reads a whole file ("-" = stdin) into a malloc'd buffer. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) die("%s: out of memory", path);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *grown = realloc(buf, cap *= 2);
        if (!grown) free(buf);
        buf = grown;
    }
    if (ferror(f)) die("%s: read error", path);
    if (f != stdin) fclose(f);
    *len = n;
    return buf;
}

/* Offset of the first byte that is not part of well-formed UTF-8, or -1 if there is none
 * (the tokenizer's decoder knows the rules: no overlongs, surrogates or code points past U+10FFFF). */
static long utf8_invalid_at(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = s[i] < 0x80 ? 1 : utf8_decode(s + i, n - i, &cp);
        if (!len) return (long)i;
        i += len;
    }
    return -1;
}

static int *parse_ids(const char *list, int vocab_size, int n_ctx, int *n_out) {
    int n = 0, cap = 16;
    int *ids = malloc(cap * sizeof *ids);
    for (const char *s = list; ids;) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        const char *problem = end == s || errno || (*end && *end != ',') ? "expects comma-separated token ids"
                              : v < 0 || v >= vocab_size                  ? "has an id outside the vocabulary"
                              : n == n_ctx                                ? "has more ids than the model's context"
                                                                          : NULL;
        if (problem) {
            free(ids);
            die("--ids %s (vocabulary [0, %d), context %d): '%.*s'", problem, vocab_size, n_ctx, (int)(end - s + (end == s)), s);
        }
        if (n == cap) {
            int *grown = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!grown) free(ids);
            ids = grown;
            if (!ids) break;
        }
        ids[n++] = (int)v;
        if (!*end) break;
        s = end + 1;
    }
    if (!ids) die("out of memory");
    *n_out = n;
    return ids;
}

static int print_text(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;  /* Linux reports kilobytes */
}

static double parameter_count(const gpt2_config *c) {
    double n = 0;
    for (int i = 0; i < gpt2_tensor_count(c); i++) {
        int rows = 0, cols = 0;
        gpt2_tensor_info(c, i, NULL, 0, &rows, &cols);
        n += (double)rows * cols;
    }
    return n;
}

/* --bench: prefill a prompt of n_prompt tokens, then decode n_decode tokens greedily. */
static void bench(gpt2_model *model, const char *path, const int *prompt, int n_prompt, int n_decode, int threads) {
    const gpt2_config *c = gpt2_model_config(model);
    if (n_prompt + n_decode > c->n_ctx) n_decode = c->n_ctx - n_prompt;
    char err[GPT2_ERR_MAX];
    gpt2_context *ctx = gpt2_context_new(model, n_prompt + n_decode, threads, err, sizeof err);
    gpt2_sampler *greedy = gpt2_sampler_new(model, &(gpt2_sampling){.top_p = 1.0f}, err, sizeof err);
    if (!ctx || !greedy) die("%s", err);
    gpt2_forward(ctx, prompt, 1, NULL);  /* warm-up: fault the mapped weights in */
    gpt2_rewind(ctx, 0);
    gpt2_stats st;
    gpt2_generate(ctx, greedy, prompt, n_prompt, n_decode, 1, NULL, NULL, &st);
    size_t kv = sizeof(float) * (size_t)c->n_layer * (size_t)c->n_embd * (size_t)(ctx->key_stride + ctx->n_ctx);
    printf("model    %s: %d layers, %d heads, %d channels, ctx %d, vocab %d, %.1fM parameters, %.1f MB (f32)\n", path,
           c->n_layer, c->n_head, c->n_embd, c->n_ctx, c->vocab_size, parameter_count(c) / 1e6, gpt2_model_file_size(model) / 1e6);
    printf("machine  %d threads (%d cores available), %s kernels\n", gpt2_context_threads(ctx), available_cores(), SIMD_NAME);
    printf("load     %.3f ms\n", gpt2_model_load_ms(model));
    printf("prefill  %d tokens in %.1f ms: %.1f tok/s\n", st.n_prompt, st.prefill_ms, st.n_prompt / (st.prefill_ms / 1e3));
    printf("decode   %d tokens in %.1f ms: %.2f tok/s (%.2f ms/token)\n", st.n_generated, st.decode_ms,
           st.n_generated / (st.decode_ms / 1e3), st.decode_ms / (st.n_generated ? st.n_generated : 1));
    printf("memory   peak RSS %.1f MB, of which KV cache %.1f MB (weights are mapped, counted as touched)\n", peak_rss_mb(), kv / 1e6);
    gpt2_sampler_free(greedy);
    gpt2_context_free(ctx);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt_arg = NULL, *prompt_file = NULL, *ids_arg = NULL, *logits_path = NULL,
               *tokenize_path = NULL;
    int n_predict = 256, threads = 0;
    bool seed_given = false, ignore_eos = false, allow_special = false, quiet = false, run_bench = false, n_given = false;
    gpt2_sampling sp = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.0f};

    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || a[1] == '\0') {  /* positional ("-" alone is one too) */
            if (!model_path) model_path = a;
            else if (!prompt_arg) prompt_arg = a;
            else die("unexpected argument '%s' (quote the prompt; see --help)", a);
            continue;
        }
        if (!strcmp(a, "--")) { options_done = true; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--ignore-eos")) { ignore_eos = true; continue; }
        if (!strcmp(a, "--allow-special")) { allow_special = true; continue; }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { quiet = true; continue; }
        if (!strcmp(a, "--bench")) { run_bench = true; continue; }
        /* the rest take a value: "-n 5", "--n-predict 5" or "--n-predict=5" */
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
        const char *v = eq ? eq + 1 : NULL;
#define IS(flag) (strlen(flag) == name_len && !strncmp(a, flag, name_len))
        if (!(IS("-n") || IS("--n-predict") || IS("-t") || IS("--temp") || IS("-k") || IS("--top-k") || IS("-p") ||
              IS("--top-p") || IS("--min-p") || IS("-s") || IS("--seed") || IS("--threads") || IS("-f") ||
              IS("--file") || IS("--ids") || IS("--logits") || IS("--tokenize")))
            die("unknown option '%s' (see --help)", a);
        if (!v) {
            if (i + 1 >= argc) die("%s needs a value", a);
            v = argv[++i];
        }
        if (IS("-n") || IS("--n-predict")) { n_predict = (int)parse_long(a, v, 0, 1 << 30); n_given = true; }
        else if (IS("-t") || IS("--temp")) sp.temperature = parse_float(a, v, 0.0f, 1e6f, false, "[0, 1e6]");
        else if (IS("-k") || IS("--top-k")) sp.top_k = (int)parse_long(a, v, 0, 1 << 30);
        else if (IS("-p") || IS("--top-p")) sp.top_p = parse_float(a, v, 0.0f, 1.0f, true, "(0, 1]");
        else if (IS("--min-p")) sp.min_p = parse_float(a, v, 0.0f, 1.0f, false, "[0, 1]");
        else if (IS("-s") || IS("--seed")) { sp.seed = parse_seed(v); seed_given = true; }
        else if (IS("--threads")) threads = (int)parse_long(a, v, 1, 1024);
        else if (IS("-f") || IS("--file")) prompt_file = v;
        else if (IS("--ids")) ids_arg = v;
        else if (IS("--logits")) logits_path = v;
        else if (IS("--tokenize")) tokenize_path = v;
#undef IS
    }
    if (!model_path) { usage(stderr); return 2; }
    if ((prompt_arg != NULL) + (prompt_file != NULL) + (ids_arg != NULL) > 1)
        die("give the prompt one way: as an argument, with -f, or with --ids");
    if (!seed_given) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(now_ms() * 1e3);

    char err[GPT2_ERR_MAX];
    gpt2_model *model = gpt2_load(model_path, err, sizeof err);
    if (!model) die("%s", err);
    const gpt2_config *c = gpt2_model_config(model);

    if (tokenize_path) {
        size_t len, n;
        char *text = read_all(tokenize_path, &len);
        int *ids = gpt2_tokenize(model, text, len, allow_special ? GPT2_ALLOW_SPECIAL : 0, &n);
        if (!ids) die("out of memory");
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
        free(ids); free(text); gpt2_free(model);
        return 0;
    }

    /* the prompt, as token ids */
    char *text = NULL;
    size_t text_len = 0;
    int *tokens = NULL, n_tokens = 0;
    if (ids_arg) {
        tokens = parse_ids(ids_arg, c->vocab_size, c->n_ctx, &n_tokens);
    } else {
        if (prompt_file) text = read_all(prompt_file, &text_len);
        else if (prompt_arg) { text_len = strlen(prompt_arg); text = malloc(text_len + 1); if (text) memcpy(text, prompt_arg, text_len + 1); }
        else text = calloc(1, 1);
        if (!text) die("out of memory");
        long bad = utf8_invalid_at((const unsigned char *)text, text_len);
        if (bad >= 0) die("the prompt is not valid UTF-8 (byte 0x%02x at offset %ld)", (unsigned char)text[bad], bad);
        size_t n;
        tokens = gpt2_tokenize(model, text, text_len, allow_special ? GPT2_ALLOW_SPECIAL : 0, &n);
        if (!tokens) die("out of memory");
        if (n > (size_t)c->n_ctx) die("the prompt is %zu tokens, longer than the model's context of %d", n, c->n_ctx);
        n_tokens = (int)n;
    }
    if (n_tokens == 0) {  /* nothing to condition on: start a new document, as GPT-2 was trained */
        int *eot = realloc(tokens, sizeof *eot);
        if (!eot) die("out of memory");
        tokens = eot;
        tokens[0] = c->eot_token;
        n_tokens = 1;
    }

    if (run_bench) {
        if (!prompt_arg && !prompt_file && !ids_arg) {  /* no prompt given: 128 arbitrary tokens */
            n_tokens = c->n_ctx < 256 ? c->n_ctx / 2 : 128;
            int *ids = realloc(tokens, (size_t)n_tokens * sizeof *ids);
            if (!ids) die("out of memory");
            tokens = ids;
            for (int i = 0; i < n_tokens; i++) tokens[i] = (int)((i * 7919L + 13) % c->vocab_size);
        }
        bench(model, model_path, tokens, n_tokens, n_given ? n_predict : 128, threads);
        free(tokens); free(text); gpt2_free(model);
        return 0;
    }

    int ctx_size = n_tokens + n_predict < c->n_ctx ? n_tokens + n_predict : c->n_ctx;
    gpt2_context *ctx = gpt2_context_new(model, ctx_size, threads, err, sizeof err);
    if (!ctx) die("%s", err);

    if (logits_path) {
        size_t count = (size_t)n_tokens * (size_t)c->vocab_size;
        float *logits = malloc(count * sizeof *logits);
        if (!logits) die("out of memory for %d x %d logits", n_tokens, c->vocab_size);
        gpt2_forward(ctx, tokens, n_tokens, logits);
        FILE *f = fopen(logits_path, "wb");
        if (!f) die("%s: %s", logits_path, strerror(errno));
        if (fwrite(logits, sizeof *logits, count, f) != count || fclose(f) != 0) die("%s: write failed", logits_path);
        free(logits);
        gpt2_rewind(ctx, 0);
        if (n_predict == 0) {
            gpt2_context_free(ctx); free(tokens); free(text); gpt2_free(model);
            return 0;
        }
    }

    gpt2_sampler *sampler = gpt2_sampler_new(model, &sp, err, sizeof err);
    if (!sampler) die("%s", err);
    if (text && !logits_path) print_text(NULL, text, text_len);  /* echo the prompt as given */
    gpt2_stats st;
    gpt2_generate(ctx, sampler, tokens, n_tokens, n_predict, ignore_eos, print_text, NULL, &st);
    putchar('\n');
    fflush(stdout);
    if (st.stop == GPT2_STOP_CONTEXT) fprintf(stderr, "gpt2: the context is full (%d positions); stopped\n", ctx_size);
    if (!quiet)
        fprintf(stderr, "load %.2f ms | prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s | %d threads, %s | seed %llu\n",
                gpt2_model_load_ms(model), st.n_prompt, st.n_prompt / (st.prefill_ms / 1e3), st.n_generated,
                st.n_generated / (st.decode_ms > 0 ? st.decode_ms / 1e3 : 1), gpt2_context_threads(ctx), SIMD_NAME,
                (unsigned long long)sp.seed);
    gpt2_sampler_free(sampler);
    gpt2_context_free(ctx);
    free(tokens); free(text);
    gpt2_free(model);
    return 0;
}
#endif /* GPT2_NO_MAIN */
