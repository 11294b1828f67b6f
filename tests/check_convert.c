/* check_convert.c — checks a converted model file against the checkpoint it came from.
 *
 *     build/check_convert HF_DIR MODEL.bin
 *
 * Written apart from export/convert.c (only the JSON parser is shared), it reads MODEL.bin
 * as docs/FORMAT.md lays it out and compares, exactly:
 *   - the header with config.json (dimensions, n_ctx, layer-norm epsilon, eot token);
 *   - every tensor, value by value, with the checkpoint's (F32, F16 or BF16, decoded here
 *     from the definitions), Conv1D weights transposed to [out][in];
 *   - every token's bytes with vocab.json (GPT-2's printable byte form undone; ids it does
 *     not list empty), every merge with merges.txt, the special tokens;
 * and that gpt2_load accepts the file and gpt2_token_bytes agrees with it.
 * Prints "ok" and exits 0, or names the first difference and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../export/json.h"
#include "../gpt2.h"

static const char *model_path;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "check_convert: %s: ", model_path);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

typedef struct {
    char *data;
    size_t len;
} text;

static text read_file(const char *dir, const char *name) {
    char path[4200];
    snprintf(path, sizeof path, "%s%s%s", dir, name ? "/" : "", name ? name : "");
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);  /* test files are small */
    fseek(f, 0, SEEK_SET);
    text t = {malloc((size_t)n + 1), (size_t)n};
    if (!t.data || fread(t.data, 1, (size_t)n, f) != (size_t)n) die("cannot read %s", path);
    fclose(f);
    t.data[n] = 0;
    return t;
}

static uint32_t u32_at(const text *t, uint64_t at) {
    if (at + 4 > t->len) die("read past the end of the file at %llu", (unsigned long long)at);
    return (uint32_t)(unsigned char)t->data[at] | (uint32_t)(unsigned char)t->data[at + 1] << 8 |
           (uint32_t)(unsigned char)t->data[at + 2] << 16 | (uint32_t)(unsigned char)t->data[at + 3] << 24;
}

static uint64_t u64_at(const text *t, uint64_t at) { return u32_at(t, at) | (uint64_t)u32_at(t, at + 4) << 32; }

static float f32_at(const text *t, uint64_t at) {
    uint32_t bits = u32_at(t, at);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---- the checkpoint --------------------------------------------------------------------- */

static double half_value(uint16_t h) {
    int e = h >> 10 & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return h & 0x8000 ? -v : v;
}

static double bfloat_value(uint16_t b) {
    int e = b >> 7 & 0xFF, m = b & 0x7F;
    double v = e == 0 ? ldexp(m, -133) : e == 255 ? (m ? NAN : INFINITY) : ldexp(128 + m, e - 134);
    return b & 0x8000 ? -v : v;
}

typedef struct {
    const char *dtype;
    uint64_t rows, cols;  /* as stored: [rows][cols] (1-D tensors: rows = 1) */
    const unsigned char *data;
} hf_tensor;

static int find_hf_tensor(const json_value *header, const text *file, uint64_t data_start, const char *name,
                          hf_tensor *out) {
    char prefixed[160];
    snprintf(prefixed, sizeof prefixed, "transformer.%s", name);
    const json_value *e = json_get(header, name);
    if (!e) e = json_get(header, prefixed);
    if (!e) return 0;
    const json_value *shape = json_get(e, "shape"), *offsets = json_get(e, "data_offsets");
    out->dtype = json_get(e, "dtype")->string;
    out->rows = shape->count == 2 ? (uint64_t)shape->first->integer : 1;
    out->cols = (uint64_t)(shape->count == 2 ? shape->first->next : shape->first)->integer;
    out->data = (const unsigned char *)file->data + data_start + offsets->first->integer;
    return 1;
}

static float hf_value(const hf_tensor *t, uint64_t i) {
    const unsigned char *p = t->data;
    if (strcmp(t->dtype, "F32") == 0) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
    if (strcmp(t->dtype, "F16") == 0) return (float)half_value(h);
    if (strcmp(t->dtype, "BF16") == 0) return (float)bfloat_value(h);
    die("unexpected dtype %s", t->dtype);
    return 0;
}

/* ---- GPT-2's printable byte form -------------------------------------------------------- */

static int printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

/* The byte a character of vocab.json stands for, or -1: printable bytes are themselves,
 * U+0100 + n is the n-th byte that is not printable. */
static int byte_for(uint32_t cp) {
    if (cp < 0x100) return printable((int)cp) ? (int)cp : -1;
    int n = (int)cp - 0x100;
    for (int b = 0; b < 256; b++)
        if (!printable(b) && n-- == 0) return b;
    return -1;
}

/* A vocab.json key's bytes into out; returns the length; *added if kept as UTF-8. */
static size_t key_bytes(const char *key, size_t len, unsigned char *out, int *added) {
    size_t n = 0;
    *added = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)key[i];
        int extra = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
        uint32_t cp = extra ? c & (0x3Fu >> extra) : c;
        for (int k = 1; k <= extra; k++) cp = cp << 6 | ((unsigned char)key[i + (size_t)k] & 0x3Fu);
        int b = byte_for(cp);
        if (b < 0) *added = 1;
        out[n++] = (unsigned char)b;
        i += (size_t)extra + 1;
    }
    if (*added) {
        memcpy(out, key, len);
        return len;
    }
    return n;
}

typedef struct {
    const char *key;
    size_t len;
    int id;
} vocab_entry;

static int compare_entries(const void *a, const void *b) {
    const vocab_entry *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int id_of(const vocab_entry *entries, size_t n, const char *key, size_t len) {
    vocab_entry k = {key, len, 0};
    const vocab_entry *e = bsearch(&k, entries, n, sizeof k, compare_entries);
    return e ? e->id : -1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: check_convert HF_DIR MODEL.bin\n");
        return 2;
    }
    const char *dir = argv[1];
    model_path = argv[2];

    char err[GPT2_ERR_MAX];
    gpt2_model *model = gpt2_load(model_path, err, sizeof err);
    if (!model) die("gpt2_load: %s", err);
    const gpt2_config *c = gpt2_model_config(model);
    text file = read_file(model_path, NULL);

    /* Header vs config.json. */
    if (u32_at(&file, 4) != GPT2_VERSION) die("format version %u, expected %d", u32_at(&file, 4), GPT2_VERSION);
    text config_text = read_file(dir, "config.json");
    json_doc config_doc;
    const json_value *config = json_parse(config_text.data, config_text.len, &config_doc, err, sizeof err);
    if (!config) die("config.json: %s", err);
    const json_value *positions = json_get(config, "n_positions"), *eps = json_get(config, "layer_norm_epsilon");
    if (!positions) positions = json_get(config, "n_ctx");
    int64_t want[5] = {json_get(config, "n_layer")->integer, json_get(config, "n_head")->integer,
                       json_get(config, "n_embd")->integer, positions->integer, json_get(config, "vocab_size")->integer};
    uint32_t got[5] = {u32_at(&file, 12), u32_at(&file, 16), u32_at(&file, 20), u32_at(&file, 24), u32_at(&file, 28)};
    int engine[5] = {c->n_layer, c->n_head, c->n_embd, c->n_ctx, c->vocab_size};
    static const char *const field[5] = {"n_layer", "n_head", "n_embd", "n_ctx", "vocab_size"};
    for (int i = 0; i < 5; i++)
        if (got[i] != want[i] || engine[i] != want[i])
            die("%s is %u (gpt2_load: %d), config.json says %lld", field[i], got[i], engine[i], (long long)want[i]);
    float want_eps = eps ? (float)eps->number : 1e-5f;
    if (f32_at(&file, 32) != want_eps || c->ln_eps != want_eps)
        die("layer-norm epsilon is %g, config.json says %g", (double)f32_at(&file, 32), (double)want_eps);
    uint32_t vocab_size = got[4], n_tensors = u32_at(&file, 44);
    if (n_tensors != (uint32_t)gpt2_tensor_count(c)) die("%u tensors", n_tensors);

    /* Every tensor, value by value. */
    text st = read_file(dir, "model.safetensors");
    uint64_t header_len = u64_at(&st, 0);
    json_doc st_doc;
    const json_value *header = json_parse(st.data + 8, (size_t)header_len, &st_doc, err, sizeof err);
    if (!header) die("model.safetensors: %s", err);
    double n_values = 0;
    for (uint32_t i = 0; i < n_tensors; i++) {
        char name[128];
        int rows, cols;
        gpt2_tensor_info(c, (int)i, name, sizeof name, &rows, &cols);
        uint64_t entry = 256 + 32 * (uint64_t)i, offset = u64_at(&file, entry + 16), row_bytes = u32_at(&file, entry + 12);
        if (u32_at(&file, entry) != 0 || u32_at(&file, entry + 4) != (uint32_t)rows ||
            u32_at(&file, entry + 8) != (uint32_t)cols || row_bytes < 4 * (uint64_t)cols)
            die("tensor %s: table entry is not f32 [%d, %d]", name, rows, cols);
        hf_tensor t;
        if (!find_hf_tensor(header, &st, 8 + header_len, name, &t)) die("%s is not in the checkpoint", name);
        int conv1d = strstr(name, "c_attn.weight") || strstr(name, "c_proj.weight") || strstr(name, "c_fc.weight");
        if (conv1d ? t.rows != (uint64_t)cols || t.cols != (uint64_t)rows
                   : t.rows * t.cols != (uint64_t)rows * (uint64_t)cols)
            die("tensor %s: checkpoint shape [%llu, %llu] does not fit [%d, %d]", name, (unsigned long long)t.rows,
                (unsigned long long)t.cols, rows, cols);
        for (uint64_t r = 0; r < (uint64_t)rows; r++)
            for (uint64_t k = 0; k < (uint64_t)cols; k++) {
                float want_value = hf_value(&t, conv1d ? k * (uint64_t)rows + r : r * (uint64_t)cols + k);
                float got_value = f32_at(&file, offset + r * row_bytes + 4 * k);
                if (memcmp(&want_value, &got_value, 4) != 0)
                    die("tensor %s [%llu][%llu] is %.9g, the checkpoint says %.9g", name, (unsigned long long)r,
                        (unsigned long long)k, (double)got_value, (double)want_value);
            }
        n_values += (double)rows * cols;
    }

    /* The tokenizer section vs vocab.json and merges.txt. */
    uint64_t tok = u64_at(&file, 56);
    uint32_t n_tokens = u32_at(&file, tok), n_merges = u32_at(&file, tok + 4), n_special = u32_at(&file, tok + 8);
    uint64_t offsets_at = tok + 16, merges_at = offsets_at + 4 * ((uint64_t)n_tokens + 1);
    uint64_t special_at = merges_at + 8 * (uint64_t)n_merges, bytes_at = special_at + 4 * (uint64_t)n_special;
    if (n_tokens != vocab_size) die("tokenizer has %u tokens", n_tokens);
    text vocab_text = read_file(dir, "vocab.json");
    json_doc vocab_doc;
    const json_value *vocab = json_parse(vocab_text.data, vocab_text.len, &vocab_doc, err, sizeof err);
    if (!vocab) die("vocab.json: %s", err);
    vocab_entry *entries = calloc(vocab->count + 1, sizeof *entries);
    unsigned char *listed = calloc(vocab_size, 1), *added_ids = calloc(vocab_size, 1);
    unsigned char *bytes = malloc(vocab_text.len + 1);
    size_t n_entries = 0;
    int endoftext = -1;
    for (const json_value *m = vocab->first; m; m = m->next) {
        int id = (int)m->integer, added;
        size_t n = key_bytes(m->key, m->key_len, bytes, &added);
        uint32_t begin = u32_at(&file, offsets_at + 4 * (uint64_t)id), end = u32_at(&file, offsets_at + 4 * (uint64_t)id + 4);
        if (end - begin != n || memcmp(file.data + bytes_at + begin, bytes, n) != 0)
            die("token %d (%s) has the wrong bytes", id, m->key);
        size_t engine_len;
        const char *engine_bytes = gpt2_token_bytes(model, id, &engine_len);
        if (!engine_bytes || engine_len != n || memcmp(engine_bytes, bytes, n) != 0)
            die("gpt2_token_bytes(%d) differs from the file", id);
        listed[id] = 1;
        added_ids[id] = (unsigned char)added;
        if (strcmp(m->key, "<|endoftext|>") == 0) endoftext = id;
        entries[n_entries++] = (vocab_entry){m->key, m->key_len, id};
    }
    for (uint32_t id = 0; id < vocab_size; id++)
        if (!listed[id] && u32_at(&file, offsets_at + 4 * (uint64_t)id) != u32_at(&file, offsets_at + 4 * (uint64_t)id + 4))
            die("token %u is not in vocab.json but has bytes", id);
    qsort(entries, n_entries, sizeof *entries, compare_entries);

    text merges = read_file(dir, "merges.txt");
    uint32_t rank = 0;
    for (char *line = merges.data; line < merges.data + merges.len;) {
        char *nl = memchr(line, '\n', (size_t)(merges.data + merges.len - line));
        char *end = nl ? nl : merges.data + merges.len, *next = nl ? nl + 1 : end;
        if (end > line && end[-1] == '\r') end--;
        if (line == merges.data && strncmp(line, "#version", 8) == 0) {
            line = next;
            continue;
        }
        char *space = memchr(line, ' ', (size_t)(end - line));
        if (!space) die("merges.txt: line without a space");
        int left = id_of(entries, n_entries, line, (size_t)(space - line));
        int right = id_of(entries, n_entries, space + 1, (size_t)(end - space - 1));
        if (rank >= n_merges) die("fewer merges than merges.txt has");
        if (u32_at(&file, merges_at + 8 * (uint64_t)rank) != (uint32_t)left ||
            u32_at(&file, merges_at + 8 * (uint64_t)rank + 4) != (uint32_t)right)
            die("merge %u is not merges.txt's (%d, %d)", rank, left, right);
        rank++;
        line = next;
    }
    if (rank != n_merges) die("%u merges, merges.txt has %u", n_merges, rank);

    /* eot: "<|endoftext|>"'s id, else eos_token_id; specials: it (if it has text) and the
     * added tokens. */
    const json_value *eos = json_get(config, "eos_token_id");
    int want_eot = endoftext >= 0 ? endoftext : (int)eos->integer;
    if (u32_at(&file, 40) != (uint32_t)want_eot || c->eot_token != want_eot)
        die("eot_token is %u, expected %d", u32_at(&file, 40), want_eot);
    unsigned char *is_special = calloc(vocab_size, 1);
    for (uint32_t i = 0; i < n_special; i++) {
        uint32_t id = u32_at(&file, special_at + 4 * (uint64_t)i);
        if (id >= vocab_size) die("special token %u is outside the vocabulary", id);
        is_special[id] = 1;
    }
    if (listed[want_eot] && !is_special[want_eot]) die("<|endoftext|> (%d) is not special", want_eot);
    for (uint32_t id = 0; id < vocab_size; id++)
        if (added_ids[id] && !is_special[id]) die("added token %u is not special", id);

    printf("ok: %u tensors (%.0f values), %u tokens, %u merges, %u special, eot %d\n", n_tensors, n_values,
           n_tokens, n_merges, n_special, want_eot);
    free(is_special);
    free(merges.data);
    free(entries);
    free(listed);
    free(added_ids);
    free(bytes);
    json_free(&vocab_doc);
    free(vocab_text.data);
    json_free(&st_doc);
    free(st.data);
    json_free(&config_doc);
    free(config_text.data);
    free(file.data);
    gpt2_free(model);
    return 0;
}
