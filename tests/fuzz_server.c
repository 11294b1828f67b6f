/* libFuzzer target for what the server reads from the network: the HTTP request head and the
 * JSON body of /v1/completions.
 *
 *   clang -fsanitize=fuzzer,address,undefined -O1 -g -o build/fuzz_server tests/fuzz_server.c -lm
 *   GPT2_FUZZ_MODEL=build/tiny.bin build/fuzz_server -dict=tests/fuzz_server.dict CORPUS_DIR
 *
 * (`make test` runs it briefly when clang has libFuzzer.) The first input byte picks the parser:
 * even, the rest is a request head for http_parse_request (with a small header limit, so the
 * 431 path is reached too); odd, the rest is a request body for parse_completion, which parses
 * the JSON, checks every field and tokenizes the prompt with the model. Checked on every input:
 * a parse either fails with a status and a message or gives values inside their documented
 * ranges. Any violation aborts, which libFuzzer reports as a crash. */
#include "../gpt2.c"
#include "../server.c"

static gpt2_model *model;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *path = getenv("GPT2_FUZZ_MODEL");
    char err[GPT2_ERR_MAX];
    model = gpt2_load(path ? path : "build/tiny.bin", err, sizeof err);
    if (!model) {
        fprintf(stderr, "fuzz_server: %s (set GPT2_FUZZ_MODEL to a model file)\n", err);
        exit(1);
    }
    return 0;
}

static void check_head(const char *buf, size_t len) {
    http_request req;
    int rc = http_parse_request(buf, len, 512, &req);
    if (rc == 1) {
        if (req.header_length == 0 || req.header_length > len || req.header_length > 512) abort();
        if (memchr(req.method, 0, sizeof req.method) == NULL || memchr(req.path, 0, sizeof req.path) == NULL) abort();
        if (!req.method[0] || req.path[0] != '/' || req.content_length < -1 || req.minor_version < 0) abort();
    } else if (rc != 0 && rc != 400 && rc != 414 && rc != 417 && rc != 431 && rc != 505) {
        abort();
    }
}

static void check_body(const char *body, size_t len) {
    const gpt2_config *cfg = gpt2_model_config(model);
    Completion c;
    RequestError e = {0};
    if (parse_completion(model, body, len, &c, &e)) {
        for (size_t i = 0; i < c.n_prompt; i++)
            if (c.prompt[i] < 0 || c.prompt[i] >= cfg->vocab_size) abort();
        if ((int)c.n_prompt + c.max_tokens > cfg->n_ctx || c.max_tokens < 0) abort();
        if (c.logprobs < -1 || c.logprobs > 5 || c.n_stop < 0 || c.n_stop > MAX_STOPS) abort();
        const gpt2_sampling *s = &c.sampling;
        if (!(s->temperature >= 0) || !(s->top_p >= 0 && s->top_p <= 1) || !(s->min_p >= 0 && s->min_p <= 1) || s->top_k < 0) abort();
        for (int i = 0; i < c.n_stop; i++)
            if (!c.stop[i] || c.stop_len[i] == 0) abort();
        char err[GPT2_ERR_MAX];
        gpt2_sampler *sampler = gpt2_sampler_new(model, &c.sampling, err, sizeof err);
        if (!sampler) abort();  /* what the parser accepts, the engine must too */
        gpt2_sampler_free(sampler);
    } else if (e.status < 400 || e.status > 499 || !e.message[0]) {
        abort();
    }
    completion_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (data[0] & 1) check_body((const char *)data + 1, size - 1);
    else check_head((const char *)data + 1, size - 1);
    return 0;
}
