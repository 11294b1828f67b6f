/* train_gpt2.c — trains or fine-tunes GPT-2 on a text file and writes the model file gpt2.c maps.
 *
 *   ./train_gpt2 --data input.txt --vocab 2048 --layers 6 --heads 6 --embd 384 --ctx 256 --out model.bin
 *   ./train_gpt2 --init gpt2.bin --data mytext.txt --steps 500 --lr 1e-4 --out tuned.bin
 *   ./train_gpt2 --resume model.bin
 *
 * It #includes gpt2.c (one translation unit) and adds only what training needs. The model is the
 * engine's: gpt2_config, the tensor table (layout_tensors) and the Weights struct point into one
 * buffer of parameters, and gradients and AdamW's moments are buffers of the same layout. The
 * forward pass calls the engine's kernels (embed, layernorm, matmul, attention, gelu) and keeps
 * what the backward pass needs; the backward matmuls use the engine's GEMM micro-kernel.
 *
 * Dimensions: B sequences of T positions per batch, N = B·T rows; L, C, NH, HS, V as in gpt2.c.
 *
 * The steps of training, as the functions below do them:
 *   data       a text file, tokenized with the model's tokenizer (or a byte-level BPE learned
 *              from the text, bpe_learn); the last 10% of its tokens validate; windows
 *              X = tokens[i, i+T), Y = tokens[i+1, i+T+1)
 *   forward    train_forward: the engine's forward pass over B sequences, keeping activations
 *   loss       mean cross-entropy of softmax(logits) against Y
 *   backward   train_backward: the gradient of every op, last to first
 *   update     AdamW (adamw_step) as torch.optim.AdamW defines it, after optional clipping
 *   checkpoint the model file (atomic: temp file, fsync, rename) and its optimizer state
 */
#include "gpt2.c"

#include <signal.h>
#include <sys/resource.h>

/* ============================================================================================
 * Small utilities
 * ========================================================================================== */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fputs("train_gpt2: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (%.1f MB)", n / 1e6);
    return p;
}
static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) die("out of memory (%.1f MB)", (double)n * size / 1e6);
    return p;
}

/* A standard normal deviate (Box-Muller) from the sampler's generator. */
static double random_normal(uint64_t *rng) {
    double u1 = random_uniform(rng), u2 = random_uniform(rng);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

/* FNV-1a, to tie a checkpoint's state to its model and data. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}
#define FNV_START 0xCBF29CE484222325ull

/* ============================================================================================
 * The vocabulary: owned copies of what the model file's tokenizer section holds
 * ========================================================================================== */

typedef struct {
    int n_tokens, n_merges, n_special;
    uint32_t *offsets;  /* [n_tokens + 1] */
    uint8_t *bytes;
    uint32_t *merges;   /* [n_merges][2] */
    uint32_t *special;  /* [n_special] */
    int eot;
} Vocab;

static void vocab_free(Vocab *v) {
    free(v->offsets), free(v->bytes), free(v->merges), free(v->special);
    memset(v, 0, sizeof *v);
}

static gpt2_vocab vocab_view(const Vocab *v) {
    return (gpt2_vocab){v->n_tokens, v->offsets, v->bytes, v->n_merges, v->merges, v->n_special, v->special};
}

/* The tokenizer section of a loaded model (already validated by gpt2_load), copied. */
static void vocab_from_model(Vocab *v, const gpt2_model *m) {
    const uint8_t *base = m->map, *p = base + read_u64(base + H_TOKENIZER_OFFSET);
    v->n_tokens = (int)read_u32(p), v->n_merges = (int)read_u32(p + 4), v->n_special = (int)read_u32(p + 8);
    const uint8_t *offsets = p + 16, *merges = offsets + 4 * ((size_t)v->n_tokens + 1);
    const uint8_t *special = merges + 8 * (size_t)v->n_merges, *bytes = special + 4 * (size_t)v->n_special;
    v->offsets = xmalloc(4 * ((size_t)v->n_tokens + 1));
    memcpy(v->offsets, offsets, 4 * ((size_t)v->n_tokens + 1));
    v->merges = xmalloc(8 * (size_t)v->n_merges);
    memcpy(v->merges, merges, 8 * (size_t)v->n_merges);
    v->special = xmalloc(4 * (size_t)v->n_special);
    memcpy(v->special, special, 4 * (size_t)v->n_special);
    v->bytes = xmalloc(v->offsets[v->n_tokens]);
    memcpy(v->bytes, bytes, v->offsets[v->n_tokens]);
    v->eot = m->config.eot_token;
}

/* ---- learning a byte-level BPE vocabulary from the training text -------------------------- */

/* GPT-2's recipe on a small corpus: split the text into pieces with GPT-2's pre-tokenizer,
 * start from the 256 bytes, and repeatedly make the most frequent adjacent pair of tokens
 * (counted over all pieces) a new token, until the vocabulary has n_tokens - 1 tokens; then
 * <|endoftext|>. Each piece's segmentation is always the engine's own encoding of it with the
 * merges so far (after a merge, the pieces that held the pair are encoded again), so the
 * engine's tokenizer reproduces exactly the segmentation the vocabulary was learned on. */
typedef struct { const uint8_t *bytes; uint32_t len, count; int *ids; int n_ids; } Piece;

typedef struct { uint64_t key; uint64_t count; } PairCount;  /* key: left << 32 | right; 0 = empty */

static uint64_t pair_slot(uint64_t key, uint64_t mask) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (h >> 20) & mask;
}

/* The slot of the piece s[0, n) in an open-addressed index of pieces: its own, or the empty
 * one where it belongs. */
static uint32_t piece_slot(const uint32_t *index, uint32_t mask, const Piece *pieces, const uint8_t *s, size_t n) {
    uint32_t h = tokenizer_hash(bytes_head(s, n), s, n) & mask;
    while (index[h] != UINT32_MAX && !(pieces[index[h]].len == n && memcmp(pieces[index[h]].bytes, s, n) == 0)) h = (h + 1) & mask;
    return h;
}

static void vocab_append_token(Vocab *v, const uint8_t *bytes, uint32_t len, size_t *bytes_cap) {
    uint32_t at = v->offsets[v->n_tokens];
    if (at + len > *bytes_cap) {
        *bytes_cap = (at + len) * 2;
        v->bytes = realloc(v->bytes, *bytes_cap);
        if (!v->bytes) die("out of memory");
    }
    memcpy(v->bytes + at, bytes, len);
    v->offsets[++v->n_tokens] = at + len;
}

/* Learns a vocabulary of up to n_tokens tokens from text[0, len). If segmentation is not NULL it
 * receives (malloc'd, *n_segmented ids) the text as the learning left it segmented, piece by
 * piece; the tests check that the engine's tokenizer encodes the text the same way. */
static void bpe_learn(Vocab *v, const uint8_t *text, size_t len, int n_tokens, bool verbose, int **segmentation,
                      size_t *n_segmented) {
    memset(v, 0, sizeof *v);
    v->offsets = xmalloc(4 * ((size_t)n_tokens + 1));
    v->merges = xmalloc(8 * (size_t)n_tokens);
    v->special = xmalloc(4);
    size_t bytes_cap = 4096;
    v->bytes = xmalloc(bytes_cap);
    v->offsets[0] = 0;
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        vocab_append_token(v, &byte, 1, &bytes_cap);
    }

    /* the distinct pieces of the text and how often each occurs */
    size_t cap = 1 << 16, n_pieces = 0;
    Piece *pieces = xcalloc(cap, sizeof *pieces);
    uint32_t *index = xmalloc(sizeof(uint32_t) << 20), index_mask = (1u << 20) - 1;  /* hash of pieces */
    memset(index, 0xFF, sizeof(uint32_t) << 20);
    for (size_t i = 0, j; i < len; i = j) {
        j = next_piece(text, i, len);
        if (j - i > 256) continue;  /* a run longer than this is one piece nobody's vocabulary learns from */
        uint32_t h = piece_slot(index, index_mask, pieces, text + i, j - i);
        if (index[h] != UINT32_MAX) { pieces[index[h]].count++; continue; }
        if (n_pieces == cap) {
            pieces = realloc(pieces, (cap *= 2) * sizeof *pieces);
            if (!pieces) die("out of memory");
        }
        if (n_pieces >= index_mask / 2) die("the text has too many distinct words to learn a vocabulary from");
        index[h] = (uint32_t)n_pieces;
        pieces[n_pieces] = (Piece){text + i, (uint32_t)(j - i), 1, xmalloc((j - i) * sizeof(int)), (int)(j - i)};
        for (size_t k = 0; k < j - i; k++) pieces[n_pieces].ids[k] = text[i + k];
        n_pieces++;
    }

    size_t symbols = 0;  /* adjacent pairs are fewer than the pieces' bytes: a table twice that */
    for (size_t p = 0; p < n_pieces; p++) symbols += pieces[p].len;
    uint64_t table_size = 1024;
    while (table_size < 2 * symbols) table_size *= 2;
    const uint64_t mask = table_size - 1;
    PairCount *pairs = xcalloc(table_size, sizeof *pairs);
    uint64_t *used = xmalloc(symbols * sizeof *used), n_used = 0;  /* slots to clear for the next count */
    Tokenizer tok = {0};
    TokenizerCall call = {.no_cache = true};  /* its output is reset for every piece */
    call.cap_ids = 64;
    call.ids = xmalloc(call.cap_ids * sizeof *call.ids);
    char err[GPT2_ERR_MAX];
    if (tokenizer_init(&tok, v->n_tokens, v->offsets, v->bytes, 0, v->merges, 0, NULL, err, sizeof err)) die("%s", err);
    while (v->n_tokens < n_tokens - 1) {
        /* count adjacent pairs, weighted by how often their piece occurs */
        while (n_used) pairs[used[--n_used]] = (PairCount){0, 0};
        uint64_t best_key = 0, best_count = 0;
        for (size_t p = 0; p < n_pieces; p++)
            for (int k = 0; k + 1 < pieces[p].n_ids; k++) {
                uint64_t key = (uint64_t)pieces[p].ids[k] << 32 | (uint32_t)pieces[p].ids[k + 1], s = pair_slot(key, mask);
                while (pairs[s].key && pairs[s].key != key) s = (s + 1) & mask;
                if (!pairs[s].key) used[n_used++] = s;
                pairs[s].key = key;
                pairs[s].count += pieces[p].count;
                /* the most frequent pair; on a tie the smaller ids, so the result is one */
                if (pairs[s].count > best_count || (pairs[s].count == best_count && key < best_key))
                    best_count = pairs[s].count, best_key = key;
            }
        if (best_count < 2) break;  /* nothing recurs: a larger vocabulary would only memorize */
        uint32_t left = (uint32_t)(best_key >> 32), right = (uint32_t)best_key;
        uint8_t joined[512];
        uint32_t nl = v->offsets[left + 1] - v->offsets[left], nr = v->offsets[right + 1] - v->offsets[right];
        memcpy(joined, v->bytes + v->offsets[left], nl);
        memcpy(joined + nl, v->bytes + v->offsets[right], nr);
        v->merges[2 * v->n_merges] = left, v->merges[2 * v->n_merges + 1] = right;
        v->n_merges++;
        vocab_append_token(v, joined, nl + nr, &bytes_cap);
        tokenizer_free(&tok);
        if (tokenizer_init(&tok, v->n_tokens, v->offsets, v->bytes, v->n_merges, v->merges, 0, NULL, err, sizeof err))
            die("learning the vocabulary: %s", err);
        /* Encode again the pieces that hold the new token's bytes: as in tiktoken, a merge joins any
         * two adjacent parts whose bytes form its token (bc after a, for a token learned from ab + c). */
        for (size_t p = 0; p < n_pieces; p++) {
            if (pieces[p].len < nl + nr || !memmem(pieces[p].bytes, pieces[p].len, joined, nl + nr)) continue;
            call.n_ids = 0;
            if (encode_piece(&tok, &call, pieces[p].bytes, pieces[p].len, 0)) die("out of memory");
            memcpy(pieces[p].ids, call.ids, call.n_ids * sizeof(int));
            pieces[p].n_ids = (int)call.n_ids;
        }
        if (verbose && isatty(STDOUT_FILENO) && v->n_merges % 256 == 0) {
            printf("\rlearning the vocabulary: %d of %d tokens", v->n_tokens, n_tokens);
            fflush(stdout);
        }
    }
    if (verbose) printf("%slearning the vocabulary: %d tokens from %zu distinct pieces\n", isatty(STDOUT_FILENO) ? "\r" : "",
                        v->n_tokens + 1, n_pieces);
    if (segmentation) {  /* the text, piece by piece, as learned (a long piece as the final merges encode it) */
        size_t cap_ids = len + 1, n = 0;
        int *ids = xmalloc(cap_ids * sizeof *ids);
        for (size_t i = 0, j; i < len; i = j) {
            j = next_piece(text, i, len);
            if (j - i <= 256) {
                const Piece *piece = &pieces[index[piece_slot(index, index_mask, pieces, text + i, j - i)]];
                memcpy(ids + n, piece->ids, (size_t)piece->n_ids * sizeof *ids);
                n += (size_t)piece->n_ids;
                continue;
            }
            call.n_ids = 0;
            if (encode_piece(&tok, &call, text + i, j - i, 0)) die("out of memory");
            memcpy(ids + n, call.ids, call.n_ids * sizeof *ids);
            n += call.n_ids;
        }
        *segmentation = ids, *n_segmented = n;
    }
    free(index);
    vocab_append_token(v, (const uint8_t *)"<|endoftext|>", 13, &bytes_cap);
    v->eot = v->n_tokens - 1;
    v->special[0] = (uint32_t)v->eot;
    v->n_special = 1;
    tokenizer_free(&tok);
    call_free_scratch(&call);
    free(call.ids);
    free(pairs);
    free(used);
    for (size_t p = 0; p < n_pieces; p++) free(pieces[p].ids);
    free(pieces);
}

/* ============================================================================================
 * The model being trained: parameters, gradients and AdamW's moments in one layout
 * ========================================================================================== */

typedef struct {
    float *x;                        /* (N, C) the block's input: the residual stream */
    float *ln1, *ln1_mean, *ln1_rstd;/* (N, C), (N), (N) */
    float *qkv;                      /* (N, 3C) */
    float *probs;                    /* (B, NH, T, S) each query's softmax over the keys */
    float *attn;                     /* (N, C) attention output, heads side by side */
    float *x_mid;                    /* (N, C) x + attention */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fc;                       /* (N, 4C) before GELU */
    float *fc_gelu;                  /* (N, 4C) after GELU */
} LayerActivations;

typedef struct {
    int B, T, S;                     /* S: a row of probs, T rounded up to whole key blocks */
    LayerActivations *layers;        /* [L] */
    float *x_final;                  /* (N, C) the last block's output */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *logits;                   /* (N, V), softmax probabilities after the forward pass */
    float *losses;                   /* (N) */
    /* scratch, and the gradients of activations (reused from layer to layer) */
    MatmulScratch mm;                /* the matmuls' work space */
    float *keys;                     /* (NH, S / KEY_BLOCK, HS, KEY_BLOCK) one sequence's keys, see key_index */
    float *scores;                   /* (threads, S) */
    float *dx;                       /* (N, C) gradient of the residual stream */
    float *dln, *dattn;              /* (N, C) */
    float *dqkv;                     /* (N, 3C) */
    float *dfc, *dfc_gelu;           /* (N, 4C) */
    float *vt, *ds;                  /* attention backward: (threads, HS, S) and (threads, T, S) */
} Activations;

typedef struct {
    gpt2_config config;
    Vocab vocab;
    Tokenizer tokenizer;
    TensorEntry *table;              /* the model file's tensors, offsets in bytes from params */
    size_t n_floats;                 /* floats in params, and in grads, m and v */
    float *params, *grads, *m, *v;
    Weights w;                       /* the parameters as the engine's kernels take them */
    gpt2_pool *pool;
    Activations act;
} Trainer;

/* The gradient of the parameter at p: the same offset in the gradients' buffer. */
#define GRAD(p) (tr->grads + ((const float *)(p) - tr->params))

static float *param_tensor(const Trainer *tr, int i) { return tr->params + tr->table[i].offset / sizeof(float); }

static void trainer_init(Trainer *tr, const gpt2_config *c, int threads) {
    char err[GPT2_ERR_MAX];
    if (check_config(c, err, sizeof err)) die("model: %s", err);
    tr->config = *c;
    int n = gpt2_tensor_count(c);
    tr->table = xmalloc((size_t)n * sizeof *tr->table);
    uint64_t bytes = layout_tensors(c, (gpt2_weight_types){GPT2_F32, GPT2_F32}, 0, tr->table);
    tr->n_floats = (size_t)bytes / sizeof(float);
    tr->params = xcalloc(tr->n_floats, sizeof(float));  /* zero: the alignment gaps stay 0 */
    tr->grads = xcalloc(tr->n_floats, sizeof(float));
    tr->m = xcalloc(tr->n_floats, sizeof(float));
    tr->v = xcalloc(tr->n_floats, sizeof(float));
    tr->w.layers = xmalloc((size_t)c->n_layer * sizeof *tr->w.layers);
    weights_init(&tr->w, c, tr->table, tr->params);
    if (!(tr->pool = gpt2_pool_new(threads, err, sizeof err))) die("%s", err);
}

/* GPT-2's initialization (and nanoGPT's): weights and embeddings normal(0, 0.02), the two
 * projections into the residual stream 0.02/√(2L), biases 0, layer norms 1 and 0. */
static void init_random(Trainer *tr, uint64_t seed) {
    uint64_t rng = mix_seed(seed);
    const gpt2_config *c = &tr->config;
    for (int i = 0; i < gpt2_tensor_count(c); i++) {
        char name[64];
        gpt2_tensor_info(c, i, name, sizeof name, NULL, NULL);
        float *p = param_tensor(tr, i);
        size_t count = (size_t)tr->table[i].rows * tr->table[i].cols;
        bool residual = strstr(name, "c_proj.weight") != NULL;
        double std = residual ? 0.02 / sqrt(2.0 * c->n_layer) : 0.02;
        for (size_t k = 0; k < count; k++)
            p[k] = tr->table[i].rows > 1 ? (float)(std * random_normal(&rng)) : strstr(name, "ln_") && strstr(name, "weight") ? 1.0f : 0.0f;
        if (strstr(name, "ln_f.weight")) for (size_t k = 0; k < count; k++) p[k] = 1.0f;
    }
}

/* The weights of a model file, as f32. */
static void init_from_model(Trainer *tr, const gpt2_model *m) {
    for (int i = 0; i < gpt2_tensor_count(&tr->config); i++) {
        const uint8_t *base = m->map;
        const uint8_t *e = base + GPT2_HEADER_SIZE + (size_t)i * GPT2_TENSOR_ENTRY_SIZE;
        uint64_t off = read_u64(e + 16), row_bytes = m->version == 1 ? 4 * (uint64_t)read_u32(e + 8) : read_u32(e + 12);
        const TensorEntry *t = &tr->table[i];
        if (read_u32(e) != GPT2_F32) die("training starts from f32 weights; this model's tensor %d is %s", i, dtypes[read_u32(e)].name);
        for (int r = 0; r < t->rows; r++)
            memcpy(param_tensor(tr, i) + (size_t)r * t->cols, base + off + r * row_bytes, (size_t)t->cols * sizeof(float));
    }
}

static void trainer_set_vocab(Trainer *tr, Vocab *vocab) {
    char err[GPT2_ERR_MAX];
    tr->vocab = *vocab;
    memset(vocab, 0, sizeof *vocab);
    tokenizer_free(&tr->tokenizer);
    const Vocab *v = &tr->vocab;
    if (tokenizer_init(&tr->tokenizer, v->n_tokens, v->offsets, v->bytes, v->n_merges, v->merges, v->n_special, v->special,
                       err, sizeof err))
        die("tokenizer: %s", err);
}

static void activations_init(Trainer *tr, int B, int T) {
    const gpt2_config *c = &tr->config;
    Activations *a = &tr->act;
    const size_t C = (size_t)c->n_embd, N = (size_t)B * T, V = (size_t)c->vocab_size;
    const int threads = tr->pool->n_threads;
    a->B = B, a->T = T, a->S = (T + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
    a->layers = xcalloc((size_t)c->n_layer, sizeof *a->layers);
    for (int l = 0; l < c->n_layer; l++) {
        LayerActivations *s = &a->layers[l];
        s->x = xmalloc(N * C * 4), s->ln1 = xmalloc(N * C * 4), s->ln1_mean = xmalloc(N * 4), s->ln1_rstd = xmalloc(N * 4);
        s->qkv = xmalloc(N * 3 * C * 4), s->attn = xmalloc(N * C * 4), s->x_mid = xmalloc(N * C * 4);
        s->probs = xmalloc((size_t)B * c->n_head * T * a->S * 4);
        s->ln2 = xmalloc(N * C * 4), s->ln2_mean = xmalloc(N * 4), s->ln2_rstd = xmalloc(N * 4);
        s->fc = xmalloc(N * 4 * C * 4), s->fc_gelu = xmalloc(N * 4 * C * 4);
    }
    a->x_final = xmalloc(N * C * 4), a->lnf = xmalloc(N * C * 4), a->lnf_mean = xmalloc(N * 4), a->lnf_rstd = xmalloc(N * 4);
    a->logits = xmalloc(N * V * 4), a->losses = xmalloc(N * 4);
    if (!matmul_scratch_init(&a->mm, threads, 4 * c->n_embd, MATMUL_POSITIONS)) die("out of memory");
    a->keys = xmalloc(C * a->S * 4), a->scores = xmalloc((size_t)threads * a->S * 4);
    a->dx = xmalloc(N * C * 4), a->dln = xmalloc(N * C * 4), a->dattn = xmalloc(N * C * 4);
    a->dqkv = xmalloc(N * 3 * C * 4), a->dfc = xmalloc(N * 4 * C * 4), a->dfc_gelu = xmalloc(N * 4 * C * 4);
    a->vt = xmalloc((size_t)threads * (C / c->n_head) * a->S * 4), a->ds = xmalloc((size_t)threads * T * a->S * 4);
}

static void activations_free(Trainer *tr) {
    Activations *a = &tr->act;
    for (int l = 0; a->layers && l < tr->config.n_layer; l++) {
        LayerActivations *s = &a->layers[l];
        free(s->x), free(s->ln1), free(s->ln1_mean), free(s->ln1_rstd), free(s->qkv), free(s->attn), free(s->x_mid);
        free(s->probs), free(s->ln2), free(s->ln2_mean), free(s->ln2_rstd), free(s->fc), free(s->fc_gelu);
    }
    free(a->layers), free(a->x_final), free(a->lnf), free(a->lnf_mean), free(a->lnf_rstd), free(a->logits), free(a->losses);
    matmul_scratch_free(&a->mm);
    free(a->keys), free(a->scores), free(a->dx), free(a->dln), free(a->dattn), free(a->dqkv);
    free(a->dfc), free(a->dfc_gelu), free(a->vt), free(a->ds);
    memset(a, 0, sizeof *a);
}

static void trainer_free(Trainer *tr) {
    activations_free(tr);
    gpt2_pool_free(tr->pool);
    tokenizer_free(&tr->tokenizer);
    vocab_free(&tr->vocab);
    free(tr->table), free(tr->params), free(tr->grads), free(tr->m), free(tr->v), free(tr->w.layers);
    memset(tr, 0, sizeof *tr);
}

/* ============================================================================================
 * Forward: the engine's kernels over B sequences, keeping what backward needs
 * ========================================================================================== */

/* Dropout (training only; validation and samples run without it): an element survives with
 * probability 1 - rate and is then scaled by 1/(1 - rate). Which elements survive is a hash of
 * (seed, site, index), 16 bits an element, so the backward pass recomputes the masks instead of
 * storing them, and a resumed run draws the same ones. Sites: 0 the embeddings, 1 + 2l layer
 * l's attention output, 2 + 2l its MLP output (before each joins the residual stream). */
typedef struct { float rate; uint64_t seed; } Dropout;

static void dropout_apply(float *x, size_t n, const Dropout *d, int site) {
    const uint64_t base = mix_seed(d->seed ^ (uint64_t)site << 40);
    const uint32_t threshold = (uint32_t)(d->rate * 65536.0f);
    const float scale = 1.0f / (1.0f - d->rate);
    for (size_t i = 0; i < n; i += 4) {
        const uint64_t h = mix_seed(base + i / 4);
        for (size_t k = 0; k < 4 && i + k < n; k++) x[i + k] = (h >> (16 * k) & 0xFFFF) >= threshold ? x[i + k] * scale : 0.0f;
    }
}

typedef struct { float *logits, *losses; const int *targets; int V, N; } CrossEntropy;

/* logits → softmax probabilities in place, and each row's loss -ln p[target]. */
static void cross_entropy_task(void *arg, int begin, int end, int thread) {
    const CrossEntropy *ce = arg;
    (void)thread;
    for (int t = begin; t < end; t++) {
        float *row = ce->logits + (size_t)t * ce->V;
        float max = row[0];
        for (int v = 1; v < ce->V; v++) if (row[v] > max) max = row[v];
        double sum = 0;
        for (int v = 0; v < ce->V; v++) sum += row[v] = exp_approx(row[v] - max);
        ce->losses[t] = (float)(log(sum) - log((double)row[ce->targets[t]]));
        const float inv = (float)(1.0 / sum);
        for (int v = 0; v < ce->V; v++) row[v] *= inv;
    }
}

/* out = x + dropout(in · wᵀ + bias): a projection joining the residual stream (N rows). */
static void residual_add(Trainer *tr, float *out, const float *x, const float *in, const Tensor *w, const float *bias,
                         const Dropout *drop, int site) {
    const size_t n = (size_t)tr->act.B * tr->act.T * w->rows;
    memcpy(out, x, n * sizeof(float));
    if (!drop || drop->rate <= 0) {
        matmul(tr->pool, &tr->act.mm, out, in, w, bias, tr->act.B * tr->act.T, ACCUMULATE);
        return;
    }
    float *y = tr->act.dattn;  /* free during the forward pass */
    matmul(tr->pool, &tr->act.mm, y, in, w, bias, tr->act.B * tr->act.T, STORE);
    dropout_apply(y, n, drop, site);
    for (size_t i = 0; i < n; i++) out[i] += y[i];
}

/* The mean loss of the batch (inputs and targets are (B, T)); drop is NULL or rate 0 for none. */
static float train_forward(Trainer *tr, const int *inputs, const int *targets, const Dropout *drop) {
    const gpt2_config *c = &tr->config;
    const Weights *w = &tr->w;
    Activations *a = &tr->act;
    const int B = a->B, T = a->T, S = a->S, C = c->n_embd, NH = c->n_head, HS = C / NH, N = B * T;
    gpt2_pool *pool = tr->pool;

    const bool dropout = drop && drop->rate > 0;
    for (int b = 0; b < B; b++) embed(a->layers[0].x + (size_t)b * T * C, &w->wte, &w->wpe, inputs + b * T, 0, T, a->lnf);
    if (dropout) dropout_apply(a->layers[0].x, (size_t)N * C, drop, 0);
    for (int l = 0; l < c->n_layer; l++) {
        const LayerWeights *lw = &w->layers[l];
        LayerActivations *s = &a->layers[l];
        float *x_out = l + 1 < c->n_layer ? a->layers[l + 1].x : a->x_final;
        /* attention: x_mid = x + proj(attention(ln_1(x))) */
        layernorm(s->ln1, s->x, lw->ln1_w, lw->ln1_b, N, C, c->ln_eps, s->ln1_mean, s->ln1_rstd);
        matmul(pool, &a->mm, s->qkv, s->ln1, &lw->qkv_w, lw->qkv_b, N, STORE);
        for (int b = 0; b < B; b++) {
            const float *qkv = s->qkv + (size_t)b * T * 3 * C;
            for (int i = 0; i < C; i++)  /* this sequence's keys, transposed in blocks as the engine's cache */
                for (int t = 0; t < T; t++) a->keys[key_index(i, t, HS, S)] = qkv[(size_t)t * 3 * C + C + i];
            attention(pool, &(Attention){.out = s->attn + (size_t)b * T * C, .out_stride = C, .q = qkv, .q_stride = 3 * C,
                                         .keys = a->keys, .key_stride = S, .values = qkv + 2 * C, .value_head_stride = HS,
                                         .value_stride = 3 * (size_t)C, .scores = a->scores,
                                         .probs = s->probs + (size_t)b * NH * T * S, .T = T, .pos0 = 0, .NH = NH, .HS = HS});
        }
        residual_add(tr, s->x_mid, s->x, s->attn, &lw->attn_proj_w, lw->attn_proj_b, drop, 1 + 2 * l);
        /* MLP: x_out = x_mid + proj(gelu(fc(ln_2(x_mid)))) */
        layernorm(s->ln2, s->x_mid, lw->ln2_w, lw->ln2_b, N, C, c->ln_eps, s->ln2_mean, s->ln2_rstd);
        matmul(pool, &a->mm, s->fc, s->ln2, &lw->fc_w, lw->fc_b, N, STORE);
        gelu(s->fc_gelu, s->fc, (size_t)N * 4 * C);
        residual_add(tr, x_out, s->x_mid, s->fc_gelu, &lw->fc_proj_w, lw->fc_proj_b, drop, 2 + 2 * l);
    }
    layernorm(a->lnf, a->x_final, w->lnf_w, w->lnf_b, N, C, c->ln_eps, a->lnf_mean, a->lnf_rstd);
    matmul(pool, &a->mm, a->logits, a->lnf, &w->wte, NULL, N, STORE);
    CrossEntropy ce = {a->logits, a->losses, targets, c->vocab_size, N};
    pool_run(pool, cross_entropy_task, &ce, N, pool_chunk(pool, N, 1));
    double loss = 0;
    for (int t = 0; t < N; t++) loss += a->losses[t];
    return (float)(loss / N);
}

/* ============================================================================================
 * Backward: the gradient of every op, in reverse order
 * ========================================================================================== */

/* ---- matmul: y = x·Wᵀ + b  ⇒  dx = dy·W,  dW += dyᵀ·x,  db += Σ_t dy[t] ---------------------- */

typedef struct {
    float *dx, *dw, *db;
    const float *dy, *x, *w;  /* dy (N, n_out), x (N, n_in), w (n_out, n_in) */
    int N, n_in, n_out;
} MatmulGrad;

#define K_CHUNK 256  /* rows of W one pass of dx = dy·W sums over, so they stay in cache */

/* dx[t][i, i + vecs·VEC_WIDTH) for rows t, t + rows, over o in [k0, k0 + kc). */
static ALWAYS_INLINE void dx_tile(const MatmulGrad *g, int t, int i, int k0, int kc, const int rows, const int vecs) {
    float tile[TILE_MAX_ROWS * TILE_MAX_VECS * VEC_WIDTH];
    const int width = vecs * VEC_WIDTH;
    gemm_tile(tile, (size_t)width, g->dy + (size_t)t * g->n_out + k0, (size_t)g->n_out, 1, g->w + (size_t)k0 * g->n_in + i,
              (size_t)g->n_in, kc, rows, vecs);
    for (int r = 0; r < rows; r++) {
        float *out = g->dx + (size_t)(t + r) * g->n_in + i;
        for (int k = 0; k < width; k++) out[k] = k0 == 0 ? tile[r * width + k] : out[k] + tile[r * width + k];
    }
}

/* Items are vectors of columns i of dx. */
static void dx_task(void *arg, int begin, int end, int thread) {
    const MatmulGrad *g = arg;
    (void)thread;
    const int W = VEC_WIDTH, first = begin * W, last = end * W < g->n_in ? end * W : g->n_in;
    int i = first;
    for (; i + W <= last; i += W * (i + BATCH_VECS * W <= last ? BATCH_VECS : 1)) {
        const bool wide = i + BATCH_VECS * W <= last;
        for (int k0 = 0; k0 < g->n_out; k0 += K_CHUNK) {
            const int kc = g->n_out - k0 < K_CHUNK ? g->n_out - k0 : K_CHUNK;
            int t = 0;
            for (; t + BATCH_ROWS <= g->N; t += BATCH_ROWS)
                wide ? dx_tile(g, t, i, k0, kc, BATCH_ROWS, BATCH_VECS) : dx_tile(g, t, i, k0, kc, BATCH_ROWS, 1);
            for (; t < g->N; t++) wide ? dx_tile(g, t, i, k0, kc, 1, BATCH_VECS) : dx_tile(g, t, i, k0, kc, 1, 1);
        }
    }
    for (; i < last; i++)  /* the columns past the last whole vector */
        for (int t = 0; t < g->N; t++) {
            float s = 0;
            for (int o = 0; o < g->n_out; o++) s += g->dy[(size_t)t * g->n_out + o] * g->w[(size_t)o * g->n_in + i];
            g->dx[(size_t)t * g->n_in + i] = s;
        }
}

/* dw[o, o + rows)[i, i + vecs·VEC_WIDTH) += Σ_{t in [t0, t0 + tc)} dy[t][o]·x[t][i]. */
static ALWAYS_INLINE void dw_tile(const MatmulGrad *g, int o, int i, int t0, int tc, const int rows, const int vecs) {
    float tile[TILE_MAX_ROWS * TILE_MAX_VECS * VEC_WIDTH];
    const int width = vecs * VEC_WIDTH;
    gemm_tile(tile, (size_t)width, g->dy + (size_t)t0 * g->n_out + o, 1, (size_t)g->n_out, g->x + (size_t)t0 * g->n_in + i,
              (size_t)g->n_in, tc, rows, vecs);
    for (int r = 0; r < rows; r++) {
        float *out = g->dw + (size_t)(o + r) * g->n_in + i;
        for (int k = 0; k < width; k++) out[k] += tile[r * width + k];
    }
}

/* Items are rows o of dW (and of db). The sum over t runs in chunks of K_CHUNK rows, within
 * which each tile of dy stays in cache across all of x's columns. */
static void dw_task(void *arg, int begin, int end, int thread) {
    const MatmulGrad *g = arg;
    (void)thread;
    const int W = VEC_WIDTH, vector_cols = g->n_in - g->n_in % W;
    for (int t0 = 0; t0 < g->N; t0 += K_CHUNK) {
        const int tc = g->N - t0 < K_CHUNK ? g->N - t0 : K_CHUNK;
        int o = begin;
        for (; o + BATCH_ROWS <= end; o += BATCH_ROWS) {
            int i = 0;
            for (; i + BATCH_VECS * W <= vector_cols; i += BATCH_VECS * W) dw_tile(g, o, i, t0, tc, BATCH_ROWS, BATCH_VECS);
            for (; i < vector_cols; i += W) dw_tile(g, o, i, t0, tc, BATCH_ROWS, 1);
        }
        for (; o < end; o++) {
            int i = 0;
            for (; i + BATCH_VECS * W <= vector_cols; i += BATCH_VECS * W) dw_tile(g, o, i, t0, tc, 1, BATCH_VECS);
            for (; i < vector_cols; i += W) dw_tile(g, o, i, t0, tc, 1, 1);
        }
    }
    for (int i = vector_cols; i < g->n_in; i++)  /* the columns past the last whole vector */
        for (int o = begin; o < end; o++) {
            float s = 0;
            for (int t = 0; t < g->N; t++) s += g->dy[(size_t)t * g->n_out + o] * g->x[(size_t)t * g->n_in + i];
            g->dw[(size_t)o * g->n_in + i] += s;
        }
    if (g->db)
        for (int o = begin; o < end; o++) {
            float s = 0;
            for (int t = 0; t < g->N; t++) s += g->dy[(size_t)t * g->n_out + o];
            g->db[o] += s;
        }
}

static void matmul_backward(gpt2_pool *pool, float *dx, float *dw, float *db, const float *dy, const float *x,
                            const Tensor *w, int N) {
    MatmulGrad g = {dx, dw, db, dy, x, w->data, N, w->cols, w->rows};
    const int vectors = (w->cols + VEC_WIDTH - 1) / VEC_WIDTH;
    pool_run(pool, dx_task, &g, vectors, pool_chunk(pool, vectors, BATCH_VECS));
    pool_run(pool, dw_task, &g, w->rows, pool_chunk(pool, w->rows, BATCH_ROWS));
}

/* ---- layernorm: y = x̂·w + b with x̂ = (x - mean)·rstd ----------------------------------------
 *   dx += rstd · (g - mean(g) - x̂ · mean(g·x̂)),  g = dy·w;   dw += Σ_t dy·x̂;   db += Σ_t dy */

typedef struct {
    float *dx, *dw, *db;
    const float *dy, *x, *w, *mean, *rstd;
    int C;
} LayerNormGrad;

static void layernorm_dx_task(void *arg, int begin, int end, int thread) {
    const LayerNormGrad *g = arg;
    (void)thread;
    const int C = g->C;
    for (int t = begin; t < end; t++) {
        const float *dy = g->dy + (size_t)t * C, *x = g->x + (size_t)t * C, mean = g->mean[t], rstd = g->rstd[t];
        float mean_g = 0, mean_gx = 0;
        for (int i = 0; i < C; i++) {
            float gi = dy[i] * g->w[i];
            mean_g += gi;
            mean_gx += gi * (x[i] - mean) * rstd;
        }
        mean_g /= C, mean_gx /= C;
        float *dx = g->dx + (size_t)t * C;
        for (int i = 0; i < C; i++) dx[i] += rstd * (dy[i] * g->w[i] - mean_g - (x[i] - mean) * rstd * mean_gx);
    }
}

/* columns [begin, end) of dw and db, summed over rows in order */
static void layernorm_dw_task(void *arg, int begin, int end, int N) {
    const LayerNormGrad *g = arg;
    for (int i = begin; i < end; i++) {
        float dw = 0, db = 0;
        for (int t = 0; t < N; t++) {
            float dy = g->dy[(size_t)t * g->C + i];
            dw += dy * (g->x[(size_t)t * g->C + i] - g->mean[t]) * g->rstd[t];
            db += dy;
        }
        g->dw[i] += dw, g->db[i] += db;
    }
}

typedef struct { const LayerNormGrad *g; int N; } LayerNormColumns;
static void layernorm_columns_task(void *arg, int begin, int end, int thread) {
    const LayerNormColumns *lc = arg;
    (void)thread;
    layernorm_dw_task((void *)lc->g, begin, end, lc->N);
}

static void layernorm_backward(gpt2_pool *pool, float *dx, float *dw, float *db, const float *dy, const float *x,
                               const float *w, const float *mean, const float *rstd, int N, int C) {
    LayerNormGrad g = {dx, dw, db, dy, x, w, mean, rstd, C};
    pool_run(pool, layernorm_dx_task, &g, N, pool_chunk(pool, N, 1));
    LayerNormColumns lc = {&g, N};
    pool_run(pool, layernorm_columns_task, &lc, C, pool_chunk(pool, C, 16));
}

/* ---- GELU: y = x·σ(2u), u = √(2/π)(x + 0.044715x³)  ⇒  y' = σ(2u) + x·σ(2u)(1 - σ(2u))·2u' ---- */

static void gelu_backward(float *dx, const float *x, const float *dy, size_t n) {
    const float k = 0.7978845608028654f;
    for (size_t i = 0; i < n; i++) {
        float xi = x[i], u = k * (xi + 0.044715f * xi * xi * xi);
        float s = 1.0f / (1.0f + exp_approx(-2.0f * u));
        float du = k * (1.0f + 3.0f * 0.044715f * xi * xi);
        dx[i] = dy[i] * (s + xi * s * (1.0f - s) * 2.0f * du);
    }
}

/* ---- attention: out_t = Σ_j p_tj v_j, p_t = softmax(q_t·k_j / √HS over j ≤ t) -----------------
 *   dP = dOut·Vᵀ;  dS = P ∘ (dP - rowsum(P ∘ dP)) / √HS;  dQ = dS·K;  dK = dSᵀ·Q;  dV = Pᵀ·dOut
 * with P and dS zero above the diagonal. Every product is the engine's GEMM tile, 4 rows at a
 * time; one work item per (sequence, head). */

typedef struct {
    float *dqkv, *vt, *ds;  /* vt: (threads, HS, S) V transposed; ds: (threads, T, S) */
    const float *dout, *qkv, *probs;
    int B, T, S, NH, HS;
} AttentionGrad;

/* out[r][0, HS) = Σ_{k < K} A[r·a_row + k·a_k] · B[k·b_k + (0, HS)] for r < rows, out rows
 * out_stride apart: whole vectors of HS by the GEMM tile, the rest plain. */
static ALWAYS_INLINE void head_rows(float *out, size_t out_stride, const float *A, size_t a_row, size_t a_k, const float *B,
                                    size_t b_k, int K, int HS, const int rows) {
    float tile[4 * TILE_MAX_VECS * VEC_WIDTH];
    const int W = TILE_MAX_VECS * VEC_WIDTH;
    int i = 0;
    for (; i + W <= HS; i += W) {
        gemm_tile(tile, W, A, a_row, a_k, B + i, b_k, K, rows, TILE_MAX_VECS);
        for (int r = 0; r < rows; r++) memcpy(out + r * out_stride + i, tile + r * W, W * sizeof(float));
    }
    for (; i + VEC_WIDTH <= HS; i += VEC_WIDTH) {
        gemm_tile(tile, VEC_WIDTH, A, a_row, a_k, B + i, b_k, K, rows, 1);
        for (int r = 0; r < rows; r++) memcpy(out + r * out_stride + i, tile + r * VEC_WIDTH, VEC_WIDTH * sizeof(float));
    }
    for (; i < HS; i++)
        for (int r = 0; r < rows; r++) {
            float sum = 0;
            for (int k = 0; k < K; k++) sum += A[r * a_row + k * a_k] * B[k * b_k + i];
            out[r * out_stride + i] = sum;
        }
}

static void attention_backward_task(void *arg, int begin, int end, int thread) {
    const AttentionGrad *g = arg;
    const int T = g->T, S = g->S, HS = g->HS, C = g->NH * HS, W = VEC_WIDTH;
    const size_t row = 3 * (size_t)C;  /* from one position's q (or k, v) to the next's */
    const float scale = 1.0f / sqrtf((float)HS);
    float *vt = g->vt + (size_t)thread * HS * S, *ds = g->ds + (size_t)thread * T * S;
    for (int item = begin; item < end; item++) {
        const int b = item / g->NH, h = item % g->NH;
        const float *q = g->qkv + (size_t)b * T * row + h * HS, *k = q + C, *v = q + 2 * C;
        const float *dout = g->dout + (size_t)b * T * C + h * HS, *P = g->probs + ((size_t)b * g->NH + h) * T * S;
        float *dq = g->dqkv + (size_t)b * T * row + h * HS, *dk = dq + C, *dv = dq + 2 * C;
        for (int d = 0; d < HS; d++)
            for (int j = 0; j < T; j++) vt[(size_t)d * S + j] = v[(size_t)j * row + d];
        /* dP row by row, as the forward's scores (whole vectors of keys, then the rest), into dS */
        for (int t = 0; t < T; t++) {
            float *dst = ds + (size_t)t * S;
            const float *dout_t = dout + (size_t)t * C, *p = P + (size_t)t * S;
            int j = 0;
            for (; j + 4 * W <= t + 1; j += 4 * W) gemm_tile(dst + j, 0, dout_t, 0, 1, vt + j, S, HS, 1, 4);
            for (; j + W <= t + 1; j += W) gemm_tile(dst + j, 0, dout_t, 0, 1, vt + j, S, HS, 1, 1);
            for (; j <= t; j++) {
                float sum = 0;
                for (int d = 0; d < HS; d++) sum += dout_t[d] * vt[(size_t)d * S + j];
                dst[j] = sum;
            }
            float pdp = 0;
            for (j = 0; j <= t; j++) pdp += p[j] * dst[j];
            for (j = 0; j <= t; j++) dst[j] = p[j] * (dst[j] - pdp) * scale;
            for (; j < T; j++) dst[j] = 0.0f;
        }
        /* dQ = dS·K (row t sums j ≤ t); dK = dSᵀ·Q and dV = Pᵀ·dOut (row j sums t ≥ j) */
        int t = 0;
        for (; t + 4 <= T; t += 4) head_rows(dq + t * row, row, ds + (size_t)t * S, S, 1, k, row, t + 4, HS, 4);
        for (; t < T; t++) head_rows(dq + t * row, row, ds + (size_t)t * S, S, 1, k, row, t + 1, HS, 1);
        int j = 0;
        for (; j + 4 <= T; j += 4) {
            head_rows(dk + j * row, row, ds + (size_t)j * S + j, 1, S, q + j * row, row, T - j, HS, 4);
            head_rows(dv + j * row, row, P + (size_t)j * S + j, 1, S, dout + (size_t)j * C, C, T - j, HS, 4);
        }
        for (; j < T; j++) {
            head_rows(dk + j * row, row, ds + (size_t)j * S + j, 1, S, q + j * row, row, T - j, HS, 1);
            head_rows(dv + j * row, row, P + (size_t)j * S + j, 1, S, dout + (size_t)j * C, C, T - j, HS, 1);
        }
    }
}

/* ---- cross-entropy through the softmax: dlogits = (p - onehot(y)) / N --------------------------- */

static void cross_entropy_backward_task(void *arg, int begin, int end, int thread) {
    const CrossEntropy *ce = arg;
    (void)thread;
    const float inv_n = 1.0f / (float)ce->N;
    for (int t = begin; t < end; t++) {
        float *row = ce->logits + (size_t)t * ce->V;
        row[ce->targets[t]] -= 1.0f;
        for (int v = 0; v < ce->V; v++) row[v] *= inv_n;
    }
}

/* The gradient that reaches a dropped-out output: dx itself without dropout, else dx through
 * the same mask, in `scratch`. */
static const float *dropped(const float *dx, float *scratch, size_t n, const Dropout *drop, int site) {
    if (!drop || drop->rate <= 0) return dx;
    memcpy(scratch, dx, n * sizeof(float));
    dropout_apply(scratch, n, drop, site);
    return scratch;
}

/* The gradient of the mean loss of the batch train_forward just ran (with the same dropout),
 * into tr->grads (zeroed first). */
static void train_backward(Trainer *tr, const int *inputs, const int *targets, const Dropout *drop) {
    const gpt2_config *c = &tr->config;
    const Weights *w = &tr->w;
    Activations *a = &tr->act;
    const int B = a->B, T = a->T, C = c->n_embd, NH = c->n_head, N = B * T;
    gpt2_pool *pool = tr->pool;
    memset(tr->grads, 0, tr->n_floats * sizeof(float));

    /* loss → logits → the LM head (tied to wte) → ln_f */
    CrossEntropy ce = {a->logits, a->losses, targets, c->vocab_size, N};
    pool_run(pool, cross_entropy_backward_task, &ce, N, pool_chunk(pool, N, 1));
    matmul_backward(pool, a->dln, GRAD(w->wte.data), NULL, a->logits, a->lnf, &w->wte, N);
    memset(a->dx, 0, (size_t)N * C * sizeof(float));
    layernorm_backward(pool, a->dx, GRAD(w->lnf_w), GRAD(w->lnf_b), a->dln, a->x_final, w->lnf_w, a->lnf_mean, a->lnf_rstd, N, C);

    for (int l = c->n_layer - 1; l >= 0; l--) {
        const LayerWeights *lw = &w->layers[l];
        const LayerActivations *s = &a->layers[l];
        /* MLP: dx holds d(x_out); x_out = x_mid + dropout(proj(gelu(fc(ln_2(x_mid))))) */
        const float *dy = dropped(a->dx, a->dattn, (size_t)N * C, drop, 2 + 2 * l);
        matmul_backward(pool, a->dfc_gelu, GRAD(lw->fc_proj_w.data), GRAD(lw->fc_proj_b), dy, s->fc_gelu, &lw->fc_proj_w, N);
        gelu_backward(a->dfc, s->fc, a->dfc_gelu, (size_t)N * 4 * C);
        matmul_backward(pool, a->dln, GRAD(lw->fc_w.data), GRAD(lw->fc_b), a->dfc, s->ln2, &lw->fc_w, N);
        layernorm_backward(pool, a->dx, GRAD(lw->ln2_w), GRAD(lw->ln2_b), a->dln, s->x_mid, lw->ln2_w, s->ln2_mean, s->ln2_rstd, N, C);
        /* attention: dx holds d(x_mid); x_mid = x + dropout(proj(attention(ln_1(x)))) */
        dy = dropped(a->dx, a->dln, (size_t)N * C, drop, 1 + 2 * l);
        matmul_backward(pool, a->dattn, GRAD(lw->attn_proj_w.data), GRAD(lw->attn_proj_b), dy, s->attn, &lw->attn_proj_w, N);
        AttentionGrad ag = {a->dqkv, a->vt, a->ds, a->dattn, s->qkv, s->probs, B, T, a->S, NH, C / NH};
        pool_run(pool, attention_backward_task, &ag, B * NH, 1);
        matmul_backward(pool, a->dln, GRAD(lw->qkv_w.data), GRAD(lw->qkv_b), a->dqkv, s->ln1, &lw->qkv_w, N);
        layernorm_backward(pool, a->dx, GRAD(lw->ln1_w), GRAD(lw->ln1_b), a->dln, s->x, lw->ln1_w, s->ln1_mean, s->ln1_rstd, N, C);
    }
    /* embeddings: x = dropout(wte[token] + wpe[position]) */
    if (drop && drop->rate > 0) dropout_apply(a->dx, (size_t)N * C, drop, 0);
    float *dwte = GRAD(w->wte.data), *dwpe = GRAD(w->wpe.data);
    for (int t = 0; t < N; t++) {
        const float *d = a->dx + (size_t)t * C;
        float *te = dwte + (size_t)inputs[t] * C, *pe = dwpe + (size_t)(t % T) * C;
        for (int i = 0; i < C; i++) te[i] += d[i], pe[i] += d[i];
    }
}

/* ============================================================================================
 * The update: gradient clipping, AdamW, the learning-rate schedule
 * ========================================================================================== */

typedef struct {
    float lr, min_lr, weight_decay, beta1, beta2, eps, clip;
    int warmup, steps;
    bool decay_all;  /* weight decay on every tensor, not only the 2-D ones (nanoGPT's choice) */
    float dropout;   /* the rate, and the seed its masks hash: a step's masks depend on both alone */
    uint64_t dropout_seed;
} Optimizer;

/* Linear warmup over `warmup` steps, then a cosine from lr down to min_lr at the last step
 * (min_lr = lr: constant). step counts from 0. */
static float learning_rate(const Optimizer *o, int step) {
    if (step < o->warmup) return o->lr * (float)(step + 1) / (float)o->warmup;
    if (o->min_lr == o->lr || o->steps <= o->warmup) return o->lr;
    double progress = (double)(step - o->warmup) / (double)(o->steps - o->warmup);
    if (progress > 1) progress = 1;
    return (float)(o->min_lr + 0.5 * (o->lr - o->min_lr) * (1.0 + cos(M_PI * progress)));
}

/* The L2 norm of all gradients, summed in a fixed order. */
static double grad_norm(const Trainer *tr) {
    double sum = 0;
    for (size_t i = 0; i < tr->n_floats; i++) sum += (double)tr->grads[i] * tr->grads[i];
    return sqrt(sum);
}

typedef struct {
    float *p, *g, *m, *v;
    float lr, decay, beta1, beta2, eps, step_size, bc2_sqrt;
} AdamW;

/* torch.optim.AdamW, step by step: p ← p·(1 - lr·λ); m ← β1 m + (1 - β1) g; v ← β2 v + (1 - β2) g²;
 * p ← p - (lr / (1 - β1^t)) · m / (√v / √(1 - β2^t) + ε) */
static void adamw_task(void *arg, int begin, int end, int thread) {
    const AdamW *a = arg;
    (void)thread;
    for (int i = begin; i < end; i++) {
        float g = a->g[i];
        a->p[i] *= 1.0f - a->lr * a->decay;
        a->m[i] = a->beta1 * a->m[i] + (1.0f - a->beta1) * g;
        a->v[i] = a->beta2 * a->v[i] + (1.0f - a->beta2) * g * g;
        a->p[i] -= a->step_size * a->m[i] / (sqrtf(a->v[i]) / a->bc2_sqrt + a->eps);
    }
}

/* One AdamW update with learning rate lr; step counts from 1. */
static void adamw_step(Trainer *tr, const Optimizer *o, float lr, int step) {
    const double bc1 = 1.0 - pow(o->beta1, step), bc2 = 1.0 - pow(o->beta2, step);
    for (int i = 0; i < gpt2_tensor_count(&tr->config); i++) {
        const TensorEntry *t = &tr->table[i];
        size_t at = t->offset / sizeof(float);
        int n = t->rows * t->cols;
        AdamW a = {tr->params + at, tr->grads + at, tr->m + at, tr->v + at, lr,
                   o->decay_all || t->rows > 1 ? o->weight_decay : 0.0f, o->beta1, o->beta2, o->eps,
                   (float)(lr / bc1), (float)sqrt(bc2)};
        pool_run(tr->pool, adamw_task, &a, n, pool_chunk(tr->pool, n, 1024));
    }
}

/* forward, backward, clip, update (step counts from 0): the batch's loss before the update. */
typedef struct { float loss, lr; double grad_norm; } StepResult;

static StepResult train_step(Trainer *tr, const Optimizer *o, const int *inputs, const int *targets, int step) {
    StepResult r;
    const Dropout drop = {o->dropout, mix_seed(o->dropout_seed + (uint64_t)step)};
    r.loss = train_forward(tr, inputs, targets, &drop);
    train_backward(tr, inputs, targets, &drop);
    r.grad_norm = grad_norm(tr);
    if (o->clip > 0 && r.grad_norm > o->clip) {
        const float scale = (float)(o->clip / (r.grad_norm + 1e-6));
        for (size_t i = 0; i < tr->n_floats; i++) tr->grads[i] *= scale;
    }
    r.lr = learning_rate(o, step);
    adamw_step(tr, o, r.lr, step + 1);
    return r;
}

/* ============================================================================================
 * Data: the text's tokens, split into training and validation, cut into windows
 * ========================================================================================== */

typedef struct {
    int *tokens;
    size_t n, n_train;        /* tokens [0, n_train) train, [n_train, n) validate */
    size_t bytes, val_byte;   /* the file's size, and the byte where validation starts */
    uint64_t hash;            /* of the tokens: a resumed run must see the same data */
} Dataset;

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = xmalloc(cap);
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        buf = realloc(buf, cap *= 2);
        if (!buf) die("%s: out of memory", path);
    }
    if (ferror(f)) die("%s: read error", path);
    fclose(f);
    *len = n;
    return buf;
}

static void dataset_load(Dataset *d, const Trainer *tr, const uint8_t *text, size_t len, const char *path) {
    memset(d, 0, sizeof *d);
    size_t n;
    d->tokens = tokenizer_encode(&tr->tokenizer, (const char *)text, len, 0, &n);
    if (!d->tokens) die("out of memory tokenizing %s", path);
    d->n = n;
    d->n_train = n - n / 10;
    d->bytes = len;
    for (size_t i = 0; i < d->n_train; i++) d->val_byte += token_length(&tr->tokenizer, (uint32_t)d->tokens[i]);
    d->hash = fnv1a(FNV_START, d->tokens, n * sizeof(int));
}

/* Batch number k, rows r = 0 … B-1: inputs tokens[start_r, start_r + T), targets one later.
 * Sequential: start_r = k·B·T + r·T, counted from the file's first token and wrapping around
 * the training split; otherwise start_r is uniform over the split, from the generator. */
static void next_batch(const Dataset *d, int B, int T, bool sequential, long k, uint64_t *rng, int *x, int *y) {
    const size_t span = d->n_train - 1 - (size_t)T;  /* starts 0 … span keep the targets inside */
    const size_t per_pass = (d->n_train - 1) / ((size_t)B * T);
    for (int r = 0; r < B; r++) {
        size_t start = sequential ? ((size_t)k % per_pass) * B * T + (size_t)r * T
                                  : (size_t)(random_uniform(rng) * (double)(span + 1));
        memcpy(x + (size_t)r * T, d->tokens + start, (size_t)T * sizeof(int));
        memcpy(y + (size_t)r * T, d->tokens + start + 1, (size_t)T * sizeof(int));
    }
}

/* The mean loss over the validation split's consecutive windows of T tokens (every whole one,
 * or the first max_batches·B), NAN if there is none. The last batch is filled up with copies of
 * its first window, which are not counted. */
static double validation_loss(Trainer *tr, const Dataset *d, int max_batches, int *x, int *y) {
    const int B = tr->act.B, T = tr->act.T;
    size_t n_windows = (d->n - d->n_train - 1) / (size_t)T;
    if (max_batches > 0 && n_windows > (size_t)max_batches * B) n_windows = (size_t)max_batches * B;
    if (n_windows == 0) return NAN;
    double sum = 0;
    for (size_t first = 0; first < n_windows; first += (size_t)B) {
        const int rows = n_windows - first < (size_t)B ? (int)(n_windows - first) : B;
        for (int r = 0; r < B; r++) {
            size_t start = d->n_train + (first + (size_t)(r < rows ? r : 0)) * T;
            memcpy(x + (size_t)r * T, d->tokens + start, (size_t)T * sizeof(int));
            memcpy(y + (size_t)r * T, d->tokens + start + 1, (size_t)T * sizeof(int));
        }
        train_forward(tr, x, y, NULL);
        for (int i = 0; i < rows * T; i++) sum += tr->act.losses[i];
    }
    return sum / ((double)n_windows * T);
}

/* ============================================================================================
 * Checkpoints: the model file and, beside it, what a resumed run needs
 * ========================================================================================== */

typedef struct {
    int step;
    float train_loss, val_loss, lr;  /* val_loss: NAN where not measured */
    float grad_norm, tokens_per_s;
} HistoryEntry;

typedef struct {
    char *out, *state, *best, *csv, *svg;  /* OUT.bin and the files named after it */
    HistoryEntry *history;
    int n_history, cap_history;
    double best_val;
} Run;

static char *path_with(const char *stem, const char *suffix) {
    char *p = xmalloc(strlen(stem) + strlen(suffix) + 1);
    strcpy(p, stem);
    strcat(p, suffix);
    return p;
}

static void run_paths(Run *run, const char *out) {
    size_t n = strlen(out);
    char *stem = xmalloc(n + 1);
    strcpy(stem, out);
    if (n > 4 && !strcmp(stem + n - 4, ".bin")) stem[n - 4] = 0;
    run->out = path_with(out, "");
    run->state = path_with(stem, ".state");
    run->best = path_with(stem, ".best.bin");
    run->csv = path_with(stem, ".loss.csv");
    run->svg = path_with(stem, ".loss.svg");
    free(stem);
}

static void write_model(const Trainer *tr, const char *path) {
    char err[GPT2_ERR_MAX];
    gpt2_vocab vocab = vocab_view(&tr->vocab);
    gpt2_writer *w = gpt2_writer_open(path, &tr->config, &vocab, err, sizeof err);
    if (!w) die("%s", err);
    for (int i = 0; i < gpt2_tensor_count(&tr->config); i++)
        if (gpt2_writer_tensor(w, param_tensor(tr, i), err, sizeof err)) { gpt2_writer_abort(w); die("%s", err); }
    if (gpt2_writer_close(w, err, sizeof err)) die("%s", err);
}

static uint64_t params_hash(const Trainer *tr) { return fnv1a(FNV_START, tr->params, tr->n_floats * sizeof(float)); }

/* What a run is: everything --resume needs to continue it exactly. */
typedef struct {
    Optimizer opt;
    int B, T, eval_every, eval_batches, checkpoint_every, sample_every;
    bool sequential;
    uint64_t seed;
} Settings;

/* The state file: this header (as this build lays it out: state files are not portable),
 * the history, then AdamW's m and v. params_hash ties it to the model file written with it. */
typedef struct {
    char magic[8];  /* "GPT2TRN1" */
    uint32_t version, step, n_history;
    Settings settings;
    uint64_t rng, data_hash, params_hash, n_floats;
    double best_val;
} StateHeader;

static void write_all(FILE *f, const void *p, size_t n, const char *path) {
    if (n && fwrite(p, 1, n, f) != n) die("%s: write failed: %s", path, strerror(errno));
}

static void write_state(const Trainer *tr, const Run *run, const StateHeader *h) {
    char *tmp = path_with(run->state, ".tmp");
    FILE *f = fopen(tmp, "wb");
    if (!f) die("%s: %s", tmp, strerror(errno));
    write_all(f, h, sizeof *h, tmp);
    write_all(f, run->history, (size_t)run->n_history * sizeof *run->history, tmp);
    write_all(f, tr->m, tr->n_floats * sizeof(float), tmp);
    write_all(f, tr->v, tr->n_floats * sizeof(float), tmp);
    if (fflush(f) || fsync(fileno(f)) || fclose(f)) die("%s: write failed: %s", tmp, strerror(errno));
    if (rename(tmp, run->state)) die("%s: %s", run->state, strerror(errno));
    free(tmp);
}

/* Reads a state file into h, the history and m, v (of a trainer already sized for it). */
static void read_state(Trainer *tr, Run *run, StateHeader *h) {
    FILE *f = fopen(run->state, "rb");
    if (!f) die("%s: %s (a run resumes from the .state file its checkpoint wrote)", run->state, strerror(errno));
    if (fread(h, sizeof *h, 1, f) != 1 || memcmp(h->magic, "GPT2TRN1", 8) || h->version != 1)
        die("%s: not a training state this program wrote", run->state);
    if (h->n_floats != tr->n_floats) die("%s: its optimizer state does not fit the model %s", run->state, run->out);
    run->n_history = run->cap_history = (int)h->n_history;
    run->history = xmalloc((size_t)run->cap_history * sizeof *run->history + 1);
    if (fread(run->history, sizeof *run->history, h->n_history, f) != h->n_history ||
        fread(tr->m, sizeof(float), tr->n_floats, f) != tr->n_floats || fread(tr->v, sizeof(float), tr->n_floats, f) != tr->n_floats)
        die("%s: truncated", run->state);
    fclose(f);
    run->best_val = h->best_val;
}

/* ---- the loss curve: CSV, and an SVG plot drawn here ---------------------------------------- */

static void write_csv(const Run *run) {
    char *tmp = path_with(run->csv, ".tmp");
    FILE *f = fopen(tmp, "w");
    if (!f) die("%s: %s", tmp, strerror(errno));
    fprintf(f, "step,train_loss,val_loss,lr,grad_norm,tokens_per_s\n");
    for (int i = 0; i < run->n_history; i++) {
        const HistoryEntry *e = &run->history[i];
        fprintf(f, "%d,%.6f,", e->step, e->train_loss);
        if (!isnan(e->val_loss)) fprintf(f, "%.6f", e->val_loss);
        fprintf(f, ",%.6g,%.4f,%.1f\n", e->lr, e->grad_norm, e->tokens_per_s);
    }
    if (fclose(f)) die("%s: write failed", tmp);
    if (rename(tmp, run->csv)) die("%s: %s", run->csv, strerror(errno));
    free(tmp);
}

/* A "nice" tick spacing: 1, 2 or 5 times a power of ten, giving about `n` ticks over span. */
static double tick_step(double span, int n) {
    double raw = span / n, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void write_svg(const Run *run, const char *title) {
    if (run->n_history == 0) return;
    const double W = 800, H = 480, left = 70, right = 20, top = 40, bottom = 60;
    double max_step = 1, lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < run->n_history; i++) {
        const HistoryEntry *e = &run->history[i];
        if (e->step > max_step) max_step = e->step;
        float vals[2] = {e->train_loss, e->val_loss};
        for (int k = 0; k < 2; k++)
            if (isfinite(vals[k])) lo = vals[k] < lo ? vals[k] : lo, hi = vals[k] > hi ? vals[k] : hi;
    }
    if (!(hi > lo)) hi = lo + 1;
    double pad = 0.05 * (hi - lo);
    lo -= pad, hi += pad;
    char *tmp = path_with(run->svg, ".tmp");
    FILE *f = fopen(tmp, "w");
    if (!f) die("%s: %s", tmp, strerror(errno));
#define PX(step) (left + (step) / max_step * (W - left - right))
#define PY(loss) (top + (hi - (loss)) / (hi - lo) * (H - top - bottom))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\" font-size=\"13\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H, W, H);
    fprintf(f, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    for (const char *c = title; *c; c++) fputs(*c == '<' ? "&lt;" : *c == '&' ? "&amp;" : (char[2]){*c, 0}, f);
    fputs("</text>\n", f);
    double ys = tick_step(hi - lo, 6), xs = tick_step(max_step, 8);
    for (double y = ceil(lo / ys) * ys; y <= hi; y += ys)
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/><text x=\"%.1f\" y=\"%.1f\" "
                   "text-anchor=\"end\">%g</text>\n", left, W - right, PY(y), PY(y), left - 6, PY(y) + 4, y);
    for (double x = 0; x <= max_step; x += xs)
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/><text x=\"%.1f\" y=\"%.1f\" "
                   "text-anchor=\"middle\">%g</text>\n", PX(x), PX(x), top, H - bottom, PX(x), H - bottom + 18, x);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#888\"/>\n", left, top,
            W - left - right, H - top - bottom);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n", (left + W - right) / 2, H - 18);
    fprintf(f, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">loss (nats per token)</text>\n",
            (top + H - bottom) / 2, (top + H - bottom) / 2);
    const char *colors[2] = {"#4a7fd6", "#e0662a"}, *names[2] = {"train", "validation"};
    for (int k = 0; k < 2; k++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"", colors[k], k ? "2" : "1.2");
        for (int i = 0; i < run->n_history; i++) {
            float v = k ? run->history[i].val_loss : run->history[i].train_loss;
            if (isfinite(v)) fprintf(f, "%.1f,%.1f ", PX(run->history[i].step), PY(v));
        }
        fputs("\"/>\n", f);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", W - right - 130, W - right - 110, top + 18 + 18.0 * k,
                top + 18 + 18.0 * k, colors[k], W - right - 104, top + 22 + 18.0 * k, names[k]);
    }
    fputs("</svg>\n", f);
#undef PX
#undef PY
    if (fclose(f)) die("%s: write failed", tmp);
    if (rename(tmp, run->svg)) die("%s: %s", run->svg, strerror(errno));
    free(tmp);
}

/* A checkpoint after `completed` steps: the model, then the state that names it, then the
 * loss curve. Each file is written whole to a temporary name and renamed. */
static void checkpoint(const Trainer *tr, const Run *run, const Settings *settings, int completed, uint64_t rng, uint64_t data_hash) {
    write_model(tr, run->out);
    StateHeader h;
    memset(&h, 0, sizeof h);  /* the padding too: the file is the struct's bytes */
    memcpy(h.magic, "GPT2TRN1", 8);
    h.version = 1, h.step = (uint32_t)completed, h.n_history = (uint32_t)run->n_history, h.settings = *settings;
    h.rng = rng, h.data_hash = data_hash, h.params_hash = params_hash(tr), h.n_floats = tr->n_floats, h.best_val = run->best_val;
    write_state(tr, run, &h);
    write_csv(run);
    write_svg(run, run->out);
}

/* ============================================================================================
 * Samples: the engine generating from the parameters being trained
 * ========================================================================================== */

static int print_sample(void *user, const char *text, size_t len) {
    (void)user;
    for (size_t i = 0; i < len; i++) putchar(text[i] == '\n' ? ' ' : text[i]);  /* one line in the log */
    return 0;
}

static void sample(Trainer *tr, const char *prompt, int n_tokens, uint64_t seed) {
    /* a gpt2_model whose weights are the trainer's (not a mapped file: nothing to unmap) */
    gpt2_model m = {.config = tr->config, .version = GPT2_VERSION, .weights = tr->w, .tokenizer = tr->tokenizer};
    char err[GPT2_ERR_MAX];
    int n_ctx = tr->config.n_ctx < 256 ? tr->config.n_ctx : 256;
    gpt2_context *ctx = gpt2_context_new(&m, &(gpt2_context_params){.n_ctx = n_ctx, .pool = tr->pool}, err, sizeof err);
    gpt2_sampler *s = gpt2_sampler_new(&m, &(gpt2_sampling){.temperature = 0.8f, .top_k = 40, .seed = seed}, err, sizeof err);
    if (!ctx || !s) die("sampling: %s", err);
    size_t n;
    int *ids = tokenizer_encode(&tr->tokenizer, prompt, strlen(prompt), 0, &n);
    if (n == 0) ids[n++] = tr->config.eot_token;
    if (n > (size_t)n_ctx / 2) n = (size_t)n_ctx / 2;
    printf("sample | %s", prompt);
    gpt2_generate(ctx, s, ids, (int)n, n_tokens < n_ctx - (int)n ? n_tokens : n_ctx - (int)n, 0, print_sample, NULL, NULL);
    printf("\n");
    free(ids);
    gpt2_sampler_free(s);
    gpt2_context_free(ctx);
}

/* ============================================================================================
 * The command line
 * ========================================================================================== */

#ifndef TRAIN_GPT2_NO_MAIN

static volatile sig_atomic_t interrupted;
static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

/* Fails now, not after hours of training, if the model cannot be written where asked. */
static void check_writable(const char *out) {
    char *probe = path_with(out, ".tmp");
    FILE *f = fopen(probe, "wb");
    if (!f) die("cannot write %s: %s", probe, strerror(errno));
    fclose(f);
    remove(probe);
    free(probe);
}

static void usage(FILE *out) {
    fputs(
        "usage: train_gpt2 --data FILE --out MODEL.bin [options]\n"
        "       train_gpt2 --resume MODEL.bin [--steps N]\n"
        "Trains GPT-2 on a text file (the last 10% of its tokens validate) and writes a model gpt2 runs.\n"
        "\n"
        "The model (one of):\n"
        "  --init MODEL.bin      start from a model file (its weights and tokenizer): fine-tuning\n"
        "  --layers L --heads H --embd C --ctx T   start from GPT-2's random initialization, with\n"
        "  --vocab N             a byte-level BPE vocabulary of N tokens learned from the data, or\n"
        "  --tokenizer MODEL.bin the tokenizer of a model file (e.g. GPT-2's 50257 tokens)\n"
        "\n"
        "Training:\n"
        "  --batch B             sequences per step (default 8)\n"
        "  --seq T               positions per sequence, at most the model's context (default: the context)\n"
        "  --steps N             optimizer steps (default 1000)\n"
        "  --lr LR               peak learning rate (default 3e-4)\n"
        "  --min-lr LR           cosine decay to this at the last step (default: constant)\n"
        "  --warmup N            linear warmup steps (default 0)\n"
        "  --wd WD               AdamW weight decay, on 2-D tensors (default 0)\n"
        "  --wd-all              weight decay on every tensor\n"
        "  --beta1 B1 --beta2 B2 AdamW betas (default 0.9, 0.999)\n"
        "  --clip NORM           clip the gradient's global norm (default: no clipping)\n"
        "  --dropout P           dropout on the embeddings and on each block's two outputs (default 0)\n"
        "  --sequential          batch k is tokens [k*B*T, (k+1)*B*T) from the file's start, not random windows\n"
        "  --seed S              random initialization and batches (default 1337)\n"
        "  --threads N           worker threads (default: the available cores)\n"
        "\n"
        "Output (MODEL = --out without .bin):\n"
        "  --out MODEL.bin       the trained model; MODEL.best.bin the best on validation; MODEL.state\n"
        "                        what --resume needs; MODEL.loss.csv and MODEL.loss.svg the loss curve\n"
        "  --eval-every N        validation loss every N steps (default 100; 0 = at the end only)\n"
        "  --eval-batches N      evaluate only the first N batches of the validation split (default 0 = all of it)\n"
        "  --checkpoint-every N  save every N steps (default 500; always at the end and on Ctrl-C)\n"
        "  --stop-at N           stop after step N, saving a checkpoint (the schedule still spans --steps)\n"
        "  --sample-every N      print a sample every N steps (default 0 = at the end only)\n"
        "  --sample-prompt TEXT  what samples start from (default: <|endoftext|>)\n"
        "  --bench               time the steps, write nothing\n",
        out);
}

static double parse_number(const char *flag, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi) die("%s expects a number in [%g, %g], got '%s'", flag, lo, hi, s);
    return v;
}

static int parse_int(const char *flag, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) die("%s expects a whole number in [%ld, %ld], got '%s'", flag, lo, hi, s);
    return (int)v;
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

static void format_duration(char *buf, size_t n, double seconds) {
    if (seconds < 60) snprintf(buf, n, "%.0fs", seconds);
    else if (seconds < 3600) snprintf(buf, n, "%dm%02ds", (int)seconds / 60, (int)seconds % 60);
    else snprintf(buf, n, "%dh%02dm", (int)seconds / 3600, (int)seconds % 3600 / 60);
}

static void history_add(Run *run, HistoryEntry e) {
    if (run->n_history == run->cap_history) {
        run->cap_history = run->cap_history ? 2 * run->cap_history : 256;
        run->history = realloc(run->history, (size_t)run->cap_history * sizeof *run->history);
        if (!run->history) die("out of memory");
    }
    run->history[run->n_history++] = e;
}

int main(int argc, char **argv) {
    const char *data_path = NULL, *out = NULL, *init = NULL, *tokenizer_from = NULL, *resume = NULL, *prompt = "";
    int layers = 0, heads = 0, embd = 0, ctx = 0, vocab_size = 0, threads = 0, steps = 0, stop_at = 0;
    bool bench = false;
    Settings set = {.opt = {.lr = 3e-4f, .min_lr = -1, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .steps = 1000},
                    .B = 8, .eval_every = 100, .checkpoint_every = 500, .seed = 1337};
    Optimizer *o = &set.opt;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--sequential")) { set.sequential = true; continue; }
        if (!strcmp(a, "--wd-all")) { o->decay_all = true; continue; }
        if (!strcmp(a, "--bench")) { bench = true; continue; }
        if (a[0] != '-') die("unexpected argument '%s' (see --help)", a);
        if (i + 1 >= argc) die("%s needs a value, or is unknown (see --help)", a);
        const char *v = argv[++i];
        if (!strcmp(a, "--data")) data_path = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--init")) init = v;
        else if (!strcmp(a, "--tokenizer")) tokenizer_from = v;
        else if (!strcmp(a, "--resume")) resume = v;
        else if (!strcmp(a, "--layers")) layers = parse_int(a, v, 1, MAX_LAYERS);
        else if (!strcmp(a, "--heads")) heads = parse_int(a, v, 1, MAX_HEADS);
        else if (!strcmp(a, "--embd")) embd = parse_int(a, v, 1, MAX_EMBD);
        else if (!strcmp(a, "--ctx")) ctx = parse_int(a, v, 1, MAX_CTX);
        else if (!strcmp(a, "--vocab")) vocab_size = parse_int(a, v, 258, 1 << 20);
        else if (!strcmp(a, "--batch")) set.B = parse_int(a, v, 1, 1 << 16);
        else if (!strcmp(a, "--seq")) set.T = parse_int(a, v, 1, MAX_CTX);
        else if (!strcmp(a, "--steps")) steps = parse_int(a, v, 1, 1 << 30);
        else if (!strcmp(a, "--lr")) o->lr = (float)parse_number(a, v, 0, 10);
        else if (!strcmp(a, "--min-lr")) o->min_lr = (float)parse_number(a, v, 0, 10);
        else if (!strcmp(a, "--warmup")) o->warmup = parse_int(a, v, 0, 1 << 30);
        else if (!strcmp(a, "--wd")) o->weight_decay = (float)parse_number(a, v, 0, 10);
        else if (!strcmp(a, "--beta1")) o->beta1 = (float)parse_number(a, v, 0, 0.999999);
        else if (!strcmp(a, "--beta2")) o->beta2 = (float)parse_number(a, v, 0, 0.999999999);
        else if (!strcmp(a, "--clip")) o->clip = (float)parse_number(a, v, 0, 1e9);
        else if (!strcmp(a, "--dropout")) o->dropout = (float)parse_number(a, v, 0, 0.9);
        else if (!strcmp(a, "--seed")) set.seed = (uint64_t)parse_number(a, v, 0, 9007199254740992.0);
        else if (!strcmp(a, "--threads")) threads = parse_int(a, v, 1, MAX_THREADS);
        else if (!strcmp(a, "--eval-every")) set.eval_every = parse_int(a, v, 0, 1 << 30);
        else if (!strcmp(a, "--eval-batches")) set.eval_batches = parse_int(a, v, 0, 1 << 30);
        else if (!strcmp(a, "--checkpoint-every")) set.checkpoint_every = parse_int(a, v, 0, 1 << 30);
        else if (!strcmp(a, "--sample-every")) set.sample_every = parse_int(a, v, 0, 1 << 30);
        else if (!strcmp(a, "--sample-prompt")) prompt = v;
        else if (!strcmp(a, "--stop-at")) stop_at = parse_int(a, v, 1, 1 << 30);
        else die("unknown option '%s' (see --help)", a);
    }
    if (steps) o->steps = steps;
    o->dropout_seed = mix_seed(set.seed ^ 0xD409u);
    if (o->min_lr < 0) o->min_lr = o->lr;
    if (o->min_lr > o->lr) die("--min-lr %g is above --lr %g", (double)o->min_lr, (double)o->lr);
    if (!data_path) die("--data FILE is required (see --help)");

    Trainer tr = {0};
    Run run = {.best_val = INFINITY};
    char err[GPT2_ERR_MAX];
    int start_step = 0;
    uint64_t rng = mix_seed(set.seed ^ 0x5DEECE66Dull), data_hash = 0;
    if (resume) {  /* everything but the data, --steps and --threads comes from the checkpoint */
        if (init || tokenizer_from || layers || vocab_size || out)
            die("--resume takes the model and settings from the checkpoint: give only --data (the same file), --steps, --threads");
        run_paths(&run, resume);
        gpt2_model *m = gpt2_load(resume, err, sizeof err);
        if (!m) die("%s", err);
        trainer_init(&tr, gpt2_model_config(m), threads);
        init_from_model(&tr, m);
        Vocab vocab;
        vocab_from_model(&vocab, m);
        trainer_set_vocab(&tr, &vocab);
        gpt2_free(m);
        StateHeader h;
        read_state(&tr, &run, &h);
        if (h.params_hash != params_hash(&tr))
            die("%s and %s are from different steps (was the run stopped while saving?)", run.out, run.state);
        set = h.settings;
        if (steps) o->steps = steps;
        start_step = (int)h.step, rng = h.rng, data_hash = h.data_hash;
        if (start_step >= o->steps) die("%s has run %d of %d steps already (give --steps to go further)", resume, start_step, o->steps);
    } else if (!out && !bench) {
        die("--out MODEL.bin is required (see --help)");
    }

    if (!bench) check_writable(resume ? resume : out);
    size_t text_len;
    uint8_t *text = read_file(data_path, &text_len);
    if (text_len == 0) die("%s is empty", data_path);

    if (!resume) {
        Vocab vocab = {0};
        if (init) {
            if (layers || heads || embd || ctx || vocab_size || tokenizer_from)
                die("--init takes the model's shape and tokenizer from the file: drop --layers, --vocab, ...");
            gpt2_model *m = gpt2_load(init, err, sizeof err);
            if (!m) die("%s", err);
            trainer_init(&tr, gpt2_model_config(m), threads);
            init_from_model(&tr, m);
            vocab_from_model(&vocab, m);
            gpt2_free(m);
        } else {
            if (!layers || !heads || !embd || !ctx) die("a new model needs --layers, --heads, --embd and --ctx (or --init MODEL.bin)");
            if (!!vocab_size + !!tokenizer_from != 1) die("a new model needs one of --vocab N (learned from the data) or --tokenizer MODEL.bin");
            if (tokenizer_from) {
                gpt2_model *m = gpt2_load(tokenizer_from, err, sizeof err);
                if (!m) die("%s", err);
                vocab_from_model(&vocab, m);
                gpt2_free(m);
            } else {
                bpe_learn(&vocab, text, text_len - text_len / 10, vocab_size, true, NULL, NULL);
            }
            gpt2_config c = {layers, heads, embd, ctx, vocab.n_tokens, 1e-5f, vocab.eot};
            if (check_config(&c, err, sizeof err)) die("model: %s", err);
            trainer_init(&tr, &c, threads);
            init_random(&tr, set.seed);
        }
        trainer_set_vocab(&tr, &vocab);
        if (out) run_paths(&run, out);
    }
    const gpt2_config *c = &tr.config;
    const int B = set.B, T = set.T ? set.T : c->n_ctx;
    set.T = T;
    if (T > c->n_ctx) die("--seq %d is longer than the model's context of %d positions", T, c->n_ctx);

    Dataset data;
    dataset_load(&data, &tr, text, text_len, data_path);
    if (data.n_train < (size_t)B * T + 1)
        die("%s is %zu tokens; its training split (%zu) is shorter than one batch of %d x %d", data_path, data.n, data.n_train, B, T);
    if (resume && data_hash != data.hash) die("%s is not the data %s was trained on", data_path, resume);
    activations_init(&tr, B, T);
    int *x = xmalloc((size_t)B * T * sizeof(int)), *y = xmalloc((size_t)B * T * sizeof(int));

    printf("model: %d layers, %d heads, %d channels, context %d, vocabulary %d: %.2fM parameters\n", c->n_layer, c->n_head,
           c->n_embd, c->n_ctx, c->vocab_size, gpt2_parameter_count(c) / 1e6);
    printf("data: %s, %zu bytes, %zu tokens (%.2f bytes per token); training on %zu, validating on %zu (bytes %zu on)\n",
           data_path, data.bytes, data.n, (double)data.bytes / data.n, data.n_train, data.n - data.n_train, data.val_byte);
    printf("training: batch %d x %d, %d steps, lr %g%s, warmup %d, weight decay %g%s, clip %g, dropout %g, %d threads\n", B, T,
           o->steps, (double)o->lr, o->min_lr < o->lr ? " cosine" : "", o->warmup, (double)o->weight_decay,
           o->decay_all ? " (all)" : "", (double)o->clip, (double)o->dropout, tr.pool->n_threads);
    fflush(stdout);

    signal(SIGINT, on_signal);   /* finish the step, save, stop */
    signal(SIGTERM, on_signal);
    signal(SIGXFSZ, SIG_IGN);    /* past a file-size limit, a write fails (and says so) instead of killing us */
    const bool tty = isatty(STDOUT_FILENO);
    const double val_bytes_per_token = (double)(data.bytes - data.val_byte) / (double)(data.n - data.n_train);
    double t_start = now_ms(), ms_sum = 0, ms_min = INFINITY;
    int timed = 0, step = start_step;
    const int end_step = stop_at && stop_at < o->steps ? stop_at : o->steps;
    for (; step < end_step && !interrupted; step++) {
        double t0 = now_ms();
        next_batch(&data, B, T, set.sequential, step, &rng, x, y);
        StepResult r = train_step(&tr, o, x, y, step);
        double ms = now_ms() - t0;
        if (step > start_step) ms_sum += ms, timed++, ms_min = ms < ms_min ? ms : ms_min;
        if (!isfinite(r.loss)) die("step %d: the loss is %g; lower the learning rate (or clip the gradient)", step + 1, (double)r.loss);
        const double tok_s = (double)B * T / (ms / 1e3);
        HistoryEntry e = {step + 1, r.loss, NAN, r.lr, (float)r.grad_norm, (float)tok_s};
        char eta[32];
        format_duration(eta, sizeof eta, (o->steps - step - 1) * (timed ? ms_sum / timed : ms) / 1e3);
        printf("%sstep %d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s | %.0f ms | ETA %s%s", tty ? "\r\033[K" : "",
               step + 1, o->steps, r.loss, (double)r.lr, r.grad_norm, tok_s, ms, eta, tty ? "" : "\n");
        fflush(stdout);
        if (bench) continue;
        const bool last = step + 1 == o->steps, every = set.checkpoint_every && (step + 1) % set.checkpoint_every == 0;
        if ((set.eval_every && (step + 1) % set.eval_every == 0) || last) {
            double val = validation_loss(&tr, &data, set.eval_batches, x, y);
            e.val_loss = (float)val;
            if (!isnan(val)) {
                printf("%sval step %d | val loss %.4f | %.3f bits per byte\n", tty ? "\n" : "", step + 1, val,
                       val / log(2) / val_bytes_per_token);
                if (val < run.best_val) run.best_val = val, write_model(&tr, run.best);
            }
        }
        history_add(&run, e);
        if ((set.sample_every && (step + 1) % set.sample_every == 0) || last) {
            if (tty) putchar('\n');
            sample(&tr, prompt, 64, set.seed + (uint64_t)step);
        }
        if (every && !last) checkpoint(&tr, &run, &set, step + 1, rng, data.hash);
    }
    if (tty) putchar('\n');
    if (bench) {
        if (!timed) die("--bench needs at least 2 steps (the first is not timed)");
        printf("bench: %d steps of %d x %d tokens: %.1f ms per step (mean of steps 2-%d; best %.1f), %.0f tokens/s; "
               "peak RSS %.0f MB\n", step - start_step, B, T, ms_sum / timed, step - start_step, ms_min,
               (double)B * T / (ms_sum / timed / 1e3), peak_rss_mb());
    } else {
        checkpoint(&tr, &run, &set, step, rng, data.hash);
        char took[32];
        format_duration(took, sizeof took, (now_ms() - t_start) / 1e3);
        if (interrupted || step < o->steps)
            printf("%s after step %d: saved %s; continue with: train_gpt2 --resume %s --data %s\n", interrupted ? "interrupted" : "stopped",
                   step, run.out, run.out, data_path);
        else
            printf("done: %d steps in %s; wrote %s, %s (best validation loss), %s, %s\n", step - start_step, took, run.out,
                   run.best, run.csv, run.svg);
    }
    free(x), free(y), free(text), free(data.tokens), free(run.history);
    free(run.out), free(run.state), free(run.best), free(run.csv), free(run.svg);
    trainer_free(&tr);
    return interrupted ? 130 : 0;
}
#endif /* TRAIN_GPT2_NO_MAIN */
