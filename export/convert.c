/* convert.c — turns a HuggingFace GPT-2 checkpoint into a gpt2.c model file, or a model file
 * into another weight type.
 *
 *     export/convert [--dtype f32|f16|bf16|q8_0|q4_0] HF_DIR OUT.bin
 *     export/convert --dtype q8_0 IN.bin OUT.bin
 *
 * HF_DIR is a checkpoint directory as the hub serves it (export/download.sh fetches one):
 *   config.json        n_layer, n_head, n_embd, n_positions, vocab_size, ...
 *   model.safetensors  u64 header length N, N bytes of JSON naming each tensor's dtype,
 *                      shape and data_offsets (relative to the end of the header), the data
 *   vocab.json         token (in GPT-2's printable byte form) → id
 *   merges.txt         BPE merges "left right", one per line, by rank
 * OUT.bin is the format of docs/FORMAT.md, written through gpt2.c's gpt2_writer_*, with the
 * weights in --dtype (default f32), whatever the source dtype (F32, F16 or BF16): the writer
 * converts (gpt2_default_types: q4_0 keeps the embeddings and LM head in q8_0). Given one of our
 * own model files instead of a directory, it writes the same model in another type.
 *
 * Everything read is untrusted: every size and offset is checked in 64 bits before it is
 * used, and any problem ends the conversion with one line on stderr, exit status 1 and no
 * output file (an existing OUT.bin stays as it was). All checks run before the output is
 * opened; the writer fills OUT.bin.tmp, checks that gpt2_load accepts it, and only then
 * renames it to OUT.bin. The safetensors file is mapped and converted one tensor at a time,
 * so memory holds one tensor (two for a transposed one), never a second copy of the model:
 * gpt2-xl is 6 GB as f32, and converts in about 370 MB.
 *
 * Dimensions: L = n_layer, C = n_embd, V = vocab_size, P = n_ctx (learned positions).
 */
#define _POSIX_C_SOURCE 200809L
#define _FILE_OFFSET_BITS 64  /* checkpoints past 2 GB on 32-bit systems too */

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../gpt2.h"
#include "json.h"

#define ERR_SIZE 1024                                 /* every err buffer here has this size */
#define PATH_SIZE 4096
#define TEXT_FILE_MAX ((uint64_t)1 << 30)             /* config.json, vocab.json, merges.txt */
#define SAFETENSORS_HEADER_MAX ((uint64_t)100 << 20)  /* the safetensors library's own limit */
/* JSON values a file may hold (json.h: ~128 bytes of memory each). A GPT-2 header has
 * about 14 per tensor, 4 + 14 * 1024 tensors at most; config.json has a few dozen;
 * vocab.json one per token plus the object. */
#define HEADER_VALUES_MAX ((size_t)1 << 20)
#define CONFIG_VALUES_MAX ((size_t)1 << 16)
#define SAFETENSORS_MAX_DIMS 8                        /* GPT-2 needs 4 (the mask buffers) */
#define SNIPPET_SIZE 64                               /* quoted input in error messages */

/* ---- errors and small helpers ---------------------------------------------------------- */

static int fail(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes the message into err (ERR_SIZE bytes) and returns -1, so checks read
 * `if (bad) return fail(err, "...");`. */
static int fail(char *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ERR_SIZE, fmt, ap);
    va_end(ap);
    return -1;
}

/* s[0, n) for an error message, in quotes if quoted: at most SNIPPET_SIZE - 1 characters,
 * control characters escaped (and, in quotes, backslashes and quotes), so that a message is
 * always one line. */
static const char *show(const char *s, size_t n, int quoted, char out[SNIPPET_SIZE]) {
    size_t k = 0;
    if (quoted) out[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (k + 8 >= SNIPPET_SIZE) {
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        if (c < 0x20 || c == 0x7F) {
            k += (size_t)snprintf(out + k, SNIPPET_SIZE - k, "\\x%02x", c);
        } else if (quoted && (c == '"' || c == '\\')) {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else {
            out[k++] = (char)c;
        }
    }
    if (quoted) out[k++] = '"';
    out[k] = 0;
    return out;
}

/* A token or other decoded string, in quotes. */
static const char *snippet(const char *s, size_t n, char out[SNIPPET_SIZE]) { return show(s, n, 1, out); }

static int join_path(char out[PATH_SIZE], const char *dir, const char *file, char *err) {
    size_t n = strlen(dir);
    const char *slash = n && dir[n - 1] == '/' ? "" : "/";
    if ((size_t)snprintf(out, PATH_SIZE, "%s%s%s", dir, slash, file) >= PATH_SIZE)
        return fail(err, "%s: path too long", dir);
    return 0;
}

/* Reads a whole (small) file into a NUL-terminated buffer the caller frees. */
static int read_text_file(const char *path, char **data, size_t *size, char *err) {
    *data = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        fail(err, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size > TEXT_FILE_MAX) {
        if (!S_ISREG(st.st_mode)) fail(err, "%s: not a regular file", path);
        else fail(err, "%s: %lld bytes is too large for this file", path, (long long)st.st_size);
        close(fd);
        return -1;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return fail(err, "%s: out of memory", path);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r < 0) fail(err, "%s: read error: %s", path, strerror(errno));
            else fail(err, "%s: the file shrank while being read", path);
            free(buf);
            close(fd);
            return -1;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *data = buf;
    *size = n;
    return 0;
}

/* A JSON file being read, for messages that quote it. */
typedef struct {
    const char *path;
    const char *text;
    json_doc doc;
    const json_value *root;
} json_file;

static int json_file_read(json_file *f, const char *path, size_t max_values, char *err) {
    char *text;
    size_t size;
    f->path = path;
    f->text = NULL;
    f->root = NULL;
    f->doc.root = NULL;
    f->doc.blocks = NULL;
    if (read_text_file(path, &text, &size, err) < 0) return -1;
    f->text = text;
    char msg[ERR_SIZE];
    f->root = json_parse_limited(text, size, max_values, &f->doc, msg, sizeof msg);
    if (!f->root) return fail(err, "%s: %s", path, msg);
    if (f->root->type != JSON_OBJECT)
        return fail(err, "%s: expected a JSON object, got %s", path, json_type_name(f->root->type));
    return 0;
}

static void json_file_free(json_file *f) {
    json_free(&f->doc);
    free((char *)f->text);
    f->text = NULL;
}

/* The source text of v, as written (a JSON value needs no quotes around it). */
static const char *json_snippet(const json_file *f, const json_value *v, char out[SNIPPET_SIZE]) {
    return show(f->text + v->start, v->end - v->start, 0, out);
}

/* ---- config.json ----------------------------------------------------------------------- */

typedef struct {
    gpt2_config model;           /* the file header's fields; eot_token comes from the vocab */
    int eos_token_id;            /* -1 when the config has none */
    int bos_token_id;            /* -1 when the config has none */
} hf_config;

/* Reads integer member key into *value if it is there and min <= it <= max.
 * Returns 1 if it was read, 0 if the key is absent (or null when null_ok), -1 on error. */
static int config_integer(const json_file *f, const char *key, int64_t min, int64_t max, int null_ok,
                          int64_t *value, char *err) {
    char quoted[SNIPPET_SIZE];
    const json_value *v = json_get(f->root, key);
    if (!v || (null_ok && v->type == JSON_NULL)) return 0;
    if (v->type != JSON_NUMBER || !v->is_integer)
        return fail(err, "%s: %s: expected an integer, got %s", f->path, key, json_snippet(f, v, quoted));
    if (v->integer < min || v->integer > max)
        return fail(err, "%s: %s: %lld is outside [%lld, %lld]", f->path, key, (long long)v->integer,
                    (long long)min, (long long)max);
    *value = v->integer;
    return 1;
}

static int config_required(const json_file *f, const char *key, int64_t min, int64_t max, int *value, char *err) {
    int64_t v;
    int found = config_integer(f, key, min, max, 0, &v, err);
    if (found < 0) return -1;
    if (!found) return fail(err, "%s: missing key \"%s\"", f->path, key);
    *value = (int)v;
    return 0;
}

/* Reads boolean member key; absent means default_value. */
static int config_flag(const json_file *f, const char *key, int default_value, int *value, char *err) {
    char quoted[SNIPPET_SIZE];
    const json_value *v = json_get(f->root, key);
    *value = default_value;
    if (!v) return 0;
    if (v->type != JSON_BOOL)
        return fail(err, "%s: %s: expected true or false, got %s", f->path, key, json_snippet(f, v, quoted));
    *value = v->boolean;
    return 0;
}

/* Rejects an option whose non-default value changes the math from the GPT-2 that gpt2.c
 * implements (HuggingFace's GPT2Config keeps them for other models in the family). */
static int config_require_flag(const json_file *f, const char *key, int required_value, char *err) {
    int value;
    if (config_flag(f, key, required_value, &value, err) < 0) return -1;
    if (value != required_value)
        return fail(err, "%s: %s is %s: gpt2.c implements GPT-2 only, where it is %s", f->path, key,
                    value ? "true" : "false", required_value ? "true" : "false");
    return 0;
}

/* The fields of config.json that matter, checked. */
static int parse_config(const json_file *f, hf_config *config, char *err) {
    gpt2_config *c = &config->model;
    char quoted[SNIPPET_SIZE];
    int64_t n_positions = 0, n_ctx = 0, n_inner = 0, token = 0;
    int found;
    const json_value *v;
    memset(config, 0, sizeof *config);

    /* Ranges as docs/FORMAT.md allows them. */
    if (config_required(f, "n_layer", 1, 1024, &c->n_layer, err) < 0 ||
        config_required(f, "n_head", 1, 1024, &c->n_head, err) < 0 ||
        config_required(f, "n_embd", 1, 65536, &c->n_embd, err) < 0 ||
        config_required(f, "vocab_size", 1, 16777216, &c->vocab_size, err) < 0)
        return -1;
    if (c->n_embd % c->n_head != 0)
        return fail(err, "%s: n_embd %d is not divisible by n_head %d", f->path, c->n_embd, c->n_head);

    /* n_positions sizes wpe; older configs carry only n_ctx, which then means the same. */
    if ((found = config_integer(f, "n_positions", 1, 1048576, 0, &n_positions, err)) < 0 ||
        config_integer(f, "n_ctx", 1, 1048576, 0, &n_ctx, err) < 0)
        return -1;
    if (!found && !n_ctx) return fail(err, "%s: missing key \"n_positions\" (or \"n_ctx\")", f->path);
    c->n_ctx = (int)(found ? n_positions : n_ctx);

    c->ln_eps = 1e-5f;  /* GPT2Config's default */
    if ((v = json_get(f->root, "layer_norm_epsilon"))) {
        if (v->type != JSON_NUMBER)
            return fail(err, "%s: layer_norm_epsilon: expected a number, got %s", f->path, json_snippet(f, v, quoted));
        if (!(v->number > 0 && v->number < 1) || !((float)v->number > 0))  /* (checked as a double: no cast out of range) */
            return fail(err, "%s: layer_norm_epsilon: %s is outside (0, 1)", f->path, json_snippet(f, v, quoted));
        c->ln_eps = (float)v->number;
    }

    /* The math gpt2.c implements: tanh GELU, a 4C MLP, attention scaled by 1/sqrt(HS). */
    if ((v = json_get(f->root, "activation_function")) &&
        (v->type != JSON_STRING || v->string_len != 8 || strcmp(v->string, "gelu_new") != 0))
        return fail(err, "%s: activation_function is %s: gpt2.c implements gelu_new only", f->path,
                    json_snippet(f, v, quoted));
    if ((found = config_integer(f, "n_inner", 1, INT64_MAX, 1, &n_inner, err)) < 0) return -1;
    if (found && n_inner != 4 * (int64_t)c->n_embd)
        return fail(err, "%s: n_inner is %lld: gpt2.c implements an MLP of 4 * n_embd = %d only", f->path,
                    (long long)n_inner, 4 * c->n_embd);
    if (config_require_flag(f, "scale_attn_weights", 1, err) < 0 ||
        config_require_flag(f, "scale_attn_by_inverse_layer_idx", 0, err) < 0 ||
        config_require_flag(f, "reorder_and_upcast_attn", 0, err) < 0 ||
        config_require_flag(f, "add_cross_attention", 0, err) < 0)
        return -1;
    if ((v = json_get(f->root, "model_type")) &&
        (v->type != JSON_STRING || v->string_len != 4 || strcmp(v->string, "gpt2") != 0))
        return fail(err, "%s: model_type is %s, expected \"gpt2\"", f->path, json_snippet(f, v, quoted));

    /* eos/bos ids (null in configs that have none), within the vocabulary. */
    config->eos_token_id = config->bos_token_id = -1;
    if ((found = config_integer(f, "eos_token_id", 0, c->vocab_size - 1, 1, &token, err)) < 0) return -1;
    if (found) config->eos_token_id = (int)token;
    if ((found = config_integer(f, "bos_token_id", 0, c->vocab_size - 1, 1, &token, err)) < 0) return -1;
    if (found) config->bos_token_id = (int)token;
    return 0;
}

static int read_config(const char *dir, hf_config *config, char *err) {
    char path[PATH_SIZE];
    if (join_path(path, dir, "config.json", err) < 0) return -1;
    json_file f;
    int status = json_file_read(&f, path, CONFIG_VALUES_MAX, err);
    if (status == 0) status = parse_config(&f, config, err);
    json_file_free(&f);
    return status;
}

/* ---- model.safetensors ----------------------------------------------------------------- */

/* The dtypes of the safetensors format, with their element sizes. */
static const struct {
    const char *name;
    int size;
} DTYPES[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
    {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};
enum { DTYPE_F32 = 1, DTYPE_F16 = 2, DTYPE_BF16 = 3, N_DTYPES = sizeof DTYPES / sizeof DTYPES[0] };

typedef struct {
    const char *name;        /* as in the file, for messages */
    const char *short_name;  /* without the "transformer." prefix some files have */
    int dtype;               /* index into DTYPES; -1 for a mask buffer of another dtype */
    int n_dims;
    uint64_t shape[SAFETENSORS_MAX_DIMS];
    uint64_t begin, end;     /* data_offsets, relative to the end of the header */
    int used;                /* claimed by a tensor of our table (or lm_head.weight) */
} st_tensor;

typedef struct {
    const char *path;
    int fd;
    const unsigned char *map;
    uint64_t file_size;
    const unsigned char *data;  /* map + 8 + header length */
    uint64_t data_size;
    json_doc header;
    st_tensor *tensors;
    size_t n_tensors;
} safetensors;

static uint64_t read_u64_le(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* "[64,192]" */
static const char *shape_string(const uint64_t *shape, int n_dims, char out[SNIPPET_SIZE]) {
    size_t k = 0;
    out[k++] = '[';
    for (int i = 0; i < n_dims && k < SNIPPET_SIZE - 24; i++)
        k += (size_t)snprintf(out + k, SNIPPET_SIZE - k, "%s%llu", i ? "," : "", (unsigned long long)shape[i]);
    snprintf(out + k, SNIPPET_SIZE - k, "]");
    return out;
}

/* A non-negative JSON integer, or -1. */
static int64_t json_count(const json_value *v) {
    return v && v->type == JSON_NUMBER && v->is_integer && v->integer >= 0 ? v->integer : -1;
}

/* "h.<digits>.attn.bias" [1,1,P,P] and "h.<digits>.attn.masked_bias" (a scalar): the causal
 * mask buffers some PyTorch exports carry. They are constants, not weights. */
static int is_mask_buffer(const char *name) {
    if (strncmp(name, "h.", 2) != 0) return 0;
    const char *p = name + 2;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    return strcmp(p, ".attn.bias") == 0 || strcmp(p, ".attn.masked_bias") == 0;
}

/* Reads one header entry {"dtype", "shape", "data_offsets"} into t and checks it against
 * the data section. */
static int read_tensor_entry(const safetensors *st, const json_value *entry, st_tensor *t, char *err) {
    char quoted[SNIPPET_SIZE], other[SNIPPET_SIZE];
    show(entry->key, entry->key_len, 0, quoted);
    if (entry->type != JSON_OBJECT) return fail(err, "%s: tensor %s: expected an object", st->path, quoted);
    t->name = entry->key;
    t->short_name = strncmp(t->name, "transformer.", 12) == 0 ? t->name + 12 : t->name;
    if (strlen(t->name) != entry->key_len) return fail(err, "%s: tensor %s: NUL in the name", st->path, quoted);

    const json_value *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const json_value *m = entry->first; m; m = m->next) {
        if (json_key_is(m, "dtype")) dtype = m;
        else if (json_key_is(m, "shape")) shape = m;
        else if (json_key_is(m, "data_offsets")) offsets = m;
        else return fail(err, "%s: tensor %s: unknown key %s", st->path, quoted, snippet(m->key, m->key_len, other));
    }
    if (!dtype || !shape || !offsets)
        return fail(err, "%s: tensor %s: missing \"%s\"", st->path, quoted,
                    !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    if (dtype->type != JSON_STRING) return fail(err, "%s: tensor %s: dtype is not a string", st->path, quoted);
    t->dtype = -1;
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(dtype->string, DTYPES[i].name) == 0) t->dtype = i;
    /* A mask buffer is skipped whatever its dtype, so one this list lacks is no error. */
    if (t->dtype < 0 && !is_mask_buffer(t->short_name))
        return fail(err, "%s: tensor %s: unknown dtype %s", st->path, quoted,
                    snippet(dtype->string, dtype->string_len, other));

    if (shape->type != JSON_ARRAY) return fail(err, "%s: tensor %s: shape is not an array", st->path, quoted);
    if (shape->count > SAFETENSORS_MAX_DIMS)
        return fail(err, "%s: tensor %s: %zu dimensions, at most %d supported", st->path, quoted, shape->count,
                    SAFETENSORS_MAX_DIMS);
    t->n_dims = 0;
    int has_zero = 0;
    for (const json_value *d = shape->first; d; d = d->next) {
        int64_t dim = json_count(d);
        if (dim < 0) return fail(err, "%s: tensor %s: shape has a dimension that is not a count", st->path, quoted);
        t->shape[t->n_dims++] = (uint64_t)dim;
        has_zero |= dim == 0;
    }
    /* The size in 64 bits: a product past the data size is wrong already, so stopping
     * there also keeps it from overflowing. */
    uint64_t n_bytes = has_zero || t->dtype < 0 ? 0 : (uint64_t)DTYPES[t->dtype].size;
    int too_big = 0;
    for (int i = 0; i < t->n_dims && n_bytes && !too_big; i++) {
        if (n_bytes > st->data_size / t->shape[i]) too_big = 1;
        else n_bytes *= t->shape[i];
    }

    if (offsets->type != JSON_ARRAY || offsets->count != 2 || json_count(offsets->first) < 0 ||
        json_count(offsets->first->next) < 0)
        return fail(err, "%s: tensor %s: data_offsets is not [begin, end]", st->path, quoted);
    t->begin = (uint64_t)offsets->first->integer;
    t->end = (uint64_t)offsets->first->next->integer;
    if (t->begin > t->end)
        return fail(err, "%s: tensor %s: data_offsets [%llu, %llu] end before they begin", st->path, quoted,
                    (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > st->data_size)
        return fail(err, "%s: tensor %s: data_offsets [%llu, %llu] are past the end of the data (%llu bytes)",
                    st->path, quoted, (unsigned long long)t->begin, (unsigned long long)t->end,
                    (unsigned long long)st->data_size);
    if (t->dtype >= 0 && (too_big || n_bytes != t->end - t->begin)) {
        char dims[SNIPPET_SIZE], needs[48];
        if (too_big) snprintf(needs, sizeof needs, "more bytes than the file has");
        else snprintf(needs, sizeof needs, "%llu bytes", (unsigned long long)n_bytes);
        return fail(err, "%s: tensor %s: shape %s of %s needs %s, but data_offsets [%llu, %llu] hold %llu",
                    st->path, quoted, shape_string(t->shape, t->n_dims, dims), DTYPES[t->dtype].name, needs,
                    (unsigned long long)t->begin, (unsigned long long)t->end,
                    (unsigned long long)(t->end - t->begin));
    }
    return 0;
}

/* A tensor's name for a message: it may hold any character but NUL, a newline for one. */
static const char *tensor_name(const st_tensor *t, char out[SNIPPET_SIZE]) { return show(t->name, strlen(t->name), 0, out); }

static int compare_by_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Rejects tensors whose bytes overlap (any order and gaps between them are allowed), and
 * two names for one tensor (with and without the prefix). */
static int check_tensor_layout(const safetensors *st, char *err) {
    if (st->n_tensors == 0) return 0;
    const st_tensor **sorted = malloc(st->n_tensors * sizeof *sorted);
    if (!sorted) return fail(err, "%s: out of memory", st->path);
    for (size_t i = 0; i < st->n_tensors; i++) sorted[i] = &st->tensors[i];
    qsort(sorted, st->n_tensors, sizeof *sorted, compare_by_begin);
    const st_tensor *last = NULL;  /* the one ending furthest so far */
    for (size_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = sorted[i];
        if (t->begin == t->end) continue;  /* no bytes, nothing to overlap */
        if (last && t->begin < last->end) {
            char a[SNIPPET_SIZE], b[SNIPPET_SIZE];
            fail(err, "%s: tensors %s [%llu, %llu] and %s [%llu, %llu] overlap", st->path, tensor_name(last, a),
                 (unsigned long long)last->begin, (unsigned long long)last->end, tensor_name(t, b),
                 (unsigned long long)t->begin, (unsigned long long)t->end);
            free(sorted);
            return -1;
        }
        if (!last || t->end > last->end) last = t;
    }
    free(sorted);
    return 0;
}

static int compare_by_short_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->short_name, ((const st_tensor *)b)->short_name);
}

/* Sorts the tensors by name for safetensors_find, rejecting two names for one tensor (with
 * and without the prefix, the only way two keys of the header can agree). */
static int index_tensors(safetensors *st, char *err) {
    char a[SNIPPET_SIZE], b[SNIPPET_SIZE];
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, compare_by_short_name);
    for (size_t i = 1; i < st->n_tensors; i++)
        if (strcmp(st->tensors[i - 1].short_name, st->tensors[i].short_name) == 0)
            return fail(err, "%s: tensors %s and %s are the same tensor", st->path, tensor_name(&st->tensors[i - 1], a),
                        tensor_name(&st->tensors[i], b));
    return 0;
}

static void safetensors_close(safetensors *st) {
    if (st->map) munmap((void *)st->map, (size_t)st->file_size);
    if (st->fd >= 0) close(st->fd);
    json_free(&st->header);
    free(st->tensors);
    st->map = NULL;
    st->fd = -1;
    st->tensors = NULL;
}

/* Maps the file and reads and checks its header: every tensor's entry, range and size. */
static int safetensors_open(safetensors *st, const char *path, char *err) {
    memset(st, 0, sizeof *st);
    st->fd = -1;
    st->path = path;
    st->fd = open(path, O_RDONLY);
    if (st->fd < 0) return fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(st->fd, &sb) < 0) return fail(err, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return fail(err, "%s: not a regular file", path);
    st->file_size = (uint64_t)sb.st_size;
    if (st->file_size < 8)
        return fail(err, "%s: %llu bytes is too small for a safetensors file", path,
                    (unsigned long long)st->file_size);
    if (st->file_size > SIZE_MAX) return fail(err, "%s: too large to map on this machine", path);
    void *map = mmap(NULL, (size_t)st->file_size, PROT_READ, MAP_PRIVATE, st->fd, 0);
    if (map == MAP_FAILED) return fail(err, "%s: cannot map: %s", path, strerror(errno));
    st->map = map;

    uint64_t header_size = read_u64_le(st->map);
    if (header_size > st->file_size - 8)
        return fail(err, "%s: header length %llu is past the end of the file (%llu bytes)", path,
                    (unsigned long long)header_size, (unsigned long long)st->file_size);
    if (header_size > SAFETENSORS_HEADER_MAX)
        return fail(err, "%s: header length %llu is absurd (the format's limit is %llu)", path,
                    (unsigned long long)header_size, (unsigned long long)SAFETENSORS_HEADER_MAX);
    st->data = st->map + 8 + header_size;
    st->data_size = st->file_size - 8 - header_size;

    /* The JSON may be padded with spaces after it; json_parse allows trailing whitespace. */
    char msg[ERR_SIZE];
    const json_value *root =
        json_parse_limited((const char *)st->map + 8, (size_t)header_size, HEADER_VALUES_MAX, &st->header, msg, sizeof msg);
    if (!root) return fail(err, "%s: header: %s", path, msg);
    if (root->type != JSON_OBJECT) return fail(err, "%s: header: expected a JSON object", path);
    st->tensors = calloc(root->count ? root->count : 1, sizeof *st->tensors);
    if (!st->tensors) return fail(err, "%s: out of memory", path);
    for (const json_value *entry = root->first; entry; entry = entry->next) {
        if (json_key_is(entry, "__metadata__")) {
            if (entry->type != JSON_OBJECT) return fail(err, "%s: header: __metadata__ is not an object", path);
            continue;  /* free-form strings ("format": "pt") */
        }
        if (read_tensor_entry(st, entry, &st->tensors[st->n_tensors], err) < 0) return -1;
        st->n_tensors++;
    }
    if (check_tensor_layout(st, err) < 0) return -1;
    return index_tensors(st, err);
}

static st_tensor *safetensors_find(safetensors *st, const char *short_name) {
    st_tensor key;
    key.short_name = short_name;
    return st->n_tensors ? bsearch(&key, st->tensors, st->n_tensors, sizeof key, compare_by_short_name) : NULL;
}

/* HuggingFace's GPT-2 uses Conv1D for these: weights stored [in][out], the transpose of ours. */
static int is_conv1d_weight(const char *name) {
    static const char *const suffixes[] = {".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight",
                                           ".mlp.c_proj.weight"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n > k && strcmp(name + n - k, suffixes[i]) == 0) return 1;
    }
    return 0;
}

static int is_float_dtype(int dtype) { return dtype == DTYPE_F32 || dtype == DTYPE_F16 || dtype == DTYPE_BF16; }

/* IEEE binary16 → binary32, exactly (every half is a float). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exponent = h >> 10 & 0x1Fu, mantissa = h & 0x3FFu, bits;
    if (exponent == 0x1F) {
        bits = sign | 0x7F800000u | mantissa << 13;  /* infinity, or NaN with its payload */
    } else if (exponent != 0) {
        bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
    } else if (mantissa == 0) {
        bits = sign;  /* ±0 */
    } else {
        /* Subnormal, mantissa · 2^-24: shift the leading 1 into the implicit bit. */
        exponent = 127 - 15 + 1;
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            exponent--;
        }
        bits = sign | exponent << 23 | (mantissa & 0x3FFu) << 13;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* bfloat16 is the top half of a binary32. */
static float bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Element i of a tensor's little-endian data as a float. */
static float element(const unsigned char *data, int dtype, uint64_t i) {
    if (dtype == DTYPE_F32) {
        const unsigned char *p = data + 4 * i;
        uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    const unsigned char *p = data + 2 * i;
    uint16_t half = (uint16_t)(p[0] | p[1] << 8);
    return dtype == DTYPE_F16 ? f16_to_f32(half) : bf16_to_f32(half);
}

static uint64_t element_count(const st_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];  /* checked against the data size */
    return n;
}

/* ---- vocab.json and merges.txt --------------------------------------------------------- */

/* GPT-2's vocab.json and merges.txt write every byte as a printable character: the printable
 * Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') as themselves, the other 68 bytes (controls,
 * space, DEL, NBSP, soft hyphen), in increasing order, as U+0100, U+0101, ... U+0143.
 * UNICODE_TO_BYTE_SIZE code points cover the map; byte_of[cp] inverts it (-1: not in it). */
#define UNICODE_TO_BYTE_SIZE 0x144

static void build_byte_map(int byte_of[UNICODE_TO_BYTE_SIZE]) {
    for (int cp = 0; cp < UNICODE_TO_BYTE_SIZE; cp++) byte_of[cp] = -1;
    int n_unprintable = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_of[printable ? b : 0x100 + n_unprintable++] = b;
    }
}

/* Decodes a token as vocab.json and merges.txt write it (text[0, n), UTF-8) into out, which
 * has room for n bytes. A token with a character outside the byte map is an added token
 * (such as "<|im start|>"): it is kept as its UTF-8 bytes and *added is set.
 * Returns the length, or -1 if text is not valid UTF-8. */
static long token_to_bytes(const int byte_of[UNICODE_TO_BYTE_SIZE], const unsigned char *text, size_t n,
                           unsigned char *out, int *added) {
    size_t k = 0;
    *added = 0;
    for (size_t i = 0; i < n;) {
        size_t len = json_utf8_length(text + i, n - i);
        if (!len) return -1;
        uint32_t cp = len == 1 ? text[i] : (uint32_t)(text[i] & (0xFF >> (len + 1)));
        for (size_t j = 1; j < len; j++) cp = cp << 6 | (text[i + j] & 0x3Fu);
        if (cp >= UNICODE_TO_BYTE_SIZE || byte_of[cp] < 0) *added = 1;
        else out[k++] = (unsigned char)byte_of[cp];
        i += len;
    }
    if (*added) {
        memcpy(out, text, n);
        return (long)n;
    }
    return (long)k;
}

/* The tokenizer as gpt2_vocab wants it, and an index from bytes to ids. */
typedef struct {
    int n_tokens;
    uint32_t *offsets;          /* [n_tokens + 1] */
    unsigned char *bytes;       /* [offsets[n_tokens]] */
    unsigned char *is_added;    /* [n_tokens]: a token outside the byte map, so special */
    unsigned char *is_special;  /* [n_tokens] */
    /* Open addressing hash of the ordinary (not added) tokens: id or -1. No two of them have
     * the same bytes, as the byte map is one-to-one; an added token may repeat one's bytes
     * (" " and "Ġ"), which is no ambiguity, as special tokens never come out of BPE. */
    int32_t *index;
    size_t index_mask;
    uint32_t *merges;           /* [n_merges][2] */
    int n_merges;
    uint32_t *special;          /* [n_special] */
    int n_special;
} tokenizer;

static void tokenizer_free(tokenizer *tok) {
    free(tok->offsets);
    free(tok->bytes);
    free(tok->is_added);
    free(tok->is_special);
    free(tok->index);
    free(tok->merges);
    free(tok->special);
}

static uint64_t hash_bytes(const unsigned char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325u;  /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3u;
    return h;
}

/* The id of the token with bytes s[0, n), or -1. With insert_id >= 0, adds that id when
 * the bytes are new instead (and returns the existing id if they are not). */
static int32_t token_lookup(tokenizer *tok, const unsigned char *s, size_t n, int32_t insert_id) {
    for (size_t slot = (size_t)hash_bytes(s, n) & tok->index_mask;; slot = (slot + 1) & tok->index_mask) {
        int32_t id = tok->index[slot];
        if (id < 0) {
            if (insert_id >= 0) tok->index[slot] = insert_id;
            return -1;
        }
        uint32_t begin = tok->offsets[id], len = tok->offsets[id + 1] - begin;
        if (len == n && memcmp(tok->bytes + begin, s, n) == 0) return id;
    }
}

static int read_vocab(const char *dir, int vocab_size, tokenizer *tok, char *err) {
    char path[PATH_SIZE], quoted[SNIPPET_SIZE], other[SNIPPET_SIZE];
    if (join_path(path, dir, "vocab.json", err) < 0) return -1;
    json_file f;
    const json_value **by_id = NULL;
    int byte_of[UNICODE_TO_BYTE_SIZE];
    /* Room for twice the tokens vocab_size allows, so that a vocabulary too large for the
     * config fails below with its ids named, while memory stays in proportion. */
    int status = json_file_read(&f, path, 2 * (size_t)vocab_size + 16, err);
    if (status < 0) goto done;

    /* Every id once, below vocab_size; ids without a token keep zero bytes. */
    tok->n_tokens = vocab_size;
    by_id = calloc((size_t)vocab_size, sizeof *by_id);
    tok->offsets = calloc((size_t)vocab_size + 1, sizeof *tok->offsets);
    tok->is_added = calloc((size_t)vocab_size, 1);
    if (!by_id || !tok->offsets || !tok->is_added) {
        status = fail(err, "%s: out of memory", path);
        goto done;
    }
    uint64_t total = 0;
    for (const json_value *m = f.root->first; m; m = m->next) {
        snippet(m->key, m->key_len, quoted);
        if (m->type != JSON_NUMBER || !m->is_integer || m->integer < 0) {
            status = fail(err, "%s: token %s: id %s is not a non-negative integer", path, quoted,
                          json_snippet(&f, m, other));
            goto done;
        }
        if (m->integer >= vocab_size) {
            status = fail(err, "%s: token %s: id %lld is not below vocab_size %d (config.json)", path, quoted,
                          (long long)m->integer, vocab_size);
            goto done;
        }
        if (m->key_len == 0) {
            status = fail(err, "%s: id %lld: empty token", path, (long long)m->integer);
            goto done;
        }
        const json_value **slot = &by_id[m->integer];
        if (*slot) {
            status = fail(err, "%s: tokens %s and %s have the same id %lld", path,
                          snippet((*slot)->key, (*slot)->key_len, other), quoted, (long long)m->integer);
            goto done;
        }
        *slot = m;
        total += m->key_len;  /* a token's bytes are never more than its UTF-8 */
    }
    if (total > UINT32_MAX) {  /* the format's offsets are u32 */
        status = fail(err, "%s: more than 4 GB of token text", path);
        goto done;
    }

    build_byte_map(byte_of);
    tok->bytes = malloc(total ? (size_t)total : 1);
    size_t capacity = 16;
    while (capacity < 2 * (size_t)vocab_size) capacity *= 2;
    tok->index = malloc(capacity * sizeof *tok->index);
    if (!tok->bytes || !tok->index) {
        status = fail(err, "%s: out of memory", path);
        goto done;
    }
    tok->index_mask = capacity - 1;
    for (size_t i = 0; i < capacity; i++) tok->index[i] = -1;
    uint32_t used = 0;
    for (int id = 0; id < vocab_size; id++) {
        const json_value *m = by_id[id];
        tok->offsets[id] = used;
        if (!m) continue;
        int added;
        long n = token_to_bytes(byte_of, (const unsigned char *)m->key, m->key_len, tok->bytes + used, &added);
        /* (json_parse checked the UTF-8, so n >= 0) */
        tok->is_added[id] = (unsigned char)added;
        tok->offsets[id + 1] = used + (uint32_t)n;
        if (!added) token_lookup(tok, tok->bytes + used, (size_t)n, id);
        used += (uint32_t)n;
    }
    tok->offsets[vocab_size] = used;
done:
    free(by_id);
    json_file_free(&f);
    return status;
}

/* Adds id to the special tokens once; the array has room for every token. */
static void add_special(tokenizer *tok, int id) {
    for (int i = 0; i < tok->n_special; i++)
        if (tok->special[i] == (uint32_t)id) return;
    tok->special[tok->n_special++] = (uint32_t)id;
}

static int has_text(const tokenizer *tok, int id) { return tok->offsets[id + 1] > tok->offsets[id]; }

/* <|endoftext|> is the id vocab.json gives it, else config.json's eos_token_id. Special
 * tokens: it, eos and bos, and the added tokens; ids without text cannot occur in text and
 * are left out. Then checks what gpt2.c's tokenizer needs of them. */
static int choose_special_tokens(const hf_config *config, tokenizer *tok, int *eot, const char *dir, char *err) {
    static const char endoftext[] = "<|endoftext|>";
    *eot = token_lookup(tok, (const unsigned char *)endoftext, sizeof endoftext - 1, -1);
    if (*eot < 0) *eot = config->eos_token_id;
    if (*eot < 0)
        return fail(err, "%s: no \"<|endoftext|>\" in vocab.json and no eos_token_id in config.json", dir);
    tok->special = malloc((size_t)tok->n_tokens * sizeof *tok->special);
    tok->is_special = calloc((size_t)tok->n_tokens, 1);
    if (!tok->special || !tok->is_special) return fail(err, "out of memory");
    int candidates[3] = {*eot, config->eos_token_id, config->bos_token_id};
    for (int i = 0; i < 3; i++)
        if (candidates[i] >= 0 && has_text(tok, candidates[i])) add_special(tok, candidates[i]);
    for (int id = 0; id < tok->n_tokens; id++)
        if (tok->is_added[id] && id != candidates[0] && id != candidates[1] && id != candidates[2])
            tok->special[tok->n_special++] = (uint32_t)id;
    for (int i = 0; i < tok->n_special; i++) tok->is_special[tok->special[i]] = 1;

    /* Byte-level BPE starts from single bytes: each of the 256 must be an ordinary token. */
    char path[PATH_SIZE];
    for (int b = 0; b < 256; b++) {
        unsigned char byte = (unsigned char)b;
        int32_t id = token_lookup(tok, &byte, 1, -1);
        if (id < 0) {
            if (join_path(path, dir, "vocab.json", err) < 0) return -1;
            return fail(err, "%s: no token for the byte 0x%02X (a byte-level BPE needs all 256)", path, b);
        }
        if (tok->is_special[id]) {
            if (join_path(path, dir, "config.json", err) < 0) return -1;
            return fail(err, "%s: eos_token_id or bos_token_id %d is the byte 0x%02X, which byte-level BPE needs "
                        "as an ordinary token", path, id, b);
        }
    }
    return 0;
}

static int read_merges(const char *dir, tokenizer *tok, char *err) {
    char path[PATH_SIZE];
    if (join_path(path, dir, "merges.txt", err) < 0) return -1;
    char *text;
    size_t size;
    if (read_text_file(path, &text, &size, err) < 0) return -1;
    int byte_of[UNICODE_TO_BYTE_SIZE];
    build_byte_map(byte_of);

    size_t n_lines = 1;
    for (size_t i = 0; i < size; i++) n_lines += text[i] == '\n';
    unsigned char *pair = malloc(size + 1);  /* left's then right's bytes, never longer than the line */
    tok->merges = malloc(2 * n_lines * sizeof *tok->merges);
    if (!pair || !tok->merges) {
        free(pair);
        free(text);
        return fail(err, "%s: out of memory", path);
    }
    int status = 0;
    size_t line_no = 0;
    for (char *line = text; line < text + size; ) {
        char *newline = memchr(line, '\n', (size_t)(text + size - line));
        char *end = newline ? newline : text + size;
        char *next = newline ? newline + 1 : text + size;
        line_no++;
        if (end > line && end[-1] == '\r') end--;
        size_t len = (size_t)(end - line);
        /* "#version: 0.2", when present, is the first line; tokens never start with '#' + "version". */
        if (line_no == 1 && len >= 8 && memcmp(line, "#version", 8) == 0) {
            line = next;
            continue;
        }
        char *space = memchr(line, ' ', len);
        if (!space || space == line || space == end - 1 || memchr(space + 1, ' ', (size_t)(end - space - 1))) {
            char quoted[SNIPPET_SIZE];
            status = fail(err, "%s: line %zu: expected two tokens separated by one space, got %s", path, line_no,
                          snippet(line, len, quoted));
            break;
        }
        const char *side[2] = {line, space + 1};
        size_t side_len[2] = {(size_t)(space - line), (size_t)(end - space - 1)};
        size_t pair_len = 0;
        int32_t ids[2];
        for (int s = 0; s < 2 && status == 0; s++) {
            int added;
            long n = token_to_bytes(byte_of, (const unsigned char *)side[s], side_len[s], pair + pair_len, &added);
            char quoted[SNIPPET_SIZE];
            if (n < 0) {
                status = fail(err, "%s: line %zu: invalid UTF-8", path, line_no);
            } else if ((ids[s] = token_lookup(tok, pair + pair_len, (size_t)n, -1)) < 0) {
                status = fail(err, "%s: line %zu: token %s is not in vocab.json", path, line_no,
                              snippet(side[s], side_len[s], quoted));
            }
            pair_len += n > 0 ? (size_t)n : 0;
        }
        if (status) break;
        /* docs/FORMAT.md: the concatenation of a merge must itself be a token, and an
         * ordinary one: special tokens never come out of BPE. */
        int32_t merged = token_lookup(tok, pair, pair_len, -1);
        if (merged < 0 || tok->is_special[merged]) {
            char left[SNIPPET_SIZE], right[SNIPPET_SIZE];
            status = fail(err, "%s: line %zu: %s + %s is %s", path, line_no, snippet(side[0], side_len[0], left),
                          snippet(side[1], side_len[1], right),
                          merged < 0 ? "not a token of vocab.json" : "a special token (config.json's eos or bos)");
            break;
        }
        if (tok->n_merges == INT32_MAX) {
            status = fail(err, "%s: too many merges", path);
            break;
        }
        tok->merges[2 * tok->n_merges] = (uint32_t)ids[0];
        tok->merges[2 * tok->n_merges + 1] = (uint32_t)ids[1];
        tok->n_merges++;
        line = next;
    }
    free(pair);
    free(text);
    return status;
}

/* ---- conversion ------------------------------------------------------------------------ */

/* One tensor of our table and where its data is in the safetensors file. */
typedef struct {
    char name[96];
    int rows, cols;      /* ours: [out][in] */
    int transpose;       /* stored [in][out] (Conv1D) in the checkpoint */
    const st_tensor *source;
} planned_tensor;

/* Finds every tensor of our table in the checkpoint and checks its dtype and shape; then
 * checks that lm_head.weight, if any, is wte, and that nothing else is there. */
static int plan_tensors(const gpt2_config *c, safetensors *st, planned_tensor *plan, int n, char *err) {
    char quoted[SNIPPET_SIZE], got[SNIPPET_SIZE], want[SNIPPET_SIZE];
    for (int i = 0; i < n; i++) {
        planned_tensor *p = &plan[i];
        if (gpt2_tensor_info(c, i, p->name, sizeof p->name, &p->rows, &p->cols) < 0)
            return fail(err, "gpt2_tensor_info failed for tensor %d of %d", i, n);
        p->transpose = is_conv1d_weight(p->name);
        st_tensor *t = safetensors_find(st, p->name);
        if (!t) return fail(err, "%s: missing tensor %s", st->path, p->name);
        t->used = 1;
        p->source = t;
        if (!is_float_dtype(t->dtype))
            return fail(err, "%s: tensor %s: dtype %s, expected F32, F16 or BF16", st->path, t->name,
                        DTYPES[t->dtype].name);
        /* The checkpoint's shape: vectors 1-D, Conv1D weights [in, out], the rest [rows, cols]. */
        uint64_t expected[2] = {(uint64_t)(p->transpose ? p->cols : p->rows),
                                (uint64_t)(p->transpose ? p->rows : p->cols)};
        int is_matrix = p->transpose || strcmp(p->name, "wte.weight") == 0 || strcmp(p->name, "wpe.weight") == 0;
        const uint64_t *want_shape = is_matrix ? expected : expected + 1;
        int want_dims = is_matrix ? 2 : 1;
        if (t->n_dims != want_dims || memcmp(t->shape, want_shape, (size_t)want_dims * sizeof *want_shape) != 0)
            return fail(err, "%s: tensor %s: shape %s, expected %s", st->path, t->name,
                        shape_string(t->shape, t->n_dims, got), shape_string(want_shape, want_dims, want));
    }

    /* GPT-2 ties its LM head to wte; a checkpoint with a different head is another model. */
    st_tensor *head = safetensors_find(st, "lm_head.weight");
    if (head) {
        const st_tensor *wte = plan[0].source;
        head->used = 1;
        if (!is_float_dtype(head->dtype))
            return fail(err, "%s: tensor %s: dtype %s, expected F32, F16 or BF16", st->path, head->name,
                        DTYPES[head->dtype].name);
        if (head->n_dims != 2 || head->shape[0] != wte->shape[0] || head->shape[1] != wte->shape[1])
            return fail(err, "%s: tensor %s: shape %s, expected %s like wte.weight", st->path, head->name,
                        shape_string(head->shape, head->n_dims, got), shape_string(wte->shape, wte->n_dims, want));
        uint64_t count = element_count(wte);
        for (uint64_t i = 0; i < count; i++) {
            float a = element(st->data + head->begin, head->dtype, i), b = element(st->data + wte->begin, wte->dtype, i);
            if (memcmp(&a, &b, sizeof a) != 0)
                return fail(err, "%s: tensor %s differs from wte.weight (row %llu, column %llu): gpt2.c needs the tied "
                            "LM head of GPT-2", st->path, head->name, (unsigned long long)(i / wte->shape[1]),
                            (unsigned long long)(i % wte->shape[1]));
        }
    }

    for (size_t i = 0; i < st->n_tensors; i++) {
        const st_tensor *t = &st->tensors[i];
        if (!t->used && !is_mask_buffer(t->short_name))
            return fail(err, "%s: unexpected tensor %s", st->path, show(t->name, strlen(t->name), 0, quoted));
    }
    return 0;
}

/* dst[o][i] = src[i][o], in blocks that stay in cache. */
static void transpose(const float *src, size_t in, size_t out, float *dst) {
    enum { BLOCK = 32 };
    for (size_t i0 = 0; i0 < in; i0 += BLOCK) {
        size_t i1 = i0 + BLOCK < in ? i0 + BLOCK : in;
        for (size_t o0 = 0; o0 < out; o0 += BLOCK) {
            size_t o1 = o0 + BLOCK < out ? o0 + BLOCK : out;
            for (size_t i = i0; i < i1; i++)
                for (size_t o = o0; o < o1; o++) dst[o * in + i] = src[i * out + o];
        }
    }
}

/* Converts and writes the tensors in table order, one at a time. */
static int write_model(const char *out_path, const gpt2_config *config, const gpt2_vocab *vocab, const gpt2_weight_types *types,
                       const safetensors *st, const planned_tensor *plan, int n, char *err) {
    size_t max_count = 0, max_transposed = 0;
    for (int i = 0; i < n; i++) {
        size_t count = (size_t)plan[i].rows * (size_t)plan[i].cols;
        if (count > max_count) max_count = count;
        if (plan[i].transpose && count > max_transposed) max_transposed = count;
    }
    if (max_count > SIZE_MAX / sizeof(float)) return fail(err, "a %zu-element tensor is too large for memory", max_count);
    float *values = malloc(max_count * sizeof *values);
    float *transposed = malloc((max_transposed ? max_transposed : 1) * sizeof *transposed);
    char msg[ERR_SIZE];
    gpt2_writer *w = NULL;
    int status = 0;
    if (!values || !transposed) {
        status = fail(err, "out of memory for a %zu-element tensor", max_count);
        goto done;
    }
    /* (the writer's messages name the file) */
    w = gpt2_writer_open_typed(out_path, config, vocab, types, msg, sizeof msg);
    if (!w) {
        status = fail(err, "%s", msg);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const planned_tensor *p = &plan[i];
        const st_tensor *t = p->source;
        size_t count = (size_t)p->rows * (size_t)p->cols;
        for (size_t k = 0; k < count; k++) values[k] = element(st->data + t->begin, t->dtype, k);
        const float *data = values;
        if (p->transpose) {
            transpose(values, (size_t)p->cols, (size_t)p->rows, transposed);
            data = transposed;
        }
        if (gpt2_writer_tensor(w, data, msg, sizeof msg) < 0) {
            status = fail(err, "tensor %s: %s", p->name, msg);
            gpt2_writer_abort(w);
            w = NULL;
            goto done;
        }
    }
    status = gpt2_writer_close(w, msg, sizeof msg);
    w = NULL;
    if (status < 0) fail(err, "%s", msg);
done:
    free(values);
    free(transposed);
    return status;
}

/* Converts hf_dir into out_path; on success prints one line of summary to report (unless NULL). */
static int convert(const char *hf_dir, const char *out_path, const gpt2_weight_types *types, FILE *report, char *err) {
    hf_config config;
    tokenizer tok;
    safetensors st;
    planned_tensor *plan = NULL;
    char path[PATH_SIZE];
    int status = -1;
    memset(&tok, 0, sizeof tok);
    memset(&st, 0, sizeof st);
    st.fd = -1;

    if (read_config(hf_dir, &config, err) < 0 || read_vocab(hf_dir, config.model.vocab_size, &tok, err) < 0 ||
        choose_special_tokens(&config, &tok, &config.model.eot_token, hf_dir, err) < 0 ||
        read_merges(hf_dir, &tok, err) < 0)
        goto done;
    if (join_path(path, hf_dir, "model.safetensors", err) < 0 || safetensors_open(&st, path, err) < 0) goto done;
    int n = gpt2_tensor_count(&config.model);
    if (n <= 0) {
        fail(err, "gpt2_tensor_count: %d tensors", n);
        goto done;
    }
    plan = calloc((size_t)n, sizeof *plan);
    if (!plan) {
        fail(err, "out of memory");
        goto done;
    }
    if (plan_tensors(&config.model, &st, plan, n, err) < 0) goto done;

    gpt2_vocab vocab = {
        .n_tokens = tok.n_tokens,
        .offsets = tok.offsets,
        .bytes = tok.bytes,
        .n_merges = tok.n_merges,
        .merges = tok.merges,
        .n_special = tok.n_special,
        .special = tok.special,
    };
    if (write_model(out_path, &config.model, &vocab, types, &st, plan, n, err) < 0) goto done;

    /* (the writer had gpt2_load check the file before it replaced anything) */
    struct stat written;
    double megabytes = stat(out_path, &written) == 0 ? (double)written.st_size / 1e6 : 0.0;

    const gpt2_config *c = &config.model;
    double n_params = 0;
    for (int i = 0; i < n; i++) n_params += (double)plan[i].rows * plan[i].cols;
    if (report)
        fprintf(report, "wrote %s: %d layers, %d heads, %d channels, ctx %d, vocab %d, %.1fM params, %s, %.*f MB\n",
                out_path, c->n_layer, c->n_head, c->n_embd, c->n_ctx, c->vocab_size, n_params / 1e6,
                gpt2_dtype_name(types->matrices), megabytes < 100 ? 1 : 0, megabytes);
    status = 0;
done:
    free(plan);
    safetensors_close(&st);
    tokenizer_free(&tok);
    return status;
}

/* ---- one of our model files, in another type ---------------------------------------------- */

static int retype(const char *in_path, const char *out_path, const gpt2_weight_types *types, char *err) {
    char msg[GPT2_ERR_MAX];
    gpt2_model *m = gpt2_load(in_path, msg, sizeof msg);
    if (!m) return fail(err, "%s", msg);
    const gpt2_config *c = gpt2_model_config(m);
    gpt2_vocab vocab;
    gpt2_model_vocab(m, &vocab);
    size_t largest = 0;
    for (int i = 0; i < gpt2_tensor_count(c); i++) {
        int rows, cols;
        gpt2_tensor_info(c, i, NULL, 0, &rows, &cols);
        if ((size_t)rows * cols > largest) largest = (size_t)rows * cols;
    }
    float *values = malloc(largest * sizeof *values);
    int status = -1;
    gpt2_writer *w = values ? gpt2_writer_open_typed(out_path, c, &vocab, types, msg, sizeof msg) : NULL;
    if (!values) fail(err, "out of memory for a %zu-value tensor", largest);
    else if (!w) fail(err, "%s", msg);
    for (int i = 0; w && i < gpt2_tensor_count(c); i++) {
        gpt2_tensor_read(m, i, values, NULL);
        if (gpt2_writer_tensor(w, values, msg, sizeof msg)) {
            gpt2_writer_abort(w);
            w = NULL;
            fail(err, "%s", msg);
        }
    }
    if (w && gpt2_writer_close(w, msg, sizeof msg)) fail(err, "%s", msg);
    else if (w) {
        struct stat written;
        double in_mb = gpt2_model_file_size(m) / 1e6, out_mb = stat(out_path, &written) == 0 ? written.st_size / 1e6 : 0.0;
        fprintf(stderr, "wrote %s: %s weights (embeddings %s), %.1f MB from %.1f MB\n", out_path, gpt2_dtype_name(types->matrices),
                gpt2_dtype_name(types->embeddings), out_mb, in_mb);
        status = 0;
    }
    free(values);
    gpt2_free(m);
    return status;
}

/* ---- command line ---------------------------------------------------------------------- */

static const char USAGE[] =
    "usage: export/convert [--dtype TYPE] HF_DIR OUT.bin\n"
    "       export/convert --dtype TYPE IN.bin OUT.bin\n"
    "\n"
    "Converts a HuggingFace GPT-2 checkpoint (gpt2, gpt2-medium, -large, -xl, distilgpt2 or a\n"
    "fine-tune of one) into a gpt2.c model file; or one gpt2.c model file into another weight type.\n"
    "\n"
    "HF_DIR must hold config.json, model.safetensors (F32, F16 or BF16), vocab.json and\n"
    "merges.txt; export/download.sh NAME fetches them. OUT.bin is written only if the whole\n"
    "conversion succeeds.\n"
    "\n"
    "options:\n"
    "  --dtype TYPE  the weights' type: f32 (default), f16, bf16, q8_0 or q4_0 (q4_0 keeps the token\n"
    "                embeddings, which are also the LM head, in q8_0); biases and layer norms stay f32\n"
    "  -h, --help    show this help\n";

int main(int argc, char **argv) {
    const char *args[2];
    int n_args = 0, options_done = 0;
    gpt2_dtype dtype = GPT2_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (!options_done && (strcmp(a, "--dtype") == 0 || strncmp(a, "--dtype=", 8) == 0)) {
            const char *v = a[7] == '=' ? a + 8 : i + 1 < argc ? argv[++i] : NULL;
            int found = -1;
            for (int k = 0; v && k < GPT2_N_DTYPES; k++)
                if (strcmp(v, gpt2_dtype_name((gpt2_dtype)k)) == 0) found = k;
            if (found < 0) {
                fprintf(stderr, "convert: --dtype expects f32, f16, bf16, q8_0 or q4_0%s%s\n", v ? ", got " : "", v ? v : "");
                return 2;
            }
            dtype = (gpt2_dtype)found;
        } else if (!options_done && a[0] == '-' && a[1] != 0) {
            fprintf(stderr, "convert: unknown option %s (see --help)\n", a);
            return 2;
        } else if (n_args == 2) {
            fprintf(stderr, "convert: too many arguments (usage: export/convert [--dtype TYPE] HF_DIR OUT.bin)\n");
            return 2;
        } else {
            args[n_args++] = a;
        }
    }
    if (n_args != 2) {
        fprintf(stderr, "convert: expected HF_DIR (or IN.bin) and OUT.bin (usage: export/convert [--dtype TYPE] HF_DIR OUT.bin)\n");
        return 2;
    }
    char err[ERR_SIZE];
    const gpt2_weight_types types = gpt2_default_types(dtype);
    struct stat in;
    const int is_file = stat(args[0], &in) == 0 && S_ISREG(in.st_mode);
    if ((is_file ? retype(args[0], args[1], &types, err) : convert(args[0], args[1], &types, stderr, err)) < 0) {
        fprintf(stderr, "convert: %s\n", err);
        return 1;
    }
    return 0;
}
