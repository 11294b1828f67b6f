/* The library's interface beyond the forward pass's numbers (test_engine has those).
 *
 *   test_api MODEL.bin SCRATCH_DIR
 *
 * MODEL.bin is the tiny fixture. Checks:
 *   - gpt2_next: its log-probabilities and top alternatives equal log-softmax of the logits
 *     gpt2_forward gives for the same tokens; the chosen token is pending (not in the cache)
 *     until something runs the model; continuing a sequence equals running it whole; after a
 *     rewind, the last position is recomputed; a zero-initialized gpt2_sampling is greedy;
 *   - a pool shared by contexts in two threads gives what separate pools give, bit for bit;
 *   - context sizes are computed with checked arithmetic: what a 32-bit machine cannot address
 *     is refused, and a model whose context does not fit in memory gets a message, not a crash;
 *   - a model with padding ids (tokens of no text) streams when the first token it generates
 *     is one of them;
 *   - a writer whose file the loader refuses leaves what was at its path untouched;
 *   - matrices whose rows lie further apart than their width (row_bytes) compute the same
 *     logits, bit for bit. */
#include "../gpt2.c"

#include <sys/wait.h>

/* Huge allocations must fail with NULL here, as they do without a sanitizer. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); failures++; } } while (0)

static char err[GPT2_ERR_MAX];
static const char *scratch_dir;

static gpt2_context *context(const gpt2_model *m, int n_ctx, int threads) {
    gpt2_context *ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = n_ctx, .n_threads = threads}, err, sizeof err);
    if (!ctx) { printf("FAIL context: %s\n", err); exit(1); }
    return ctx;
}

static gpt2_sampler *sampler(const gpt2_model *m, gpt2_sampling p) {
    gpt2_sampler *s = gpt2_sampler_new(m, &p, err, sizeof err);
    if (!s) { printf("FAIL sampler: %s\n", err); exit(1); }
    return s;
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
    float d = 0;
    for (size_t i = 0; i < n; i++) {
        float e = fabsf(a[i] - b[i]);
        if (!(e <= d)) d = e;
    }
    return d;
}

/* ---- one token at a time ---------------------------------------------------------------- */

static void test_next(const gpt2_model *m) {
    const int V = gpt2_model_config(m)->vocab_size;
    const int prompt[5] = {464, 3290, 318, 257, 1332};
    gpt2_context *ctx = context(m, 0, 2);
    gpt2_sampler *greedy = sampler(m, (gpt2_sampling){0});  /* zero-initialized: greedy */
    gpt2_sampler *warm = sampler(m, (gpt2_sampling){.temperature = 1.3f, .top_k = 50, .seed = 77});
    CHECK(gpt2_next(ctx, greedy, 0, NULL) == -1, "next on an empty context: nothing to predict from");

    /* Draw 12 tokens with their information, then check each against the logits of the whole
     * sequence run at once. */
    enum { N = 12 };
    int seq[5 + N];
    memcpy(seq, prompt, sizeof prompt);
    gpt2_token_info info[N];
    CHECK(gpt2_forward(ctx, prompt, 5, NULL) != NULL, "prompt");
    for (int i = 0; i < N; i++) {
        int pos_before = gpt2_context_position(ctx);
        seq[5 + i] = gpt2_next(ctx, i % 2 ? warm : greedy, i % 2 ? GPT2_TOP_MAX : 5, &info[i]);
        CHECK(seq[5 + i] >= 0 && info[i].token == seq[5 + i], "next %d returned %d", i, seq[5 + i]);
        CHECK(gpt2_context_pending(ctx) == seq[5 + i], "the token just drawn is pending");
        CHECK(gpt2_context_position(ctx) == pos_before + (i > 0), "next feeds only the previous token: %d -> %d", pos_before,
              gpt2_context_position(ctx));
    }
    int n_hist;
    const int *hist = gpt2_context_tokens(ctx, &n_hist);
    CHECK(n_hist == 5 + N && !memcmp(hist, seq, sizeof seq), "context tokens = prompt + drawn tokens");

    float *all = malloc((size_t)(5 + N) * V * sizeof *all);
    gpt2_context *whole = context(m, 0, 1);
    gpt2_forward(whole, seq, 5 + N, all);
    float worst_logprob = 0;
    for (int i = 0; i < N; i++) {
        const float *row = all + (size_t)(4 + i) * V;  /* position 4 + i predicted token 5 + i */
        double max = row[0], z = 0;
        for (int v = 1; v < V; v++) if (row[v] > max) max = row[v];
        for (int v = 0; v < V; v++) z += exp(row[v] - max);
        double logz = max + log(z);
        float d = fabsf(info[i].logprob - (float)(row[seq[5 + i]] - logz));
        if (d > worst_logprob) worst_logprob = d;
        int want_top = i % 2 ? GPT2_TOP_MAX : 5;
        CHECK(info[i].n_top == want_top, "n_top %d", info[i].n_top);
        for (int k = 0; k < info[i].n_top; k++) {
            int id = info[i].top_tokens[k];
            CHECK(fabsf(info[i].top_logprobs[k] - (float)(row[id] - logz)) < 1e-4f, "top %d logprob", k);
            if (k > 0) CHECK(info[i].top_logprobs[k] <= info[i].top_logprobs[k - 1], "top list is sorted");
            int larger = 0;  /* exactly k tokens are more likely than the k-th */
            for (int v = 0; v < V; v++) larger += row[v] > row[id];
            CHECK(larger <= k, "top %d (id %d) has %d more likely tokens", k, id, larger);
        }
        if (i % 2 == 0) CHECK(info[i].top_tokens[0] == seq[5 + i], "greedy draws the top token");
    }
    CHECK(worst_logprob < 1e-4f, "logprobs differ from log-softmax of the logits by %g", worst_logprob);

    /* Continuing: the pending token leads the next batch; the result is the whole sequence's. */
    const int more[3] = {11, 673, 257};
    float *cont = malloc((size_t)3 * V * sizeof *cont);
    CHECK(gpt2_forward(ctx, more, 3, cont) != NULL, "continue with 3 tokens");
    CHECK(gpt2_context_pending(ctx) == -1 && gpt2_context_position(ctx) == 5 + N + 3, "pending fed, then the new tokens");
    int full[5 + N + 3];
    memcpy(full, seq, sizeof seq);
    memcpy(full + 5 + N, more, sizeof more);
    float *ref = malloc((size_t)(5 + N + 3) * V * sizeof *ref);
    gpt2_context_rewind(whole, 0);
    gpt2_forward(whole, full, 5 + N + 3, ref);
    float d = max_abs_diff(cont, ref + (size_t)(5 + N) * V, (size_t)3 * V);
    CHECK(d < 5e-5f, "continued logits differ from the whole sequence's by %g", d);

    /* A rewind drops the pending token and the logits; next recomputes the last position. */
    gpt2_next(ctx, greedy, 0, NULL);
    gpt2_context_rewind(ctx, 7);
    CHECK(gpt2_context_position(ctx) == 7 && gpt2_context_pending(ctx) == -1, "rewind to 7");
    gpt2_token_info again;
    int t = gpt2_next(ctx, greedy, 1, &again);
    CHECK(t == argmax_logit(ref + (size_t)6 * V, V) && gpt2_context_position(ctx) == 7,
          "after a rewind, next predicts from position 6 again: %d", t);
    gpt2_context_rewind(ctx, -5);
    CHECK(gpt2_context_position(ctx) == 0 && gpt2_next(ctx, greedy, 0, NULL) == -1, "rewind to 0: nothing to predict");

    /* Filling the context: the last drawn token cannot be fed. */
    gpt2_context *small = context(m, 6, 1);
    gpt2_forward(small, prompt, 5, NULL);
    CHECK(gpt2_next(small, greedy, 0, NULL) >= 0, "draw at position 5");
    CHECK(gpt2_next(small, greedy, 0, NULL) >= 0 && gpt2_context_position(small) == 6, "draw at position 6 (the cache is full)");
    CHECK(gpt2_next(small, greedy, 0, NULL) == -1, "no room for the pending token");
    CHECK(gpt2_forward(small, prompt, 1, NULL) == NULL, "forward with a pending token and a full cache");
    gpt2_context_free(small);

    free(all); free(ref); free(cont);
    gpt2_context_free(whole);
    gpt2_sampler_free(greedy);
    gpt2_sampler_free(warm);
    gpt2_context_free(ctx);
    printf("gpt2_next: logprobs within %.1e of log-softmax, pending token, continuation %.1e from the whole sequence\n",
           worst_logprob, d);
}

/* ---- one pool, two contexts, two threads -------------------------------------------------- */

typedef struct {
    const gpt2_model *m;
    gpt2_pool *pool;
    int seed;
    int out[40];
} Job;

static void *generate_job(void *arg) {
    Job *j = arg;
    char e[GPT2_ERR_MAX];
    gpt2_context *ctx = gpt2_context_new(j->m, &(gpt2_context_params){.n_ctx = 64, .pool = j->pool}, e, sizeof e);
    gpt2_sampler *s = gpt2_sampler_new(j->m, &(gpt2_sampling){.temperature = 1, .top_k = 40, .seed = (uint64_t)j->seed}, e, sizeof e);
    int prompt[6] = {464, 3290, 318, 257, 1332, 13};
    for (int i = 0; i < 6; i++) prompt[i] = (prompt[i] + j->seed) % 50000;
    gpt2_forward(ctx, prompt, 6, NULL);
    for (int i = 0; i < 40; i++) j->out[i] = gpt2_next(ctx, s, 0, NULL);
    gpt2_sampler_free(s);
    gpt2_context_free(ctx);
    return NULL;
}

static void test_shared_pool(const gpt2_model *m) {
    Job alone[4], shared[4];
    for (int i = 0; i < 4; i++) {  /* each on its own pool, one after another */
        alone[i] = (Job){m, gpt2_pool_new(2, err, sizeof err), i * 7 + 1, {0}};
        generate_job(&alone[i]);
        gpt2_pool_free(alone[i].pool);
    }
    gpt2_pool *pool = gpt2_pool_new(3, err, sizeof err);
    CHECK(pool && gpt2_pool_threads(pool) == 3, "a pool of 3");
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        shared[i] = (Job){m, pool, i * 7 + 1, {0}};
        pthread_create(&threads[i], NULL, generate_job, &shared[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 4; i++)
        CHECK(!memcmp(alone[i].out, shared[i].out, sizeof alone[i].out), "job %d: shared pool gave other tokens", i);
    gpt2_pool_free(pool);
    gpt2_pool *cores = gpt2_pool_new(0, err, sizeof err), *one = gpt2_pool_new(1, err, sizeof err);
    CHECK(cores && gpt2_pool_threads(cores) == gpt2_available_cores() && one && gpt2_pool_threads(one) == 1, "default pools");
    gpt2_pool_free(cores);
    gpt2_pool_free(one);
    CHECK(gpt2_pool_new(-1, err, sizeof err) == NULL && strstr(err, "thread count"), "pool of -1 threads: %s", err);
    CHECK(gpt2_pool_new(5000, err, sizeof err) == NULL, "pool of 5000 threads");
    printf("shared pool: 4 contexts in 4 threads on one pool of 3 = each alone, token for token\n");
}

/* ---- context sizes -------------------------------------------------------------------------- */

static void test_context_sizes(void) {
    ContextSizes s;
    const gpt2_config gpt2_small = {12, 12, 768, 1024, 50257, 1e-5f, 50256}, gpt2_xl = {48, 25, 1600, 1024, 50257, 1e-5f, 50256};
    const gpt2_config absurd = {MAX_LAYERS, 1, MAX_EMBD, MAX_CTX, MAX_VOCAB, 1e-5f, 0};
    CHECK(context_sizes(&gpt2_small, 1024, 1024, 4, AMX_BATCH, 4, UINT32_MAX, &s), "GPT-2 124M fits in 32 bits");
    CHECK(s.k_cache == (size_t)12 * 768 * 1024 && s.v_cache == (size_t)12 * 768 * 1024, "cache sizes");
    CHECK(context_sizes(&gpt2_xl, 1024, 1024, 4, AMX_BATCH, 4, UINT32_MAX, &s), "GPT-2 1.5B fits in 32 bits");
    CHECK(!context_sizes(&gpt2_xl, 1024, 1024, 4, AMX_BATCH, 4, 500u << 20, &s), "GPT-2 1.5B does not fit in 500 MB");
    CHECK(!context_sizes(&absurd, MAX_CTX, MAX_CTX + 16, 1024, AMX_BATCH, 2, UINT32_MAX, &s), "the largest config a file may declare, 32 bits");
    CHECK(!context_sizes(&absurd, MAX_CTX, MAX_CTX + 16, 1024, AMX_BATCH, 4, UINT64_MAX, &s) || (uint64_t)s.k_cache >= (uint64_t)1 << 40,
          "the largest config in 64 bits: either refused or computed exactly");

    /* A real file whose full context would need ~137 GB of KV cache: 1024 layers of 16 channels
     * and a million positions (the position table is zeros). Loads; the context is refused. */
    gpt2_config c = {.n_layer = 1024, .n_head = 1, .n_embd = 16, .n_ctx = 1 << 20, .vocab_size = 257, .ln_eps = 1e-5f, .eot_token = 256};
    uint32_t offsets[258];
    unsigned char bytes[256 + 13];
    for (int i = 0; i < 256; i++) offsets[i] = (uint32_t)i, bytes[i] = (unsigned char)i;
    memcpy(bytes + 256, "<|endoftext|>", 13);
    offsets[256] = 256, offsets[257] = 269;
    uint32_t special[1] = {256};
    gpt2_vocab vocab = {257, offsets, bytes, 0, NULL, 1, special};
    char path[512];
    snprintf(path, sizeof path, "%s/huge-context.bin", scratch_dir);
    gpt2_writer *w = gpt2_writer_open(path, &c, &vocab, err, sizeof err);
    float *zeros = calloc((size_t)c.n_ctx * 16, sizeof *zeros);
    for (int i = 0; w && i < gpt2_tensor_count(&c); i++) gpt2_writer_tensor(w, zeros, err, sizeof err);
    CHECK(w && gpt2_writer_close(w, err, sizeof err) == 0, "writing the huge-context model: %s", err);
    free(zeros);
    gpt2_model *m = gpt2_load(path, err, sizeof err);
    CHECK(m != NULL, "huge-context model loads: %s", err);
    if (m) {
        gpt2_context *ctx = gpt2_context_new(m, NULL, err, sizeof err);
        CHECK(!ctx && strstr(err, "memory"), "a 137 GB context is refused with a message: %s", ctx ? "(created)" : err);
        gpt2_context_free(ctx);
        ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = 256, .n_threads = 1}, err, sizeof err);
        int ids[3] = {1, 2, 3};
        CHECK(ctx && gpt2_forward(ctx, ids, 3, NULL), "a small context of the same model runs: %s", ctx ? "" : err);
        gpt2_context_free(ctx);
        for (int kv = GPT2_BF16; kv <= GPT2_N_DTYPES; kv++) {  /* a KV cache is f32 or f16 */
            ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = 256, .n_threads = 1, .kv_type = (gpt2_dtype)kv}, err, sizeof err);
            CHECK(!ctx && strstr(err, "KV cache"), "KV cache of type %d refused with a message: %s", kv, ctx ? "(created)" : err);
            gpt2_context_free(ctx);
        }
        gpt2_free(m);
    }
    remove(path);
    printf("context sizes: 32-bit and memory limits refused with a message\n");
}

/* ---- a tiny model with padding ids --------------------------------------------------------- */

/* 256 byte tokens, <|endoftext|>, then 3 ids without text. ln_f is (0, 1): every position's
 * final hidden state is all ones, so the logits are the row sums of wte, and padding id 258
 * (row of 10s) is always the most likely. */
static int write_padded_model(const char *path) {
    gpt2_config c = {.n_layer = 1, .n_head = 2, .n_embd = 8, .n_ctx = 16, .vocab_size = 260, .ln_eps = 1e-5f, .eot_token = 256};
    uint32_t offsets[261];
    unsigned char bytes[256 + 13];
    for (int i = 0; i < 256; i++) offsets[i] = (uint32_t)i, bytes[i] = (unsigned char)i;
    memcpy(bytes + 256, "<|endoftext|>", 13);
    for (int i = 257; i <= 260; i++) offsets[i] = 269;
    offsets[256] = 256;
    uint32_t special[1] = {256};
    gpt2_vocab vocab = {260, offsets, bytes, 0, NULL, 1, special};
    gpt2_writer *w = gpt2_writer_open(path, &c, &vocab, err, sizeof err);
    if (!w) return -1;
    uint64_t rng = 1;
    for (int i = 0; i < gpt2_tensor_count(&c); i++) {
        int rows, cols;
        char name[64];
        gpt2_tensor_info(&c, i, name, sizeof name, &rows, &cols);
        float *t = malloc(sizeof(float) * (size_t)rows * cols);
        for (int k = 0; k < rows * cols; k++) t[k] = (float)(random_uniform(&rng) - 0.5);
        if (!strcmp(name, "ln_f.weight")) for (int k = 0; k < cols; k++) t[k] = 0;
        if (!strcmp(name, "ln_f.bias")) for (int k = 0; k < cols; k++) t[k] = 1;
        if (!strcmp(name, "wte.weight")) for (int k = 0; k < cols; k++) t[258 * cols + k] = 10;
        int rc = gpt2_writer_tensor(w, t, err, sizeof err);
        free(t);
        if (rc) { gpt2_writer_abort(w); return -1; }
    }
    return gpt2_writer_close(w, err, sizeof err);
}

static int count_chunks(void *user, const char *text, size_t len) {
    (void)text;
    ((int *)user)[0]++;
    ((int *)user)[1] += (int)len;
    return 0;
}

static void test_padding_tokens(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/padded.bin", scratch_dir);
    CHECK(write_padded_model(path) == 0, "writing the padded model: %s", err);
    gpt2_model *m = gpt2_load(path, err, sizeof err);
    CHECK(m != NULL, "padded model loads: %s", err);
    if (!m) return;
    gpt2_context *ctx = context(m, 0, 1);
    gpt2_sampler *greedy = sampler(m, (gpt2_sampling){0});
    int prompt[2] = {'h', 'i'}, seen[2] = {0, 0};
    gpt2_stats st;
    int n = gpt2_generate(ctx, greedy, prompt, 2, 5, 0, count_chunks, seen, &st);
    CHECK(n == 5 && gpt2_context_pending(ctx) == 258, "5 padding tokens generated (%d, pending %d)", n, gpt2_context_pending(ctx));
    CHECK(seen[0] == 0 && seen[1] == 0, "tokens without text stream nothing (%d chunks, %d bytes)", seen[0], seen[1]);
    size_t len = 99;
    CHECK(gpt2_token_bytes(m, 258, &len) != NULL && len == 0, "a padding id has no bytes");
    gpt2_sampler_free(greedy);
    gpt2_context_free(ctx);
    gpt2_free(m);
    remove(path);
    printf("padding ids: generated first, stream nothing\n");
}

/* ---- the writer never replaces a file with one the loader refuses ---------------------------- */

static void test_writer_keeps_old_file(const char *good_model) {
    char path[512], copy_cmd[1200];
    snprintf(path, sizeof path, "%s/existing.bin", scratch_dir);
    snprintf(copy_cmd, sizeof copy_cmd, "cp '%s' '%s'", good_model, path);
    CHECK(system(copy_cmd) == 0, "copy");
    struct stat before, after;
    stat(path, &before);
    /* a vocabulary the writer's own checks pass but the tokenizer refuses: merge (0, 1) makes
     * the bytes "\0\1", which is no token */
    gpt2_config c = {.n_layer = 1, .n_head = 1, .n_embd = 4, .n_ctx = 4, .vocab_size = 257, .ln_eps = 1e-5f, .eot_token = 256};
    uint32_t offsets[258], merges[2] = {0, 1}, special[1] = {256};
    unsigned char bytes[256 + 13];
    for (int i = 0; i < 256; i++) offsets[i] = (uint32_t)i, bytes[i] = (unsigned char)i;
    memcpy(bytes + 256, "<|endoftext|>", 13);
    offsets[256] = 256, offsets[257] = 269;
    gpt2_vocab vocab = {257, offsets, bytes, 1, merges, 1, special};
    gpt2_writer *w = gpt2_writer_open(path, &c, &vocab, err, sizeof err);
    CHECK(w != NULL, "open: %s", err);
    float zeros[257 * 4] = {0};
    for (int i = 0; w && i < gpt2_tensor_count(&c); i++) gpt2_writer_tensor(w, zeros, err, sizeof err);
    CHECK(w && gpt2_writer_close(w, err, sizeof err) == -1 && strstr(err, "does not load"), "close refuses: %s", err);
    stat(path, &after);
    gpt2_model *m = gpt2_load(path, err, sizeof err);
    CHECK(m && before.st_size == after.st_size && before.st_mtime == after.st_mtime, "the existing model is untouched");
    gpt2_free(m);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0, "no temporary file is left behind");
    remove(path);
    printf("writer: a file the loader refuses does not replace the existing one\n");
}

/* ---- row strides ------------------------------------------------------------------------------ */

/* Copies a version-2 f32 model, giving every matrix rows `extra` floats wider than they need
 * (the gap filled with NaN, which a kernel reading it would spread to every logit). */
static int restride(const char *in_path, const char *out_path, int extra) {
    FILE *f = fopen(in_path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    size_t len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *in = malloc(len);
    if (fread(in, 1, len, f) != len) { fclose(f); free(in); return -1; }
    fclose(f);
    uint32_t n = read_u32(in + H_N_TENSORS);
    uint64_t data_start = read_u64(in + 256 + 16);  /* the first tensor: everything before is copied */
    size_t cap = len * 2 + 1024 * 1024;
    uint8_t *out = calloc(1, cap);
    memcpy(out, in, data_start);
    uint64_t off = data_start;
    const float nan = NAN;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = out + 256 + 32 * (size_t)i;
        uint32_t rows = read_u32(e + 4), cols = read_u32(e + 8), old_stride = read_u32(e + 12);
        uint64_t old_off = read_u64(e + 16);
        uint32_t stride = rows > 1 ? 4 * (cols + (uint32_t)extra) : old_stride;
        off = align_up(off, 64);
        for (uint32_t r = 0; r < rows; r++) {
            memcpy(out + off + (size_t)r * stride, in + old_off + (size_t)r * old_stride, 4 * (size_t)cols);
            for (uint32_t k = cols; k < stride / 4; k++) memcpy(out + off + (size_t)r * stride + 4 * k, &nan, 4);
        }
        put_u32(e + 12, stride);
        put_u64(e + 16, off);
        put_u64(e + 24, (uint64_t)rows * stride);
        off += (uint64_t)rows * stride;
    }
    put_u64(out + H_FILE_SIZE, off);
    f = fopen(out_path, "wb");
    int rc = f && fwrite(out, 1, off, f) == off && fclose(f) == 0 ? 0 : -1;
    free(in);
    free(out);
    return rc;
}

static void test_row_strides(const char *model_path) {
    char path[512];
    snprintf(path, sizeof path, "%s/strided.bin", scratch_dir);
    const int ids[9] = {464, 3290, 318, 257, 1332, 13, 383, 2068, 7586};
    gpt2_model *plain = gpt2_load(model_path, err, sizeof err);
    const int V = gpt2_model_config(plain)->vocab_size;
    float *want = malloc(9 * (size_t)V * sizeof *want), *got = malloc(9 * (size_t)V * sizeof *got);
    gpt2_context *ctx = context(plain, 16, 2);
    gpt2_forward(ctx, ids, 9, want);
    gpt2_context_free(ctx);
    for (int extra = 1; extra <= 16; extra += 15) {
        CHECK(restride(model_path, path, extra) == 0, "restride");
        gpt2_model *strided = gpt2_load(path, err, sizeof err);
        CHECK(strided != NULL, "strided model loads: %s", err);
        if (!strided) continue;
        ctx = context(strided, 16, 2);
        gpt2_forward(ctx, ids, 9, got);  /* batched kernels */
        CHECK(!memcmp(want, got, 9 * (size_t)V * sizeof *got), "rows %d floats apart: batch logits differ", extra);
        gpt2_context_rewind(ctx, 0);
        gpt2_context *plain_ctx = context(plain, 16, 2);
        for (int t = 0; t < 9; t++) {  /* decoding kernels */
            const float *a = gpt2_forward(ctx, &ids[t], 1, NULL), *b = gpt2_forward(plain_ctx, &ids[t], 1, NULL);
            CHECK(!memcmp(a, b, (size_t)V * sizeof *a), "rows %d floats apart: position %d differs", extra, t);
        }
        gpt2_context_free(plain_ctx);
        gpt2_context_free(ctx);
        gpt2_free(strided);
    }
    remove(path);
    free(want);
    free(got);
    gpt2_free(plain);
    printf("row strides: matrices with rows 1 and 16 floats wider give the same logits, bit for bit\n");
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: test_api MODEL.bin SCRATCH_DIR\n"); return 2; }
    scratch_dir = argv[2];
    gpt2_model *m = gpt2_load(argv[1], err, sizeof err);
    if (!m) { printf("FAIL %s\n", err); return 1; }
    test_next(m);
    test_shared_pool(m);
    gpt2_free(m);
    test_context_sizes();
    test_padding_tokens();
    test_writer_keeps_old_file(argv[1]);
    test_row_strides(argv[1]);
    if (failures) { printf("test_api: %d failures\n", failures); return 1; }
    printf("test_api: ok\n");
    return 0;
}
