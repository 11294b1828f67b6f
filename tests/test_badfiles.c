/* Damaged model files are refused with a clear one-line message, never a crash.
 *
 *   test_badfiles GOOD_MODEL.bin OUT_DIR [VERSION1_MODEL.bin]
 *
 * From a valid file it derives truncations, wrong magic and versions, absurd or inconsistent
 * dimensions, tensor table and tokenizer damage, and thousands of random byte mutations of
 * the header, the table and the tokenizer. Each must fail gpt2_load with a message naming
 * the file (or, for a random mutation that happens to keep the file consistent, load and run).
 * The named cases are also written to OUT_DIR/NAME.bin so the CLI test can check exit codes
 * and messages on the same files. Changes the format allows (unknown optional features,
 * reserved bytes of a version-2 header, wider row strides) must still load and run. With a
 * version-1 file, its stricter rules are checked too. Run it under ASan/UBSan. */
#include "../gpt2.c"

static int failures, cases;
static const char *out_dir;
static uint8_t *good;
static size_t good_len;

static void save(const char *path, const uint8_t *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) { printf("FAIL cannot write %s\n", path); exit(1); }
}

/* Writes data as OUT_DIR/name.bin and checks that loading it fails with a one-line message. */
static void expect_rejected(const char *name, const uint8_t *data, size_t len, const char *expect_in_message) {
    char path[512], err[GPT2_ERR_MAX] = "";
    snprintf(path, sizeof path, "%s/%s.bin", out_dir, name);
    save(path, data, len);
    cases++;
    gpt2_model *m = gpt2_load(path, err, sizeof err);
    if (m) {
        printf("FAIL %s: loaded\n", name);
        failures++;
        gpt2_free(m);
        return;
    }
    if (!err[0] || strchr(err, '\n') || !strstr(err, path) || (expect_in_message && !strstr(err, expect_in_message))) {
        printf("FAIL %s: bad message '%s' (expected it to mention '%s')\n", name, err, expect_in_message ? expect_in_message : path);
        failures++;
        return;
    }
    printf("  %-28s %s\n", name, err + strlen(path) + 2);
}

/* Writes data as OUT_DIR/name.bin and checks that it loads and runs. */
static void expect_loaded(const char *name, const uint8_t *data, size_t len) {
    char path[512], err[GPT2_ERR_MAX] = "";
    snprintf(path, sizeof path, "%s/ok-%s.bin", out_dir, name);
    save(path, data, len);
    cases++;
    gpt2_model *m = gpt2_load(path, err, sizeof err);
    gpt2_context *ctx = m ? gpt2_context_new(m, &(gpt2_context_params){.n_ctx = 2, .n_threads = 1}, err, sizeof err) : NULL;
    int tokens[2] = {1, 2};
    if (!ctx || !gpt2_forward(ctx, tokens, 2, NULL)) { printf("FAIL %s: does not load and run: %s\n", name, err); failures++; }
    else printf("  %-28s loads and runs\n", name);
    gpt2_context_free(ctx);
    gpt2_free(m);
    remove(path);
}

/* A copy of the good file with a little-endian value written at off. */
static uint8_t *with_u32(size_t off, uint32_t v) { uint8_t *d = malloc(good_len); memcpy(d, good, good_len); memcpy(d + off, &v, 4); return d; }
static uint8_t *with_u64(size_t off, uint64_t v) { uint8_t *d = malloc(good_len); memcpy(d, good, good_len); memcpy(d + off, &v, 8); return d; }
static uint8_t *with_f32(size_t off, float v) { uint8_t *d = malloc(good_len); memcpy(d, good, good_len); memcpy(d + off, &v, 4); return d; }

#define REJECT_U32(name, off, v, msg) do { uint8_t *d_ = with_u32(off, v); expect_rejected(name, d_, good_len, msg); free(d_); } while (0)
#define REJECT_U64(name, off, v, msg) do { uint8_t *d_ = with_u64(off, v); expect_rejected(name, d_, good_len, msg); free(d_); } while (0)

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) { fprintf(stderr, "usage: test_badfiles GOOD_MODEL.bin OUT_DIR [VERSION1_MODEL.bin]\n"); return 2; }
    out_dir = argv[2];
    FILE *f = fopen(argv[1], "rb");
    if (!f) { printf("FAIL cannot open %s\n", argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    good_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    good = malloc(good_len);
    if (fread(good, 1, good_len, f) != good_len) { printf("FAIL cannot read %s\n", argv[1]); return 1; }
    fclose(f);

    char err[GPT2_ERR_MAX];
    gpt2_model *ref = gpt2_load(argv[1], err, sizeof err);
    if (!ref) { printf("FAIL the good model does not load: %s\n", err); return 1; }
    const gpt2_config c = *gpt2_model_config(ref);
    const int n_tensors = gpt2_tensor_count(&c);
    const uint64_t tok_off = read_u64(good + H_TOKENIZER_OFFSET), tok_size = read_u64(good + H_TOKENIZER_SIZE);
    const size_t table = GPT2_HEADER_SIZE, entry1 = table + GPT2_TENSOR_ENTRY_SIZE;  /* wpe's entry */
    const uint64_t wte_off = read_u64(good + table + 16), wpe_off = read_u64(good + entry1 + 16);
    gpt2_free(ref);

    printf("test_badfiles: damaged copies of %s (%zu bytes)\n", argv[1], good_len);

    /* --- truncation: a partial download or copy ------------------------------------ */
    const size_t cuts[] = {0, 1, 100, 255, 256, 300, table + (size_t)n_tensors * 32 - 1, tok_off + 10,
                           tok_off + tok_size - 1, wte_off + 1000, good_len / 2, good_len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char name[64];
        snprintf(name, sizeof name, "truncated-%zu", cuts[i]);
        expect_rejected(name, good, cuts[i], cuts[i] < 256 ? (cuts[i] ? "too small" : "too small") : "truncated");
    }
    {
        uint8_t *longer = calloc(1, good_len + 1);
        memcpy(longer, good, good_len);
        expect_rejected("trailing-byte", longer, good_len + 1, "trailing data");
        free(longer);
    }

    /* --- identity ---------------------------------------------------------------- */
    REJECT_U32("magic", H_MAGIC, 0x33545047u, "bad magic");
    {
        uint8_t st[300] = {0};
        const char *json = "{\"__metadata__\":{}}";
        uint64_t n = strlen(json);
        memcpy(st, &n, 8);
        memcpy(st + 8, json, n);
        expect_rejected("safetensors", st, sizeof st, "safetensors");
    }
    REJECT_U32("llmc-magic", H_MAGIC, 20240326u, "llm.c");
    REJECT_U32("version-0", H_VERSION, 0, "version 0");
    REJECT_U32("version-3", H_VERSION, 3, "update gpt2.c");
    REJECT_U32("version-max", H_VERSION, 0xFFFFFFFFu, "version");
    REJECT_U32("header-size", H_HEADER_SIZE, 128, "header size");
    {  /* version 2 leaves the reserved bytes to optional features: readers ignore them */
        uint8_t *d = with_u32(200, 0xABCDu);
        expect_loaded("reserved-header-byte", d, good_len);
        free(d);
    }

    /* --- configuration ------------------------------------------------------------ */
    REJECT_U32("n_layer-0", H_N_LAYER, 0, "n_layer");
    REJECT_U32("n_layer-huge", H_N_LAYER, 0xFFFFFFFFu, "n_layer 4294967295");
    REJECT_U32("n_layer-mismatch", H_N_LAYER, (uint32_t)c.n_layer + 1, "tensors");
    REJECT_U32("n_head-0", H_N_HEAD, 0, "n_head");
    REJECT_U32("n_head-indivisible", H_N_HEAD, (uint32_t)c.n_embd + 1, "n_head");
    REJECT_U32("n_embd-0", H_N_EMBD, 0, "n_embd");
    REJECT_U32("n_embd-huge", H_N_EMBD, 1u << 30, "n_embd");
    REJECT_U32("n_embd-mismatch", H_N_EMBD, (uint32_t)c.n_embd * 2, "shape");
    REJECT_U32("n_ctx-0", H_N_CTX, 0, "n_ctx");
    REJECT_U32("n_ctx-huge", H_N_CTX, 0x7FFFFFFFu, "n_ctx");
    REJECT_U32("n_ctx-mismatch", H_N_CTX, (uint32_t)c.n_ctx + 1, "shape");
    REJECT_U32("vocab-0", H_VOCAB, 0, "vocab_size");
    REJECT_U32("vocab-huge", H_VOCAB, 0x7FFFFFFFu, "vocab_size");
    REJECT_U32("vocab-mismatch", H_VOCAB, (uint32_t)c.vocab_size + 1, "tokens");
    const float bad_eps[] = {0.0f, -1e-5f, NAN, INFINITY, 1.0f};
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "ln_eps-%d", i);
        uint8_t *d = with_f32(H_LN_EPS, bad_eps[i]);
        expect_rejected(name, d, good_len, "epsilon");
        free(d);
    }
    REJECT_U32("required-untied", H_REQUIRED, 0, "not tied");
    REJECT_U32("required-unknown", H_REQUIRED, 3, "required flags 0x2");
    REJECT_U32("required-high-bit", H_REQUIRED, 0x80000001u, "required flags 0x80000000");
    {
        uint8_t *d = with_u32(H_OPTIONAL, 0xFFFFFFFFu);
        expect_loaded("optional-features-unknown", d, good_len);
        free(d);
    }
    REJECT_U32("eot-out-of-range", H_EOT, (uint32_t)c.vocab_size, "eot");
    REJECT_U32("n_tensors", H_N_TENSORS, (uint32_t)n_tensors - 1, "tensors");
    REJECT_U64("table-offset", H_TABLE_OFFSET, 0, "table offset");
    REJECT_U64("file-size-huge", H_FILE_SIZE, UINT64_MAX, "header says");

    /* --- tokenizer section --------------------------------------------------------- */
    REJECT_U64("tokenizer-offset-0", H_TOKENIZER_OFFSET, 0, "tokenizer");
    REJECT_U64("tokenizer-offset-past-end", H_TOKENIZER_OFFSET, good_len, "tokenizer");
    REJECT_U64("tokenizer-offset-overflow", H_TOKENIZER_OFFSET, UINT64_MAX - 3, "tokenizer");
    REJECT_U64("tokenizer-offset-unaligned", H_TOKENIZER_OFFSET, tok_off + 1, "tokenizer");
    REJECT_U64("tokenizer-size-0", H_TOKENIZER_SIZE, 0, "tokenizer");
    REJECT_U64("tokenizer-size-short", H_TOKENIZER_SIZE, tok_size - 1, "tokenizer");
    REJECT_U64("tokenizer-size-huge", H_TOKENIZER_SIZE, UINT64_MAX / 2, "tokenizer");
    REJECT_U32("tokenizer-n_tokens", tok_off, (uint32_t)c.vocab_size + 1, "tokens");
    REJECT_U32("tokenizer-n_merges-huge", tok_off + 4, 0xFFFFFFF0u, "tokenizer");
    REJECT_U32("tokenizer-n_special-huge", tok_off + 8, 0xFFFFFFF0u, "tokenizer");
    REJECT_U32("tokenizer-reserved", tok_off + 12, 7, "reserved");
    REJECT_U32("tokenizer-offset0", tok_off + 16, 5, "offset");
    REJECT_U32("tokenizer-offsets-decrease", tok_off + 16 + 4 * 100, 0xFFFFFFu, "offsets");
    REJECT_U32("tokenizer-last-offset", tok_off + 16 + 4 * (size_t)c.vocab_size, 0xFFFFFFF0u, "tokenizer");
    {
        uint32_t n_merges = read_u32(good + tok_off + 4);
        size_t merges = tok_off + 16 + 4 * ((size_t)c.vocab_size + 1), special = merges + 8 * (size_t)n_merges;
        if (n_merges) {
            REJECT_U32("merge-id-out-of-range", merges, (uint32_t)c.vocab_size, "merge");
            REJECT_U32("merge-not-a-token", merges + 8 * ((size_t)n_merges - 1) + 4, (uint32_t)c.eot_token, "merge");
        }
        REJECT_U32("special-id-out-of-range", special, (uint32_t)c.vocab_size + 5, "special");
    }

    /* --- tensor table ------------------------------------------------------------- */
    const size_t ln1_entry = table + 2 * GPT2_TENSOR_ENTRY_SIZE;
    {  /* f32 rows read as f16: half of each row, at a stride the format allows; garbage, but sound */
        uint8_t *d = with_u32(entry1, GPT2_F16);
        expect_loaded("tensor-dtype-f16-in-f32-rows", d, good_len);
        free(d);
    }
    REJECT_U32("tensor-dtype-unknown", entry1, 0xDEADu, "dtype");
    REJECT_U32("tensor-dtype-5", entry1, GPT2_N_DTYPES, "does not know");
    REJECT_U32("vector-dtype-q8_0", ln1_entry, GPT2_Q8_0, "vectors must be f32");
    REJECT_U32("tensor-rows", entry1 + 4, (uint32_t)c.n_ctx + 1, "shape");
    REJECT_U32("tensor-cols", entry1 + 8, 0, "shape");
    REJECT_U32("tensor-row-bytes-0", entry1 + 12, 0, "bytes apart");
    REJECT_U32("tensor-row-bytes-short", entry1 + 12, 4 * (uint32_t)c.n_embd - 4, "bytes apart");
    REJECT_U32("tensor-row-bytes-odd", entry1 + 12, 4 * (uint32_t)c.n_embd + 2, "multiple of 4");
    REJECT_U32("tensor-row-bytes-huge", entry1 + 12, 0xFFFFFFFCu, "bytes");
    REJECT_U64("tensor-nbytes", entry1 + 24, read_u64(good + entry1 + 24) - 4, "bytes");
    REJECT_U64("tensor-nbytes-huge", entry1 + 24, UINT64_MAX, "bytes");
    REJECT_U64("tensor-offset-unaligned", entry1 + 16, wpe_off + 4, "multiple");
    REJECT_U64("tensor-offset-overlap", entry1 + 16, wte_off, "overlaps");
    REJECT_U64("tensor-offset-in-tokenizer", table + 16, tok_off, "overlaps");
    REJECT_U64("tensor-offset-past-end", entry1 + 16, align_up(good_len, 64), "past the end");
    REJECT_U64("tensor-offset-overflow", entry1 + 16, UINT64_MAX - 63, "past the end");
    {
        size_t last = table + (size_t)(n_tensors - 1) * 32;
        REJECT_U64("last-tensor-past-end", last + 16, read_u64(good + last + 16) + 64, "past the end");
    }

    /* --- tensors keep the table's order: wpe, valid in itself (rows of C + 16 floats), moved
     * past the tensors that follow it in the table, is refused. (test_engine runs files whose
     * every matrix has such a wider stride.) */
    {
        const uint32_t C = (uint32_t)c.n_embd, P = (uint32_t)c.n_ctx, stride = 4 * (C + 16);
        const size_t new_off = align_up(good_len, 64), new_len = new_off + (size_t)P * stride;
        uint8_t *d = calloc(1, new_len);
        memcpy(d, good, good_len);
        for (uint32_t r = 0; r < P; r++) memcpy(d + new_off + (size_t)r * stride, good + wpe_off + (size_t)r * 4 * C, 4 * C);
        put_u32(d + entry1 + 12, stride);
        put_u64(d + entry1 + 16, new_off);
        put_u64(d + entry1 + 24, (uint64_t)P * stride);
        put_u64(d + H_FILE_SIZE, new_len);
        expect_rejected("tensor-out-of-order", d, new_len, "overlaps");
        free(d);
    }

    /* --- random damage to everything before the weights: loads or is refused, never crashes.
     * One copy on disk, patched in place and restored each round (rewriting 14 MB 1000 times
     * would make this an I/O test). */
    int loaded = 0, refused = 0;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    char path[512];
    snprintf(path, sizeof path, "%s/mutation.bin", out_dir);
    save(path, good, good_len);
    FILE *mut = fopen(path, "r+b");
    const size_t span = wte_off;  /* header + table + tokenizer */
    for (int round = 0; round < 1000; round++) {
        size_t at[4];
        int n_flips = 1 + (int)(random_uniform(&rng) * 4);
        for (int k = 0; k < n_flips; k++) {
            /* favour the header and table, where every byte matters */
            at[k] = random_uniform(&rng) < 0.6 ? (size_t)(random_uniform(&rng) * (table + 32.0 * n_tensors))
                                               : (size_t)(random_uniform(&rng) * span);
            uint8_t b = random_uniform(&rng) < 0.5 ? (uint8_t)(good[at[k]] ^ (1u << (int)(random_uniform(&rng) * 8)))
                                                   : (uint8_t)(random_uniform(&rng) * 256);
            fseek(mut, (long)at[k], SEEK_SET);
            fputc(b, mut);
        }
        fflush(mut);
        gpt2_model *m = gpt2_load(path, err, sizeof err);
        if (!m) refused++;
        else {
            loaded++;  /* consistent after all (a flipped epsilon or token byte): it must also run */
            gpt2_context *ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = 2, .n_threads = 1}, err, sizeof err);
            int tokens[2] = {0, gpt2_model_config(m)->vocab_size - 1};
            if (!ctx || !gpt2_forward(ctx, tokens, 2, NULL)) { printf("FAIL mutation %d loaded but does not run\n", round); failures++; }
            size_t n;
            free(gpt2_tokenize(m, "Hello, world! 123", 17, 0, &n));
            gpt2_context_free(ctx);
            gpt2_free(m);
        }
        for (int k = 0; k < n_flips; k++) {  /* restore */
            fseek(mut, (long)at[k], SEEK_SET);
            fputc(good[at[k]], mut);
        }
        fflush(mut);
    }
    fclose(mut);
    remove(path);
    printf("  random mutations: %d refused cleanly, %d still consistent and ran\n", refused, loaded);

    if (argc == 4) {  /* --- version 1: the same file format with stricter rules ------------ */
        f = fopen(argv[3], "rb");
        if (!f) { printf("FAIL cannot open %s\n", argv[3]); return 1; }
        uint8_t buf[1 << 16];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        free(good);
        good = malloc(len);
        memcpy(good, buf, len);
        good_len = len;
        printf("test_badfiles: damaged copies of the version-1 file %s (%zu bytes)\n", argv[3], len);
        expect_loaded("v1", good, good_len);
        REJECT_U32("v1-reserved-header", 200, 1, "reserved");
        REJECT_U32("v1-optional-features", H_OPTIONAL, 1, "reserved");
        REJECT_U32("v1-table-reserved", table + 12, 256, "reserved");
        REJECT_U32("v1-dtype-f16", entry1, GPT2_F16, "version-1 files are f32");
        REJECT_U32("v1-as-version-2", H_VERSION, 2, "bytes apart");  /* version 2 needs row_bytes */
    }

    free(good);
    if (failures) { printf("test_badfiles: %d of %d cases failed\n", failures, cases); return 1; }
    printf("test_badfiles: ok, %d damaged files refused with a message\n", cases);
    return 0;
}
