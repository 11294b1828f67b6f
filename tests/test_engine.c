/* The forward pass against independent references: logits and hidden states that nanoGPT
 * (PyTorch) and picoGPT (numpy) computed from the same checkpoints (tests/fixtures/README.md).
 *
 *   test_engine FIXTURE_DIR MODEL.bin [FIXTURE_DIR MODEL.bin ...]
 *
 * All models are loaded first and their contexts stay alive together, stepping in turn, so
 * the run also shows that two models share nothing. For each sequence of each fixture:
 *   - batch prefill: logits at every position (256 columns everywhere, the full vocabulary at
 *     the last position and wherever logits_full has it) within 1e-4, and the argmax;
 *   - token by token through the KV cache: the same checks, plus the final layer norm's
 *     output against hidden.f32;
 *   - 1, 2, 3 and 4 threads agree bit for bit, and so does a prompt run in two batches with
 *     a prompt run whole (batched kernels on both sides); prefill and decode use different
 *     kernels and agree to rounding. */
#include "../gpt2.c"
#include "../export/json.h"
#include "same_kernels.h"

#define TOLERANCE 1e-4f

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); failures++; } } while (0)

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return NULL; }
    fclose(f);
    buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
}

/* The integers of a JSON array into out (up to cap); returns the count, or -1 if the value is
 * not an array of integers. */
static int json_ints(const json_value *array, int *out, int cap) {
    if (!array || array->type != JSON_ARRAY) return -1;
    int n = 0;
    for (const json_value *v = array->first; v; v = v->next) {
        if (v->type != JSON_NUMBER || !v->is_integer || n == cap) return -1;
        out[n++] = (int)v->integer;
    }
    return n;
}

typedef struct {
    const char *dir;
    gpt2_model *model;
    int n_seq;
    int *seq[8], seq_len[8], row_offset[8];
    int *argmax[8];       /* the reference's argmax at every position of each sequence */
    int cols[256];
    float *logits_last;   /* (n_seq, V) */
    float *logits_cols;   /* (Σ T, 256) */
    float *hidden;        /* (Σ T, C) */
    float *logits_full;   /* (T, V) of sequence full_seq, or NULL */
    int full_seq;
} Fixture;

static float *load_f32(const char *dir, const char *name, size_t want) {
    char path[512];
    size_t len;
    snprintf(path, sizeof path, "%s/logits/%s", dir, name);
    float *data = (float *)slurp(path, &len);
    if (data && len != want * sizeof(float)) { printf("FAIL %s: %zu bytes, expected %zu\n", path, len, want * 4); exit(1); }
    return data;
}

static void load_fixture(Fixture *f, const char *dir, const char *model_path) {
    char err[GPT2_ERR_MAX], path[512];
    f->dir = dir;
    f->model = gpt2_load(model_path, err, sizeof err);
    if (!f->model) { printf("FAIL %s\n", err); exit(1); }
    snprintf(path, sizeof path, "%s/logits/summary.json", dir);
    size_t len;
    char *text = slurp(path, &len), jerr[256];
    json_doc doc = {0};
    const json_value *summary = text ? json_parse(text, len, &doc, jerr, sizeof jerr) : NULL;
    if (!summary) { printf("FAIL %s: %s\n", path, text ? jerr : "cannot read it"); exit(1); }
    const json_value *seqs = json_get(summary, "sequences"), *per_seq = json_get(summary, "per_sequence");
    const json_value *seq = seqs ? seqs->first : NULL, *info = per_seq ? per_seq->first : NULL;
    for (f->n_seq = 0; seq && info && f->n_seq < 8; f->n_seq++, seq = seq->next, info = info->next) {
        f->seq[f->n_seq] = malloc(4096 * sizeof(int));
        f->argmax[f->n_seq] = malloc(4096 * sizeof(int));
        f->seq_len[f->n_seq] = json_ints(seq, f->seq[f->n_seq], 4096);
        CHECK(json_ints(json_get(info, "argmax"), f->argmax[f->n_seq], 4096) == f->seq_len[f->n_seq] && f->seq_len[f->n_seq] > 0,
              "%s: sequence %d and its argmax list", dir, f->n_seq);
    }
    int offsets[9];
    CHECK(json_ints(json_get(summary, "row_offsets"), offsets, 9) >= f->n_seq, "%s: row_offsets", dir);
    int total = 0;
    for (int s = 0; s < f->n_seq; s++) { f->row_offset[s] = offsets[s]; total += f->seq_len[s]; }
    CHECK(json_ints(json_get(summary, "cols"), f->cols, 256) == 256, "%s: cols", dir);
    f->full_seq = -1;
    int which[1];
    if (json_ints(json_get(json_get(json_get(summary, "files"), "logits_full.f32"), "sequences"), which, 1) == 1)
        f->full_seq = which[0];
    json_free(&doc);
    free(text);
    const gpt2_config *c = gpt2_model_config(f->model);
    f->logits_last = load_f32(dir, "logits_last.f32", (size_t)f->n_seq * c->vocab_size);
    f->logits_cols = load_f32(dir, "logits_cols.f32", (size_t)total * 256);
    f->hidden = load_f32(dir, "hidden.f32", (size_t)total * c->n_embd);
    if (f->full_seq >= 0)
        f->logits_full = load_f32(dir, "logits_full.f32", (size_t)f->seq_len[f->full_seq] * c->vocab_size);
    if (!f->logits_last || !f->logits_cols || !f->hidden) { printf("FAIL %s: missing reference files\n", dir); exit(1); }
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float d = 0;
    for (size_t i = 0; i < n; i++) {
        float e = fabsf(a[i] - b[i]);
        if (!(e <= d)) d = e;  /* NaN propagates as a failure */
    }
    return d;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

/* Compares logits (T, V) of sequence s with every reference; returns the max abs diff. */
static float compare_logits(const Fixture *f, int s, const float *logits, const char *how) {
    const int V = gpt2_model_config(f->model)->vocab_size, T = f->seq_len[s];
    float worst = max_abs_diff(logits + (size_t)(T - 1) * V, f->logits_last + (size_t)s * V, (size_t)V);
    if (s == f->full_seq) {
        float d = max_abs_diff(logits, f->logits_full, (size_t)T * V);
        if (d > worst) worst = d;
    }
    const int *ref_argmax = f->argmax[s];
    for (int t = 0; t < T; t++) {
        const float *row = logits + (size_t)t * V;
        const float *ref = f->logits_cols + (size_t)(f->row_offset[s] + t) * 256;
        for (int k = 0; k < 256; k++) {
            float d = fabsf(row[f->cols[k]] - ref[k]);
            if (!(d <= worst)) worst = d;
        }
        CHECK(argmax(row, V) == ref_argmax[t], "%s seq %d pos %d (%s): argmax %d, reference %d", f->dir, s, t, how,
              argmax(row, V), ref_argmax[t]);
    }
    CHECK(worst <= TOLERANCE, "%s seq %d (%s): max abs diff %g > %g", f->dir, s, how, worst, TOLERANCE);
    return worst;
}

static void test_kernels(Fixture *fix, int n_fix, const char *kernels);

int main(int argc, char **argv) {
    if (argc < 3 || argc % 2 == 0) { fprintf(stderr, "usage: test_engine FIXTURE_DIR MODEL.bin [...]\n"); return 2; }
    int n_fix = (argc - 1) / 2;
    Fixture *fix = calloc((size_t)n_fix, sizeof *fix);
    for (int i = 0; i < n_fix; i++) load_fixture(&fix[i], argv[1 + 2 * i], argv[2 + 2 * i]);

    /* every kernel set this build has and this CPU runs (or the ones KERNELS names), but for
     * those that compute these f32 models as a narrower one does (test_types runs them on
     * every type) */
    char sets[64];
    snprintf(sets, sizeof sets, "%s", getenv("KERNELS") ? getenv("KERNELS") : gpt2_kernels_available());
    for (char *kernels = strtok(sets, " "); kernels; kernels = strtok(NULL, " ")) {
        if (!getenv("KERNELS") && same_as_narrower(kernels, GPT2_F32)) continue;
        if (!choose_kernels(kernels, NULL, 0)) { printf("skipped: %s kernels (this CPU lacks them)\n", kernels); continue; }
        test_kernels(fix, n_fix, kernels);
    }

    for (int i = 0; i < n_fix; i++) {
        for (int s = 0; s < fix[i].n_seq; s++) { free(fix[i].seq[s]); free(fix[i].argmax[s]); }
        free(fix[i].logits_last); free(fix[i].logits_cols); free(fix[i].hidden); free(fix[i].logits_full);
        gpt2_free(fix[i].model);
    }
    free(fix);
    if (failures) { printf("test_engine: %d failures\n", failures); return 1; }
    printf("test_engine: ok\n");
    return 0;
}

static void test_kernels(Fixture *fix, int n_fix, const char *kernels) {
    char err[GPT2_ERR_MAX];
    gpt2_context **ctx = calloc((size_t)n_fix, sizeof *ctx);
    for (int i = 0; i < n_fix; i++) {
        ctx[i] = gpt2_context_new(fix[i].model, &(gpt2_context_params){.n_threads = 2, .kernels = kernels}, err, sizeof err);
        if (!ctx[i]) { printf("FAIL %s\n", err); exit(1); }
    }

    for (int i = 0; i < n_fix; i++) {
        Fixture *f = &fix[i];
        const gpt2_config *c = gpt2_model_config(f->model);
        const int V = c->vocab_size, C = c->n_embd;
        float worst_batch = 0, worst_step = 0, worst_hidden = 0, worst_between = 0;
        for (int s = 0; s < f->n_seq; s++) {
            const int T = f->seq_len[s];
            float *batch = malloc((size_t)T * V * sizeof(float)), *step = malloc((size_t)T * V * sizeof(float));

            /* 1. batch prefill of the whole sequence */
            gpt2_context_rewind(ctx[i], 0);
            const float *last = gpt2_forward(ctx[i], f->seq[s], T, batch);
            CHECK(last && !memcmp(last, batch + (size_t)(T - 1) * V, (size_t)V * 4), "returned logits = last row");
            float d = compare_logits(f, s, batch, "batch");
            if (d > worst_batch) worst_batch = d;

            /* 2. one token at a time through the KV cache, interleaved with every other model's
             *    context so that any state they shared would show */
            gpt2_context_rewind(ctx[i], 0);
            for (int t = 0; t < T; t++) {
                const float *logits = gpt2_forward(ctx[i], &f->seq[s][t], 1, NULL);
                memcpy(step + (size_t)t * V, logits, (size_t)V * sizeof(float));
                /* ctx->xn holds ln_f's output for the position just computed */
                float h = max_abs_diff(ctx[i]->xn, f->hidden + (size_t)(f->row_offset[s] + t) * C, (size_t)C);
                if (h > worst_hidden) worst_hidden = h;
                for (int j = 0; j < n_fix; j++) {
                    if (j == i) continue;
                    int other = fix[j].seq[0][0];
                    gpt2_context_rewind(ctx[j], 0);
                    gpt2_forward(ctx[j], &other, 1, NULL);
                }
            }
            d = compare_logits(f, s, step, "token by token");
            if (d > worst_step) worst_step = d;
            float between = max_abs_diff(batch, step, (size_t)T * V);
            if (between > worst_between) worst_between = between;

            /* 3. thread counts change nothing, nor does cutting the prompt into batches that
             *    all use the batched kernel */
            for (int threads = 1; threads <= 4; threads++) {
                gpt2_context *other = gpt2_context_new(f->model, &(gpt2_context_params){.n_ctx = T, .n_threads = threads, .kernels = kernels},
                                                       err, sizeof err);
                float *out = malloc((size_t)T * V * sizeof(float));
                gpt2_forward(other, f->seq[s], T, out);
                CHECK(!memcmp(batch, out, (size_t)T * V * sizeof(float)), "%s seq %d: %d threads: logits differ", f->dir, s, threads);
                int split = T / 3 > BATCH_MIN ? T / 3 : BATCH_MIN;
                if (T >= 2 * BATCH_MIN && T - split >= BATCH_MIN) {
                    gpt2_context_rewind(other, 0);
                    gpt2_forward(other, f->seq[s], split, out);
                    gpt2_forward(other, f->seq[s] + split, T - split, out + (size_t)split * V);
                    CHECK(!memcmp(batch, out, (size_t)T * V * sizeof(float)), "%s seq %d: %d threads, split at %d: logits differ",
                          f->dir, s, threads, split);
                }
                free(out);
                gpt2_context_free(other);
            }
            free(batch);
            free(step);
        }
        CHECK(worst_hidden <= TOLERANCE, "%s: hidden max abs diff %g", f->dir, worst_hidden);
        CHECK(worst_between <= 5e-5f, "%s: batch and token-by-token logits differ by %g", f->dir, worst_between);
        printf("%-24s %d sequences: max abs diff vs reference: batch %.2e, token by token %.2e, hidden %.2e; "
               "batch vs token by token %.1e (%s kernels)\n",
               f->dir, f->n_seq, worst_batch, worst_step, worst_hidden, worst_between, kernels);

        /* 4. an f16 KV cache: keys and values rounded to 11 significant bits move the logits
         *    by about that much, the same on any thread count, batch or token by token */
        float worst_f16 = 0;
        for (int s = 0; s < f->n_seq; s++) {
            const int T = f->seq_len[s];
            float *out[2], *step = malloc((size_t)V * sizeof(float));
            for (int k = 0; k < 2; k++) {
                gpt2_context *half = gpt2_context_new(f->model, &(gpt2_context_params){.n_threads = 1 + 2 * k, .kernels = kernels,
                                                                                       .kv_type = GPT2_F16}, err, sizeof err);
                CHECK(half && gpt2_context_kv_bytes(half) * 2 == gpt2_context_kv_bytes(ctx[i]), "f16 KV cache: half the bytes");
                out[k] = malloc((size_t)T * V * sizeof(float));
                gpt2_forward(half, f->seq[s], T, out[k]);
                if (k == 0) {
                    gpt2_context_rewind(half, 0);
                    for (int t = 0; t < T; t++) memcpy(step, gpt2_forward(half, &f->seq[s][t], 1, NULL), (size_t)V * sizeof(float));
                }
                gpt2_context_free(half);
            }
            CHECK(!memcmp(out[0], out[1], (size_t)T * V * sizeof(float)), "%s seq %d: f16 KV cache: 1 and 3 threads differ", f->dir, s);
            float d = max_abs_diff(out[0] + (size_t)(T - 1) * V, f->logits_last + (size_t)s * V, (size_t)V);
            const float e = max_abs_diff(step, f->logits_last + (size_t)s * V, (size_t)V);
            d = e > d ? e : d;
            if (s == f->full_seq) {
                const float full = max_abs_diff(out[0], f->logits_full, (size_t)T * V);
                d = full > d ? full : d;
            }
            if (d > worst_f16) worst_f16 = d;
            free(out[0]), free(out[1]), free(step);
        }
        CHECK(worst_f16 <= 4e-3f, "%s: f16 KV cache: logits differ from the reference by %g", f->dir, worst_f16);
        printf("%-24s f16 KV cache: max abs diff vs reference %.2e, 1 and 3 threads the same (%s kernels)\n", f->dir, worst_f16, kernels);
    }

    /* 4. the context refuses what does not fit and changes nothing when it does */
    {
        Fixture *f = &fix[0];
        const gpt2_config *c = gpt2_model_config(f->model);
        gpt2_context *small = gpt2_context_new(f->model, &(gpt2_context_params){.n_ctx = 4, .n_threads = 1}, err, sizeof err);
        int ids[5] = {1, 2, 3, 4, 5}, bad = c->vocab_size;
        CHECK(gpt2_forward(small, ids, 5, NULL) == NULL && gpt2_context_position(small) == 0, "5 tokens into a context of 4");
        CHECK(gpt2_forward(small, &bad, 1, NULL) == NULL && gpt2_context_position(small) == 0, "token id = vocab_size");
        CHECK(gpt2_forward(small, ids, 0, NULL) == NULL, "zero tokens");
        CHECK(gpt2_forward(small, ids, 4, NULL) != NULL && gpt2_context_position(small) == 4, "4 tokens fill a context of 4");
        CHECK(gpt2_forward(small, ids, 1, NULL) == NULL, "a full context takes no more");
        CHECK(gpt2_context_new(f->model, &(gpt2_context_params){.n_ctx = c->n_ctx + 1, .n_threads = 1}, err, sizeof err) == NULL && strstr(err, "context"), "context > n_ctx: %s", err);
        gpt2_context_free(small);
    }

    for (int i = 0; i < n_fix; i++) gpt2_context_free(ctx[i]);
    free(ctx);
}
