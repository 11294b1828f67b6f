/* The loss `gpt2 --ppl` reports, computed another way, to check it.
 *
 *   ppl_reference MODEL.bin FILE WINDOW
 *
 * Same definition (main.c, perplexity()): <|endoftext|> then the text's tokens; windows of
 * WINDOW tokens, each starting half a window after the last and scoring the targets the one
 * before did not reach. Here each window runs one token at a time through the KV cache (the
 * decoding kernels, not the batched ones), with log-softmax in long double. Prints the mean
 * nats per token. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gpt2.h"

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: ppl_reference MODEL.bin FILE WINDOW\n"); return 2; }
    char err[GPT2_ERR_MAX];
    gpt2_model *m = gpt2_load(argv[1], err, sizeof err);
    if (!m) { fprintf(stderr, "%s\n", err); return 1; }
    FILE *f = fopen(argv[2], "rb");
    if (!f) { perror(argv[2]); return 1; }
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text, f), n_text;
    fclose(f);
    int *text_ids = gpt2_tokenize(m, text, len, 0, &n_text);
    const int window = atoi(argv[3]), V = gpt2_model_config(m)->vocab_size;
    int *ids = malloc((n_text + 1) * sizeof *ids);
    ids[0] = gpt2_model_config(m)->eot_token;
    memcpy(ids + 1, text_ids, n_text * sizeof *ids);
    const size_t n = n_text + 1;
    gpt2_context *ctx = gpt2_context_new(m, &(gpt2_context_params){.n_ctx = window, .n_threads = 1}, err, sizeof err);
    long double nats = 0;
    size_t scored = 0;
    for (size_t start = 0, reached = 1; reached < n; start += (size_t)window / 2) {
        size_t end = start + (size_t)window < n ? start + (size_t)window : n;
        gpt2_context_rewind(ctx, 0);
        for (size_t p = start; p + 1 < end; p++) {
            const float *logits = gpt2_forward(ctx, &ids[p], 1, NULL);
            if (p + 1 < reached) continue;  /* this window's context, scored by the one before */
            long double max = logits[0], z = 0;
            for (int v = 1; v < V; v++) if (logits[v] > max) max = logits[v];
            for (int v = 0; v < V; v++) z += expl(logits[v] - max);
            nats += max + logl(z) - logits[ids[p + 1]];
            scored++;
        }
        reached = end;
    }
    if (scored != n_text) { fprintf(stderr, "scored %zu of %zu tokens\n", scored, n_text); return 1; }
    printf("%.6Lf\n", nats / (long double)n_text);
    gpt2_context_free(ctx);
    free(ids); free(text_ids);
    gpt2_free(m);
    return 0;
}
