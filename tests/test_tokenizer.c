/* The tokenizer (tokenizer.c) against tiktoken's ids, and its properties.
 *
 *   test_tokenizer MODEL.bin CASES.txt      every check below; exit status 1 on any failure
 *   test_tokenizer --bench MODEL.bin FILE…  encode throughput in MB/s, one line per file
 *   test_tokenizer --split CASES.txt DIR    writes case i as DIR/i.txt (the bytes), DIR/i.ids
 *                                           and DIR/i.mode, for tests/tokenizer/cli_test.sh
 *
 * The model must carry GPT-2's vocabulary (build/tiny.bin does). The checks:
 *   - every case of CASES.txt (tests/tokenizer/gen_cases.mjs: texts and js-tiktoken's ids)
 *     encodes to exactly its ids, and decodes back to its bytes, also through the engine's
 *     streaming printer, whose every chunk of valid UTF-8 text is valid UTF-8;
 *   - random byte strings, valid UTF-8 or not, round-trip exactly;
 *   - the heap-based merge equals a plain quadratic merge (tiktoken's loop) on random pieces;
 *   - utf8_incomplete_tail against a reference built from every code point's encoding;
 *   - special tokens on and off; tokenizer_init's validation on broken vocabularies;
 *   - a megabyte of one letter, of digits, of spaces, of one emoji, of random letters (each
 *     a single piece) encodes quickly;
 *   - two threads sharing one tokenizer get the same ids. */
#include "../gpt2.c"
#include "tokenizer/valid_utf8.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); \
                                             printf("\n"); failures++; } } while (0)

static char *slurp(const char *path, size_t *len) {  /* the file, NUL-terminated */
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += got;
        if (n == cap - 1) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) free(buf);
            buf = bigger;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    *len = n;
    return buf;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng(void) {  /* xorshift64* */
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Du;
}

/* Text for a failure message: printable ASCII as is, the rest escaped, at most ~120 bytes. */
static const char *show(const char *s, size_t n) {
    static char out[600];
    size_t o = 0;
    for (size_t i = 0; i < n && o < 480; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 32 && c < 127 && c != '\\') out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", c);
    }
    if (n > 0 && o >= 480) o += (size_t)snprintf(out + o, sizeof out - o, "...(%zu bytes)", n);
    out[o] = 0;
    return out;
}

/* ---- decoding through the engine's streaming printer ------------------------------------- */

typedef struct {
    char *text;
    size_t len, cap;
    int broken_chunks;  /* chunks that were not valid UTF-8 on their own */
} Collected;

static int collect(void *user, const char *text, size_t len) {
    Collected *c = user;
    if (!valid_utf8(text, len)) c->broken_chunks++;
    if (c->len + len > c->cap) {
        c->cap = (c->len + len) * 2;
        c->text = realloc(c->text, c->cap);
        if (!c->text) { fprintf(stderr, "out of memory\n"); exit(1); }
    }
    memcpy(c->text + c->len, text, len);
    c->len += len;
    return 0;
}

/* Decodes ids token by token through TextStream, as generation prints them. Returns 1 if
 * the bytes equal text[0, len) and, for valid UTF-8 text, no chunk broke a character. */
static int decodes_to(const gpt2_model *m, const int *ids, size_t n, const char *text, size_t len) {
    Collected c = {0};
    TextStream stream = {.fn = collect, .user = &c};
    for (size_t i = 0; i < n; i++) {
        size_t token_len;
        const char *bytes = gpt2_token_bytes(m, ids[i], &token_len);
        if (!bytes) { free(c.text), free(stream.buf); return 0; }
        stream_put(&stream, bytes, token_len);
    }
    stream_finish(&stream);
    int ok = c.len == len && (len == 0 || memcmp(c.text, text, len) == 0) &&
             (c.broken_chunks == 0 || !valid_utf8(text, len));
    free(c.text);
    return ok;
}

/* ---- the cases from js-tiktoken ---------------------------------------------------------- */

typedef struct {
    int special;   /* MODE "special": allow_special */
    char *text;
    size_t len;
    int *ids;
    size_t n_ids;
} Case;

static int hex_value(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Parses one "MODE<TAB>hex<TAB>ids" line (NUL-terminated, no newline). Returns 0 or -1. */
static int parse_case(char *line, Case *c) {
    char *hex = strchr(line, '\t'), *ids = hex ? strchr(hex + 1, '\t') : NULL;
    if (!ids) return -1;
    *hex++ = 0, *ids++ = 0;
    if (strcmp(line, "plain") && strcmp(line, "special")) return -1;
    c->special = !strcmp(line, "special");
    size_t n_hex = (size_t)(ids - 1 - hex);
    if (n_hex % 2) return -1;
    c->len = n_hex / 2;
    c->text = malloc(c->len + 1);
    c->ids = malloc((strlen(ids) / 2 + 1) * sizeof *c->ids);
    if (!c->text || !c->ids) return -1;
    for (size_t i = 0; i < c->len; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        c->text[i] = (char)(hi << 4 | lo);
    }
    c->n_ids = 0;
    for (char *p = ids, *end; *p; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX) return -1;
        c->ids[c->n_ids++] = (int)v;
        while (*end == ' ') end++;
    }
    return 0;
}

/* Calls fn on every case of the file; returns the number of cases, or -1 if unreadable. */
static long for_each_case(const char *path, void (*fn)(const Case *c, long line, void *user), void *user) {
    size_t size;
    char *data = slurp(path, &size);
    if (!data) return -1;
    long n_cases = 0, line_no = 0;
    for (char *line = data, *next; line < data + size; line = next) {
        char *nl = memchr(line, '\n', (size_t)(data + size - line));
        next = nl ? nl + 1 : data + size;
        if (nl) *nl = 0;  /* the last line ends at slurp's NUL */
        line_no++;
        if (line[0] == '#' || line[0] == 0) continue;
        Case c = {0};
        if (parse_case(line, &c)) {
            printf("FAIL %s:%ld: malformed case line\n", path, line_no);
            failures++;
        } else {
            fn(&c, line_no, user);
            n_cases++;
        }
        free(c.text), free(c.ids);
    }
    free(data);
    return n_cases;
}

typedef struct {
    const gpt2_model *model;
    long passed, failed;
} CaseRun;

static void check_case(const Case *c, long line, void *user) {
    CaseRun *run = user;
    size_t n;
    int *ids = gpt2_tokenize(run->model, c->text, c->len, c->special ? GPT2_ALLOW_SPECIAL : 0, &n);
    if (!ids) { printf("FAIL line %ld: out of memory\n", line); run->failed++; return; }
    size_t first_diff = 0;
    while (first_diff < n && first_diff < c->n_ids && ids[first_diff] == c->ids[first_diff]) first_diff++;
    int same = n == c->n_ids && first_diff == n;
    int round_trip = decodes_to(run->model, ids, n, c->text, c->len);  /* special ids too: their bytes are their text */
    if (same && round_trip) {
        run->passed++;
    } else {
        run->failed++;
        if (run->failed <= 20) {
            printf("FAIL cases line %ld (%s) \"%s\"\n", line, c->special ? "special" : "plain", show(c->text, c->len));
            if (!same)
                printf("     %zu ids, expected %zu; first difference at %zu: got %d, expected %d\n", n, c->n_ids,
                       first_diff, first_diff < n ? ids[first_diff] : -1,
                       first_diff < c->n_ids ? c->ids[first_diff] : -1);
            if (!round_trip) printf("     does not decode back to its bytes\n");
        }
    }
    free(ids);
}

/* ---- round trips of random bytes ----------------------------------------------------------- */

/* Pieces to build random texts from: ASCII of every class, well-formed characters of 2, 3
 * and 4 bytes, and every kind of ill-formed UTF-8. */
static const char *const fragments[] = {
    "a", "Z", "q", "1", "9", " ", "  ", "\t", "\n", "\r\n", "'", "'s", "'ll", "'S", "!", ".", "-", "<|endoftext|>",
    "\xc3\xa9", "\xc2\xa0", "\xc2\x85", "\xd0\x96", "\xd8\xa7", "\xe4\xb8\xad", "\xe3\x80\x80", "\xe2\x80\xa8",
    "\xef\xbb\xbf", "\xe0\xa4\x85", "\xe0\xa4\xbf", "\xf0\x9f\x98\x80", "\xf0\x9f\x8f\xbd", "\xe2\x80\x8d",
    "\xf0\x9d\x9f\x99", "\xf4\x8f\xbf\xbf",
    "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xed\xa0\x80", "\xed\xbf\xbf",
    "\xed\xa0\xbd\xed\xb8\x80", "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80",
    "\xfe", "\xff", "\xc3", "\xe4\xb8", "\xf0\x9f\x98", "\xf0\x9f", "\xe2\x82", "\x00",
};

static int check_round_trip(const gpt2_model *m, const char *text, size_t len, const char *what) {
    size_t n;
    int *ids = gpt2_tokenize(m, text, len, 0, &n);
    int ok = ids && decodes_to(m, ids, n, text, len);
    CHECK(ok, "%s: \"%s\" does not round-trip", what, show(text, len));
    free(ids);
    return ok;
}

static void test_random_round_trips(const gpt2_model *m, int n_texts) {
    char buf[4096];
    int passed = 0;
    for (int t = 0; t < n_texts; t++) {
        size_t len = 0, target = 1 + rng() % (t % 10 == 0 ? sizeof buf - 16 : 64);
        int kind = (int)(rng() % 3);
        while (len < target) {
            if (kind == 0) {  /* uniformly random bytes */
                buf[len++] = (char)rng();
            } else {          /* fragments; kind 2 adds random bytes between them */
                const char *f = fragments[rng() % (sizeof fragments / sizeof *fragments)];
                size_t n = f[0] ? strlen(f) : 1;
                if (len + n > sizeof buf) break;
                memcpy(buf + len, f, n), len += n;
                if (kind == 2 && rng() % 4 == 0) buf[len++] = (char)rng();
            }
        }
        passed += check_round_trip(m, buf, len, "random bytes");
    }
    printf("round trip: %d of %d random byte strings (valid and invalid UTF-8)\n", passed, n_texts);
}

/* ---- the heap merge against tiktoken's plain loop ------------------------------------------ */

/* tiktoken's byte pair merge, quadratic and obviously right: repeatedly find the adjacent
 * pair whose bytes form the token of lowest rank (leftmost on ties) and merge it. */
static size_t reference_merge(const Tokenizer *t, const uint8_t *piece, size_t n, int *out) {
    size_t *start = malloc((n + 1) * sizeof *start), parts = n;
    for (size_t i = 0; i <= n; i++) start[i] = i;
    for (;;) {
        uint32_t best = TOKENIZER_NONE;
        size_t at = 0;
        for (size_t i = 0; i + 1 < parts; i++) {
            uint32_t id = tokenizer_lookup(t, piece + start[i], start[i + 2] - start[i]);
            uint32_t r = id == TOKENIZER_NONE ? TOKENIZER_NONE : t->rank[id];
            if (r < best) best = r, at = i;
        }
        if (best == TOKENIZER_NONE) break;
        memmove(start + at + 1, start + at + 2, (parts - at - 1) * sizeof *start);
        parts--;
    }
    for (size_t i = 0; i < parts; i++) out[i] = (int)tokenizer_lookup(t, piece + start[i], start[i + 1] - start[i]);
    free(start);
    return parts;
}

static void test_merge_against_reference(const Tokenizer *t, int n_pieces) {
    static const char *const alphabets[] = {"ab", "abc ", "etaoinshrdlu", "0123456789", " \n", "!-.=",
                                            "\xe4\xb8\xad\xe6\x96\x87", "\xf0\x9f\x98\x80"};
    uint8_t piece[300];
    int want[300];
    int passed = 0;
    for (int k = 0; k < n_pieces; k++) {
        size_t n = 2 + rng() % 250;
        const char *alphabet = alphabets[k % 8];
        size_t a = strlen(alphabet);
        for (size_t i = 0; i < n; i++) piece[i] = (uint8_t)(k % 16 == 15 ? rng() : (uint64_t)alphabet[rng() % a]);
        TokenizerCall call = {0};
        call.cap_ids = 16, call.ids = malloc(call.cap_ids * sizeof *call.ids);
        int err = merge_piece(t, &call, piece, (uint32_t)n);
        size_t n_want = reference_merge(t, piece, n, want);
        int ok = !err && call.n_ids == n_want && memcmp(call.ids, want, n_want * sizeof *want) == 0;
        CHECK(ok, "merge of \"%s\": %zu tokens, the reference %zu", show((const char *)piece, n), call.n_ids, n_want);
        passed += ok;
        free(call.ids);
        call_free_scratch(&call);
    }
    printf("merge: heap = reference loop on %d of %d random pieces\n", passed, n_pieces);
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */

/* utf8_incomplete_tail against its definition: the longest suffix (up to 3 bytes) that is a
 * proper prefix of the UTF-8 encoding of some code point. The prefixes are collected by
 * encoding every code point; then every buffer over a set of boundary bytes is checked. */
static void test_incomplete_tail(void) {
    uint8_t *prefix = calloc(1u << 24, 1);  /* [k-byte prefix as a big-endian number] = 1 */
    uint8_t *prefix2 = calloc(1u << 16, 1), prefix1[256] = {0};
    for (uint32_t cp = 0x80; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        uint8_t e[4];
        int n = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        for (int i = n - 1; i > 0; i--) e[i] = (uint8_t)(0x80 | ((cp >> (6 * (n - 1 - i))) & 0x3F));
        e[0] = (uint8_t)((0xF00 >> n) | (cp >> (6 * (n - 1))));
        prefix1[e[0]] = 1;
        if (n > 2) prefix2[e[0] << 8 | e[1]] = 1;
        if (n > 3) prefix[e[0] << 16 | e[1] << 8 | e[2]] = 1;
    }
    static const uint8_t boundary[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                                       0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
    const size_t nb = sizeof boundary;
    long checked = 0, wrong = 0;
    for (size_t len = 0; len <= 4; len++) {
        size_t combos = 1;
        for (size_t i = 0; i < len; i++) combos *= nb;
        for (size_t c = 0; c < combos; c++) {
            char buf[4];
            for (size_t i = 0, x = c; i < len; i++, x /= nb) buf[i] = (char)boundary[x % nb];
            const uint8_t *u = (const uint8_t *)buf;
            size_t want = 0;
            if (len >= 1 && prefix1[u[len - 1]]) want = 1;
            if (len >= 2 && prefix2[u[len - 2] << 8 | u[len - 1]]) want = 2;
            if (len >= 3 && prefix[u[len - 3] << 16 | u[len - 2] << 8 | u[len - 1]]) want = 3;
            size_t got = utf8_incomplete_tail(buf, len);
            checked++;
            if (got != want && wrong++ < 10) printf("FAIL utf8_incomplete_tail(\"%s\") = %zu, expected %zu\n", show(buf, len), got, want);
        }
    }
    failures += wrong > 0;
    printf("utf8_incomplete_tail: %ld of %ld buffers right\n", checked - wrong, checked);
    free(prefix), free(prefix2);
}

/* ---- special tokens and vocabulary validation --------------------------------------------- */

static int encodes_as(const gpt2_model *m, const char *text, int flags, const int *want, size_t n_want) {
    size_t n;
    int *ids = gpt2_tokenize(m, text, strlen(text), flags, &n);
    int ok = ids && n == n_want && memcmp(ids, want, n * sizeof *ids) == 0;
    free(ids);
    return ok;
}

static void test_special(const gpt2_model *m) {
    const int eot = gpt2_model_config(m)->eot_token;
    const int eot_alone[] = {eot}, plain[] = {27, 91, 437, 1659, 5239, 91, 29};  /* <, |, end, of, text, |, > */
    CHECK(encodes_as(m, "<|endoftext|>", GPT2_ALLOW_SPECIAL, eot_alone, 1), "allowed: one special id");
    CHECK(encodes_as(m, "<|endoftext|>", 0, plain, 7), "not allowed: plain text");
    const int between[] = {64, eot, 65};
    CHECK(encodes_as(m, "a<|endoftext|>b", GPT2_ALLOW_SPECIAL, between, 3), "allowed between letters");
    size_t n;
    int *ids = gpt2_tokenize(m, "", 0, GPT2_ALLOW_SPECIAL, &n);
    CHECK(ids && n == 0, "empty text: a valid allocation and no ids");
    free(ids);
    size_t len;
    const char *text = gpt2_token_bytes(m, eot, &len);
    CHECK(text && len == 13 && !memcmp(text, "<|endoftext|>", 13), "the special token's bytes");
    CHECK(!gpt2_token_bytes(m, -1, &len) && !gpt2_token_bytes(m, gpt2_model_config(m)->vocab_size, &len),
          "ids outside the vocabulary have no bytes");
}

/* A vocabulary of the 256 single bytes, then the extra tokens: fills offsets (n + 1) and
 * bytes, returns the number of tokens n. */
static int small_vocab(const char *const *extra, int n_extra, uint32_t *offsets, uint8_t *bytes) {
    uint32_t o = 0;
    for (int b = 0; b < 256; b++) offsets[b] = o, bytes[o++] = (uint8_t)b;
    for (int i = 0; i < n_extra; i++) {
        offsets[256 + i] = o;
        memcpy(bytes + o, extra[i], strlen(extra[i]));
        o += (uint32_t)strlen(extra[i]);
    }
    offsets[256 + n_extra] = o;
    return 256 + n_extra;
}

/* tokenizer_init's result on a small vocabulary with the merges and special ids given. */
static int init_small(const char *const *extra, int n_extra, const uint32_t *merges, int n_merges,
                      const uint32_t *special, int n_special, char *err) {
    uint32_t offsets[300];
    uint8_t bytes[2000];
    int n = small_vocab(extra, n_extra, offsets, bytes);
    Tokenizer t;
    int rc = tokenizer_init(&t, n, offsets, bytes, n_merges, merges, n_special, special, err, GPT2_ERR_MAX);
    tokenizer_free(&t);
    tokenizer_free(&t);  /* twice: safe after free and after a failed init */
    return rc;
}

/* A broken vocabulary must fail tokenizer_init with a message that names the problem. */
static void expect_rejected(int rc, const char *err, const char *names, const char *what) {
    CHECK(rc < 0 && strstr(err, names), "%s: rc %d, message \"%s\"", what, rc, err);
    printf("vocabulary with %s: \"%s\"\n", what, err);
}

static void test_vocab_validation(void) {
    char err[GPT2_ERR_MAX] = "";
    const char *const extra[] = {"ab", "abc", "", "<|endoftext|>"};
    const uint32_t good[] = {'a', 'b', 256, 'c'}, special[] = {259};
    CHECK(init_small(extra, 4, good, 2, special, 1, err) == 0, "a good vocabulary: %s", err);
    const uint32_t not_a_token[] = {'a', 'b', 'b', 'a'};
    expect_rejected(init_small(extra, 4, not_a_token, 2, special, 1, err), err, "merge 1", "a merge to no token");
    const uint32_t past[] = {'a', 400};
    expect_rejected(init_small(extra, 4, past, 1, special, 1, err), err, "merge 0", "a merge id past the end");
    const uint32_t empty_side[] = {258, 'a'};
    expect_rejected(init_small(extra, 4, empty_side, 1, special, 1, err), err, "without text", "a merge of no text");
    const uint32_t bad_special[] = {999};
    expect_rejected(init_small(extra, 4, good, 2, bad_special, 1, err), err, "special", "a special id past the end");
    const uint32_t offsets[256] = {0};  /* 255 tokens, all without text */
    expect_rejected(tokenizer_init(&(Tokenizer){0}, 255, offsets, (const uint8_t *)"", 0, NULL, 0, NULL, err, sizeof err),
                    err, "byte 0x00", "bytes without a token");
}

/* tiktoken's rule, not the merge list's: a pair merges when its bytes form a token, whichever
 * two parts they come from. Merges: b+c -> "bc" (rank 0), a+b -> "ab" (1), ab+c -> "abc" (2).
 * In "abcd", b+c merges first; the merge list never names a+bc, but "abc" is a token, so
 * tiktoken merges it (with rank 2): "abc", "d". */
static void test_merge_rule(void) {
    const char *const extra[] = {"ab", "bc", "abc"};
    uint32_t offsets[260];
    uint8_t bytes[300];
    int n_tokens = small_vocab(extra, 3, offsets, bytes);
    const uint32_t merges[] = {'b', 'c', 'a', 'b', 256, 'c'};
    Tokenizer t;
    char err[GPT2_ERR_MAX];
    if (tokenizer_init(&t, n_tokens, offsets, bytes, 3, merges, 0, NULL, err, sizeof err)) {
        CHECK(0, "init: %s", err);
        return;
    }
    size_t n;
    int *ids = tokenizer_encode(&t, "abcd", 4, 0, &n);
    CHECK(ids && n == 2 && ids[0] == 258 && ids[1] == 'd', "a + bc forms abc (tiktoken's rule)");
    free(ids);
    tokenizer_free(&t);
}

/* ---- speed on inputs that are one huge piece ---------------------------------------------- */

static void test_long_runs(const gpt2_model *m) {
    const size_t size = 1 << 20;
    /* NULL: random lowercase letters, one piece with many different merges */
    const char *const units[] = {"a", "7", " ", "\xf0\x9f\x98\x80", "\n", "ab", "\xe4\xb8\xad", NULL};
    const char *const names[] = {"a", "digits", "spaces", "emoji U+1F600", "newlines", "ab", "CJK U+4E2D", "random a-z"};
    char *text = malloc(size);
    for (size_t u = 0; u < sizeof units / sizeof *units; u++) {
        size_t n = units[u] ? strlen(units[u]) : 1;
        for (size_t i = 0; i < size; i++) text[i] = units[u] ? units[u][i % n] : (char)('a' + rng() % 26);
        size_t len = size - size % n, n_ids;
        double t0 = now_ms();
        int *ids = gpt2_tokenize(m, text, len, 0, &n_ids);
        double ms = now_ms() - t0;
        printf("1 MB of %-14s %8.1f ms, %7zu tokens\n", names[u], ms, n_ids);
        CHECK(ids && ms < 5000, "1 MB of %s: %.0f ms", names[u], ms);
        CHECK(ids && decodes_to(m, ids, n_ids, text, len), "1 MB of %s does not round-trip", names[u]);
        free(ids);
    }
    free(text);
}

/* ---- threads ----------------------------------------------------------------------------- */

typedef struct {
    const gpt2_model *model;
    const char *text;
    size_t len;
    int *ids;
    size_t n;
} EncodeJob;

static void *encode_job(void *arg) {
    EncodeJob *job = arg;
    for (int i = 0; i < 20; i++) {
        free(job->ids);
        job->ids = gpt2_tokenize(job->model, job->text, job->len, 0, &job->n);
    }
    return NULL;
}

static void test_threads(const gpt2_model *m) {
    const char *text = "Two threads, one tokenizer: \xe4\xb8\xad\xe6\x96\x87, aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa, "
                       "pneumonoultramicroscopicsilicovolcanoconiosis, 1234567890, \xf0\x9f\x98\x80\xf0\x9f\x98\x80.";
    EncodeJob jobs[2] = {{m, text, strlen(text), NULL, 0}, {m, text, strlen(text), NULL, 0}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) pthread_create(&threads[i], NULL, encode_job, &jobs[i]);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    CHECK(jobs[0].ids && jobs[1].ids && jobs[0].n == jobs[1].n &&
          !memcmp(jobs[0].ids, jobs[1].ids, jobs[0].n * sizeof(int)), "two threads disagree");
    free(jobs[0].ids), free(jobs[1].ids);
}

/* ---- modes --------------------------------------------------------------------------------- */

static int bench(const char *model_path, char **files, int n_files) {
    char err[GPT2_ERR_MAX];
    gpt2_model *m = gpt2_load(model_path, err, sizeof err);
    if (!m) { fprintf(stderr, "%s\n", err); return 1; }
    for (int f = 0; f < n_files; f++) {
        size_t len, n = 0;
        char *text = slurp(files[f], &len);
        if (!text) { fprintf(stderr, "cannot read %s\n", files[f]); return 1; }
        double best = 1e30, total = 0;
        for (int rep = 0; rep < 20 && (rep < 3 || total < 2000); rep++) {  /* best of >= 3 runs, ~2 s */
            double t0 = now_ms();
            int *ids = gpt2_tokenize(m, text, len, 0, &n);
            double ms = now_ms() - t0;
            free(ids);
            best = ms < best ? ms : best, total += ms;
        }
        printf("%-32s %9zu bytes %8zu tokens  gpt2.c %7.1f MB/s\n", files[f], len, n, len / best / 1e3);
        free(text);
    }
    gpt2_free(m);
    return 0;
}

typedef struct { const char *dir; long index; } SplitRun;

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f)) { fprintf(stderr, "cannot write %s\n", path); exit(1); }
}

static void split_case(const Case *c, long line, void *user) {
    SplitRun *run = user;
    char path[4096], *ids = malloc(c->n_ids * 12 + 2);
    size_t o = 0;
    for (size_t i = 0; i < c->n_ids; i++) o += (size_t)sprintf(ids + o, i ? " %d" : "%d", c->ids[i]);
    ids[o++] = '\n';
    snprintf(path, sizeof path, "%s/%05ld.txt", run->dir, run->index);
    write_file(path, c->text, c->len);
    snprintf(path, sizeof path, "%s/%05ld.ids", run->dir, run->index);
    write_file(path, ids, o);
    snprintf(path, sizeof path, "%s/%05ld.mode", run->dir, run->index);
    write_file(path, c->special ? "special\n" : "plain\n", c->special ? 8 : 6);
    run->index++;
    free(ids);
    (void)line;
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--bench")) return bench(argv[2], argv + 3, argc - 3);
    if (argc == 4 && !strcmp(argv[1], "--split")) {
        SplitRun run = {argv[3], 0};
        long n = for_each_case(argv[2], split_case, &run);
        if (n < 0) { fprintf(stderr, "cannot read %s\n", argv[2]); return 1; }
        printf("%ld cases written to %s\n", n, argv[3]);
        return failures > 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.bin CASES.txt | --bench MODEL.bin FILE... | --split CASES.txt DIR\n", argv[0]);
        return 2;
    }
    char err[GPT2_ERR_MAX];
    gpt2_model *m = gpt2_load(argv[1], err, sizeof err);
    if (!m) { fprintf(stderr, "%s\n", err); return 1; }
    printf("tokenizer: Unicode %s tables\n", UNICODE_VERSION);

    /* tokenizer_init runs at every load: time it on this vocabulary. The arrays are where
     * docs/FORMAT.md puts them: the section's 16-byte head (n_tokens, n_merges, ...) before
     * the offsets, the merges right after them. */
    const Tokenizer *t = &m->tokenizer;
    uint32_t n_merges = read_u32((const uint8_t *)t->offsets - 16 + 4);
    const uint32_t *merges = t->offsets + t->vocab_size + 1;
    double best = 1e30;
    for (int i = 0; i < 5; i++) {
        Tokenizer again;
        double t0 = now_ms();
        int rc = tokenizer_init(&again, t->vocab_size, t->offsets, t->bytes, (int)n_merges, merges, t->n_special,
                                t->special, err, sizeof err);
        double ms = now_ms() - t0;
        tokenizer_free(&again);
        CHECK(rc == 0, "tokenizer_init: %s", err);
        best = ms < best ? ms : best;
    }
    printf("tokenizer_init: %.2f ms for %d tokens and %u merges\n", best, t->vocab_size, n_merges);

    CaseRun run = {m, 0, 0};
    long n_cases = for_each_case(argv[2], check_case, &run);
    if (n_cases < 0) { fprintf(stderr, "cannot read %s\n", argv[2]); gpt2_free(m); return 1; }
    printf("cases (ids equal to js-tiktoken's, decoding back to the text):\n");
    printf("cases: %ld passed, %ld failed\n", run.passed, run.failed);
    failures += run.failed > 0 || n_cases == 0;

    test_random_round_trips(m, 20000);
    test_merge_against_reference(t, 2000);
    test_incomplete_tail();
    test_special(m);
    test_vocab_validation();
    test_merge_rule();
    test_threads(m);
    test_long_runs(m);

    gpt2_free(m);
    printf(failures ? "tokenizer: FAILED (%d checks)\n" : "tokenizer: all checks passed\n", failures);
    return failures > 0;
}
