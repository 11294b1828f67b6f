/* json.h — a small, strict JSON parser (RFC 8259) for the converter and its tests.
 *
 * Header-only: every function is static inline (no warning where one goes unused), so
 * include it in the .c files that use it.
 * The converter reads three JSON files it does not trust (config.json, vocab.json and the
 * header of model.safetensors), so the parser accepts exactly the grammar and nothing else:
 * UTF-8 only, no comments, no trailing commas, no NaN or Infinity, no duplicate keys, no
 * lone surrogates in \u escapes, nesting at most JSON_MAX_DEPTH deep. Errors name the line
 * and column (in bytes, from 1) where the input stops making sense.
 *
 *     json_doc doc;
 *     const json_value *root = json_parse(text, len, &doc, err, sizeof err);
 *     if (!root) ...err holds e.g. "line 3, column 17: expected ',' or '}'"...
 *     const json_value *n = json_get(root, "n_layer");
 *     json_free(&doc);
 *
 * The tree lives in an arena owned by the json_doc; json_free releases all of it at once.
 */
#ifndef GPT2_EXPORT_JSON_H
#define GPT2_EXPORT_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json_value json_value;
struct json_value {
    json_type type;
    size_t start, end;       /* the value's text is input[start, end) */
    json_value *next;        /* the next element of the array or object holding this one */
    const char *key;         /* in an object: this member's name, decoded, NUL-terminated */
    size_t key_len;          /* (a name may contain "\u0000", so use key_len, not strlen) */
    size_t key_start;        /* where the name's opening quote is, for error messages */

    int boolean;             /* JSON_BOOL: 0 or 1 */
    double number;           /* JSON_NUMBER: the value, correctly rounded */
    int is_integer;          /* JSON_NUMBER written without fraction or exponent, in int64 */
    int64_t integer;         /*   ... and then its exact value */
    const char *string;      /* JSON_STRING: decoded UTF-8, NUL-terminated */
    size_t string_len;
    json_value *first;       /* JSON_ARRAY, JSON_OBJECT: the first element, in input order */
    size_t count;            /*   ... and how many there are */
};

typedef struct json_block json_block;
struct json_block {
    json_block *next;
    size_t used, size;
    unsigned char *data;
};

typedef struct {
    json_value *root;
    json_block *blocks;
} json_doc;

typedef struct {
    const unsigned char *text;
    size_t len, pos;
    json_doc *doc;
    char *err;
    size_t errlen;
    int failed;
    size_t n_values, max_values;
} json_parser;

/* ---- arena ------------------------------------------------------------------------------ */

/* Returns n bytes aligned for any object, or NULL if out of memory. */
static inline void *json_alloc(json_doc *doc, size_t n) {
    const size_t align = _Alignof(max_align_t);
    n = (n + align - 1) / align * align;
    json_block *b = doc->blocks;
    if (!b || b->size - b->used < n) {
        size_t size = n > 65536 ? n : 65536;
        b = malloc(sizeof *b);
        if (!b) return NULL;
        b->data = malloc(size);
        if (!b->data) {
            free(b);
            return NULL;
        }
        b->used = 0;
        b->size = size;
        b->next = doc->blocks;
        doc->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static inline void json_free(json_doc *doc) {
    if (!doc) return;
    json_block *b = doc->blocks;
    while (b) {
        json_block *next = b->next;
        free(b->data);
        free(b);
        b = next;
    }
    doc->blocks = NULL;
    doc->root = NULL;
}

/* ---- errors ----------------------------------------------------------------------------- */

/* Records the first error only: later ones are consequences of it. */
static inline void json_fail_at(json_parser *p, size_t pos, const char *what) {
    if (p->failed) return;
    p->failed = 1;
    size_t line = 1, column = 1;
    for (size_t i = 0; i < pos && i < p->len; i++) {
        if (p->text[i] == '\n') {
            line++;
            column = 1;
        } else {
            column++;
        }
    }
    if (p->errlen) snprintf(p->err, p->errlen, "line %zu, column %zu: %s", line, column, what);
}

static inline void json_fail(json_parser *p, const char *what) {
    json_fail_at(p, p->pos, p->pos < p->len ? what : "unexpected end of input");
}

/* ---- lexing ----------------------------------------------------------------------------- */

static inline void json_skip_space(json_parser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static inline int json_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The length of the well-formed UTF-8 sequence at s[0, n) (1..4), or 0 if it is not one:
 * overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
static inline size_t json_utf8_length(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, cp = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, cp = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, cp = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

static inline size_t json_put_utf8(unsigned char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads the four hex digits of a \u escape at p->pos. Returns 0xFFFFFFFF on error. */
static inline uint32_t json_hex4(json_parser *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (p->pos >= p->len) {
            json_fail(p, "");
            return 0xFFFFFFFFu;
        }
        unsigned char c = p->text[p->pos];
        uint32_t d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10u;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10u;
        else {
            json_fail(p, "expected four hex digits after \\u");
            return 0xFFFFFFFFu;
        }
        v = v << 4 | d;
        p->pos++;
    }
    return v;
}

/* Parses the string whose opening quote is at p->pos into a NUL-terminated arena copy. */
static inline int json_parse_string(json_parser *p, const char **out, size_t *out_len) {
    p->pos++;  /* the opening quote */
    /* The decoded text is never longer than the source text: find the closing quote first
     * to size the copy (a backslash always escapes the next byte). */
    size_t end = p->pos;
    while (end < p->len && p->text[end] != '"') end += p->text[end] == '\\' ? 2 : 1;
    if (end >= p->len) {
        p->pos = p->len;
        json_fail(p, "");
        return -1;
    }
    unsigned char *buf = json_alloc(p->doc, end - p->pos + 1);
    if (!buf) {
        json_fail(p, "out of memory");
        return -1;
    }
    size_t n = 0;
    while (p->text[p->pos] != '"') {
        unsigned char c = p->text[p->pos];
        if (c < 0x20) {
            json_fail(p, "control character in string (must be escaped)");
            return -1;
        }
        if (c != '\\') {
            size_t len = json_utf8_length(p->text + p->pos, p->len - p->pos);
            if (!len) {
                json_fail(p, "invalid UTF-8 in string");
                return -1;
            }
            memcpy(buf + n, p->text + p->pos, len);
            n += len;
            p->pos += len;
            continue;
        }
        size_t escape_at = p->pos;
        p->pos++;
        c = p->text[p->pos++];
        switch (c) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            uint32_t cp = json_hex4(p);
            if (cp == 0xFFFFFFFFu) return -1;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                json_fail_at(p, escape_at, "lone low surrogate in \\u escape");
                return -1;
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                /* A high surrogate must be followed by an escaped low one: together they
                 * are one code point past U+FFFF. */
                if (p->len - p->pos < 2 || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u') {
                    json_fail_at(p, escape_at, "high surrogate in \\u escape without a low one after it");
                    return -1;
                }
                p->pos += 2;
                uint32_t low = json_hex4(p);
                if (low == 0xFFFFFFFFu) return -1;
                if (low < 0xDC00 || low > 0xDFFF) {
                    json_fail_at(p, escape_at, "high surrogate in \\u escape without a low one after it");
                    return -1;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            n += json_put_utf8(buf + n, cp);
            break;
        }
        default:
            json_fail_at(p, escape_at, "invalid escape in string");
            return -1;
        }
    }
    p->pos++;  /* the closing quote */
    buf[n] = 0;
    *out = (const char *)buf;
    *out_len = n;
    return 0;
}

/* number = [ "-" ] ( "0" / 1-9 *DIGIT ) [ "." 1*DIGIT ] [ ( "e" / "E" ) [ "+" / "-" ] 1*DIGIT ] */
static inline int json_parse_number(json_parser *p, json_value *v) {
    const unsigned char *s = p->text;
    size_t start = p->pos, i = p->pos;
    int negative = 0, integral = 1;
    if (i < p->len && s[i] == '-') negative = 1, i++;
    if (i >= p->len || !json_is_digit(s[i])) {
        p->pos = i;
        json_fail(p, "expected a digit");
        return -1;
    }
    if (s[i] == '0') {
        i++;
    } else {
        while (i < p->len && json_is_digit(s[i])) i++;
    }
    if (i < p->len && s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->len || !json_is_digit(s[i])) {
            p->pos = i;
            json_fail(p, "expected a digit after the decimal point");
            return -1;
        }
        while (i < p->len && json_is_digit(s[i])) i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || !json_is_digit(s[i])) {
            p->pos = i;
            json_fail(p, "expected a digit in the exponent");
            return -1;
        }
        while (i < p->len && json_is_digit(s[i])) i++;
    }
    p->pos = i;

    /* strtod needs a NUL-terminated copy; the grammar above already matched, so strtod
     * reads exactly these characters (the C locale's decimal point is '.'). */
    size_t n = i - start;
    char small[64];
    char *copy = n < sizeof small ? small : malloc(n + 1);
    if (!copy) {
        json_fail(p, "out of memory");
        return -1;
    }
    memcpy(copy, s + start, n);
    copy[n] = 0;
    v->number = strtod(copy, NULL);
    if (copy != small) free(copy);

    v->is_integer = 0;
    if (integral) {
        /* Exact, with overflow checks: int64 covers every size the converter reads. */
        uint64_t magnitude = 0, limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        int fits = 1;
        for (size_t k = start + (size_t)negative; k < i; k++) {
            unsigned d = s[k] - '0';
            if (magnitude > (limit - d) / 10) {
                fits = 0;
                break;
            }
            magnitude = magnitude * 10 + d;
        }
        if (fits) {
            v->is_integer = 1;
            v->integer = negative ? (magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude)
                                  : (int64_t)magnitude;
        }
    }
    return 0;
}

static inline int json_match_literal(json_parser *p, const char *word) {
    for (size_t i = 0; word[i]; i++, p->pos++) {
        if (p->pos >= p->len || p->text[p->pos] != (unsigned char)word[i]) {
            json_fail(p, "expected a value");
            return -1;
        }
    }
    return 0;
}

/* ---- values ----------------------------------------------------------------------------- */

static inline int json_compare_keys(const void *a, const void *b) {
    const json_value *x = *(const json_value *const *)a, *y = *(const json_value *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    if (x->key_len != y->key_len) return x->key_len < y->key_len ? -1 : 1;
    /* Equal names: order by position so the error names the second occurrence. */
    return x->key_start < y->key_start ? -1 : x->key_start > y->key_start;
}

/* Rejects an object with two members of the same name: which one counts would be a guess. */
static inline int json_check_unique_keys(json_parser *p, json_value *object) {
    if (object->count < 2) return 0;
    json_value **members = malloc(object->count * sizeof *members);
    if (!members) {
        json_fail(p, "out of memory");
        return -1;
    }
    size_t n = 0;
    for (json_value *m = object->first; m; m = m->next) members[n++] = m;
    qsort(members, n, sizeof *members, json_compare_keys);
    for (size_t i = 1; i < n; i++) {
        if (members[i]->key_len == members[i - 1]->key_len &&
            memcmp(members[i]->key, members[i - 1]->key, members[i]->key_len) == 0) {
            /* (the first 60 bytes of the name, control characters escaped: a message is one line) */
            char name[4 * 60 + 1], what[sizeof name + 32];
            size_t k = 0;
            for (size_t j = 0; j < members[i]->key_len && j < 60; j++) {
                unsigned char c = (unsigned char)members[i]->key[j];
                if (c < 0x20 || c == 0x7F) k += (size_t)snprintf(name + k, sizeof name - k, "\\x%02x", c);
                else name[k++] = (char)c;
            }
            name[k] = 0;
            snprintf(what, sizeof what, "duplicate key \"%s\"", name);
            json_fail_at(p, members[i]->key_start, what);
            free(members);
            return -1;
        }
    }
    free(members);
    return 0;
}

static inline json_value *json_parse_value(json_parser *p, int depth);

/* Parses an array or object whose opening bracket is at p->pos. */
static inline int json_parse_container(json_parser *p, json_value *v, int depth) {
    const int is_object = v->type == JSON_OBJECT;
    const unsigned char close = is_object ? '}' : ']';
    if (depth >= JSON_MAX_DEPTH) {
        json_fail(p, "nested too deeply");
        return -1;
    }
    p->pos++;
    json_skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == close) {
        p->pos++;
        return 0;
    }
    json_value **link = &v->first;
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0, key_start = p->pos;
        if (is_object) {
            if (p->pos >= p->len || p->text[p->pos] != '"') {
                json_fail(p, "expected a string key");
                return -1;
            }
            if (json_parse_string(p, &key, &key_len) < 0) return -1;
            json_skip_space(p);
            if (p->pos >= p->len || p->text[p->pos] != ':') {
                json_fail(p, "expected ':' after the key");
                return -1;
            }
            p->pos++;
            json_skip_space(p);
        }
        json_value *element = json_parse_value(p, depth + 1);
        if (!element) return -1;
        element->key = key;
        element->key_len = key_len;
        element->key_start = key_start;
        *link = element;
        link = &element->next;
        v->count++;
        json_skip_space(p);
        if (p->pos < p->len && p->text[p->pos] == close) {
            p->pos++;
            break;
        }
        if (p->pos >= p->len || p->text[p->pos] != ',') {
            json_fail(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
            return -1;
        }
        p->pos++;
        json_skip_space(p);
    }
    return is_object ? json_check_unique_keys(p, v) : 0;
}

static inline json_value *json_parse_value(json_parser *p, int depth) {
    if (++p->n_values > p->max_values) {
        char what[64];
        snprintf(what, sizeof what, "more than %zu values", p->max_values);
        json_fail(p, what);
        return NULL;
    }
    json_value *v = json_alloc(p->doc, sizeof *v);
    if (!v) {
        json_fail(p, "out of memory");
        return NULL;
    }
    memset(v, 0, sizeof *v);
    v->start = p->pos;
    if (p->pos >= p->len) {
        json_fail(p, "");
        return NULL;
    }
    int status;
    switch (p->text[p->pos]) {
    case '{': v->type = JSON_OBJECT; status = json_parse_container(p, v, depth); break;
    case '[': v->type = JSON_ARRAY; status = json_parse_container(p, v, depth); break;
    case '"': v->type = JSON_STRING; status = json_parse_string(p, &v->string, &v->string_len); break;
    case 't': v->type = JSON_BOOL; v->boolean = 1; status = json_match_literal(p, "true"); break;
    case 'f': v->type = JSON_BOOL; v->boolean = 0; status = json_match_literal(p, "false"); break;
    case 'n': v->type = JSON_NULL; status = json_match_literal(p, "null"); break;
    default:
        if (p->text[p->pos] == '-' || json_is_digit(p->text[p->pos])) {
            v->type = JSON_NUMBER;
            status = json_parse_number(p, v);
        } else {
            json_fail(p, "expected a value");
            status = -1;
        }
    }
    v->end = p->pos;
    return status < 0 ? NULL : v;
}

/* ---- public ----------------------------------------------------------------------------- */

/* Parses text[0, len), which must hold exactly one JSON value, with optional whitespace
 * around it, and at most max_values values in all (each costs about 128 bytes: the limit
 * bounds the memory a hostile file can claim). Returns the root (also in doc->root), or
 * NULL with a message in err. Either way call json_free(doc) when done. */
static inline json_value *json_parse_limited(const char *text, size_t len, size_t max_values, json_doc *doc,
                                             char *err, size_t errlen) {
    json_parser p = {(const unsigned char *)text, len, 0, doc, err, errlen, 0, 0, max_values};
    doc->root = NULL;
    doc->blocks = NULL;
    json_skip_space(&p);
    json_value *root = json_parse_value(&p, 0);
    if (!root) return NULL;
    json_skip_space(&p);
    if (p.pos != len) {
        json_fail(&p, "unexpected text after the JSON value");
        return NULL;
    }
    doc->root = root;
    return root;
}

static inline json_value *json_parse(const char *text, size_t len, json_doc *doc, char *err, size_t errlen) {
    return json_parse_limited(text, len, SIZE_MAX, doc, err, errlen);
}

/* Whether member m of an object is named key (names may hold "\u0000": compare lengths). */
static inline int json_key_is(const json_value *m, const char *key) {
    size_t n = strlen(key);
    return m->key_len == n && memcmp(m->key, key, n) == 0;
}

/* The member of object named key, or NULL if there is none (or object is not an object). */
static inline const json_value *json_get(const json_value *object, const char *key) {
    if (!object || object->type != JSON_OBJECT) return NULL;
    for (const json_value *m = object->first; m; m = m->next)
        if (json_key_is(m, key)) return m;
    return NULL;
}

static inline const char *json_type_name(json_type type) {
    switch (type) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "a boolean";
    case JSON_NUMBER: return "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    }
    return "?";
}

#endif /* GPT2_EXPORT_JSON_H */
