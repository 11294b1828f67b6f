/* libFuzzer target for the loader: model files are untrusted input.
 *
 *   clang -fsanitize=fuzzer,address,undefined tests/fuzz_loader.c -lm -o build/fuzz_loader
 *
 * A valid micro model (1 layer, 8 channels, 260 tokens: ~12 KB) is built once with the
 * library's writer. An input that starts with 0 is a whole file; any other input is a list of
 * 5-byte patches (offset, value) applied to the valid model, which reaches the checks deep in
 * the tokenizer section and the tensor table that random files never get past the magic to
 * see. gpt2_load must refuse the file with a message or load it; a loaded model must run a
 * forward pass and tokenize without a sanitizer report. */
#include "../gpt2.c"

#include <sys/mman.h>

static uint8_t *valid;
static size_t valid_len;

static void build_valid_model(void) {
    enum { V = 260 };
    static uint32_t offsets[V + 1];
    static unsigned char bytes[512];
    size_t n = 0;
    for (int i = 0; i < 256; i++) { offsets[i] = (uint32_t)n; bytes[n++] = (unsigned char)i; }
    const char *extra[] = {"ab", "abc", " t", "<|endoftext|>"};
    for (int i = 0; i < 4; i++) {
        offsets[256 + i] = (uint32_t)n;
        memcpy(bytes + n, extra[i], strlen(extra[i]));
        n += strlen(extra[i]);
    }
    offsets[V] = (uint32_t)n;
    static const uint32_t merges[] = {'a', 'b', 256, 'c', ' ', 't'}, special[] = {259};
    gpt2_config c = {.n_layer = 1, .n_head = 2, .n_embd = 8, .n_ctx = 8, .vocab_size = V, .ln_eps = 1e-5f, .eot_token = 259};
    gpt2_vocab vocab = {V, offsets, bytes, 3, merges, 1, special};
    char path[] = "/tmp/fuzz_loader_seed_XXXXXX", err[GPT2_ERR_MAX];
    int fd = mkstemp(path);
    if (fd < 0) abort();
    close(fd);
    gpt2_writer *w = gpt2_writer_open(path, &c, &vocab, err, sizeof err);
    if (!w) abort();
    float data[4 * 8 * 8];
    for (int i = 0; i < gpt2_tensor_count(&c); i++) {
        int rows, cols;
        gpt2_tensor_info(&c, i, NULL, 0, &rows, &cols);
        float big[V * 8];
        float *t = rows * cols <= (int)(sizeof data / sizeof *data) ? data : big;
        for (int k = 0; k < rows * cols; k++) t[k] = (float)((k * 7 + i) % 13) / 13.0f - 0.5f;
        if (gpt2_writer_tensor(w, t, err, sizeof err)) abort();
    }
    if (gpt2_writer_close(w, err, sizeof err)) abort();
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    valid_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    valid = malloc(valid_len);
    if (fread(valid, 1, valid_len, f) != valid_len) abort();
    fclose(f);
    remove(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!valid) build_valid_model();
    uint8_t *file;
    size_t len;
    if (size > 0 && data[0] == 0) {  /* a whole file */
        len = size - 1;
        file = malloc(len ? len : 1);
        memcpy(file, data + 1, len);
    } else {                         /* patches to the valid model */
        len = valid_len;
        file = malloc(len);
        memcpy(file, valid, len);
        for (size_t i = 0; i + 5 <= size; i += 5) {
            uint32_t at;
            memcpy(&at, data + i, 4);
            file[at % len] = data[i + 4];
        }
    }
    /* an in-memory file, so that the loader's open/fstat/mmap path is the real one */
    int fd = memfd_create("model", 0);
    if (fd < 0 || (len && write(fd, file, len) != (ssize_t)len)) abort();
    char path[64], err[GPT2_ERR_MAX] = "";
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    gpt2_model *m = gpt2_load(path, err, sizeof err);
    if (!m) {
        if (!err[0] || strchr(err, '\n')) abort();  /* refused without a one-line message */
    } else {
        const gpt2_config *c = gpt2_model_config(m);
        gpt2_context *ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = 2, .n_threads = 1}, err, sizeof err);
        int tokens[2] = {0, c->vocab_size - 1};
        if (ctx && !gpt2_forward(ctx, tokens, 2, NULL)) abort();
        size_t n;
        free(gpt2_tokenize(m, "abc the <|endoftext|> \xff\xfe", 24, GPT2_ALLOW_SPECIAL, &n));
        gpt2_context_free(ctx);
        gpt2_free(m);
    }
    close(fd);
    free(file);
    return 0;
}
