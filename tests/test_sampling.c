/* Sampling and generation.
 *
 *   test_sampling MODEL.bin
 *
 * The sampler against distributions computed here by hand (temperature, top-k, top-p, min-p),
 * then against an independent implementation of its documented definition for hundreds of
 * combinations of all four (a chi-square test of many seeded draws, and never an id outside
 * the permitted set); its parameter checks and its reproducibility; gpt2_generate against a
 * hand-written greedy loop, its stop reasons, and the promise that streamed text never splits
 * a UTF-8 character. */
#include "../gpt2.c"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); failures++; } } while (0)

/* A model that only has a vocabulary size: all the sampler looks at. */
static gpt2_model *fake_model(int vocab_size) {
    gpt2_model *m = calloc(1, sizeof *m);
    m->config.vocab_size = vocab_size;
    return m;
}

/* Draws n samples and checks the frequencies against `expected` (probabilities per id):
 * each within 5 standard deviations of a binomial count, and zero where expected is zero. */
static void check_distribution(const char *what, gpt2_sampler *s, const float *logits, const double *expected, int V, int n) {
    int *count = calloc((size_t)V, sizeof *count);
    for (int i = 0; i < n; i++) count[gpt2_sample(s, logits)]++;
    for (int v = 0; v < V; v++) {
        double mean = n * expected[v], sd = sqrt(n * expected[v] * (1 - expected[v]));
        if (expected[v] == 0) CHECK(count[v] == 0, "%s: id %d drawn %d times, expected never", what, v, count[v]);
        else CHECK(fabs(count[v] - mean) <= 5 * sd + 1, "%s: id %d drawn %d times, expected %.0f ± %.0f", what, v, count[v], mean, sd);
    }
    free(count);
}

/* softmax(logits / temperature) restricted to the ids in keep[] (others 0). */
static void softmax_over(const float *logits, int V, float temperature, const int *keep, double *out) {
    double z = 0;
    for (int v = 0; v < V; v++) out[v] = keep[v] ? exp(logits[v] / temperature) : 0, z += out[v];
    for (int v = 0; v < V; v++) out[v] /= z;
}

static gpt2_sampler *sampler(const gpt2_model *m, gpt2_sampling p) {
    char err[GPT2_ERR_MAX];
    gpt2_sampler *s = gpt2_sampler_new(m, &p, err, sizeof err);
    if (!s) { printf("FAIL sampler: %s\n", err); exit(1); }
    return s;
}

/* ---- the definition, implemented independently ------------------------------------------
 * gpt2.h: logits / temperature; top-k keeps the k most likely; min-p keeps tokens at least
 * min_p × as likely as the most likely; top-p keeps the smallest set of the most likely whose
 * probability reaches top_p; each on the distribution renormalized over what the filters before
 * it kept. Here: double precision, full sorts, one renormalization after every filter.
 * Returns false if the parameters put a token within `margin` of a filter's edge, where
 * float rounding may fairly decide either way (the caller then skips the case). */
typedef struct { double p; int id; } Ref;
static int ref_desc(const void *a, const void *b) {
    const Ref *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}
static bool reference_distribution(const float *logits, int V, gpt2_sampling prm, double *out) {
    const double margin = 1e-4;
    Ref *r = malloc((size_t)V * sizeof *r);
    for (int v = 0; v < V; v++) r[v] = (Ref){(double)logits[v] / prm.temperature, v};
    qsort(r, (size_t)V, sizeof *r, ref_desc);  /* most likely first: softmax keeps the order */
    int n = V;
    if (prm.top_k > 0 && prm.top_k < n) {
        if (r[prm.top_k - 1].p - r[prm.top_k].p < margin) { free(r); return false; }
        n = prm.top_k;
    }
    double max = r[0].p, z = 0;
    for (int i = 0; i < n; i++) z += exp(r[i].p - max);
    for (int i = 0; i < n; i++) r[i].p = exp(r[i].p - max) / z;
    if (prm.min_p > 0) {
        int kept = 0;
        for (int i = 0; i < n; i++) {
            double ratio = r[i].p / r[0].p;
            if (fabs(ratio - prm.min_p) < margin) { free(r); return false; }
            if (ratio >= prm.min_p) kept++;
        }
        n = kept;  /* sorted: the kept ones are a prefix */
        z = 0;
        for (int i = 0; i < n; i++) z += r[i].p;
        for (int i = 0; i < n; i++) r[i].p /= z;
    }
    if (prm.top_p > 0 && prm.top_p < 1) {
        double cum = 0;
        for (int i = 0; i < n; i++) {
            cum += r[i].p;
            if (fabs(cum - prm.top_p) < margin) { free(r); return false; }
            if (cum >= prm.top_p) { n = i + 1; break; }
        }
        z = 0;
        for (int i = 0; i < n; i++) z += r[i].p;
        for (int i = 0; i < n; i++) r[i].p /= z;
    }
    for (int v = 0; v < V; v++) out[v] = 0;
    for (int i = 0; i < n; i++) out[r[i].id] = r[i].p;
    free(r);
    return true;
}

/* An upper bound of the chi-square distribution with df degrees of freedom that a correct
 * sampler exceeds with probability ~1e-7 (Wilson-Hilferty, z = 5.2): failures mean a bug. */
static double chi_square_bound(int df) {
    double k = df, z = 5.2, t = 1 - 2 / (9 * k) + z * sqrt(2 / (9 * k));
    return k * t * t * t;
}

/* Draws n tokens; false (with a message) if one is outside the permitted set or the counts
 * fail a chi-square test against `expected` (cells expecting fewer than 5 draws are pooled). */
static bool draws_match(const char *what, gpt2_sampler *s, const float *logits, const double *expected, int V, int n) {
    int *count = calloc((size_t)V, sizeof *count);
    bool ok = true;
    for (int i = 0; i < n; i++) {
        int id = gpt2_sample(s, logits);
        if (id < 0 || id >= V || expected[id] == 0) {
            printf("FAIL %s: drew id %d, which the definition does not permit\n", what, id);
            ok = false;
            break;
        }
        count[id]++;
    }
    double chi2 = 0, pooled_obs = 0, pooled_exp = 0;
    int cells = 0;
    for (int v = 0; ok && v < V; v++) {
        double e = expected[v] * n;
        if (e == 0) continue;
        if (e < 5) { pooled_obs += count[v]; pooled_exp += e; continue; }
        chi2 += (count[v] - e) * (count[v] - e) / e;
        cells++;
    }
    if (pooled_exp > 0) { chi2 += (pooled_obs - pooled_exp) * (pooled_obs - pooled_exp) / pooled_exp; cells++; }
    if (ok && cells > 1 && chi2 > chi_square_bound(cells - 1)) {
        printf("FAIL %s: chi-square %.1f over %d cells, bound %.1f\n", what, chi2, cells, chi_square_bound(cells - 1));
        ok = false;
    }
    free(count);
    return ok;
}

/* Every combination of temperature, top-k, min-p and top-p on random logits, small and
 * GPT-2-sized vocabularies: frequencies match the definition. */
static void test_sampler_combinations(void) {
    const float temps[] = {0.4f, 1.0f, 1.7f};
    const int top_ks[] = {0, 1, 2, 3, 10, 50};
    const float min_ps[] = {0, 0.02f, 0.1f, 0.5f};
    const float top_ps[] = {0, 0.1f, 0.5f, 0.8f, 0.95f};
    int tested = 0, skipped = 0, failed = 0;
    uint64_t rng = 2024;
    for (int big = 0; big <= 1; big++) {
        const int V = big ? 50257 : 40, n_draws = big ? 1000 : 20000;
        gpt2_model *m = fake_model(V);
        float *logits = malloc((size_t)V * sizeof *logits);
        double *want = malloc((size_t)V * sizeof *want);
        /* a spread like a model's: a few likely tokens, a long tail */
        for (int v = 0; v < V; v++) logits[v] = (float)(random_uniform(&rng) * 6 - 3 + (v % 7 == 3 ? 3 : 0));
        for (size_t a = 0; a < sizeof temps / sizeof *temps; a++)
            for (size_t b = 0; b < sizeof top_ks / sizeof *top_ks; b++)
                for (size_t c = 0; c < sizeof min_ps / sizeof *min_ps; c++)
                    for (size_t d = 0; d < sizeof top_ps / sizeof *top_ps; d++) {
                        if (big && (a != 1 || b % 2 || c % 2 || d % 2)) continue;  /* a slice: each draw costs O(V) */
                        gpt2_sampling prm = {temps[a], top_ks[b], top_ps[d], min_ps[c], 1000 + (uint64_t)tested};
                        if (!reference_distribution(logits, V, prm, want)) { skipped++; continue; }
                        char what[128];
                        snprintf(what, sizeof what, "V %d, temperature %g, top-k %d, min-p %g, top-p %g", V,
                                 (double)prm.temperature, prm.top_k, (double)prm.min_p, (double)prm.top_p);
                        gpt2_sampler *s = sampler(m, prm);
                        if (!draws_match(what, s, logits, want, V, n_draws)) failed++;
                        gpt2_sampler_free(s);
                        tested++;
                    }
        free(logits);
        free(want);
        free(m);
    }
    CHECK(failed == 0, "%d of %d sampling combinations differ from the definition", failed, tested);
    printf("sampling combinations: %d match the definition (%d skipped: a token within 1e-4 of a filter's edge)\n", tested,
           skipped);

    /* Named cases. top-k then a small top-p: the nucleus of the two survivors is the first
     * alone (a read before the candidates' array until the nucleus was taken of what top-k
     * kept). min-p then top-p: top-p measures the renormalized mass, so here it keeps two of
     * the four that min-p left (0.55 of 0.65 ≥ 0.8 × 0.65), not all four. */
    {
        enum { V = 50257 };
        gpt2_model *m = fake_model(V);
        float *logits = malloc(V * sizeof *logits);
        double *want = malloc(V * sizeof *want);
        for (int v = 0; v < V; v++) logits[v] = (float)v * 1e-3f;  /* distinct: no ties at the edges */
        gpt2_sampling prm = {.temperature = 1, .top_k = 2, .top_p = 0.1f, .seed = 5};
        CHECK(reference_distribution(logits, V, prm, want), "top-k 2, top-p 0.1: reference");
        gpt2_sampler *s = sampler(m, prm);
        CHECK(draws_match("top-k 2 then top-p 0.1", s, logits, want, V, 2000), "top-k 2 then top-p 0.1");
        gpt2_sampler_free(s);
        free(logits); free(want); free(m);
    }
    {
        enum { V = 20 };
        gpt2_model *m = fake_model(V);
        const double p[V] = {0.4, 0.15, 0.05, 0.05, 0.035, 0.035, 0.035, 0.035, 0.035, 0.035,
                             0.025, 0.025, 0.02, 0.02, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005};
        float logits[V];
        double want[V];
        for (int v = 0; v < V; v++) logits[v] = (float)log(p[v]);
        gpt2_sampling prm = {.temperature = 1, .min_p = 0.1f, .top_p = 0.8f, .seed = 6};
        CHECK(reference_distribution(logits, V, prm, want) && want[0] > 0 && want[1] > 0 && want[2] == 0,
              "min-p 0.1 then top-p 0.8: the reference keeps ids 0 and 1");
        gpt2_sampler *s = sampler(m, prm);
        CHECK(draws_match("min-p 0.1 then top-p 0.8", s, logits, want, V, 20000), "min-p then top-p renormalizes");
        gpt2_sampler_free(s);
        free(m);
    }
}

/* Greedy against its definition, the first of the largest non-NaN logits (all NaN: the last),
 * for vocabularies that are and are not whole vectors, with ties (−0 and +0 among them), NaN,
 * ±inf, negative logits and the winner anywhere. */
static void test_greedy(void) {
    uint64_t rng = 99;
    for (int V = 1; V <= 70; V++) {
        gpt2_model *m = fake_model(V);
        gpt2_sampler *s = sampler(m, (gpt2_sampling){.temperature = 0, .top_p = 1});
        float *logits = malloc((size_t)V * sizeof *logits);
        for (int trial = 0; trial < 200; trial++) {
            for (int v = 0; v < V; v++) {
                const uint32_t r = (uint32_t)((rng = rng * 6364136223846793005u + 1442695040888963407u) >> 33) % 16;
                logits[v] = r == 0 ? NAN : r == 1 ? -INFINITY : r == 2 && trial % 4 == 0 ? INFINITY : r == 3 ? -0.0f : r == 4 ? 0.0f
                            : (float)(r % 5) - (trial % 2 ? 3.0f : 6.0f) + (trial % 3 == 0 ? 0.5f : 0.0f);  /* even trials: below ±0 */
            }
            if (trial % 7 == 0)
                for (int v = 0; v < V; v++) logits[v] = NAN;
            int want = -1;
            for (int v = 0; v < V; v++)
                if (logits[v] == logits[v] && (want < 0 || logits[v] > logits[want])) want = v;
            if (want < 0) want = V - 1;
            const int got = gpt2_sample(s, logits);
            CHECK(got == want, "greedy over %d logits: id %d, the first largest is %d", V, got, want);
        }
        free(logits);
        gpt2_sampler_free(s);
        free(m);
    }
}

static void test_sampler(void) {
    enum { V = 6 };
    gpt2_model *m = fake_model(V);
    /* probabilities at temperature 1: id 2 ≈ .516, ids 1 and 5 ≈ .190 each, id 0 ≈ .070, ... */
    const float logits[V] = {1, 2, 3, 0, -1, 2};
    const int all[V] = {1, 1, 1, 1, 1, 1};
    double want[V];
    const int n = 200000;

    gpt2_sampler *s = sampler(m, (gpt2_sampling){.temperature = 0, .top_p = 1});
    CHECK(gpt2_sample(s, logits) == 2, "greedy picks the largest");
    const float tie[V] = {0, 5, 1, 5, 0, 0};
    CHECK(gpt2_sample(s, tie) == 1, "greedy breaks ties by the lower id");
    gpt2_sampler_free(s);

    s = sampler(m, (gpt2_sampling){.temperature = 1, .top_p = 1, .seed = 1});
    softmax_over(logits, V, 1, all, want);
    check_distribution("temperature 1", s, logits, want, V, n);
    gpt2_sampler_free(s);

    s = sampler(m, (gpt2_sampling){.temperature = 0.5f, .top_p = 1, .seed = 2});
    softmax_over(logits, V, 0.5f, all, want);
    check_distribution("temperature 0.5", s, logits, want, V, n);
    gpt2_sampler_free(s);

    s = sampler(m, (gpt2_sampling){.temperature = 2, .top_p = 1, .seed = 3});
    softmax_over(logits, V, 2, all, want);
    check_distribution("temperature 2", s, logits, want, V, n);
    gpt2_sampler_free(s);

    /* top-k 2: id 2, then the tie between ids 1 and 5 goes to the lower id */
    s = sampler(m, (gpt2_sampling){.temperature = 1, .top_k = 2, .top_p = 1, .seed = 4});
    softmax_over(logits, V, 1, (const int[V]){0, 1, 1, 0, 0, 0}, want);
    check_distribution("top-k 2", s, logits, want, V, n);
    gpt2_sampler_free(s);

    s = sampler(m, (gpt2_sampling){.temperature = 1, .top_k = 1000, .top_p = 1, .seed = 5});  /* k > V: all */
    softmax_over(logits, V, 1, all, want);
    check_distribution("top-k above the vocabulary", s, logits, want, V, n);
    gpt2_sampler_free(s);

    /* top-p 0.5: id 2 alone already holds .516 */
    s = sampler(m, (gpt2_sampling){.temperature = 1, .top_p = 0.5f, .seed = 6});
    softmax_over(logits, V, 1, (const int[V]){0, 0, 1, 0, 0, 0}, want);
    check_distribution("top-p 0.5", s, logits, want, V, n);
    gpt2_sampler_free(s);

    /* top-p 0.7: .516 + .190 (id 1, the lower of the tie) = .706 */
    s = sampler(m, (gpt2_sampling){.temperature = 1, .top_p = 0.7f, .seed = 7});
    softmax_over(logits, V, 1, (const int[V]){0, 1, 1, 0, 0, 0}, want);
    check_distribution("top-p 0.7", s, logits, want, V, n);
    gpt2_sampler_free(s);

    /* min-p 0.3: keep p >= 0.3 × .516 = .155: ids 2, 1, 5 */
    s = sampler(m, (gpt2_sampling){.temperature = 1, .top_p = 1, .min_p = 0.3f, .seed = 8});
    softmax_over(logits, V, 1, (const int[V]){0, 1, 1, 0, 0, 1}, want);
    check_distribution("min-p 0.3", s, logits, want, V, n);
    gpt2_sampler_free(s);

    /* a damaged model's logits: NaN is never drawn, +inf wins, and nothing crashes */
    {
        const float odd_logits[V] = {NAN, 1, NAN, INFINITY, -INFINITY, 2};
        const float all_nan[V] = {NAN, NAN, NAN, NAN, NAN, NAN};
        const gpt2_sampling modes[] = {{.temperature = 0, .top_p = 1}, {.temperature = 1, .top_p = 1},
                                       {.temperature = 1, .top_k = 2, .top_p = 1}, {.temperature = 0.5f, .top_p = 0.5f},
                                       {.temperature = 1, .top_p = 1, .min_p = 0.5f}};
        for (size_t k = 0; k < sizeof modes / sizeof *modes; k++) {
            gpt2_sampler *d = sampler(m, modes[k]);
            for (int i = 0; i < 200; i++) {
                int id = gpt2_sample(d, odd_logits);
                CHECK(id == 3, "mode %zu: +inf logit should win, got id %d", k, id);
                id = gpt2_sample(d, all_nan);
                CHECK(id >= 0 && id < V, "mode %zu: all-NaN logits gave id %d", k, id);
            }
            gpt2_sampler_free(d);
        }
        const float some_nan[V] = {NAN, 1, NAN, 0, -INFINITY, 2};
        s = sampler(m, (gpt2_sampling){.temperature = 1, .top_p = 1, .seed = 11});
        softmax_over(some_nan, V, 1, (const int[V]){0, 1, 0, 1, 0, 1}, want);
        check_distribution("NaN logits are never drawn", s, some_nan, want, V, n);
        gpt2_sampler_free(s);
    }

    /* parameters out of range are refused with a message */
    char err[GPT2_ERR_MAX];
    const gpt2_sampling bad[] = {
        {.temperature = -1, .top_p = 1}, {.temperature = NAN, .top_p = 1}, {.temperature = INFINITY, .top_p = 1},
        {.top_k = -1, .top_p = 1},       {.top_p = -0.1f},                 {.top_p = 1.5f},
        {.top_p = NAN},                  {.top_p = 1, .min_p = -0.1f},     {.top_p = 1, .min_p = 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        gpt2_sampler *b = gpt2_sampler_new(m, &bad[i], err, sizeof err);
        CHECK(!b && err[0], "bad sampling parameters %zu accepted", i);
        gpt2_sampler_free(b);
    }
    free(m);

    /* a real vocabulary: top-k keeps exactly the k largest; a seed fixes the draws */
    enum { BIG = 50257 };
    m = fake_model(BIG);
    float *big = malloc(BIG * sizeof *big);
    uint64_t rng = 42;
    for (int i = 0; i < BIG; i++) big[i] = (float)(random_uniform(&rng) * 20 - 10);
    float kth;
    {
        float *sorted = malloc(BIG * sizeof *sorted);
        memcpy(sorted, big, BIG * sizeof *sorted);
        for (int i = 0; i < 40; i++) {  /* 40 passes of selection: the 40th largest */
            int best = i;
            for (int j = i + 1; j < BIG; j++) if (sorted[j] > sorted[best]) best = j;
            float t = sorted[i]; sorted[i] = sorted[best]; sorted[best] = t;
        }
        kth = sorted[39];
        free(sorted);
    }
    s = sampler(m, (gpt2_sampling){.temperature = 5, .top_k = 40, .top_p = 1, .seed = 9});
    gpt2_sampler *same = sampler(m, (gpt2_sampling){.temperature = 5, .top_k = 40, .top_p = 1, .seed = 9});
    gpt2_sampler *other = sampler(m, (gpt2_sampling){.temperature = 5, .top_k = 40, .top_p = 1, .seed = 10});
    int differ = 0;
    for (int i = 0; i < 2000; i++) {
        int a = gpt2_sample(s, big), b = gpt2_sample(same, big), c = gpt2_sample(other, big);
        CHECK(big[a] >= kth, "top-k 40 drew id %d, outside the 40 largest", a);
        CHECK(a == b, "same seed, different draw at %d", i);
        differ += a != c;
    }
    CHECK(differ > 1000, "another seed should give other draws (only %d of 2000 differ)", differ);
    gpt2_sampler_free(s); gpt2_sampler_free(same); gpt2_sampler_free(other);
    free(big);
    free(m);
}

/* Collects what gpt2_generate streams, remembering where each chunk ended. */
typedef struct { char *text; size_t len; int chunks, stop_after; size_t *ends; } Collected;
static int collect(void *user, const char *text, size_t len) {
    Collected *c = user;
    c->text = realloc(c->text, c->len + len + 1);
    memcpy(c->text + c->len, text, len);
    c->len += len;
    c->ends = realloc(c->ends, (size_t)(c->chunks + 1) * sizeof *c->ends);
    c->ends[c->chunks++] = c->len;
    return c->stop_after && c->chunks >= c->stop_after;
}

/* Length of the well-formed UTF-8 character at s[0, n), or 0 if there is none. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : (s[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || len > n) return 0;
    uint32_t cp = len == 1 ? s[0] : s[0] & (0x7Fu >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    return cp < min_cp[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ? 0 : len;
}

/* How many well-formed characters of the collected text straddle a chunk boundary. */
static int split_characters(const Collected *c) {
    int split = 0, b = 0;
    for (size_t i = 0; i < c->len;) {
        size_t len = utf8_char((const unsigned char *)c->text + i, c->len - i);
        if (!len) { i++; continue; }
        while (b < c->chunks && c->ends[b] <= i) b++;
        if (b < c->chunks && c->ends[b] < i + len) split++;
        i += len;
    }
    return split;
}

/* The text stream on its own: a string of 1- to 4-byte characters and invalid bytes, fed in
 * random pieces (as tokens cut it), comes out whole and never split inside a character. */
static void test_text_stream(void) {
    const char text[] = "h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x8e\x89\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd "
                        "\xff\xc3\x28 \xe2\x82 x\xf0\x9f\x98 \xce\xb1\xce\xb2\xce\xb3 \xe0\xa4\xb9\xe0\xa4\xbf end\xe2\x82";
    const size_t n = sizeof text - 1;
    uint64_t rng = 7;
    int total_split = 0;
    for (int round = 0; round < 2000; round++) {
        Collected out = {0};
        TextStream stream = {.fn = collect, .user = &out};
        for (size_t i = 0; i < n;) {
            size_t piece = 1 + (size_t)(random_uniform(&rng) * (round % 2 ? 2 : 6));
            if (piece > n - i) piece = n - i;
            stream_put(&stream, text + i, piece);
            i += piece;
        }
        stream_finish(&stream);
        CHECK(out.len == n && !memcmp(out.text, text, n), "round %d: streamed bytes differ from the input", round);
        total_split += split_characters(&out);
        free(out.text); free(out.ends);
    }
    CHECK(total_split == 0, "%d characters were split between chunks", total_split);
}

static void test_generate(const char *path) {
    char err[GPT2_ERR_MAX];
    gpt2_model *m = gpt2_load(path, err, sizeof err);
    if (!m) { printf("FAIL %s\n", err); failures++; return; }
    const gpt2_config *c = gpt2_model_config(m);
    int prompt[3] = {464, 3290, 318};  /* "The dog is" */
    gpt2_stats st;

    /* greedy generation = forward + argmax by hand */
    gpt2_context *ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = 0, .n_threads = 2}, err, sizeof err);
    gpt2_sampler *greedy = sampler(m, (gpt2_sampling){.temperature = 0, .top_p = 1});
    int expect[20];
    const float *logits = gpt2_forward(ctx, prompt, 3, NULL);
    for (int i = 0; i < 20; i++) {
        expect[i] = gpt2_sample(greedy, logits);
        logits = gpt2_forward(ctx, &expect[i], 1, NULL);
    }
    Collected got = {0}, want = {0};
    for (int i = 0; i < 20; i++) {
        size_t len = 0;
        const char *b = gpt2_token_bytes(m, expect[i], &len);
        want.text = realloc(want.text, want.len + len + 1);
        memcpy(want.text + want.len, b, len);
        want.len += len;
    }
    gpt2_context_rewind(ctx, 0);
    int n = gpt2_generate(ctx, greedy, prompt, 3, 20, 1, collect, &got, &st);
    CHECK(n == 20 && st.n_generated == 20 && st.n_prompt == 3 && st.stop == GPT2_STOP_LENGTH, "greedy: %d tokens, stop %d", n, st.stop);
    CHECK(got.len == want.len && !memcmp(got.text, want.text, want.len), "greedy text = the hand-written loop's");
    CHECK(gpt2_context_position(ctx) == 3 + 19, "the last token is not fed back: position %d", gpt2_context_position(ctx));
    free(got.text); free(got.ends); free(want.text);

    /* <|endoftext|> stops generation unless ignored: make the first greedy token the model's EOT */
    gpt2_model eot_model = *m;
    eot_model.config.eot_token = expect[0];
    ctx->model = &eot_model;
    gpt2_context_rewind(ctx, 0);
    n = gpt2_generate(ctx, greedy, prompt, 3, 20, 0, NULL, NULL, &st);
    CHECK(n == 0 && st.stop == GPT2_STOP_EOT, "EOT: %d tokens, stop %d", n, st.stop);
    gpt2_context_rewind(ctx, 0);
    n = gpt2_generate(ctx, greedy, prompt, 3, 5, 1, NULL, NULL, &st);
    CHECK(n == 5 && st.stop == GPT2_STOP_LENGTH, "ignore EOT: %d tokens, stop %d", n, st.stop);
    ctx->model = m;
    gpt2_context_free(ctx);

    /* a full context stops generation; the last position's prediction is still emitted */
    ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = 10, .n_threads = 1}, err, sizeof err);
    n = gpt2_generate(ctx, greedy, prompt, 3, -1, 1, NULL, NULL, &st);
    CHECK(n == 10 - 3 + 1 && st.stop == GPT2_STOP_CONTEXT, "context of 10: %d tokens, stop %d", n, st.stop);
    gpt2_context_rewind(ctx, 0);
    int eleven[11] = {0};
    n = gpt2_generate(ctx, greedy, eleven, 11, 5, 1, NULL, NULL, &st);
    CHECK(n == -1 && st.stop == GPT2_STOP_ERROR && gpt2_context_position(ctx) == 0, "a prompt longer than the context is an error");
    n = gpt2_generate(ctx, greedy, eleven, 0, 5, 1, NULL, NULL, &st);
    CHECK(n == -1 && st.stop == GPT2_STOP_ERROR, "an empty prompt is an error");
    gpt2_context_free(ctx);
    gpt2_sampler_free(greedy);

    /* the callback can stop generation; streamed chunks never end inside a character, and
     * together they are exactly the tokens' bytes. Random weights at a high temperature give
     * plenty of partial-character tokens. */
    for (int threads = 1; threads <= 3; threads += 2) {
        ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = 0, .n_threads = threads}, err, sizeof err);
        gpt2_sampler *s = sampler(m, (gpt2_sampling){.temperature = 1.5f, .top_p = 1, .seed = 1234});
        Collected out = {.stop_after = 0};
        n = gpt2_generate(ctx, s, prompt, 3, c->n_ctx - 3, 1, collect, &out, &st);
        int split = split_characters(&out);
        CHECK(split == 0, "%d characters were split between chunks", split);
        static char first[1 << 16];
        static size_t first_len;
        if (threads == 1) { memcpy(first, out.text, out.len); first_len = out.len; }
        else CHECK(out.len == first_len && !memcmp(first, out.text, first_len), "same seed, %d threads: different text", threads);
        free(out.text); free(out.ends);
        gpt2_sampler_free(s);

        s = sampler(m, (gpt2_sampling){.temperature = 1.5f, .top_p = 1, .seed = 1234});
        gpt2_context_rewind(ctx, 0);
        Collected stopped = {.stop_after = 2};
        n = gpt2_generate(ctx, s, prompt, 3, 50, 1, collect, &stopped, &st);
        CHECK(st.stop == GPT2_STOP_CALLBACK && stopped.chunks == 2, "callback stop: stop %d after %d chunks", st.stop, stopped.chunks);
        free(stopped.text); free(stopped.ends);
        gpt2_sampler_free(s);
        gpt2_context_free(ctx);
    }
    gpt2_free(m);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: test_sampling MODEL.bin\n"); return 2; }
    test_sampler();
    test_greedy();
    test_sampler_combinations();
    test_text_stream();
    test_generate(argv[1]);
    if (failures) { printf("test_sampling: %d failures\n", failures); return 1; }
    printf("test_sampling: ok\n");
    return 0;
}
