/* The README's embedding example, compiled as its own translation unit beside gpt2.c
 * (cc embed.c gpt2.c -lpthread -lm): only the public header is visible here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gpt2.h"

static int print(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "models/shakespeare.bin", *prompt = "The meaning of life is";
    char err[GPT2_ERR_MAX];
    gpt2_model *model = gpt2_load(path, err, sizeof err);
    if (!model) { fprintf(stderr, "%s\n", err); return 1; }
    gpt2_context *ctx = gpt2_context_new(model, NULL, err, sizeof err);
    gpt2_sampler *sampler = gpt2_sampler_new(model, &(gpt2_sampling){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .seed = 42}, err, sizeof err);
    size_t n;
    int *tokens = gpt2_tokenize(model, prompt, strlen(prompt), 0, &n);
    fputs(prompt, stdout);
    gpt2_generate(ctx, sampler, tokens, (int)n, 40, 0, print, NULL, NULL);
    putchar('\n');
    free(tokens);
    gpt2_sampler_free(sampler);
    gpt2_context_free(ctx);
    gpt2_free(model);
    return 0;
}
