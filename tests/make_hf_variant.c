/* make_hf_variant.c — writes variants of a HuggingFace GPT-2 checkpoint for the converter tests.
 *
 *     build/make_hf_variant FIXTURE_DIR OUT_DIR [--basic]
 *
 * FIXTURE_DIR is an F32 checkpoint (tests/fixtures/tiny/model). Each variant is a directory
 * OUT_DIR/NAME holding config.json, model.safetensors, vocab.json and merges.txt; files a
 * variant does not change are symlinks to the fixture's. OUT_DIR/cases.txt lists the
 * variants, one per line, with what export/convert must do with each:
 *
 *   identical NAME [REF]   convert, to a file byte-identical to the conversion of REF
 *                          (another variant) or, without REF, of FIXTURE_DIR itself
 *   valid NAME             convert (tests/check_convert.c then compares the result with
 *                          the checkpoint, value by value)
 *   fail NAME              be rejected: exit status 1, one line on stderr, no output file
 *
 * tests/test_convert.sh runs them. --basic writes only the valid variants that exercise the
 * tensor data (prefix, order, dtype), for a second fixture with other dimensions.
 *
 * F16 and BF16 variants round the fixture's F32 values to nearest, ties to even; the same
 * values written back as F32 (the "-ref" variants) must convert to the same bytes. The
 * rounding is checked here against a brute-force definition before any file is written.
 */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../export/json.h"

/* Exits: a test generator has nothing to clean up that the Makefile's rm -rf does not. */
static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "make_hf_variant: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory%s", "");
    return p;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

/* ---- text ------------------------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len;
} text;

static text read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    text t = {NULL, 0};
    size_t cap = 1 << 16;
    t.data = xmalloc(cap);
    size_t n;
    while ((n = fread(t.data + t.len, 1, cap - t.len, f)) > 0) {
        t.len += n;
        if (t.len == cap) {
            cap *= 2;
            t.data = realloc(t.data, cap);
            if (!t.data) die("out of memory%s", "");
        }
    }
    fclose(f);
    t.data[t.len] = 0;  /* there is always room: the loop grows the buffer when full */
    return t;
}

static text text_copy(text t) {
    text c = {xmalloc(t.len + 1), t.len};
    memcpy(c.data, t.data, t.len + 1);
    return c;
}

/* Replaces [begin, end) of t with s. */
static void splice(text *t, size_t begin, size_t end, const char *s) {
    size_t n = strlen(s), len = t->len - (end - begin) + n;
    char *d = xmalloc(len + 1);
    memcpy(d, t->data, begin);
    memcpy(d + begin, s, n);
    memcpy(d + begin + n, t->data + end, t->len - end + 1);
    free(t->data);
    t->data = d;
    t->len = len;
}

static void replace_first(text *t, const char *old, const char *new_text) {
    char *at = strstr(t->data, old);
    if (!at) die("text not found: %s", old);
    splice(t, (size_t)(at - t->data), (size_t)(at - t->data) + strlen(old), new_text);
}

/* JSON edits on the top-level object of t: set a member's value (adding it if absent) or
 * remove it, using the parser's source positions. */
static void json_edit(text *t, const char *key, const char *value) {
    json_doc doc;
    char err[256];
    const json_value *root = json_parse(t->data, t->len, &doc, err, sizeof err);
    if (!root || root->type != JSON_OBJECT) die("json_edit: %s", root ? "not an object" : err);
    const json_value *m = json_get(root, key), *prev = NULL;
    for (const json_value *p = root->first; m && p != m; p = p->next) prev = p;
    size_t begin = 0, end = 0;
    char *insert = NULL;
    if (m && value) {
        begin = m->start, end = m->end;
        insert = xstrdup(value);
    } else if (m) {  /* remove the member with one of the commas around it */
        if (m->next) begin = m->key_start, end = m->next->key_start;
        else if (prev) begin = prev->end, end = m->end;
        else begin = m->key_start, end = m->end;
        insert = xstrdup("");
    } else if (value) {
        begin = end = root->start + 1;
        insert = xmalloc(strlen(key) + strlen(value) + 8);
        sprintf(insert, "\"%s\": %s%s", key, value, root->count ? ", " : "");
    }
    json_free(&doc);
    if (insert) splice(t, begin, end, insert);
    free(insert);
}

/* ---- checkpoints ----------------------------------------------------------------------- */

typedef struct {
    char name[128];
    char dtype[16];
    int n_dims;
    uint64_t shape[4];
    unsigned char *data;
    uint64_t nbytes;
} tensor;

typedef struct {
    tensor *t;
    int n, cap;
} checkpoint;

static uint64_t element_count(const tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

static tensor *add_tensor(checkpoint *c, const char *name, const char *dtype, int n_dims, const uint64_t *shape,
                          uint64_t nbytes) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->t = realloc(c->t, (size_t)c->cap * sizeof *c->t);
        if (!c->t) die("out of memory%s", "");
    }
    tensor *t = &c->t[c->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    t->data = calloc(1, nbytes ? (size_t)nbytes : 1);
    if (!t->data) die("out of memory%s", "");
    return t;
}

static tensor *find_tensor(checkpoint *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->t[i].name, name) == 0) return &c->t[i];
    die("no tensor %s", name);
    return NULL;
}

static void remove_tensor(checkpoint *c, const char *name) {
    tensor *t = find_tensor(c, name);
    free(t->data);
    memmove(t, t + 1, (size_t)(c->t + c->n - t - 1) * sizeof *t);
    c->n--;
}

static checkpoint clone(const checkpoint *c) {
    checkpoint d = {NULL, 0, 0};
    for (int i = 0; i < c->n; i++) {
        const tensor *s = &c->t[i];
        tensor *t = add_tensor(&d, s->name, s->dtype, s->n_dims, s->shape, s->nbytes);
        memcpy(t->data, s->data, (size_t)s->nbytes);
    }
    return d;
}

static void checkpoint_free(checkpoint *c) {
    for (int i = 0; i < c->n; i++) free(c->t[i].data);
    free(c->t);
    c->t = NULL;
    c->n = c->cap = 0;
}

static checkpoint load_checkpoint(const char *path) {
    text file = read_file(path);
    if (file.len < 8) die("%s: too small", path);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | (unsigned char)file.data[i];
    if (header_len > file.len - 8) die("%s: bad header length", path);
    json_doc doc;
    char err[256];
    const json_value *root = json_parse(file.data + 8, (size_t)header_len, &doc, err, sizeof err);
    if (!root) die("header: %s", err);
    checkpoint c = {NULL, 0, 0};
    const unsigned char *data = (const unsigned char *)file.data + 8 + header_len;
    for (const json_value *e = root->first; e; e = e->next) {
        if (json_key_is(e, "__metadata__")) continue;
        const json_value *shape = json_get(e, "shape"), *offsets = json_get(e, "data_offsets");
        uint64_t dims[4];
        int n_dims = 0;
        for (const json_value *d = shape->first; d && n_dims < 4; d = d->next) dims[n_dims++] = (uint64_t)d->integer;
        uint64_t begin = (uint64_t)offsets->first->integer, end = (uint64_t)offsets->first->next->integer;
        if (strcmp(json_get(e, "dtype")->string, "F32") != 0) die("%s: the fixture must be F32", e->key);
        if (end > file.len - 8 - header_len || begin > end) die("%s: bad offsets", e->key);
        tensor *t = add_tensor(&c, e->key, "F32", n_dims, dims, end - begin);
        memcpy(t->data, data + begin, (size_t)(end - begin));
    }
    json_free(&doc);
    free(file.data);
    return c;
}

static float get_f32(const tensor *t, uint64_t i) {
    float f;
    memcpy(&f, t->data + 4 * i, 4);  /* little-endian hosts only, like the engine */
    return f;
}

/* ---- f16 / bf16 rounding --------------------------------------------------------------- */

/* Round to nearest, ties to even, on the bits: the float's extra mantissa bits decide. */
static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)(x >> 16 | 0x40);  /* NaN stays NaN */
    uint32_t rest = x & 0xFFFFu, half = x >> 16;
    if (rest > 0x8000u || (rest == 0x8000u && (half & 1))) half++;
    return (uint16_t)half;
}

static uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = x >> 16 & 0x8000u, a = x & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);
    uint32_t exponent = a >> 23;                       /* biased by 127 */
    uint32_t mantissa = (a & 0x7FFFFFu) | (exponent ? 0x800000u : 0);
    /* f16 keeps 10 mantissa bits of a normal number (exponent >= 113, i.e. >= 2^-14), and
     * counts subnormals in units of 2^-24: drop `shift` bits of the 24-bit mantissa. */
    uint32_t shift = exponent >= 113 ? 13 : 126 - exponent;
    if (exponent > 142) return (uint16_t)(sign | 0x7C00u);  /* >= 2^16: infinity */
    if (shift > 24) return (uint16_t)sign;                   /* < 2^-25: rounds to zero */
    uint32_t kept = mantissa >> shift, rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    uint32_t h = exponent >= 113 ? (exponent - 112) << 10 | (kept & 0x3FFu) : kept;
    if (rest > halfway || (rest == halfway && (h & 1))) h++;  /* may carry into the exponent: right */
    return (uint16_t)(sign | h);  /* h = 0x7C00 is infinity, as it should be past 65504 */
}

/* The value of a half, from its definition rather than bit moves. */
static double f16_value(uint16_t h) {
    int e = h >> 10 & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

static double bf16_value(uint16_t b) {
    int e = b >> 7 & 0xFF, m = b & 0x7F;
    double v = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134);
    return b & 0x8000 ? -v : v;
}

/* Checks that r = round(x) is the nearest representable value, the even one on a tie:
 * its neighbours r - 1 and r + 1 (in the same sign's encoding) are no closer. */
static int rounding_is_right(double x, uint16_t r, double (*value)(uint16_t), uint16_t infinity) {
    double v = value(r);
    if (isnan(x)) return isnan(v);
    uint16_t mag = r & 0x7FFF;
    double err = fabs(x - v);
    if (mag == infinity) {  /* x must be at least halfway past the largest finite value */
        double max = value((uint16_t)(infinity - 1)), next = 2 * max - value((uint16_t)(infinity - 2));
        return fabs(x) >= (max + next) / 2;
    }
    if ((x < 0) != ((r & 0x8000) != 0) && v != 0) return 0;
    for (int d = -1; d <= 1; d += 2) {
        if ((mag == 0 && d < 0)) continue;
        uint16_t neighbour = (uint16_t)((r & 0x8000) | (mag + d));
        double e2 = fabs(x - value(neighbour));
        if (e2 < err || (e2 == err && (mag & 1))) return 0;
    }
    return 1;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint32_t rng(void) {  /* xorshift64*: fixed seed, so the variants are the same every run */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Du) >> 32);
}

static void check_rounding_of(float f) {
    if (!rounding_is_right(f, f32_to_f16(f), f16_value, 0x7C00) ||
        !rounding_is_right(f, f32_to_bf16(f), bf16_value, 0x7F80)) {
        char s[64];
        snprintf(s, sizeof s, "%.9g", (double)f);
        die("rounding to f16/bf16 is wrong for %s", s);
    }
}

/* The rounding functions against their definition: random bit patterns, ties and the
 * values around each f16 boundary, then every value of the fixture. */
static void check_rounding(const checkpoint *c) {
    for (int i = 0; i < 1000000; i++) {
        uint32_t bits = rng();
        float f;
        memcpy(&f, &bits, 4);
        check_rounding_of(f);
    }
    for (uint32_t h = 0; h < 0x7C00; h++) {  /* each half, its ties with the next, and both sides */
        double lo = f16_value((uint16_t)h), hi = f16_value((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2);
        check_rounding_of(mid);
        check_rounding_of(nextafterf(mid, 0));
        check_rounding_of(nextafterf(mid, INFINITY));
        check_rounding_of(-mid);
    }
    for (int i = 0; i < c->n; i++)
        for (uint64_t k = 0; k < element_count(&c->t[i]); k++) check_rounding_of(get_f32(&c->t[i], k));
}

/* Rewrites every F32 tensor as dtype ("F16", "BF16"), or as F32 holding the values that
 * dtype would hold (as_f32: the reference a correct converter must reproduce). */
static void round_checkpoint(checkpoint *c, const char *dtype, int as_f32) {
    int bf16 = strcmp(dtype, "BF16") == 0;
    for (int i = 0; i < c->n; i++) {
        tensor *t = &c->t[i];
        uint64_t n = element_count(t);
        unsigned char *d = xmalloc((size_t)n * (as_f32 ? 4 : 2));
        for (uint64_t k = 0; k < n; k++) {
            float f = get_f32(t, k);
            uint16_t r = bf16 ? f32_to_bf16(f) : f32_to_f16(f);
            if (as_f32) {
                float v = (float)(bf16 ? bf16_value(r) : f16_value(r));
                memcpy(d + 4 * k, &v, 4);
            } else {
                d[2 * k] = (unsigned char)(r & 0xFF);
                d[2 * k + 1] = (unsigned char)(r >> 8);
            }
        }
        free(t->data);
        t->data = d;
        t->nbytes = n * (as_f32 ? 4 : 2);
        if (!as_f32) snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    }
}

/* ---- writing --------------------------------------------------------------------------- */

typedef struct {
    int shuffle;                 /* header entries and data in two different random orders */
    int gap;                     /* up to this many unused bytes before each tensor's data */
    int padding;                 /* spaces after the JSON (the format pads with 0x20) */
    uint64_t header_length;      /* write this instead of the true header length */
    size_t truncate_json;        /* keep only this many bytes of the JSON */
    int overlap;                 /* start one tensor inside the one before it */
    int past_end;                /* move the last tensor's offsets past the end of the data */
    const char *header_override; /* the whole JSON text instead of the generated one */
    double keep_fraction;        /* cut the finished file to this fraction of its size */
} write_options;

static void shuffle(int *order, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng() % (uint32_t)(i + 1)), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

static void write_safetensors(const char *path, const checkpoint *c, const write_options *o) {
    int n = c->n;
    int *data_order = xmalloc((size_t)n * sizeof(int)), *header_order = xmalloc((size_t)n * sizeof(int));
    uint64_t *begin = xmalloc((size_t)n * sizeof(uint64_t)), *end = xmalloc((size_t)n * sizeof(uint64_t));
    for (int i = 0; i < n; i++) data_order[i] = header_order[i] = i;
    if (o->shuffle) {
        shuffle(data_order, n);
        shuffle(header_order, n);
    }
    uint64_t at = 0;
    for (int k = 0; k < n; k++) {
        int i = data_order[k];
        if (o->gap) at += rng() % (uint32_t)o->gap + 1;
        begin[i] = at;
        end[i] = at + c->t[i].nbytes;
        at = end[i];
    }
    uint64_t data_size = at;
    unsigned char *data = calloc(1, data_size ? (size_t)data_size : 1);
    if (!data) die("out of memory%s", "");
    for (int i = 0; i < n; i++) memcpy(data + begin[i], c->t[i].data, (size_t)c->t[i].nbytes);

    /* Broken offsets, in the header only. */
    if (o->overlap && n > 1) {  /* tensor data_order[1] starts 4 bytes before tensor data_order[0] ends */
        int a = data_order[0], b = data_order[1];
        uint64_t shift = begin[b] - (end[a] - 4);
        begin[b] -= shift;
        end[b] -= shift;
    }
    if (o->past_end) {
        int last = data_order[n - 1];
        begin[last] += 64;
        end[last] += 64;
    }

    /* The header: our own JSON, in header_order. */
    size_t cap = 256 + (size_t)n * 256, len = 0;
    char *json = xmalloc(cap + (size_t)o->padding);
    len += (size_t)snprintf(json + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int k = 0; k < n; k++) {
        const tensor *t = &c->t[header_order[k]];
        len += (size_t)snprintf(json + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->dtype);
        for (int d = 0; d < t->n_dims; d++)
            len += (size_t)snprintf(json + len, cap - len, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
        len += (size_t)snprintf(json + len, cap - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)begin[header_order[k]], (unsigned long long)end[header_order[k]]);
    }
    len += (size_t)snprintf(json + len, cap - len, "}");
    if (len >= cap) die("header too long for %s", path);
    if (o->header_override) {
        free(json);
        json = xstrdup(o->header_override);
        len = strlen(json);
    }
    memset(json + len, ' ', (size_t)o->padding);
    len += (size_t)o->padding;
    if (o->truncate_json) len = o->truncate_json;

    FILE *f = fopen(path, "wb");
    if (!f) die("cannot create %s", path);
    uint64_t header_length = o->header_length ? o->header_length : len;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(header_length >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(json, 1, len, f);
    fwrite(data, 1, (size_t)data_size, f);
    if (fclose(f) != 0) die("write error on %s", path);
    if (o->keep_fraction > 0) {
        struct stat st;
        if (stat(path, &st) != 0 || truncate(path, (off_t)((double)st.st_size * o->keep_fraction)) != 0)
            die("cannot truncate %s", path);
    }
    free(data);
    free(json);
    free(data_order);
    free(header_order);
    free(begin);
    free(end);
}

/* ---- variants -------------------------------------------------------------------------- */

static const char *FILES[4] = {"config.json", "model.safetensors", "vocab.json", "merges.txt"};
enum { CONFIG, MODEL, VOCAB, MERGES };

typedef struct {
    char fixture[4096];   /* absolute path of the fixture directory */
    const char *out_dir;
    FILE *cases;
    checkpoint base;
    text config, vocab, merges;
} generator;

/* A variant's directory, with symlinks to the fixture for the files not in `own` (a bit
 * per FILES entry) and not in `missing`. */
static void make_dir(generator *g, const char *name, unsigned own, unsigned missing, char dir[4096]) {
    snprintf(dir, 4096, "%s/%s", g->out_dir, name);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("cannot create %s", dir);
    for (int i = 0; i < 4; i++) {
        char link_path[4200], target[4200];
        snprintf(link_path, sizeof link_path, "%s/%s", dir, FILES[i]);
        unlink(link_path);
        if (own & 1u << i || missing & 1u << i) continue;
        snprintf(target, sizeof target, "%s/%s", g->fixture, FILES[i]);
        if (symlink(target, link_path) != 0) die("cannot link %s", link_path);
    }
}

static void write_text(const char *dir, const char *file, text t) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(t.data, 1, t.len, f) != t.len || fclose(f) != 0) die("cannot write %s", path);
}

static void add_case(generator *g, const char *expect, const char *name, const char *ref) {
    fprintf(g->cases, "%s %s%s%s\n", expect, name, ref ? " " : "", ref ? ref : "");
}

/* A variant that changes only the model file. */
static void model_case(generator *g, const char *expect, const char *name, const checkpoint *c,
                       const write_options *o) {
    char dir[4096], path[4200];
    make_dir(g, name, 1u << MODEL, 0, dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, c, o);
    add_case(g, expect, name, NULL);
}

/* A variant that changes one text file (or leaves it out: t.data == NULL). */
static void text_case(generator *g, const char *expect, const char *name, int file, text t) {
    char dir[4096];
    make_dir(g, name, t.data ? 1u << file : 0, t.data ? 0 : 1u << file, dir);
    if (t.data) write_text(dir, FILES[file], t);
    add_case(g, expect, name, NULL);
    free(t.data);
}

static void config_case(generator *g, const char *expect, const char *name, const char *key, const char *value) {
    text t = text_copy(g->config);
    json_edit(&t, key, value);
    text_case(g, expect, name, CONFIG, t);
}

static void vocab_case(generator *g, const char *expect, const char *name, const char *key, const char *value) {
    text t = text_copy(g->vocab);
    json_edit(&t, key, value);
    text_case(g, expect, name, VOCAB, t);
}

static void merges_case(generator *g, const char *expect, const char *name, const char *old, const char *new_text) {
    text t = text_copy(g->merges);
    replace_first(&t, old, new_text);
    text_case(g, expect, name, MERGES, t);
}

static int n_layers(const checkpoint *c) {
    int n = 0;
    for (int i = 0; i < c->n; i++)
        if (strcmp(strrchr(c->t[i].name, '.'), ".weight") == 0 && strstr(c->t[i].name, "ln_1")) n++;
    return n;
}

/* transformer.* names, an lm_head equal to wte, and the scalar masked_bias buffers. */
static void prefixed_variant(generator *g) {
    checkpoint c = clone(&g->base);
    for (int i = 0; i < c.n; i++) {
        char name[128];
        snprintf(name, sizeof name, "transformer.%s", c.t[i].name);
        snprintf(c.t[i].name, sizeof c.t[i].name, "%s", name);
    }
    /* (add_tensor may move the tensors: copy what it needs first) */
    const tensor *wte = find_tensor(&c, "transformer.wte.weight");
    uint64_t shape[2] = {wte->shape[0], wte->shape[1]}, nbytes = wte->nbytes;
    tensor *head = add_tensor(&c, "lm_head.weight", "F32", 2, shape, nbytes);
    memcpy(head->data, find_tensor(&c, "transformer.wte.weight")->data, (size_t)nbytes);
    for (int l = 0; l < n_layers(&g->base); l++) {
        char name[128];
        snprintf(name, sizeof name, "transformer.h.%d.attn.masked_bias", l);
        tensor *t = add_tensor(&c, name, "F32", 0, NULL, 4);
        float v = -1e4f;
        memcpy(t->data, &v, 4);
    }
    write_options o = {0};
    model_case(g, "identical", "prefixed", &c, &o);
    checkpoint_free(&c);
}

static void dtype_variants(generator *g, const char *dtype, const char *name, const char *ref_name) {
    checkpoint c = clone(&g->base);
    round_checkpoint(&c, dtype, 1);
    write_options o = {0};
    model_case(g, "valid", ref_name, &c, &o);
    checkpoint_free(&c);
    c = clone(&g->base);
    round_checkpoint(&c, dtype, 0);
    model_case(g, "valid", name, &c, &o);
    add_case(g, "identical", name, ref_name);
    checkpoint_free(&c);
}

static void basic_variants(generator *g) {
    prefixed_variant(g);

    checkpoint c = clone(&g->base);
    write_options shuffled = {.shuffle = 1, .gap = 97, .padding = 13};
    model_case(g, "identical", "shuffled", &c, &shuffled);
    checkpoint_free(&c);

    dtype_variants(g, "F16", "f16", "f16-ref");
    dtype_variants(g, "BF16", "bf16", "bf16-ref");
}

/* The variants with a larger vocabulary: wte padded to 50304 rows, and added tokens. */
static void padded_vocab_variants(generator *g) {
    checkpoint c = clone(&g->base);
    tensor *wte = find_tensor(&c, "wte.weight");
    uint64_t old_rows = wte->shape[0], cols = wte->shape[1], rows = 50304;
    unsigned char *d = xmalloc((size_t)(rows * cols * 4));
    memcpy(d, wte->data, (size_t)wte->nbytes);
    for (uint64_t k = old_rows * cols; k < rows * cols; k++) {
        float v = (float)((int)(k % 1999) - 999) / 4096.0f;  /* made-up weights for the made-up ids */
        memcpy(d + 4 * k, &v, 4);
    }
    free(wte->data);
    wte->data = d;
    wte->shape[0] = rows;
    wte->nbytes = rows * cols * 4;
    uint64_t shape[2] = {rows, cols};
    tensor *head = add_tensor(&c, "lm_head.weight", "F32", 2, shape, rows * cols * 4);
    memcpy(head->data, find_tensor(&c, "wte.weight")->data, (size_t)(rows * cols * 4));

    char dir[4096], path[4200];
    write_options o = {0};
    text config = text_copy(g->config);
    json_edit(&config, "vocab_size", "50304");

    make_dir(g, "vocab50304", 1u << MODEL | 1u << CONFIG, 0, dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, &c, &o);
    write_text(dir, "config.json", config);
    add_case(g, "valid", "vocab50304", NULL);

    /* Added tokens: a key with a space or NBSP (outside GPT-2's byte map) is kept as UTF-8,
     * here with a character past U+FFFF written as a surrogate pair. */
    text vocab = text_copy(g->vocab);
    json_edit(&vocab, "<|im start|>", "50257");
    json_edit(&vocab, "<|\xf0\x9f\xa7\xaa\xc2\xa0|>", "50258");
    replace_first(&vocab, "\"<|\xf0\x9f\xa7\xaa\xc2\xa0|>\"", "\"<|\\ud83e\\uddea\\u00a0|>\"");
    make_dir(g, "added-tokens", 1u << MODEL | 1u << CONFIG | 1u << VOCAB, 0, dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, &c, &o);
    write_text(dir, "config.json", config);
    write_text(dir, "vocab.json", vocab);
    add_case(g, "valid", "added-tokens", NULL);

    /* An added token with the same bytes as "Ġ" (a space): fine, as it is special. */
    text clash = text_copy(g->vocab);
    json_edit(&clash, " ", "50257");
    make_dir(g, "vocab-added-same-bytes", 1u << MODEL | 1u << CONFIG | 1u << VOCAB, 0, dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    write_safetensors(path, &c, &o);
    write_text(dir, "config.json", config);
    write_text(dir, "vocab.json", clash);
    add_case(g, "valid", "vocab-added-same-bytes", NULL);

    free(config.data);
    free(vocab.data);
    free(clash.data);
    checkpoint_free(&c);
}

static void model_variants(generator *g) {
    write_options plain = {0};
    checkpoint c;

    /* Mask buffers are ignored whatever their dtype: BOOL, F16, even one outside the format. */
    c = clone(&g->base);
    for (int i = 0; i < c.n; i++) {
        tensor *t = &c.t[i];
        if (!strstr(t->name, ".attn.bias") || strstr(t->name, "c_attn")) continue;
        snprintf(t->dtype, sizeof t->dtype, "BOOL");
        t->nbytes = element_count(t);
    }
    tensor *scalar = add_tensor(&c, "h.0.attn.masked_bias", "F16", 0, NULL, 2);
    scalar->data[1] = 0xF0;  /* -10240 */
    add_tensor(&c, "h.1.attn.masked_bias", "C64", 0, NULL, 8);  /* a dtype the converter does not know */
    model_case(g, "identical", "mask-buffers-other-dtypes", &c, &plain);
    checkpoint_free(&c);

    /* Malformed files. */
    c = clone(&g->base);
    uint64_t data_size = 0;
    for (int i = 0; i < c.n; i++) data_size += c.t[i].nbytes;
    write_options o = {.header_length = data_size + 100000};
    model_case(g, "fail", "st-header-past-end", &c, &o);
    o = (write_options){.header_length = (uint64_t)1 << 63};
    model_case(g, "fail", "st-header-2-63", &c, &o);
    o = (write_options){.truncate_json = 700};
    model_case(g, "fail", "st-json-truncated", &c, &o);
    o = (write_options){.header_override = "[]"};
    model_case(g, "fail", "st-json-not-object", &c, &o);
    o = (write_options){.header_override = "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4],}}"};
    model_case(g, "fail", "st-json-trailing-comma", &c, &o);
    /* A header of 2^21 values (the converter allows 2^20, bounding its memory). */
    size_t n_values = (size_t)1 << 21;
    char *many = xmalloc(2 * n_values + 64);
    size_t k = (size_t)sprintf(many, "{\"__metadata__\": {\"a\": [0");
    for (size_t i = 1; i < n_values; i++) many[k++] = ',', many[k++] = '0';
    strcpy(many + k, "]}}");
    o = (write_options){.header_override = many};
    model_case(g, "fail", "st-json-too-many-values", &c, &o);
    free(many);
    o = (write_options){.overlap = 1};
    model_case(g, "fail", "st-overlap", &c, &o);
    o = (write_options){.past_end = 1};
    model_case(g, "fail", "st-offsets-past-end", &c, &o);
    o = (write_options){.keep_fraction = 0.5};
    model_case(g, "fail", "st-truncated-file", &c, &o);
    o = (write_options){.header_override = "{}", .header_length = 3};
    model_case(g, "fail", "st-json-short", &c, &o);  /* header length 3 takes a data byte into the JSON */
    text five = {xmalloc(6), 5};  /* shorter than the 8-byte header length */
    memcpy(five.data, "\x05\0\0\0\0", 6);
    text_case(g, "fail", "st-tiny-file", MODEL, five);
    o = (write_options){.header_override = "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}"};
    model_case(g, "fail", "st-offsets-reversed", &c, &o);
    o = (write_options){.header_override = "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8], \"crc\": 1}}"};
    model_case(g, "fail", "st-unknown-entry-key", &c, &o);
    checkpoint_free(&c);

    /* Shape × dtype size is not the offsets' span. */
    c = clone(&g->base);
    find_tensor(&c, "h.0.attn.c_attn.weight")->shape[1] -= 1;
    model_case(g, "fail", "st-size-mismatch", &c, &plain);
    checkpoint_free(&c);

    /* A consistent but wrong shape, and c_attn already in our [out][in] orientation. */
    c = clone(&g->base);
    tensor *t = find_tensor(&c, "h.0.attn.c_attn.weight");
    t->shape[1] -= 1;
    t->nbytes = element_count(t) * 4;
    model_case(g, "fail", "st-wrong-shape", &c, &plain);
    checkpoint_free(&c);
    c = clone(&g->base);
    t = find_tensor(&c, "h.1.mlp.c_fc.weight");
    uint64_t in = t->shape[0];
    t->shape[0] = t->shape[1];
    t->shape[1] = in;
    model_case(g, "fail", "st-transposed-conv1d", &c, &plain);
    checkpoint_free(&c);

    /* Dtypes that are not weights. */
    c = clone(&g->base);
    t = find_tensor(&c, "ln_f.bias");
    snprintf(t->dtype, sizeof t->dtype, "I64");
    free(t->data);
    t->nbytes = element_count(t) * 8;
    t->data = calloc(1, (size_t)t->nbytes);
    model_case(g, "fail", "st-dtype-i64", &c, &plain);
    checkpoint_free(&c);
    c = clone(&g->base);
    t = find_tensor(&c, "wpe.weight");
    snprintf(t->dtype, sizeof t->dtype, "F64");
    free(t->data);
    t->nbytes = element_count(t) * 8;
    t->data = calloc(1, (size_t)t->nbytes);
    model_case(g, "fail", "st-dtype-f64", &c, &plain);
    snprintf(t->dtype, sizeof t->dtype, "F33");
    model_case(g, "fail", "st-dtype-unknown", &c, &plain);
    checkpoint_free(&c);

    /* Missing, unexpected and doubled tensors. */
    c = clone(&g->base);
    remove_tensor(&c, "h.1.mlp.c_proj.bias");
    model_case(g, "fail", "st-missing-tensor", &c, &plain);
    checkpoint_free(&c);
    c = clone(&g->base);
    uint64_t two = 2;
    add_tensor(&c, "score.weight", "F32", 1, &two, 8);
    model_case(g, "fail", "st-unexpected-tensor", &c, &plain);
    checkpoint_free(&c);
    c = clone(&g->base);
    const tensor *ln = find_tensor(&c, "ln_f.weight");
    uint64_t ln_shape = ln->shape[0], ln_bytes = ln->nbytes;
    t = add_tensor(&c, "transformer.ln_f.weight", "F32", 1, &ln_shape, ln_bytes);
    memcpy(t->data, find_tensor(&c, "ln_f.weight")->data, (size_t)ln_bytes);
    model_case(g, "fail", "st-same-tensor-twice", &c, &plain);
    checkpoint_free(&c);

    /* An LM head that is not wte: one element off, or another shape. */
    c = clone(&g->base);
    const tensor *wte = find_tensor(&c, "wte.weight");
    uint64_t wte_shape[2] = {wte->shape[0], wte->shape[1]}, wte_bytes = wte->nbytes;
    t = add_tensor(&c, "lm_head.weight", "F32", 2, wte_shape, wte_bytes);
    memcpy(t->data, find_tensor(&c, "wte.weight")->data, (size_t)wte_bytes);
    float v = get_f32(t, 1000) + 1.0f;
    memcpy(t->data + 4 * 1000, &v, 4);
    model_case(g, "fail", "st-lm-head-differs", &c, &plain);
    checkpoint_free(&c);
    c = clone(&g->base);
    uint64_t small[2] = {wte_shape[0] - 1, wte_shape[1]};
    t = add_tensor(&c, "lm_head.weight", "F32", 2, small, (wte_shape[0] - 1) * wte_shape[1] * 4);
    memcpy(t->data, find_tensor(&c, "wte.weight")->data, (size_t)t->nbytes);
    model_case(g, "fail", "st-lm-head-shape", &c, &plain);
    checkpoint_free(&c);

    text none = {NULL, 0};
    text_case(g, "fail", "st-missing-file", MODEL, none);
}

static void config_variants(generator *g) {
    text none = {NULL, 0};
    /* Accepted spellings of the same model. */
    config_case(g, "identical", "cfg-n-ctx-only", "n_positions", NULL);
    config_case(g, "identical", "cfg-n-ctx-differs", "n_ctx", "1024");  /* n_positions sizes wpe and wins */
    config_case(g, "identical", "cfg-no-eps", "layer_norm_epsilon", NULL);
    config_case(g, "identical", "cfg-n-inner-null", "n_inner", "null");
    config_case(g, "identical", "cfg-no-activation", "activation_function", NULL);
    config_case(g, "identical", "cfg-extra-keys", "foo", "{\"bar\": [1, -2.5e3, \"x\\u00e9\\ud83d\\ude00\", true, null]}");
    config_case(g, "identical", "cfg-flags-default", "scale_attn_weights", "true");
    config_case(g, "valid", "cfg-eps-1e-6", "layer_norm_epsilon", "1e-6");
    text t = text_copy(g->config);
    json_edit(&t, "n_inner", "256");
    json_edit(&t, "scale_attn_by_inverse_layer_idx", "false");
    json_edit(&t, "reorder_and_upcast_attn", "false");
    text_case(g, "identical", "cfg-n-inner-4c", CONFIG, t);

    text_case(g, "fail", "cfg-missing", CONFIG, none);
    t = text_copy(g->config);
    t.len /= 2;
    t.data[t.len] = 0;
    text_case(g, "fail", "cfg-truncated", CONFIG, t);
    t = text_copy(g->config);
    replace_first(&t, "{", "[");
    text_case(g, "fail", "cfg-malformed", CONFIG, t);
    t = (text){xstrdup("[1, 2]"), 6};
    text_case(g, "fail", "cfg-not-object", CONFIG, t);
    t = text_copy(g->config);
    replace_first(&t, "{", "{\"n_layer\": 2, ");
    text_case(g, "fail", "cfg-duplicate-key", CONFIG, t);
    config_case(g, "fail", "cfg-n-head-3", "n_head", "3");
    config_case(g, "fail", "cfg-n-head-0", "n_head", "0");
    config_case(g, "fail", "cfg-activation-gelu", "activation_function", "\"gelu\"");
    config_case(g, "fail", "cfg-n-layer-string", "n_layer", "\"2\"");
    config_case(g, "fail", "cfg-n-layer-float", "n_layer", "2.0");
    config_case(g, "fail", "cfg-n-layer-negative", "n_layer", "-2");
    config_case(g, "fail", "cfg-n-layer-huge", "n_layer", "18446744073709551617");
    config_case(g, "fail", "cfg-n-layer-more", "n_layer", "3");   /* tensors of h.2 missing */
    config_case(g, "fail", "cfg-n-layer-fewer", "n_layer", "1");  /* tensors of h.1 unexpected */
    config_case(g, "fail", "cfg-no-n-embd", "n_embd", NULL);
    config_case(g, "fail", "cfg-n-inner-2c", "n_inner", "128");
    config_case(g, "fail", "cfg-inverse-layer-idx", "scale_attn_by_inverse_layer_idx", "true");
    config_case(g, "fail", "cfg-reorder-upcast", "reorder_and_upcast_attn", "true");
    config_case(g, "fail", "cfg-no-scale-attn", "scale_attn_weights", "false");
    config_case(g, "fail", "cfg-flag-not-bool", "scale_attn_weights", "1");
    config_case(g, "fail", "cfg-cross-attention", "add_cross_attention", "true");
    config_case(g, "fail", "cfg-model-type", "model_type", "\"gpt_neo\"");
    config_case(g, "fail", "cfg-eps-string", "layer_norm_epsilon", "\"1e-5\"");
    config_case(g, "fail", "cfg-eps-zero", "layer_norm_epsilon", "0");
    config_case(g, "fail", "cfg-n-positions-32", "n_positions", "32");  /* wpe is [64, C] */
    config_case(g, "fail", "cfg-vocab-50000", "vocab_size", "50000");  /* vocab.json has ids up to 50256 */
    config_case(g, "fail", "cfg-eos-out-of-range", "eos_token_id", "50257");
    t = text_copy(g->config);
    json_edit(&t, "n_positions", NULL);
    json_edit(&t, "n_ctx", NULL);
    text_case(g, "fail", "cfg-no-positions", CONFIG, t);
}

static void vocab_variants(generator *g) {
    text none = {NULL, 0};
    text_case(g, "fail", "vocab-missing", VOCAB, none);
    text t = text_copy(g->vocab);
    t.len -= 100;
    t.data[t.len] = 0;
    text_case(g, "fail", "vocab-truncated", VOCAB, t);
    vocab_case(g, "fail", "vocab-duplicate-id", "!", "1");
    vocab_case(g, "fail", "vocab-id-past-vocab-size", "zzqxj", "50257");
    vocab_case(g, "fail", "vocab-id-negative", "zzqxj", "-1");
    vocab_case(g, "fail", "vocab-id-string", "!", "\"0\"");
    vocab_case(g, "fail", "vocab-id-float", "!", "0.5");
    t = text_copy(g->vocab);
    replace_first(&t, "\"!\"", "\"\\ud800!\"");
    text_case(g, "fail", "vocab-lone-surrogate", VOCAB, t);
    t = text_copy(g->vocab);
    replace_first(&t, "\"!\"", "\"\\x21\"");
    text_case(g, "fail", "vocab-bad-escape", VOCAB, t);
    t = text_copy(g->vocab);
    replace_first(&t, "\"!\"", "\"\xff\"");
    text_case(g, "fail", "vocab-invalid-utf8", VOCAB, t);
    t = (text){xstrdup("[]"), 2};
    text_case(g, "fail", "vocab-not-object", VOCAB, t);
    vocab_case(g, "fail", "vocab-empty-token", "", "50256");
    vocab_case(g, "fail", "vocab-no-byte-token", "!", NULL);  /* byte-level BPE needs all 256 */
    /* Special tokens must not be what BPE builds on or produces: eos = "!" (a byte), or
     * eos = "Ġt" (id 256, the result of the first merge). */
    config_case(g, "fail", "cfg-eos-is-a-byte", "eos_token_id", "0");
    config_case(g, "fail", "cfg-eos-is-a-merge", "eos_token_id", "256");

    /* Without "<|endoftext|>" the eot token is config's eos_token_id (an id without text);
     * with neither, there is no eot token. */
    vocab_case(g, "valid", "vocab-no-endoftext", "<|endoftext|>", NULL);
    char dir[4096];
    make_dir(g, "vocab-no-eot-no-eos", 1u << VOCAB | 1u << CONFIG, 0, dir);
    t = text_copy(g->vocab);
    json_edit(&t, "<|endoftext|>", NULL);
    write_text(dir, "vocab.json", t);
    free(t.data);
    t = text_copy(g->config);
    json_edit(&t, "eos_token_id", NULL);
    json_edit(&t, "bos_token_id", NULL);
    write_text(dir, "config.json", t);
    free(t.data);
    add_case(g, "fail", "vocab-no-eot-no-eos", NULL);

    /* vocab.json may hold about twice vocab_size values: the converter bounds its memory. */
    make_dir(g, "vocab-too-many-values", 1u << CONFIG, 0, dir);
    t = text_copy(g->config);
    json_edit(&t, "vocab_size", "100");
    json_edit(&t, "eos_token_id", NULL);
    json_edit(&t, "bos_token_id", NULL);
    write_text(dir, "config.json", t);
    free(t.data);
    add_case(g, "fail", "vocab-too-many-values", NULL);
}

static void merges_variants(generator *g) {
    text none = {NULL, 0};
    merges_case(g, "identical", "merges-no-version", "#version: 0.2\n", "");
    text t = text_copy(g->merges);
    for (size_t i = 0; i < t.len; i++)  /* CRLF line ends */
        if (t.data[i] == '\n') {
            splice(&t, i, i, "\r");
            i++;
        }
    text_case(g, "identical", "merges-crlf", MERGES, t);
    t = text_copy(g->merges);
    t.data[--t.len] = 0;  /* no newline after the last line */
    text_case(g, "identical", "merges-no-final-newline", MERGES, t);

    text_case(g, "fail", "merges-missing", MERGES, none);
    merges_case(g, "fail", "merges-one-token", "\xc4\xa0 t\n", "\xc4\xa0t\n");
    merges_case(g, "fail", "merges-three-tokens", "\xc4\xa0 t\n", "\xc4\xa0 t h\n");
    merges_case(g, "fail", "merges-two-spaces", "\xc4\xa0 t\n", "\xc4\xa0  t\n");
    merges_case(g, "fail", "merges-blank-line", "\xc4\xa0 t\n", "\xc4\xa0 t\n\n");
    merges_case(g, "fail", "merges-unknown-token", "\xc4\xa0 t\n", "\xc4\xa0 zzqxjw\n");
    merges_case(g, "fail", "merges-not-a-token", "\xc4\xa0 t\n", "z \xc4\xa0\n");
    merges_case(g, "fail", "merges-invalid-utf8", "\xc4\xa0 t\n", "\xc4 t\n");
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "--basic") != 0)) {
        fprintf(stderr, "usage: make_hf_variant FIXTURE_DIR OUT_DIR [--basic]\n");
        return 2;
    }
    generator g;
    memset(&g, 0, sizeof g);
    if (!realpath(argv[1], g.fixture)) die("no fixture directory %s", argv[1]);
    g.out_dir = argv[2];
    if (mkdir(g.out_dir, 0755) != 0 && errno != EEXIST) die("cannot create %s", g.out_dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", g.fixture);
    g.base = load_checkpoint(path);
    check_rounding(&g.base);
    snprintf(path, sizeof path, "%s/cases.txt", g.out_dir);
    g.cases = fopen(path, "w");
    if (!g.cases) die("cannot create %s", path);

    basic_variants(&g);
    if (argc == 3) {
        snprintf(path, sizeof path, "%s/config.json", g.fixture);
        g.config = read_file(path);
        snprintf(path, sizeof path, "%s/vocab.json", g.fixture);
        g.vocab = read_file(path);
        snprintf(path, sizeof path, "%s/merges.txt", g.fixture);
        g.merges = read_file(path);
        padded_vocab_variants(&g);
        model_variants(&g);
        config_variants(&g);
        vocab_variants(&g);
        merges_variants(&g);
        free(g.config.data);
        free(g.vocab.data);
        free(g.merges.data);
    }
    if (fclose(g.cases) != 0) die("cannot write %s", path);
    checkpoint_free(&g.base);
    return 0;
}
