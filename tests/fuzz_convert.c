/* libFuzzer target for the converter's parsers: every file of a HuggingFace checkpoint is
 * untrusted input.
 *
 *   clang -fsanitize=fuzzer,address,undefined -O1 -g -o build/fuzz_convert tests/fuzz_convert.c gpt2.c -lm
 *   build/fuzz_convert -dict=tests/fuzz_convert.dict CORPUS_DIR tests/fuzz_convert_seeds
 *
 * (`make test` runs it briefly when clang has libFuzzer; tests/fuzz.sh links gpt2.c.) It works
 * on a micro checkpoint (1 layer, 2 channels, the tiny fixture's config.json, its first 260
 * tokens and 4 merges), read from the seeds parse-config.json, parse-vocab.json,
 * parse-merges.txt and parse-model.safetensors in tests/fuzz_convert_seeds (or
 * $GPT2_FUZZ_CONVERT_SEEDS): each seed is a selector byte, then the file.
 *
 * An input is a selector byte, then the content of one file of the checkpoint, which replaces
 * the micro checkpoint's. The selector's bits 0-1 pick the file (config.json, vocab.json,
 * merges.txt, model.safetensors); bit 2 picks what runs on it:
 *   0: that file's parser alone (with the micro checkpoint's other files where it needs them),
 *      and checks of what it returns: config values in their ranges, a vocabulary whose
 *      tokens index to themselves with every byte an ordinary token, merges of tokens into
 *      tokens, tensors whose data_offsets lie inside the data and hold their shape's bytes;
 *      a safetensors file is then matched against the micro config and its tensors read;
 *   1: the whole conversion, as export/convert runs it, into a file in a temporary directory;
 *      it must write a model gpt2_load accepts, or fail and leave no file behind.
 * Every failure must come with a message of one line. Any violation aborts, which libFuzzer
 * reports as a crash. */
#define main convert_main
#include "../export/convert.c"
#undef main

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                   \
    do {                                                                           \
        if (!(x)) {                                                                \
            fprintf(stderr, "fuzz_convert: %s:%d: check failed: %s\n", __FILE__, __LINE__, #x); \
            abort();                                                               \
        }                                                                          \
    } while (0)

enum { CONFIG, VOCAB, MERGES, SAFETENSORS, N_FILES };
static const char *const FILES[N_FILES] = {"config.json", "vocab.json", "merges.txt", "model.safetensors"};

static char dir[PATH_SIZE - 64];        /* the micro checkpoint, one file replaced at a time */
static char *fixture[N_FILES];          /* its files' content */
static size_t fixture_len[N_FILES];
static hf_config micro;                 /* its config.json, parsed */

static void write_file(int file, const void *content, size_t len) {
    char path[PATH_SIZE], err[ERR_SIZE];
    CHECK(join_path(path, dir, FILES[file], err) == 0);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(content, 1, len, f) == len && fclose(f) == 0);
}

static void remove_dir(void) {
    char path[PATH_SIZE], err[ERR_SIZE];
    for (int i = 0; i < N_FILES; i++)
        if (join_path(path, dir, FILES[i], err) == 0) remove(path);
    rmdir(dir);
}

/* A failed step must say why, in one line. */
static void check_message(const char *err) {
    if (!err[0] || strchr(err, '\n')) {
        fprintf(stderr, "fuzz_convert: a failure without a one-line message: \"%s\"\n", err);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *seeds = getenv("GPT2_FUZZ_CONVERT_SEEDS");
    if (!seeds) seeds = "tests/fuzz_convert_seeds";
    char path[PATH_SIZE], err[ERR_SIZE];
    for (int i = 0; i < N_FILES; i++) {
        snprintf(path, sizeof path, "%s/parse-%s", seeds, FILES[i]);
        if (read_text_file(path, &fixture[i], &fixture_len[i], err) < 0 || fixture_len[i] == 0) {
            fprintf(stderr, "fuzz_convert: %s (set GPT2_FUZZ_CONVERT_SEEDS to tests/fuzz_convert_seeds)\n",
                    fixture[i] ? "an empty seed" : err);
            exit(1);
        }
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/fuzz_convert_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "fuzz_convert: cannot make a directory %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    atexit(remove_dir);
    for (int i = 0; i < N_FILES; i++) write_file(i, fixture[i] + 1, fixture_len[i] - 1);
    /* the micro checkpoint converts, so that inputs that change one file reach every check */
    char out[PATH_SIZE];
    snprintf(out, sizeof out, "%s/out.bin", dir);
    const gpt2_weight_types types = gpt2_default_types(GPT2_F32);
    if (read_config(dir, &micro, err) < 0 || convert(dir, out, &types, NULL, err) < 0) {
        fprintf(stderr, "fuzz_convert: the micro checkpoint does not convert: %s\n", err);
        exit(1);
    }
    remove(out);
    return 0;
}

/* ---- each parser alone --------------------------------------------------------------- */

static void parse_config_file(void) {
    hf_config config;
    char err[ERR_SIZE] = "";
    if (read_config(dir, &config, err) < 0) {
        check_message(err);
        return;
    }
    const gpt2_config *c = &config.model;
    CHECK(c->n_layer >= 1 && c->n_layer <= 1024 && c->n_head >= 1 && c->n_head <= 1024);
    CHECK(c->n_embd >= 1 && c->n_embd <= 65536 && c->n_embd % c->n_head == 0);
    CHECK(c->vocab_size >= 1 && c->vocab_size <= 16777216 && c->n_ctx >= 1 && c->n_ctx <= 1048576);
    CHECK(c->ln_eps > 0 && c->ln_eps < 1);
    CHECK(config.eos_token_id >= -1 && config.eos_token_id < c->vocab_size);
    CHECK(config.bos_token_id >= -1 && config.bos_token_id < c->vocab_size);
}

/* vocab.json (and, if complete, choose_special_tokens) for the micro config. */
static int parse_vocab_file(tokenizer *tok, char *err) {
    int eot;
    memset(tok, 0, sizeof *tok);
    if (read_vocab(dir, micro.model.vocab_size, tok, err) < 0) return -1;
    CHECK(tok->n_tokens == micro.model.vocab_size && tok->offsets[0] == 0);
    for (int id = 0; id < tok->n_tokens; id++) {
        uint32_t begin = tok->offsets[id], end = tok->offsets[id + 1];
        CHECK(begin <= end);
        if (end > begin && !tok->is_added[id]) CHECK(token_lookup(tok, tok->bytes + begin, end - begin, -1) == id);
    }
    if (choose_special_tokens(&micro, tok, &eot, dir, err) < 0) return -1;
    CHECK(eot >= 0 && eot < tok->n_tokens && tok->n_special >= 0 && tok->n_special <= tok->n_tokens);
    int n_marked = 0;
    for (int id = 0; id < tok->n_tokens; id++) n_marked += tok->is_special[id];
    CHECK(n_marked == tok->n_special);  /* so no special token is listed twice */
    for (int i = 0; i < tok->n_special; i++) CHECK(tok->special[i] < (uint32_t)tok->n_tokens && tok->is_special[tok->special[i]]);
    for (int b = 0; b < 256; b++) {
        unsigned char byte = (unsigned char)b;
        int32_t id = token_lookup(tok, &byte, 1, -1);
        CHECK(id >= 0 && !tok->is_special[id]);
    }
    return 0;
}

static void parse_vocab_only(void) {
    tokenizer tok;
    char err[ERR_SIZE] = "";
    if (parse_vocab_file(&tok, err) < 0) check_message(err);
    tokenizer_free(&tok);
}

static void parse_merges_file(void) {
    tokenizer tok;
    char err[ERR_SIZE] = "";
    CHECK(parse_vocab_file(&tok, err) == 0);  /* the micro checkpoint's */
    if (read_merges(dir, &tok, err) < 0) {
        check_message(err);
    } else {
        CHECK(tok.n_merges >= 0);
        for (int i = 0; i < tok.n_merges; i++) {
            uint32_t left = tok.merges[2 * i], right = tok.merges[2 * i + 1];
            CHECK(left < (uint32_t)tok.n_tokens && right < (uint32_t)tok.n_tokens);
            size_t left_len = tok.offsets[left + 1] - tok.offsets[left], right_len = tok.offsets[right + 1] - tok.offsets[right];
            unsigned char *pair = malloc(left_len + right_len + 1);
            CHECK(pair);
            memcpy(pair, tok.bytes + tok.offsets[left], left_len);
            memcpy(pair + left_len, tok.bytes + tok.offsets[right], right_len);
            int32_t merged = token_lookup(&tok, pair, left_len + right_len, -1);
            CHECK(merged >= 0 && !tok.is_special[merged]);
            free(pair);
        }
    }
    tokenizer_free(&tok);
}

static void parse_safetensors_file(void) {
    safetensors st;
    char path[PATH_SIZE], err[ERR_SIZE] = "";
    CHECK(join_path(path, dir, FILES[SAFETENSORS], err) == 0);
    if (safetensors_open(&st, path, err) < 0) {
        check_message(err);
        safetensors_close(&st);
        return;
    }
    CHECK(st.file_size >= 8 && st.data >= st.map + 8 && st.data + st.data_size == st.map + st.file_size);
    for (size_t i = 0; i < st.n_tensors; i++) {
        const st_tensor *t = &st.tensors[i];
        CHECK(t->begin <= t->end && t->end <= st.data_size);
        CHECK(t->n_dims >= 0 && t->n_dims <= SAFETENSORS_MAX_DIMS);
        if (t->dtype >= 0) {
            CHECK(t->dtype < N_DTYPES);
            uint64_t n = element_count(t);
            CHECK(n == 0 || (t->end - t->begin) / n == (uint64_t)DTYPES[t->dtype].size);
            CHECK(n * (uint64_t)DTYPES[t->dtype].size == t->end - t->begin);
        }
        if (i > 0) CHECK(strcmp(st.tensors[i - 1].short_name, t->short_name) < 0);  /* for bsearch */
        for (size_t j = 0; j < i; j++) {  /* no two share a byte */
            const st_tensor *u = &st.tensors[j];
            CHECK(t->begin == t->end || u->begin == u->end || t->end <= u->begin || u->end <= t->begin);
        }
    }
    /* matched against the micro config, then every tensor read, as write_model reads it */
    int n = gpt2_tensor_count(&micro.model);
    planned_tensor *plan = calloc((size_t)n, sizeof *plan);
    CHECK(plan);
    if (plan_tensors(&micro.model, &st, plan, n, err) < 0) {
        check_message(err);
    } else {
        float sum = 0;
        for (int i = 0; i < n; i++) {
            const st_tensor *t = plan[i].source;
            uint64_t count = (uint64_t)plan[i].rows * (uint64_t)plan[i].cols;
            CHECK(is_float_dtype(t->dtype) && count == element_count(t));
            for (uint64_t k = 0; k < count; k++) sum += element(st.data + t->begin, t->dtype, k);
        }
        volatile float keep = sum;
        (void)keep;
    }
    free(plan);
    safetensors_close(&st);
}

/* ---- the whole conversion -------------------------------------------------------------- */

static void convert_checkpoint(void) {
    char out[PATH_SIZE], tmp[PATH_SIZE + 8], err[ERR_SIZE] = "", msg[GPT2_ERR_MAX];
    snprintf(out, sizeof out, "%s/out.bin", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    const gpt2_weight_types types = gpt2_default_types(GPT2_F32);
    struct stat sb;
    if (convert(dir, out, &types, NULL, err) < 0) {
        check_message(err);
        CHECK(stat(out, &sb) != 0 && stat(tmp, &sb) != 0);  /* nothing written, nothing left */
        return;
    }
    CHECK(stat(tmp, &sb) != 0);
    gpt2_model *m = gpt2_load(out, msg, sizeof msg);
    CHECK(m);
    const gpt2_config *c = gpt2_model_config(m);
    CHECK(c->eot_token >= 0 && c->eot_token < c->vocab_size);
    gpt2_free(m);
    CHECK(remove(out) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int file = data[0] & 3, whole = data[0] & 4;
    write_file(file, data + 1, size - 1);
    if (whole) convert_checkpoint();
    else if (file == CONFIG) parse_config_file();
    else if (file == VOCAB) parse_vocab_only();
    else if (file == MERGES) parse_merges_file();
    else parse_safetensors_file();
    write_file(file, fixture[file] + 1, fixture_len[file] - 1);
    return 0;
}
