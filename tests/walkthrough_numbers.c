/* The tables of docs/WALKTHROUGH.md that follow from the shapes alone, printed as the
 * document's Markdown rows: tests/test_walkthrough.sh checks each row is in the document.
 * Parameter counts come from the engine (gpt2_parameter_count, gpt2_tensor_info); FLOPs,
 * bytes per token and the KV cache from the shapes and the block sizes of docs/FORMAT.md. */
#include <stdio.h>
#include <string.h>

#include "../gpt2.h"

static struct { const char *name; gpt2_config c; } sizes[] = {
    {"distilgpt2", {6, 12, 768, 1024, 50257, 1e-5f, 50256}},
    {"gpt2 (124M)", {12, 12, 768, 1024, 50257, 1e-5f, 50256}},
    {"gpt2-medium (355M)", {24, 16, 1024, 1024, 50257, 1e-5f, 50256}},
    {"gpt2-large (774M)", {36, 20, 1280, 1024, 50257, 1e-5f, 50256}},
    {"gpt2-xl (1.5B)", {48, 25, 1600, 1024, 50257, 1e-5f, 50256}},
    {"models/shakespeare.bin", {0}},  /* the shipped model's shape, read from the file */
};

/* 1234567 → "1,234,567" */
static const char *grouped(long long v, char *buf) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", v), o = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = 0;
    return buf;
}

/* Bytes of a rows × cols matrix of a weight type: blocks of 32 for q8_0 (34 bytes) and
 * q4_0 (18 bytes), FORMAT.md */
static double matrix_bytes(const char *type, long long rows, long long cols) {
    long long blocks = rows * ((cols + 31) / 32);
    if (!strcmp(type, "f32")) return 4.0 * rows * cols;
    if (!strcmp(type, "f16")) return 2.0 * rows * cols;
    if (!strcmp(type, "q8_0")) return 34.0 * blocks;
    return 18.0 * blocks; /* q4_0 */
}

int main(int argc, char **argv) {
    char a[32], b[32], c[32], d[32], err[GPT2_ERR_MAX];
    gpt2_model *shipped = argc == 2 ? gpt2_load(argv[1], err, sizeof err) : NULL;
    if (!shipped) {
        fprintf(stderr, "usage: walkthrough_numbers models/shakespeare.bin (%s)\n", argc == 2 ? err : "no model");
        return 1;
    }
    sizes[5].c = *gpt2_model_config(shipped);
    gpt2_free(shipped);

    /* sizes: parameters, and what one decoded token computes and reads */
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const gpt2_config *cfg = &sizes[s].c;
        long long C = cfg->n_embd, L = cfg->n_layer, V = cfg->vocab_size;
        long long block_matrices = 12 * C * C * L;  /* qkv 3C², proj C², fc 4C², proj 4C² */
        /* a decoded token: 2 FLOPs a weight of the blocks' matrices and of the head */
        double gflop = 2.0 * (double)(block_matrices + V * C) / 1e9;
        printf("| %s | %d | %d | %d | %s | %s | %s | %.2f |\n", sizes[s].name, cfg->n_layer, cfg->n_head, cfg->n_embd,
               grouped(gpt2_parameter_count(cfg), a), grouped(V * C + cfg->n_ctx * C, b), grouped(block_matrices, c), gflop);
    }

    /* GPT-2 124M, tensor by tensor */
    const gpt2_config *g = &sizes[1].c;
    int n = gpt2_tensor_count(g);
    long long block = 0;
    for (int i = 0; i < n; i++) {
        char name[64];
        int rows, cols;
        gpt2_tensor_info(g, i, name, sizeof name, &rows, &cols);
        if (strncmp(name, "h.0.", 4) && i != 0 && i != 1 && i < n - 2) continue;
        if (strncmp(name, "h.0.", 4) == 0) block += (long long)rows * cols;
        printf("| `%s` | %d × %d | %s |\n", name, rows, cols, grouped((long long)rows * cols, a));
    }
    printf("| one block | | %s |\n", grouped(block, a));
    printf("| all %d blocks | | %s |\n", g->n_layer, grouped(block * g->n_layer, a));
    printf("| total | | %s |\n", grouped(gpt2_parameter_count(g), a));

    /* GPT-2 124M, the bytes a decoded token reads for each type: every matrix once, the
     * token's rows of wte and wpe, the f32 biases and norms; q4_0 keeps wte in q8_0 */
    const char *types[] = {"f32", "f16", "q8_0", "q4_0"}; /* bf16: as f16 */
    long long C = g->n_embd, L = g->n_layer, V = g->vocab_size;
    double vectors = 4.0 * (13 * C * L + 2 * C);
    for (int t = 0; t < 4; t++) {
        const char *wte_type = strcmp(types[t], "q4_0") ? types[t] : "q8_0";
        double wte = matrix_bytes(wte_type, V, C), row = matrix_bytes(wte_type, 1, C);
        double mats = L * (matrix_bytes(types[t], 3 * C, C) + matrix_bytes(types[t], C, C) +
                           matrix_bytes(types[t], 4 * C, C) + matrix_bytes(types[t], C, 4 * C));
        double total = wte + 2 * row + mats + vectors;  /* wpe has wte's type */
        printf("| %s | %.0f MB | %.1f | %.0f | %.0f |\n", types[t], total / 1e6, 2.0 * (L * 12 * C * C + V * C) / total,
               25e9 / total, 50e9 / total);
    }

    /* the KV cache: a key and a value of C floats per layer and position */
    long long per_token = 2 * L * C * 4;
    printf("KV cache: %s bytes per position, %s bytes for %d positions\n", grouped(per_token, a),
           grouped(per_token * g->n_ctx, d), g->n_ctx);
    return 0;
}
