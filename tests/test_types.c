/* Weight types: the conversions, and the models they make against the f32 reference.
 *
 *   test_types [FIXTURE_DIR MODEL.bin ...] [--wide MODEL.bin] SCRATCH_DIR
 *
 * (Without models, the conversions and the matmul paths alone.)
 * - f16: every one of the 65536 halves widens and narrows back to itself; narrowing rounds to
 *   nearest even (checked against the compiler's _Float16 where it has one, and against the
 *   definition); bf16 likewise against the definition;
 * - q8_0 and q4_0: quantize → dequantize stays within half a step of each block's grid (a
 *   grid value comes back exactly), rows whose length is not a multiple of 32 included;
 * - for each fixture, the model written in each type (through the writer, from the f32 file):
 *   logits at every position, in batch and token by token, with every kernel set, against the
 *   nanoGPT references (per-type bounds printed), and every kernel set against the plain-C
 *   one for the same type and path;
 * - every matmul path of every kernel set against plain C, per type, at GPT-2's widths (the amx
 *   set on the CPU's AMX, or through an emulation of its instructions where AVX-512 BF16 is);
 * - with --wide, a random model with GPT-2-sized rows: every kernel set against plain C for
 *   each type, and thread counts bit for bit (test_wide);
 * - damaged quantized files are refused. */
/* AMX: the CPU's instructions where it has them, else an emulation (the tile registers as
 * memory, shaped by the configuration as the CPU shapes them; tdpbf16ps as its definition:
 * C[i][j] += Σ_k A[i][2k]·B[k][2j] + A[i][2k+1]·B[k][2j+1], bf16 pairs along A's rows and B's
 * columns, f32 sums; tdpbssd and tdpbusd: C[i][j] += Σ_k A[i][k]·B[k/4][4j + k%4], bytes signed
 * or A's unsigned, int32 sums), so that the "amx" kernel set's layouts, loops and edges are
 * checked against plain C like every other set's, on any machine with AVX-512 BF16. (The
 * emulation is declared here and defined after gpt2.c's headers.) */
#if defined(__x86_64__) && !defined(GPT2_SCALAR)
typedef struct {
    unsigned char tile[8][16][64];
    int rows[8], bytes[8];  /* the configuration's shape of each */
} AmxTiles;
static int amx_real;  /* set by AMX_USABLE: the CPU has AMX */
static void amx_config(AmxTiles *s, const void *config);
static void amx_load(AmxTiles *s, int t, const void *p, unsigned long stride);
static void amx_store(AmxTiles *s, int t, void *p, unsigned long stride);
static void amx_dp_bf16(AmxTiles *s, int c, int a, int b);
static void amx_dp_int8(AmxTiles *s, int c, int a, int b, int a_signed);
#define AMX_EITHER(real, emulated) do { if (amx_real) real; else emulated; } while (0)
#define AMX_STATE AmxTiles amx_tiles
#define AMX_CONFIG(config) AMX_EITHER(_tile_loadconfig(config), amx_config(&amx_tiles, config))
#define AMX_RELEASE() AMX_EITHER(_tile_release(), (void)0)
#define AMX_ZERO(t) AMX_EITHER(_tile_zero(t), memset(amx_tiles.tile[t], 0, sizeof amx_tiles.tile[t]))
#define AMX_LOAD(t, p, stride) AMX_EITHER(_tile_loadd(t, p, stride), amx_load(&amx_tiles, t, p, stride))
#define AMX_STORE(t, p, stride) AMX_EITHER(_tile_stored(t, p, stride), amx_store(&amx_tiles, t, p, stride))
#define AMX_DPBF16PS(c, a, b) AMX_EITHER(_tile_dpbf16ps(c, a, b), amx_dp_bf16(&amx_tiles, c, a, b))
#define AMX_DPBSSD(c, a, b) AMX_EITHER(_tile_dpbssd(c, a, b), amx_dp_int8(&amx_tiles, c, a, b, 1))
#define AMX_DPBUSD(c, a, b) AMX_EITHER(_tile_dpbusd(c, a, b), amx_dp_int8(&amx_tiles, c, a, b, 0))
#define AMX_USABLE() ((amx_real = amx_granted()), amx_self_check())
#endif

#include "../gpt2.c"
#if NATIVE_ISA == ISA_SCALAR  /* a plain-C build: its own table is the plain C one */
#define kernels_table_scalar kernels_table
#endif
#include "../export/json.h"
#include "same_kernels.h"

#if defined(X86_VARIANTS)
/* palette 1's layout: 16 bytes, then each tile's bytes a row (16 bits) and rows (8 bits) */
static void amx_config(AmxTiles *s, const void *config) {
    const unsigned char *c = config;
    for (int t = 0; t < 8; t++) s->bytes[t] = c[16 + 2 * t] | c[17 + 2 * t] << 8, s->rows[t] = c[48 + t];
}
/* the configured rows and bytes; the rest of the tile zero */
static void amx_load(AmxTiles *s, int t, const void *p, unsigned long stride) {
    memset(s->tile[t], 0, sizeof s->tile[t]);
    for (int r = 0; r < s->rows[t]; r++) memcpy(s->tile[t][r], (const unsigned char *)p + r * stride, (size_t)s->bytes[t]);
}
static void amx_store(AmxTiles *s, int t, void *p, unsigned long stride) {
    for (int r = 0; r < s->rows[t]; r++) memcpy((unsigned char *)p + r * stride, s->tile[t][r], (size_t)s->bytes[t]);
}
static float amx_bf16(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return bf16_to_f32(h);
}
/* (A's and B's values widened first, so the loops over j vectorize; each sum C[i][j] still
 * takes its products in the instruction's order. Its arrays are its own and in bounds by
 * construction: unchecked and optimized in the sanitizers' build too, where it would take most of
 * the time.) */
#if defined(__clang__)
#define EMULATION __attribute__((no_sanitize("address", "undefined")))
#else
#define EMULATION __attribute__((no_sanitize("address", "undefined"), optimize("O3")))
#endif
EMULATION static void amx_dp_bf16(AmxTiles *s, int c, int a, int b) {
    const int K = s->bytes[a] / 2, N = s->bytes[c] / 4;
    float A[16][32], B[32][16];
    for (int i = 0; i < 16; i++)
        for (int k = 0; k < K; k++) A[i][k] = amx_bf16(&s->tile[a][i][2 * k]);
    for (int k = 0; k < K; k++)
        for (int j = 0; j < 16; j++) B[k][j] = amx_bf16(&s->tile[b][k / 2][4 * j + 2 * (k % 2)]);
    for (int i = 0; i < s->rows[c]; i++) {
        float acc[16];
        memcpy(acc, s->tile[c][i], sizeof acc);
        for (int k = 0; k < K; k++)
            for (int j = 0; j < 16; j++) acc[j] += A[i][k] * B[k][j];
        memcpy(s->tile[c][i], acc, (size_t)N * 4);
    }
}
EMULATION static void amx_dp_int8(AmxTiles *s, int c, int a, int b, int a_signed) {
    const int K = s->bytes[a], N = s->bytes[c] / 4;
    int32_t A[16][64], B[64][16];
    for (int i = 0; i < 16; i++)
        for (int k = 0; k < K; k++) A[i][k] = a_signed ? (int8_t)s->tile[a][i][k] : s->tile[a][i][k];
    for (int k = 0; k < K; k++)
        for (int j = 0; j < 16; j++) B[k][j] = (int8_t)s->tile[b][k / 4][4 * j + k % 4];
    for (int i = 0; i < s->rows[c]; i++) {
        int32_t acc[16];
        memcpy(acc, s->tile[c][i], sizeof acc);
        for (int k = 0; k < K; k++)
            for (int j = 0; j < 16; j++) acc[j] += A[i][k] * B[k][j];
        memcpy(s->tile[c][i], acc, (size_t)N * 4);
    }
}
#endif

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); failures++; } } while (0)

/* ---- the numbers ---------------------------------------------------------------------------- */

static void test_halves(void) {
    int exact = 0, nan_ok = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        uint16_t back = f32_to_f16(f);
        if (f != f) nan_ok += (back & 0x7C00) == 0x7C00 && (back & 0x3FF);  /* still a NaN */
        else exact += back == h;
#if defined(__FLT16_MAX__)
        _Float16 ref;
        memcpy(&ref, &h, 2);
        if (f == f) CHECK((float)ref == f && !memcmp(&(float){(float)ref}, &f, 4), "f16 %04x widens to %g, the compiler says %g", h, f, (float)ref);
#endif
    }
    CHECK(exact + nan_ok == 65536, "f16 round trips: %d exact, %d NaN", exact, nan_ok);
    /* narrowing: random floats over the whole range, and the ties */
    uint64_t rng = 3;
    int checked = 0;
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = (uint32_t)(random_uniform(&rng) * 4294967296.0);
        if (i % 4 == 0) bits = (bits & 0x80000000) | (0x33000000 + bits % 0x14800000);  /* mostly f16's own range */
        float f;
        memcpy(&f, &bits, 4);
        if (f != f) continue;
        uint16_t h = f32_to_f16(f);
#if defined(__FLT16_MAX__)
        _Float16 ref = (_Float16)f;
        uint16_t r;
        memcpy(&r, &ref, 2);
        CHECK(h == r, "f16 of %a: %04x, the compiler says %04x", (double)f, h, r);
#endif
        /* the definition: no other half is closer, and on a tie the even one wins */
        double x = f, got = f16_to_f32(h);
        if (isfinite(got) && fabs(x) <= 65504) {
            double up = f16_to_f32((uint16_t)(h + 1)), down = f16_to_f32((uint16_t)(h - 1));
            if ((h & 0x7FFF) != 0 && (h & 0x7FFF) != 0x7BFF)
                CHECK(fabs(got - x) <= fabs(up - x) && fabs(got - x) <= fabs(down - x) &&
                      (fabs(got - x) != fabs(up - x) || !(h & 1)), "f16 of %a is not the nearest half", x);
        }
        checked++;
    }
    for (int i = 0; i < 200000; i++) {  /* bf16: nearest, ties to even, against the definition */
        uint32_t bits = (uint32_t)(random_uniform(&rng) * 4294967296.0);
        float f;
        memcpy(&f, &bits, 4);
        if (f != f || !isfinite(f)) continue;
        uint16_t b = f32_to_bf16(f);
        double x = f, got = bf16_to_f32(b), alt = bf16_to_f32((uint16_t)(b ^ 1));  /* (a neighbour) */
        uint32_t low = bits & 0xFFFF;
        uint16_t want = (uint16_t)(bits >> 16) + (low > 0x8000 || (low == 0x8000 && (bits >> 16 & 1)));
        CHECK(b == want || !isfinite(got), "bf16 of %a: %04x, expected %04x", x, b, want);
        (void)alt;
    }
    printf("halves: all 65536 f16 values round-trip; %d random floats narrow to the nearest half (ties to even)%s; bf16 too\n",
           checked,
#if defined(__FLT16_MAX__)
           ", as the compiler's _Float16 does"
#else
           ""
#endif
    );
}

static void test_blocks(void) {
    uint64_t rng = 9;
    const int lengths[] = {32, 64, 100, 768, 36, 7};
    for (int type = GPT2_Q8_0; type <= GPT2_Q4_0; type++)
        for (size_t li = 0; li < sizeof lengths / sizeof *lengths; li++) {
            const int cols = lengths[li], nb = (cols + 31) / 32;
            float x[768], back[768];
            uint8_t row[34 * 24 + 64];
            double worst = 0;
            for (int trial = 0; trial < 200; trial++) {
                double scale = pow(10, random_uniform(&rng) * 4 - 1);  /* blocks whose scale is a normal f16 */
                for (int i = 0; i < cols; i++) x[i] = (float)((random_uniform(&rng) * 2 - 1) * scale * (i % 13 == 0 ? 5 : 1));
                quantize_row((gpt2_dtype)type, x, cols, row, dtype_row_bytes((gpt2_dtype)type, (uint64_t)cols));
                dequantize_row(row, (gpt2_dtype)type, cols, back);
                for (int b = 0; b < nb; b++) {
                    uint16_t d16;
                    memcpy(&d16, row + (size_t)nb * (type == GPT2_Q8_0 ? 32 : 16) + 2 * b, 2);
                    const double d = fabs(f16_to_f32(d16));
                    for (int i = b * 32; i < cols && i < b * 32 + 32; i++) {
                        double e = fabs((double)back[i] - x[i]) / (d > 0 ? d : 1);
                        if (e > worst) worst = e;
                    }
                }
                /* a grid value comes back exactly */
                for (int i = 0; i < cols; i++) x[i] = back[i];
                quantize_row((gpt2_dtype)type, x, cols, row, dtype_row_bytes((gpt2_dtype)type, (uint64_t)cols));
                float again[768];
                dequantize_row(row, (gpt2_dtype)type, cols, again);
                CHECK(!memcmp(again, back, (size_t)cols * 4), "%s, %d columns: a dequantized row does not quantize to itself",
                      gpt2_dtype_name((gpt2_dtype)type), cols);
            }
            /* within half a step (plus the f16 rounding of d: the grid's ends may sit a hair inside);
             * q4_0's grid runs -8 … 7 steps, so on the far side of the extreme it clamps by up to one */
            const double bound = type == GPT2_Q8_0 ? 0.5 + 2e-3 : 1.0 + 2e-3;
            CHECK(worst <= bound, "%s, %d columns: an error of %.4f steps", gpt2_dtype_name((gpt2_dtype)type), cols, worst);
        }
    printf("blocks: rows of 7 to 768 values come back within half a step (q8_0; q4_0: one, on its grid's short side), "
           "a grid value exactly\n");
}

/* ---- models in each type against the references ------------------------------------------------- */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return NULL; }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

/* The reference's logits at the last position of each sequence (logits_last.f32) and the
 * sequences (summary.json). */
typedef struct { int n_seq, len[8], *seq[8]; float *last; } Reference;

static void load_reference(Reference *r, const char *dir, int V) {
    char path[512], jerr[128];
    size_t len;
    snprintf(path, sizeof path, "%s/logits/summary.json", dir);
    char *text = slurp(path, &len);
    json_doc doc = {0};
    const json_value *root = text ? json_parse(text, len, &doc, jerr, sizeof jerr) : NULL;
    if (!root) { printf("FAIL %s\n", path); exit(1); }
    r->n_seq = 0;
    for (const json_value *s = json_get(root, "sequences")->first; s && r->n_seq < 8; s = s->next, r->n_seq++) {
        r->seq[r->n_seq] = malloc(s->count * sizeof(int));
        r->len[r->n_seq] = 0;
        for (const json_value *v = s->first; v; v = v->next) r->seq[r->n_seq][r->len[r->n_seq]++] = (int)v->integer;
    }
    json_free(&doc);
    free(text);
    snprintf(path, sizeof path, "%s/logits/logits_last.f32", dir);
    r->last = (float *)slurp(path, &len);
    if (!r->last || len != (size_t)r->n_seq * V * 4) { printf("FAIL %s\n", path); exit(1); }
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float d = 0;
    for (size_t i = 0; i < n; i++) {
        float e = fabsf(a[i] - b[i]);
        if (!(e <= d)) d = e;
    }
    return d;
}

/* Writes the f32 model in `type` (as export/convert does) to path. */
static void write_typed(const gpt2_model *f32, gpt2_dtype type, const char *path) {
    char err[GPT2_ERR_MAX];
    const gpt2_config *c = gpt2_model_config(f32);
    gpt2_vocab vocab;
    gpt2_model_vocab(f32, &vocab);
    gpt2_weight_types types = gpt2_default_types(type);
    gpt2_writer *w = gpt2_writer_open_typed(path, c, &vocab, &types, err, sizeof err);
    if (!w) { printf("FAIL %s\n", err); exit(1); }
    float *values = malloc((size_t)c->vocab_size * c->n_embd * 4 + (size_t)16 * c->n_embd * c->n_embd * 4);
    for (int i = 0; i < gpt2_tensor_count(c); i++) {
        gpt2_tensor_read(f32, i, values, NULL);
        if (gpt2_writer_tensor(w, values, err, sizeof err)) { printf("FAIL %s\n", err); exit(1); }
    }
    free(values);
    if (gpt2_writer_close(w, err, sizeof err)) { printf("FAIL %s\n", err); exit(1); }
}

/* Logits of every sequence's last position, batch and token by token. */
static void run(const gpt2_model *m, const Reference *r, const char *kernels, float *batch, float *step) {
    char err[GPT2_ERR_MAX];
    const int V = gpt2_model_config(m)->vocab_size;
    gpt2_context *ctx = gpt2_context_new(m, &(gpt2_context_params){.n_threads = 2, .kernels = kernels}, err, sizeof err);
    if (!ctx) { printf("FAIL %s\n", err); exit(1); }
    for (int s = 0; s < r->n_seq; s++) {
        gpt2_context_rewind(ctx, 0);
        memcpy(batch + (size_t)s * V, gpt2_forward(ctx, r->seq[s], r->len[s], NULL), (size_t)V * 4);
        gpt2_context_rewind(ctx, 0);
        const float *l = NULL;
        for (int t = 0; t < r->len[s]; t++) l = gpt2_forward(ctx, &r->seq[s][t], 1, NULL);
        memcpy(step + (size_t)s * V, l, (size_t)V * 4);
    }
    gpt2_context_free(ctx);
}

/* How far two kernel sets may differ over a whole model. Their matmuls agree to rounding
 * (test_matmul_kernels), but q8_0 and q4_0 round each matmul's activations to 8 bits again,
 * and bf16 to 8 significant bits: a value that rounding differences put on the other side of
 * a step changes by a step, and the LM head passes that on (one such flip moves a logit of
 * these models by up to ~0.03, and the tiny model's last token by token, q8_0, has shown 0.053;
 * their own errors against the references are 0.05 to 2). */
static float kernel_agreement(gpt2_dtype type) {
    return type == GPT2_Q8_0 || type == GPT2_Q4_0 || type == GPT2_BF16 ? 0.1f : 2e-4f;
}

static void test_models(const char *dir, const char *model_path, const char *scratch) {
    /* max |logit - reference| on the fixtures, whose weights are 8-10x GPT-2's (larger logits) */
    static const double bound[GPT2_N_DTYPES] = {1e-4, 0.02, 0.1, 0.5, 3.0};
    char err[GPT2_ERR_MAX], path[512];
    gpt2_model *f32 = gpt2_load(model_path, err, sizeof err);
    if (!f32) { printf("FAIL %s\n", err); exit(1); }
    const int V = gpt2_model_config(f32)->vocab_size;
    Reference ref;
    load_reference(&ref, dir, V);
    const size_t n = (size_t)ref.n_seq * V;
    float *batch = malloc(n * 4), *step = malloc(n * 4), *scalar_batch = malloc(n * 4), *scalar_step = malloc(n * 4);
    for (int type = GPT2_F32; type < GPT2_N_DTYPES; type++) {
        snprintf(path, sizeof path, "%s/typed-%s.bin", scratch, gpt2_dtype_name((gpt2_dtype)type));
        write_typed(f32, (gpt2_dtype)type, path);
        gpt2_model *m = gpt2_load(path, err, sizeof err);
        CHECK(m && gpt2_model_dtype(m) == (gpt2_dtype)type, "%s: %s", path, err);
        if (!m) continue;
        char sets[64], line[256] = "";
        snprintf(sets, sizeof sets, "%s", gpt2_kernels_available());
        run(m, &ref, "scalar", scalar_batch, scalar_step);
        for (char *k = strtok(sets, " "); k; k = strtok(NULL, " ")) {
            if (!choose_kernels(k, NULL, 0) || same_as_narrower(k, (gpt2_dtype)type)) continue;
            run(m, &ref, k, batch, step);
            float db = max_abs_diff(batch, ref.last, n), ds = max_abs_diff(step, ref.last, n);
            float vb = max_abs_diff(batch, scalar_batch, n), vs = max_abs_diff(step, scalar_step, n);
            CHECK(db <= bound[type] && ds <= bound[type], "%s %s %s: batch %g, token by token %g from the reference (bound %g)", dir,
                  gpt2_dtype_name((gpt2_dtype)type), k, db, ds, bound[type]);
            CHECK(vb <= kernel_agreement((gpt2_dtype)type) && vs <= kernel_agreement((gpt2_dtype)type),
                  "%s %s: %s differs from plain C by %g (batch), %g (token by token)", dir,
                  gpt2_dtype_name((gpt2_dtype)type), k, vb, vs);
            snprintf(line + strlen(line), sizeof line - strlen(line), " %s %.1e/%.1e", k, db, ds);
        }
        printf("%-22s %-5s max |logit - reference|, batch/token by token:%s\n", dir, gpt2_dtype_name((gpt2_dtype)type), line);
        gpt2_free(m);
        if (type != GPT2_F32) remove(path);
    }
    /* damaged quantized files: a row stride or a type that does not fit */
    snprintf(path, sizeof path, "%s/typed-f32.bin", scratch);
    write_typed(f32, GPT2_Q4_0, path);
    size_t len;
    uint8_t *good = (uint8_t *)slurp(path, &len);
    const size_t qkv_entry = GPT2_HEADER_SIZE + 4 * GPT2_TENSOR_ENTRY_SIZE;  /* h.0.attn.c_attn.weight */
    const struct { const char *what; size_t at; uint32_t value; const char *message; } damage[] = {
        {"q4_0 row stride short", qkv_entry + 12, read_u32(good + qkv_entry + 12) - 2, "bytes apart"},
        {"q4_0 row stride odd", qkv_entry + 12, read_u32(good + qkv_entry + 12) + 1, "multiple of 2"},
        {"q4_0 read as q8_0", qkv_entry, GPT2_Q8_0, "bytes apart"},
        {"q4_0 read as f16", qkv_entry, GPT2_F16, "bytes apart"},
        {"q8_0 embeddings read as f32", GPT2_HEADER_SIZE, GPT2_F32, "bytes apart"},
    };
    for (size_t i = 0; i < sizeof damage / sizeof *damage; i++) {
        uint8_t *bad = malloc(len);
        memcpy(bad, good, len);
        put_u32(bad + damage[i].at, damage[i].value);
        FILE *f = fopen(path, "wb");
        fwrite(bad, 1, len, f);
        fclose(f);
        gpt2_model *m = gpt2_load(path, err, sizeof err);
        CHECK(!m && strstr(err, damage[i].message), "%s: %s", damage[i].what, m ? "loaded" : err);
        gpt2_free(m);
        free(bad);
    }
    remove(path);
    free(good);
    free(batch), free(step), free(scalar_batch), free(scalar_step), free(ref.last);
    for (int s = 0; s < ref.n_seq; s++) free(ref.seq[s]);
    gpt2_free(f32);
}

/* Every matmul path of every kernel set against plain C on the same inputs, for each type: the
 * shapes of the fixtures and of GPT-2 (rows of 36 to 3200 values), and 200 rows (each of the
 * two threads' chunks, 30 rows, has sums stored 16 outputs at a time and some left over),
 * batches from 1 position to more than one chunk, each epilogue with a bias. The quantized
 * types quantize the activations the same way in every set (to the byte: a different rounding
 * would move a result by a step of 8 bits), and take the q4_0/q8_0 offsets off in integers, so
 * only the order of float additions differs: 1e-5 of the sum's size, Σ |w·x| (relative to the
 * result itself, a sum that cancels would look worse than its rounding). */
static void test_matmul_kernels(void) {
    static const int shapes[][2] = {{37, 36}, {96, 800}, {50, 3200}, {200, 100}}, batches[] = {1, 3, 4, 17, 64, 100, 300};
    enum { MAX_T = 300 };  /* more than one pass of every set: MATMUL_POSITIONS, or AMX_BATCH */
    _Static_assert(MAX_T > AMX_BATCH && AMX_BATCH > MATMUL_POSITIONS, "batches past one pass");
    char err[GPT2_ERR_MAX];
    gpt2_pool *pool = gpt2_pool_new(2, err, sizeof err);
    MatmulScratch scratch;
    if (!pool || !matmul_scratch_init(&scratch, 2, 3200, AMX_BATCH)) { printf("FAIL %s\n", err); exit(1); }
    uint64_t rng = 17;
    int checked = 0;
    float worst[GPT2_N_DTYPES] = {0};
    for (size_t sh = 0; sh < sizeof shapes / sizeof *shapes; sh++) {
        const int rows = shapes[sh][0], cols = shapes[sh][1];
        float *weights = malloc((size_t)rows * cols * 4), *bias = malloc((size_t)rows * 4);
        float *in = malloc((size_t)MAX_T * cols * 4), *ref = malloc((size_t)MAX_T * rows * 4), *out = malloc((size_t)MAX_T * rows * 4);
        for (int i = 0; i < rows * cols; i++) weights[i] = (float)(random_uniform(&rng) - 0.5) * 0.1f;
        for (int i = 0; i < rows; i++) bias[i] = (float)(random_uniform(&rng) - 0.5);
        for (int i = 0; i < MAX_T * cols; i++) in[i] = (float)(random_uniform(&rng) - 0.5) * (i % 7 == 0 ? 8.0f : 1.0f);
        /* and positions with blocks that quantize at the edges: halves that tie (to even) once
         * scaled by a block maximum of 127, a zero block, denormals, a huge value, inf, NaN
         * (one such block a position: a sum over several huge blocks would cancel, and differ
         * between orders of addition by more than rounding of the result) */
        static const float special[] = {127.0f, 0.5f, -1.5f, 2.5f, -126.5f, 3.5f, 1e-40f, -1e-39f, 3e38f, INFINITY, NAN, 0.0f};
        for (int t = 50; t < 60; t++)
            for (int i = 0; i < cols; i++) {
                float *x = &in[(size_t)t * cols + i];
                if (t == 50) *x = i % 32 == 0 ? 127.0f : (float)(i % 32 - 16) + 0.5f;  /* every tie of a block */
                else if (t == 51) *x = 0.0f;
                else if (t < 58) *x = i / 32 == t % ((cols + 31) / 32) && i % 32 < 2 ? special[(t + i) % 10] : *x;  /* one block */
                else if (i == cols / 2) *x = t == 58 ? INFINITY : NAN;  /* one block of the position: inf or NaN */
            }
        double *size = malloc((size_t)MAX_T * rows * sizeof(double));  /* 1 + Σ |w·x| of each result: its scale */
        for (int t = 0; t < MAX_T; t++)
            for (int o = 0; o < rows; o++) {
                size[t * rows + o] = 1.0;
                for (int c = 0; c < cols; c++) size[t * rows + o] += fabs((double)weights[(size_t)o * cols + c] * in[(size_t)t * cols + c]);
            }
        for (int type = GPT2_F32; type < GPT2_N_DTYPES; type++) {
            const size_t row_bytes = (dtype_row_bytes((gpt2_dtype)type, (uint64_t)cols) + 63) / 64 * 64;
            uint8_t *data = aligned_alloc(64, (size_t)rows * row_bytes);
            for (int r = 0; r < rows; r++) quantize_row((gpt2_dtype)type, weights + (size_t)r * cols, cols, data + (size_t)r * row_bytes, row_bytes);
            const Tensor w = {(gpt2_dtype)type, rows, cols, row_bytes, data};
            for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++)
                for (int e = STORE; e <= ACCUMULATE; e++) {
                    const int T = batches[bi];
                    for (int i = 0; i < T * rows; i++) ref[i] = out[i] = (float)i * 1e-3f;  /* what ACCUMULATE adds to */
                    kernels_table_scalar.matmul(pool, &scratch, ref, in, &w, bias, T, (Epilogue)e);
                    scratch.stream_to_l1 = (bi + e) % 2 ? ~0u : 0;  /* decoding's prefetches to L2 and to L1, in turn */
                    for (size_t k = 0; k < sizeof kernel_sets / sizeof *kernel_sets; k++) {
                        if (kernel_sets[k] == &kernels_table_scalar || !cpu_has(kernel_sets[k]->name)) continue;
                        for (int i = 0; i < T * rows; i++) out[i] = (float)i * 1e-3f;
                        kernel_sets[k]->matmul(pool, &scratch, out, in, &w, bias, T, (Epilogue)e);
                        float d = 0;
                        for (int i = 0; i < T * rows; i++) {
                            if (isnan(ref[i]) || isinf(ref[i])) {  /* the same special value, or a difference of 1 */
                                if (!(isnan(ref[i]) ? isnan(out[i]) : out[i] == ref[i])) d = 1;
                                continue;
                            }
                            const float rel = (float)(fabs((double)out[i] - ref[i]) / size[i]);  /* relative to Σ |w·x| */
                            if (!(rel <= d)) d = rel;  /* (a NaN where plain C has a number: fails) */
                        }
                        CHECK(d <= 1e-5f, "matmul %s %dx%d, %d positions, epilogue %d: %s differs from plain C by %g", gpt2_dtype_name((gpt2_dtype)type),
                              rows, cols, T, e, kernel_sets[k]->name, d);
                        worst[type] = fmaxf(worst[type], d);
                        checked++;
                    }
                }
            free(data);
        }
        free(weights), free(bias), free(in), free(ref), free(out), free(size);
    }
    printf("matmuls: %d (type, shape, batch, epilogue, kernel set) against plain C, worst relative difference:", checked);
    for (int type = GPT2_F32; type < GPT2_N_DTYPES; type++) printf(" %s %.1e", gpt2_dtype_name((gpt2_dtype)type), worst[type]);
#if defined(X86_VARIANTS)
    if (cpu_has("amx")) printf("; amx on %s", amx_real ? "the CPU's tiles" : "emulated tiles (this CPU has no AMX)");
#endif
    printf("\n");
    matmul_scratch_free(&scratch);
    gpt2_pool_free(pool);
}

/* Infinities and NaNs in the weights (f32, f16, bf16, which can hold them): a row with +inf, one
 * with a NaN, one with −inf, one with both infinities (a NaN sum), and a position whose value
 * at the +inf channel is 0 (inf · 0: NaN). Every kernel set gives the special values plain C
 * gives, and the other sums within 1e-5 of Σ |w·x| (f16 on AMX splits each weight: these rows'
 * sums are taken plainly). */
static void test_special_weights(void) {
    enum { ROWS = 70, COLS = 96, MAX_T = 40 };
    static const int batches[] = {1, 4, 17, 40};
    char err[GPT2_ERR_MAX];
    gpt2_pool *pool = gpt2_pool_new(2, err, sizeof err);
    MatmulScratch scratch;
    if (!pool || !matmul_scratch_init(&scratch, 2, COLS, AMX_BATCH)) { printf("FAIL %s\n", err); exit(1); }
    static float weights[ROWS * COLS], in[MAX_T * COLS], ref[MAX_T * ROWS], out[MAX_T * ROWS];
    static double size[MAX_T * ROWS];
    uint64_t rng = 5;
    for (int i = 0; i < ROWS * COLS; i++) weights[i] = (float)(random_uniform(&rng) - 0.5);
    for (int i = 0; i < MAX_T * COLS; i++) in[i] = (float)(random_uniform(&rng) - 0.5);
    weights[3 * COLS + 5] = INFINITY, weights[20 * COLS + 9] = NAN, weights[40 * COLS] = -INFINITY;
    weights[45 * COLS + 2] = INFINITY, weights[45 * COLS + 7] = -INFINITY;
    in[5 * COLS + 5] = 0.0f;
    for (int t = 0; t < MAX_T; t++)
        for (int o = 0; o < ROWS; o++) {
            size[t * ROWS + o] = 1.0;
            for (int c = 0; c < COLS; c++) {
                const double p = fabs((double)weights[o * COLS + c] * in[t * COLS + c]);
                if (isfinite(p)) size[t * ROWS + o] += p;
            }
        }
    int checked = 0;
    for (int type = GPT2_F32; type <= GPT2_BF16; type++) {
        const size_t row_bytes = (dtype_row_bytes((gpt2_dtype)type, COLS) + 63) / 64 * 64;
        uint8_t *data = aligned_alloc(64, ROWS * row_bytes);
        for (int r = 0; r < ROWS; r++) quantize_row((gpt2_dtype)type, weights + r * COLS, COLS, data + r * row_bytes, row_bytes);
        const Tensor w = {(gpt2_dtype)type, ROWS, COLS, row_bytes, data};
        for (size_t bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
            const int T = batches[bi];
            kernels_table_scalar.matmul(pool, &scratch, ref, in, &w, NULL, T, STORE);
            for (size_t k = 0; k < sizeof kernel_sets / sizeof *kernel_sets; k++) {
                if (kernel_sets[k] == &kernels_table_scalar || !cpu_has(kernel_sets[k]->name)) continue;
                kernel_sets[k]->matmul(pool, &scratch, out, in, &w, NULL, T, STORE);
                int wrong = 0;
                for (int i = 0; i < T * ROWS; i++)
                    if (isnan(ref[i]) ? !isnan(out[i]) : isinf(ref[i]) ? out[i] != ref[i] : !(fabs((double)out[i] - ref[i]) <= 1e-5 * size[i])) wrong++;
                CHECK(!wrong, "special weights, %s, %d positions: %s differs from plain C at %d outputs", gpt2_dtype_name((gpt2_dtype)type), T,
                      kernel_sets[k]->name, wrong);
                checked++;
            }
        }
        free(data);
    }
    printf("special weights: inf, -inf and NaN in f32, f16 and bf16 rows, %d (type, batch, kernel set) as plain C gives them\n", checked);
    matmul_scratch_free(&scratch);
    gpt2_pool_free(pool);
}

/* The fixtures are narrow (at most 8 blocks of 32 in a row); GPT-2's rows are 24 and 96 blocks.
 * On a random model with rows of 25 and 100 blocks (odd counts, and groups of 16 with some
 * left over), every kernel set agrees with plain C for every type (kernel_agreement), over 150
 * positions (batches of 64, 64 and 22) and token by token, and 1 and 3 threads give the same
 * logits bit for bit. */
static void test_wide(const char *model_path, const char *scratch) {
    char err[GPT2_ERR_MAX], path[512];
    gpt2_model *f32 = gpt2_load(model_path, err, sizeof err);
    if (!f32) { printf("FAIL %s\n", err); failures++; return; }
    const gpt2_config *c = gpt2_model_config(f32);
    const int V = c->vocab_size, T = 150;
    int tokens[150];
    uint64_t rng = 11;
    for (int t = 0; t < T; t++) tokens[t] = (int)(random_uniform(&rng) * V);
    float *ref_batch = malloc((size_t)T * V * 4), *batch = malloc((size_t)T * V * 4), *step = malloc((size_t)T * V * 4);
    float *ref_step = malloc((size_t)T * V * 4), *other = malloc((size_t)T * V * 4), *f32_logits = malloc((size_t)T * V * 4);
    float type_error = 0;
    char line[512] = "";
    for (int type = GPT2_F32; type < GPT2_N_DTYPES; type++) {
        snprintf(path, sizeof path, "%s/wide-%s.bin", scratch, gpt2_dtype_name((gpt2_dtype)type));
        write_typed(f32, (gpt2_dtype)type, path);
        gpt2_model *m = gpt2_load(path, err, sizeof err);
        CHECK(m, "%s: %s", path, err);
        if (!m) continue;
        char sets[80];
        snprintf(sets, sizeof sets, "scalar %s", gpt2_kernels_available());  /* plain C first: the reference */
        float worst = 0;
        for (char *k = strtok(sets, " "); k; k = strtok(NULL, " ")) {
            if (!strcmp(k, "scalar") && k != sets) continue;
            if (!choose_kernels(k, NULL, 0) || same_as_narrower(k, (gpt2_dtype)type)) continue;
            for (int threads = 1; threads <= 3; threads += 2) {
                gpt2_context *ctx = gpt2_context_new(m, &(gpt2_context_params){.n_threads = threads, .kernels = k}, err, sizeof err);
                if (!ctx) { printf("FAIL %s\n", err); exit(1); }
                gpt2_forward(ctx, tokens, T, batch);
                gpt2_context_rewind(ctx, 0);
                for (int t = 0; t < T; t++) memcpy(step + (size_t)t * V, gpt2_forward(ctx, &tokens[t], 1, NULL), (size_t)V * 4);
                gpt2_context_free(ctx);
                if (!strcmp(k, "scalar") && threads == 1) {
                    if (type == GPT2_F32) memcpy(f32_logits, batch, (size_t)T * V * 4);
                    type_error = max_abs_diff(batch, f32_logits, (size_t)T * V);
                    memcpy(ref_batch, batch, (size_t)T * V * 4), memcpy(ref_step, step, (size_t)T * V * 4);
                } else if (threads == 1) {
                    float db = max_abs_diff(batch, ref_batch, (size_t)T * V), ds = max_abs_diff(step, ref_step, (size_t)T * V);
                    CHECK(db <= kernel_agreement((gpt2_dtype)type) && ds <= kernel_agreement((gpt2_dtype)type), "wide %s: %s differs from plain C by %g (batch), %g (token by token); the type from f32: %g",
                          gpt2_dtype_name((gpt2_dtype)type), k, db, ds, type_error);
                    worst = fmaxf(worst, fmaxf(db, ds));
                }
                if (threads == 1) memcpy(other, batch, (size_t)T * V * 4);
                else CHECK(!memcmp(other, batch, (size_t)T * V * 4), "wide %s %s: 1 and 3 threads differ", gpt2_dtype_name((gpt2_dtype)type), k);
            }
        }
        snprintf(line + strlen(line), sizeof line - strlen(line), " %s %.1e", gpt2_dtype_name((gpt2_dtype)type), worst);
        gpt2_free(m);
        remove(path);
    }
    printf("wide rows (%d and %d values): kernel sets against plain C, worst |logit difference|:%s; 1 and 3 threads the same\n",
           c->n_embd, 4 * c->n_embd, line);
    free(ref_batch), free(batch), free(step), free(ref_step), free(other), free(f32_logits);
    gpt2_free(f32);
}

int main(int argc, char **argv) {
    if (argc < 2 || argc % 2) { fprintf(stderr, "usage: test_types [FIXTURE_DIR MODEL.bin ...] [--wide MODEL.bin] SCRATCH_DIR\n"); return 2; }
    test_halves();
    test_blocks();
    test_matmul_kernels();
    test_special_weights();
    for (int i = 1; i + 2 < argc; i += 2) {
        if (!strcmp(argv[i], "--wide")) test_wide(argv[i + 1], argv[argc - 1]);
        else test_models(argv[i], argv[i + 1], argv[argc - 1]);
    }
    if (failures) { printf("test_types: %d failures\n", failures); return 1; }
    printf("test_types: ok\n");
    return 0;
}
