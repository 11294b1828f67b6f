/* libFuzzer target: any bytes encode without a crash and decode back to themselves.
 *
 *   clang -fsanitize=fuzzer,address,undefined -O1 -g -o build/fuzz_tokenizer tests/fuzz_tokenizer.c -lm
 *   GPT2_FUZZ_MODEL=build/tiny.bin build/fuzz_tokenizer -dict=tests/tokenizer/fuzz.dict CORPUS_DIR
 *
 * (`make test` runs it for ~25 s when clang has libFuzzer.) The first input byte picks the
 * mode (bit 0: special tokens allowed); the rest is the text. Checked on every input: the ids
 * are in the vocabulary, their bytes — printed through the engine's streaming printer, as
 * generation does — are exactly the text, and for valid UTF-8 text every printed chunk is
 * itself valid UTF-8. Any violation aborts, which libFuzzer reports as a crash. */
#include "../gpt2.c"
#include "tokenizer/valid_utf8.h"

static gpt2_model *model;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *path = getenv("GPT2_FUZZ_MODEL");
    char err[GPT2_ERR_MAX];
    model = gpt2_load(path ? path : "build/tiny.bin", err, sizeof err);
    if (!model) {
        fprintf(stderr, "fuzz_tokenizer: %s (set GPT2_FUZZ_MODEL to a model file)\n", err);
        exit(1);
    }
    return 0;
}

typedef struct {
    const uint8_t *text;  /* what the printed bytes must equal, consumed as they arrive */
    size_t left;
    int valid_text, broken;
} Expect;

static int check_chunk(void *user, const char *text, size_t len) {
    Expect *e = user;
    if (len > e->left || memcmp(text, e->text, len) != 0) e->broken = 1;
    else e->text += len, e->left -= len;
    if (e->valid_text && !valid_utf8(text, len)) e->broken = 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int flags = data[0] & 1 ? GPT2_ALLOW_SPECIAL : 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1, n;
    int *ids = gpt2_tokenize(model, text, len, flags, &n);
    if (!ids) abort();
    Expect expect = {(const uint8_t *)text, len, valid_utf8(text, len), 0};
    TextStream stream = {.fn = check_chunk, .user = &expect};
    const int vocab_size = gpt2_model_config(model)->vocab_size;
    for (size_t i = 0; i < n; i++) {
        size_t token_len;
        const char *bytes = gpt2_token_bytes(model, ids[i], &token_len);
        if (!bytes || ids[i] < 0 || ids[i] >= vocab_size) abort();
        stream_put(&stream, bytes, token_len);
    }
    stream_finish(&stream);
    free(ids);
    if (expect.broken || expect.left != 0) abort();  /* not the text back, or a broken character */
    return 0;
}
