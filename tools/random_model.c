/* random_model: a model file with GPT-2's shapes and random weights, for benchmarks.
 *
 *   random_model OUT.bin TOKENIZER_FROM.bin n_layer n_head n_embd n_ctx
 *
 * Weights are drawn as GPT-2 initializes them (normal, std 0.02; layer norms 1 and 0; biases
 * 0), so speed is measured on the real sizes without real weights. The tokenizer is copied
 * from another model file (e.g. a converted fixture), which fixes the vocabulary size. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gpt2.h"

static uint32_t u32_at(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t u64_at(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int die(const char *msg) {
    fprintf(stderr, "random_model: %s\n", msg);
    return 1;
}

/* xorshift64* → uniform (0, 1] → Box–Muller normal */
static double uniform(uint64_t *s) {
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    return ((*s * 0x2545F4914F6CDD1Dull >> 11) + 1) / 9007199254740993.0;
}
static float normal(uint64_t *s) { return (float)(sqrt(-2 * log(uniform(s))) * cos(6.283185307179586 * uniform(s))); }

int main(int argc, char **argv) {
    if (argc != 7) return die("usage: random_model OUT.bin TOKENIZER_FROM.bin n_layer n_head n_embd n_ctx");
    char err[GPT2_ERR_MAX];
    /* Validate the tokenizer's file by loading it, then read its section as FORMAT.md lays it out. */
    gpt2_model *from = gpt2_load(argv[2], err, sizeof err);
    if (!from) return die(err);
    gpt2_config c = *gpt2_model_config(from);
    gpt2_free(from);
    FILE *f = fopen(argv[2], "rb");
    if (!f) return die(strerror(errno));
    unsigned char header[GPT2_HEADER_SIZE];
    if (fread(header, 1, sizeof header, f) != sizeof header) return die("short read");
    uint64_t tok_off = u64_at(header + 56), tok_size = u64_at(header + 64);
    unsigned char *tok = malloc(tok_size);
    if (!tok || fseek(f, (long)tok_off, SEEK_SET) || fread(tok, 1, tok_size, f) != tok_size) return die("cannot read the tokenizer");
    fclose(f);
    uint32_t n_tokens = u32_at(tok), n_merges = u32_at(tok + 4), n_special = u32_at(tok + 8);
    const uint32_t *offsets = (const uint32_t *)(tok + 16);
    gpt2_vocab vocab = {
        .n_tokens = (int)n_tokens, .offsets = offsets,
        .n_merges = (int)n_merges, .merges = offsets + n_tokens + 1,
        .n_special = (int)n_special, .special = offsets + n_tokens + 1 + 2 * (size_t)n_merges,
    };
    vocab.bytes = (const unsigned char *)(vocab.special + n_special);

    c.n_layer = atoi(argv[3]);
    c.n_head = atoi(argv[4]);
    c.n_embd = atoi(argv[5]);
    c.n_ctx = atoi(argv[6]);
    gpt2_writer *w = gpt2_writer_open(argv[1], &c, &vocab, err, sizeof err);
    if (!w) return die(err);
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    float *data = NULL;
    for (int i = 0; i < gpt2_tensor_count(&c); i++) {
        char name[64];
        int rows, cols;
        gpt2_tensor_info(&c, i, name, sizeof name, &rows, &cols);
        size_t n = (size_t)rows * (size_t)cols;
        float *grown = realloc(data, n * sizeof *data);
        if (!grown) { gpt2_writer_abort(w); return die("out of memory"); }
        data = grown;
        int is_norm_weight = strstr(name, "ln_") && strstr(name, ".weight");
        for (size_t k = 0; k < n; k++)
            data[k] = rows == 1 ? (is_norm_weight ? 1.0f : 0.0f) : 0.02f * normal(&rng);
        if (gpt2_writer_tensor(w, data, err, sizeof err)) { gpt2_writer_abort(w); return die(err); }
    }
    free(data);
    free(tok);
    if (gpt2_writer_close(w, err, sizeof err)) return die(err);
    return 0;
}
