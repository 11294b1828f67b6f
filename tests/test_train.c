/* The trainer against an independent reference: nanoGPT (PyTorch, float64) on the tiny fixture.
 *
 *   test_train TRAIN_DIR MODEL.bin
 *
 * TRAIN_DIR is tests/fixtures/tiny/train (train.json, train.bin: tests/fixtures/README.md);
 * MODEL.bin the same checkpoint converted. Checks, for the fixture's batch (B = 2, T = 16):
 *   - the loss, and the gradient of every parameter (wte through its listed rows, a weighted
 *     sum of every row, and its sum, sum of squares and largest value);
 *   - for each weight-decay variant (none; 0.1 on every tensor; 0.1 on 2-D tensors only), the
 *     loss before each of 10 AdamW steps and after the last, and every parameter after steps
 *     1 and 10;
 *   - the gradient does not depend on the thread count, bit for bit;
 *   - finite differences of the loss on a tiny random model agree with the gradient (a second
 *     guard, independent of the fixture), without dropout and with it;
 *   - the trainer's loss equals the cross-entropy of the logits the engine's own forward pass
 *     (gpt2_forward, KV cache and all) gives for the same windows;
 *   - --sequential batches are exactly the documented windows; the validation loss is the mean over
 *     every whole window of the split;
 *   - a vocabulary learned from a text (tinyshakespeare when ../shared has it, and a text of
 *     many scripts): the engine's tokenizer, loaded from a model file written with it, encodes
 *     the text exactly as the learning segmented it, and any bytes round-trip.
 *
 *   test_train TRAIN_DIR MODEL.bin SCRATCH_DIR [TEXT ...] */
#define TRAIN_GPT2_NO_MAIN
#pragma GCC diagnostic ignored "-Wunused-function"  /* what only the trainer's main calls */
#include "../train_gpt2.c"
#include "../export/json.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); failures++; } } while (0)

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { printf("FAIL cannot open %s\n", path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) { printf("FAIL cannot read %s\n", path); exit(1); }
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static const json_value *arrays;
static const char *bin;
static size_t bin_len;

/* A float32 array of train.bin by name; NULL if it is not there. */
static const float *array(const char *name, size_t *count) {
    const json_value *a = json_get(arrays, name);
    if (!a) return NULL;
    uint64_t off = (uint64_t)json_get(a, "offset")->integer, n = (uint64_t)json_get(a, "nbytes")->integer;
    if (off + n > bin_len) { printf("FAIL %s outside train.bin\n", name); exit(1); }
    *count = n / 4;
    return (const float *)(bin + off);
}

static bool is_conv1d(const char *name) {
    return strstr(name, "c_attn.weight") || strstr(name, "c_proj.weight") || strstr(name, "c_fc.weight");
}

/* The value the reference stores for element (r, k) of our tensor i, in HF's layout. */
static float reference_value(const float *ref, const char *name, int rows, int cols, int r, int k) {
    (void)rows;
    return is_conv1d(name) ? ref[(size_t)k * rows + r] : ref[(size_t)r * cols + k];
}

static int wte_rows[512], n_wte_rows;

/* Compares our tensor values (rows × cols, row-major) with the reference snapshot `prefix`
 * ("grad", "wd0/step1", ...). Returns the largest difference; `key_bias_tolerance` applies to
 * the key third of attn.c_attn.bias, whose gradient is mathematically zero. */
static double compare_snapshot(const Trainer *tr, const float *ours_base, const char *prefix, double tolerance,
                               double key_bias_tolerance, const char *what) {
    const gpt2_config *c = &tr->config;
    double worst = 0;
    for (int i = 0; i < gpt2_tensor_count(c); i++) {
        char name[64], key[160];
        int rows, cols;
        gpt2_tensor_info(c, i, name, sizeof name, &rows, &cols);
        const float *ours = ours_base + tr->table[i].offset / sizeof(float);
        size_t count;
        double d = 0;
        if (i == 0) {  /* wte: the listed rows */
            snprintf(key, sizeof key, "%s/%s@rows", prefix, name);
            const float *ref = array(key, &count);
            CHECK(ref && count == (size_t)n_wte_rows * cols, "%s: %s", what, key);
            if (!ref) continue;
            for (int j = 0; j < n_wte_rows; j++)
                for (int k = 0; k < cols; k++) {
                    double e = fabs(ours[(size_t)wte_rows[j] * cols + k] - ref[(size_t)j * cols + k]);
                    if (!(e <= d)) d = e;
                }
        } else {
            snprintf(key, sizeof key, "%s/%s", prefix, name);
            const float *ref = array(key, &count);
            CHECK(ref && count == (size_t)rows * cols, "%s: %s", what, key);
            if (!ref) continue;
            bool qkv_bias = strstr(name, "c_attn.bias") != NULL;
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < cols; k++) {
                    double e = fabs(ours[(size_t)r * cols + k] - reference_value(ref, name, rows, cols, r, k));
                    bool key_bias = qkv_bias && k >= c->n_embd && k < 2 * c->n_embd;
                    if (key_bias) { CHECK(e <= key_bias_tolerance, "%s: %s[%d] key bias differs by %g", what, name, k, e); continue; }
                    if (!(e <= d)) d = e;
                }
        }
        CHECK(d <= tolerance, "%s: %s differs by %g (tolerance %g)", what, name, d, tolerance);
        if (d > worst) worst = d;
    }
    return worst;
}

static const json_value *fixture;
static int inputs[64], targets[64];

static void reset_model(Trainer *tr, const gpt2_model *m) {
    init_from_model(tr, m);
    memset(tr->m, 0, tr->n_floats * sizeof(float));
    memset(tr->v, 0, tr->n_floats * sizeof(float));
}

static void test_against_reference(const char *dir, const char *model_path) {
    char path[512], jerr[256], err[GPT2_ERR_MAX];
    size_t len;
    snprintf(path, sizeof path, "%s/train.json", dir);
    char *text = slurp(path, &len);
    json_doc doc = {0};
    fixture = json_parse(text, len, &doc, jerr, sizeof jerr);
    if (!fixture) { printf("FAIL %s: %s\n", path, jerr); exit(1); }
    snprintf(path, sizeof path, "%s/train.bin", dir);
    bin = slurp(path, &bin_len);
    arrays = json_get(fixture, "arrays");
    const int B = (int)json_get(fixture, "B")->integer, T = (int)json_get(fixture, "T")->integer;
    int n = 0;
    for (const json_value *row = json_get(fixture, "inputs")->first; row; row = row->next)
        for (const json_value *v = row->first; v; v = v->next) inputs[n++] = (int)v->integer;
    n = 0;
    for (const json_value *row = json_get(fixture, "targets")->first; row; row = row->next)
        for (const json_value *v = row->first; v; v = v->next) targets[n++] = (int)v->integer;
    CHECK(n == B * T, "batch of %d", n);
    for (const json_value *v = json_get(fixture, "wte_rows")->first; v; v = v->next) wte_rows[n_wte_rows++] = (int)v->integer;

    gpt2_model *m = gpt2_load(model_path, err, sizeof err);
    if (!m) { printf("FAIL %s\n", err); exit(1); }
    Trainer tr = {0};
    trainer_init(&tr, gpt2_model_config(m), 2);
    activations_init(&tr, B, T);
    reset_model(&tr, m);

    /* loss and gradients */
    const double ref_loss = json_get(fixture, "loss")->number;
    float loss = train_forward(&tr, inputs, targets, NULL);
    train_backward(&tr, inputs, targets, NULL);
    CHECK(fabs(loss - ref_loss) / ref_loss < 1e-5, "loss %.7f, reference %.7f", loss, ref_loss);
    double grad_worst = compare_snapshot(&tr, tr.grads, "grad", 1e-4, 1e-6, "gradient");
    {  /* all of wte's gradient, through the weighted row sums and the statistics */
        size_t count;
        const float *wsum = array("grad/wte.weight#row_wsum", &count);
        const int V = tr.config.vocab_size, C = tr.config.n_embd;
        CHECK(wsum && count == (size_t)V, "row_wsum");
        double worst = 0, sum = 0, sum_sq = 0, max_abs = 0;
        for (int v = 0; wsum && v < V; v++) {
            double s = 0;
            for (int k = 0; k < C; k++) {
                double g = tr.grads[(size_t)v * C + k];
                s += g * (k + 1) / C;
                sum += g, sum_sq += g * g;
                if (fabs(g) > max_abs) max_abs = fabs(g);
            }
            if (fabs(s - wsum[v]) > worst) worst = fabs(s - wsum[v]);
        }
        const json_value *st = json_get(json_get(fixture, "stats_float64"), "grad/wte.weight");
        CHECK(worst < 1e-4, "wte gradient row sums differ by %g", worst);
        CHECK(fabs(sum - json_get(st, "sum")->number) < 1e-4 && fabs(sum_sq - json_get(st, "sum_sq")->number) < 1e-4 * json_get(st, "sum_sq")->number &&
              fabs(max_abs - json_get(st, "max_abs")->number) < 1e-5, "wte gradient statistics");
    }

    /* the same gradient with 1 and 3 threads, bit for bit */
    float *grads2 = malloc(tr.n_floats * sizeof(float));
    memcpy(grads2, tr.grads, tr.n_floats * sizeof(float));
    for (int threads = 1; threads <= 3; threads += 2) {
        gpt2_pool_free(tr.pool);
        tr.pool = gpt2_pool_new(threads, err, sizeof err);
        activations_free(&tr);
        activations_init(&tr, B, T);
        train_forward(&tr, inputs, targets, NULL);
        train_backward(&tr, inputs, targets, NULL);
        CHECK(!memcmp(grads2, tr.grads, tr.n_floats * sizeof(float)), "%d threads: the gradient differs", threads);
    }
    free(grads2);

    /* 10 AdamW steps on the same batch, for each weight-decay variant */
    const json_value *opt = json_get(fixture, "optimizer");
    const json_value *betas = json_get(opt, "betas");
    const char *variants[3] = {"wd0", "wd01_all", "wd01_2d"};
    double worst_loss = 0, worst_step1 = 0, worst_step10 = 0;
    for (int k = 0; k < 3; k++) {
        const json_value *spec = json_get(json_get(opt, "variants"), variants[k]);
        Optimizer o = {.lr = (float)json_get(opt, "lr")->number, .beta1 = (float)betas->first->number,
                       .beta2 = (float)betas->first->next->number, .eps = (float)json_get(opt, "eps")->number,
                       .weight_decay = (float)json_get(spec, "weight_decay")->number, .steps = 10,
                       .decay_all = !strcmp(json_get(spec, "applied_to")->string, "all")};
        o.min_lr = o.lr;
        reset_model(&tr, m);
        const json_value *losses = json_get(json_get(fixture, "losses"), variants[k])->first;
        for (int step = 0; step < 10; step++, losses = losses->next) {
            StepResult r = train_step(&tr, &o, inputs, targets, step);
            double d = fabs(r.loss - losses->number) / losses->number;
            CHECK(d < 1e-5, "%s step %d: loss %.7f, reference %.7f", variants[k], step + 1, r.loss, losses->number);
            if (d > worst_loss) worst_loss = d;
            char prefix[64];
            snprintf(prefix, sizeof prefix, "%s/step1", variants[k]);
            if (step == 0) {
                double w = compare_snapshot(&tr, tr.params, prefix, 2e-6, o.lr * 1.01, variants[k]);
                if (w > worst_step1) worst_step1 = w;
            }
        }
        float last = train_forward(&tr, inputs, targets, NULL);
        CHECK(fabs(last - losses->number) / losses->number < 1e-5, "%s: loss after 10 steps %.7f, reference %.7f", variants[k],
              last, losses->number);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s/step10", variants[k]);
        double w = compare_snapshot(&tr, tr.params, prefix, 1e-5, o.lr * 10.1, variants[k]);
        if (w > worst_step10) worst_step10 = w;
    }
    printf("against nanoGPT: loss %.2e relative, gradients %.2e, losses over 10 AdamW steps %.2e relative, "
           "parameters after 1 step %.2e, after 10 steps %.2e\n",
           fabs(loss - ref_loss) / ref_loss, grad_worst, worst_loss, worst_step1, worst_step10);
    trainer_free(&tr);
    gpt2_free(m);
    json_free(&doc);
    free(text);
    free((char *)bin);
}

/* ---- finite differences on a tiny random model ------------------------------------------------ */

static void test_finite_differences(float dropout) {
    const Dropout drop = {dropout, 12345};
    gpt2_config c = {.n_layer = 2, .n_head = 2, .n_embd = 16, .n_ctx = 8, .vocab_size = 40, .ln_eps = 1e-5f, .eot_token = 39};
    Trainer tr = {0};
    trainer_init(&tr, &c, 2);
    init_random(&tr, 7);
    uint64_t rng = 99;  /* larger weights than GPT-2's: every path matters */
    for (size_t i = 0; i < tr.n_floats; i++) tr.params[i] += (float)(0.3 * random_normal(&rng)) * (tr.params[i] != 0 && tr.params[i] != 1);
    const int B = 2, T = 6;
    activations_init(&tr, B, T);
    int x[12], y[12];
    for (int i = 0; i < 12; i++) x[i] = (int)(random_uniform(&rng) * 40), y[i] = (int)(random_uniform(&rng) * 40);
    train_forward(&tr, x, y, &drop);
    train_backward(&tr, x, y, &drop);
    int checked = 0, bad = 0;
    double worst = 0;
    for (int i = 0; i < gpt2_tensor_count(&c); i++) {
        char name[64];
        gpt2_tensor_info(&c, i, name, sizeof name, NULL, NULL);
        float *p = param_tensor(&tr, i);
        int count = tr.table[i].rows * tr.table[i].cols;
        for (int probe = 0; probe < 4; probe++) {
            int k = (int)(random_uniform(&rng) * count);
            if (i == 0) k = x[probe] * c.n_embd + probe;  /* an embedding row the batch uses */
            const float saved = p[k], eps = 1e-2f;
            p[k] = saved + eps;
            double up = train_forward(&tr, x, y, &drop);
            p[k] = saved - eps;
            double down = train_forward(&tr, x, y, &drop);
            p[k] = saved;
            double fd = (up - down) / (2 * eps), g = tr.grads[p + k - tr.params];
            double e = fabs(fd - g);
            if (e > worst) worst = e;
            if (e > 2e-3 + 2e-2 * fabs(g)) { printf("FAIL finite differences: %s[%d]: %.6f, gradient %.6f\n", name, k, fd, g); bad++; }
            checked++;
        }
    }
    CHECK(bad == 0, "%d of %d finite differences disagree", bad, checked);
    printf("finite differences, dropout %g: %d coordinates of every tensor agree with the gradient (worst %.1e)\n",
           (double)dropout, checked, worst);
    trainer_free(&tr);
}

/* ---- the trainer's forward pass against the engine's ------------------------------------------ */

static void test_forward_matches_engine(const char *model_path) {
    char err[GPT2_ERR_MAX];
    gpt2_model *m = gpt2_load(model_path, err, sizeof err);
    const gpt2_config *c = gpt2_model_config(m);
    Trainer tr = {0};
    trainer_init(&tr, c, 2);
    init_from_model(&tr, m);
    const int B = 3, T = 20, V = c->vocab_size;
    activations_init(&tr, B, T);
    int x[60], y[60];
    uint64_t rng = 5;
    for (int i = 0; i < B * T; i++) x[i] = (int)(random_uniform(&rng) * V), y[i] = (int)(random_uniform(&rng) * V);
    double trainer_loss = train_forward(&tr, x, y, NULL), engine_loss = 0;
    float *logits = malloc((size_t)T * V * sizeof *logits);
    gpt2_context *ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = T, .n_threads = 1}, err, sizeof err);
    for (int b = 0; b < B; b++) {
        gpt2_context_rewind(ctx, 0);
        for (int t = 0; t < T; t++) memcpy(logits + (size_t)t * V, gpt2_forward(ctx, &x[b * T + t], 1, NULL), (size_t)V * 4);
        for (int t = 0; t < T; t++) {
            const float *row = logits + (size_t)t * V;
            double max = row[0], z = 0;
            for (int v = 1; v < V; v++) if (row[v] > max) max = row[v];
            for (int v = 0; v < V; v++) z += exp(row[v] - max);
            engine_loss += max + log(z) - row[y[b * T + t]];
        }
    }
    engine_loss /= B * T;
    CHECK(fabs(trainer_loss - engine_loss) < 1e-5 * engine_loss, "trainer loss %.7f, engine %.7f", trainer_loss, engine_loss);
    printf("forward: the trainer's loss is the engine's (token by token) to %.1e\n", fabs(trainer_loss - engine_loss) / engine_loss);
    free(logits);
    gpt2_context_free(ctx);
    trainer_free(&tr);
    gpt2_free(m);
}

/* ---- the validation loss: every whole window of the split, the last partial batch too ------------ */

static void test_validation(const char *model_path) {
    char err[GPT2_ERR_MAX];
    gpt2_model *m = gpt2_load(model_path, err, sizeof err);
    const int V = gpt2_model_config(m)->vocab_size, B = 3, T = 8;
    Trainer tr = {0};
    trainer_init(&tr, gpt2_model_config(m), 2);
    init_from_model(&tr, m);
    activations_init(&tr, B, T);
    Dataset d = {0};
    d.n = 500, d.n_train = 450;  /* 49 / 8: 6 windows, two batches of 3, the second full; then 4 and 1 */
    d.tokens = malloc(d.n * sizeof(int));
    uint64_t rng = 17;
    for (size_t i = 0; i < d.n; i++) d.tokens[i] = (int)(random_uniform(&rng) * V);
    int x[24], y[24];
    float *logits = malloc((size_t)T * V * sizeof *logits);
    gpt2_context *ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = T, .n_threads = 1}, err, sizeof err);
    for (size_t n_val = 50; n_val >= 17; n_val -= 11) {  /* 6, 4 and 2 windows: a whole last batch, and partial ones */
        d.n = d.n_train + n_val;
        const size_t windows = (n_val - 1) / T;
        double want = 0;
        for (size_t w = 0; w < windows; w++) {
            gpt2_context_rewind(ctx, 0);
            gpt2_forward(ctx, d.tokens + d.n_train + w * T, T, logits);
            for (int t = 0; t < T; t++) {
                const float *row = logits + (size_t)t * V;
                double max = row[0], z = 0;
                for (int v = 1; v < V; v++) if (row[v] > max) max = row[v];
                for (int v = 0; v < V; v++) z += exp(row[v] - max);
                want += max + log(z) - row[d.tokens[d.n_train + w * T + t + 1]];
            }
        }
        want /= (double)windows * T;
        double got = validation_loss(&tr, &d, 0, x, y);
        CHECK(fabs(got - want) < 1e-5 * want, "%zu windows: validation loss %.6f, the engine's mean over them %.6f", windows, got, want);
    }
    printf("validation: the mean over every whole window of the split (%d per batch, partial last batches too)\n", B);
    free(logits);
    free(d.tokens);
    gpt2_context_free(ctx);
    trainer_free(&tr);
    gpt2_free(m);
}

/* ---- --sequential batches ------------------------------------------------------------------------ */

static void test_sequential_batches(void) {
    Dataset d = {0};
    d.n = 1000, d.n_train = 900;
    d.tokens = malloc(d.n * sizeof(int));
    for (size_t i = 0; i < d.n; i++) d.tokens[i] = (int)i;
    const int B = 3, T = 7;
    int x[21], y[21];
    uint64_t rng = 1;
    const long per_pass = (long)((d.n_train - 1) / (B * T));  /* 42 batches fit before the split's end */
    for (long k = 0; k < 100; k++) {
        next_batch(&d, B, T, true, k, &rng, x, y);
        for (int r = 0; r < B; r++)
            for (int t = 0; t < T; t++) {
                int want = (int)((k % per_pass) * B * T + r * T + t);
                CHECK(x[r * T + t] == want && y[r * T + t] == want + 1, "batch %ld row %d position %d: %d", k, r, t, x[r * T + t]);
            }
    }
    for (int k = 0; k < 200; k++) {  /* random windows stay inside the training split */
        next_batch(&d, B, T, false, k, &rng, x, y);
        for (int i = 0; i < B * T; i++) CHECK(y[i] == x[i] + 1 && y[i] < (int)d.n_train, "random window past the split");
    }
    free(d.tokens);
    printf("batches: --sequential gives tokens [k*B*T + r*T, +T), wrapping after %ld batches\n", per_pass);
}

/* ---- a learned vocabulary ------------------------------------------------------------------------ */

static void test_learned_vocab(const char *text_path, int n_tokens, const char *scratch) {
    FILE *f = fopen(text_path, "rb");
    if (!f) { printf("skipped: a vocabulary learned from %s (no such file)\n", text_path); return; }
    static uint8_t text[1 << 21];
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    if (len > 300000) len = 300000;  /* enough to learn a vocabulary from, quickly */
    Vocab v;
    int *learned;
    size_t n_learned;
    bpe_learn(&v, text, len, n_tokens, false, &learned, &n_learned);
    CHECK(v.n_tokens == n_tokens && v.eot == n_tokens - 1 && v.n_special == 1, "%d tokens, eot %d", v.n_tokens, v.eot);
    /* a model file with this vocabulary; the engine loads it and encodes the text */
    gpt2_config c = {1, 1, 8, 8, v.n_tokens, 1e-5f, v.eot};
    char path[512], err[GPT2_ERR_MAX];
    snprintf(path, sizeof path, "%s/learned-vocab.bin", scratch);
    gpt2_vocab view = vocab_view(&v);
    gpt2_writer *w = gpt2_writer_open(path, &c, &view, err, sizeof err);
    float *zeros = calloc((size_t)v.n_tokens * 8 + 64, sizeof *zeros);
    for (int i = 0; w && i < gpt2_tensor_count(&c); i++) gpt2_writer_tensor(w, zeros, err, sizeof err);
    CHECK(w && gpt2_writer_close(w, err, sizeof err) == 0, "write: %s", err);
    free(zeros);
    gpt2_model *m = gpt2_load(path, err, sizeof err);
    CHECK(m != NULL, "load: %s", err);
    if (!m) return;
    size_t n;
    int *ids = gpt2_tokenize(m, (const char *)text, len, 0, &n);
    size_t first_diff = 0;
    while (first_diff < n && first_diff < n_learned && ids[first_diff] == learned[first_diff]) first_diff++;
    CHECK(n == n_learned && first_diff == n, "%s: the engine's encoding differs from the learned segmentation at token %zu "
          "(%zu and %zu tokens)", text_path, first_diff, n, n_learned);
    /* any bytes round-trip, valid UTF-8 or not */
    uint64_t rng = 11;
    int round_trips = 0;
    for (int k = 0; k < 2000; k++) {
        uint8_t bytes[64], back[64 * 16];
        size_t m_len = 1 + (size_t)(random_uniform(&rng) * 63), b_len = 0, n_ids;
        for (size_t i = 0; i < m_len; i++) bytes[i] = k % 2 ? (uint8_t)(random_uniform(&rng) * 256) : text[(size_t)(random_uniform(&rng) * len)];
        int *r = gpt2_tokenize(m, (const char *)bytes, m_len, 0, &n_ids);
        for (size_t i = 0; i < n_ids; i++) {
            size_t tl = 0;
            const char *tb = gpt2_token_bytes(m, r[i], &tl);
            memcpy(back + b_len, tb, tl);
            b_len += tl;
        }
        round_trips += b_len == m_len && !memcmp(back, bytes, m_len);
        free(r);
    }
    CHECK(round_trips == 2000, "%d of 2000 byte strings round-trip", round_trips);
    printf("learned vocabulary of %d from %s: %.2f bytes a token; the engine encodes the %zu KB exactly as learned; "
           "2000 byte strings round-trip\n", n_tokens, text_path, (double)len / n, len / 1000);
    free(ids);
    free(learned);
    gpt2_free(m);
    remove(path);
    vocab_free(&v);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: test_train TRAIN_DIR MODEL.bin SCRATCH_DIR [TEXT ...]\n"); return 2; }
    test_against_reference(argv[1], argv[2]);
    test_finite_differences(0);
    test_finite_differences(0.3f);
    test_forward_matches_engine(argv[2]);
    test_sequential_batches();
    test_validation(argv[2]);
    for (int i = 4; i < argc; i++) test_learned_vocab(argv[i], i % 2 ? 700 : 1024, argv[3]);
    if (failures) { printf("test_train: %d failures\n", failures); return 1; }
    printf("test_train: ok\n");
    return 0;
}
