/* gpt2.h — the public interface of gpt2.c, a dependency-free GPT-2 runtime.
 *
 * Build: compile gpt2.c (one translation unit; it #includes tokenizer.c) with your program
 * and link -lpthread -lm:   cc -O3 -march=native myprog.c gpt2.c -lpthread -lm
 *
 * Conventions: a function that can fail returns NULL or a negative number and, where it takes
 * `char *err, size_t errlen`, writes a one-line message there. The library never calls exit()
 * and never prints. Every *_free function accepts NULL. Nothing is global: any number of
 * models, pools and contexts may live in one process. A model is read-only once loaded and
 * may be used from any number of threads; a context or a sampler is used by one thread at a
 * time; a pool may be shared by contexts running in different threads.
 *
 * The model file is specified in docs/FORMAT.md: a 256-byte header, a table of tensors, the
 * tokenizer, then the weights, 64-byte aligned, in the order the forward pass reads them.
 */
#ifndef GPT2_H
#define GPT2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPT2_MAGIC 0x32545047u  /* the bytes "GPT2" read as a little-endian u32 */
#define GPT2_VERSION 2          /* written by this build; versions 1 and 2 are read */
#define GPT2_HEADER_SIZE 256
#define GPT2_TENSOR_ENTRY_SIZE 32
#define GPT2_ALIGN 64           /* every tensor starts at a multiple of this */
#define GPT2_ERR_MAX 256        /* a buffer this big holds any error message */

/* Header feature flags (docs/FORMAT.md). Readers refuse unknown required bits and ignore
 * unknown optional ones. */
#define GPT2_REQUIRED_TIED_HEAD 1u  /* logits = ln_f(x) · wteᵀ; set in every file */

/* Weight types of the file's tensors (docs/FORMAT.md, "Weight types"). */
typedef enum { GPT2_F32 = 0, GPT2_F16 = 1, GPT2_BF16 = 2, GPT2_Q8_0 = 3, GPT2_Q4_0 = 4 } gpt2_dtype;
#define GPT2_N_DTYPES 5
const char *gpt2_dtype_name(gpt2_dtype dtype);  /* "f32", "f16", ...; NULL if unknown */

typedef struct {
    int n_layer;     /* L: transformer blocks */
    int n_head;      /* NH: attention heads; head size HS = C / NH */
    int n_embd;      /* C: channels */
    int n_ctx;       /* maximum sequence length (learned positions) */
    int vocab_size;  /* V */
    float ln_eps;    /* LayerNorm epsilon (GPT-2: 1e-5) */
    int eot_token;   /* <|endoftext|> (GPT-2: 50256) */
} gpt2_config;

typedef struct gpt2_model gpt2_model;      /* the mapped file: weights + tokenizer, read-only */
typedef struct gpt2_pool gpt2_pool;        /* worker threads, shareable by contexts */
typedef struct gpt2_context gpt2_context;  /* KV cache and activations for one sequence */
typedef struct gpt2_sampler gpt2_sampler;  /* sampling parameters, PRNG state and scratch */

/* ---- model ---------------------------------------------------------------------------- */

/* Maps and validates a model file. The weights are not copied: load time does not grow
 * with the model. Returns NULL with a message in err on any problem with the file. */
gpt2_model *gpt2_load(const char *path, char *err, size_t errlen);
void gpt2_free(gpt2_model *model);
const gpt2_config *gpt2_model_config(const gpt2_model *model);
double gpt2_model_load_ms(const gpt2_model *model);
size_t gpt2_model_file_size(const gpt2_model *model);
int gpt2_model_version(const gpt2_model *model);         /* the file's format version */
gpt2_dtype gpt2_model_dtype(const gpt2_model *model);    /* the type of the blocks' weight matrices */
int64_t gpt2_parameter_count(const gpt2_config *config); /* weights and biases (the tied head once) */

/* ---- tokenizer (GPT-2 byte-level BPE, identical to tiktoken's "gpt2") ---------------- */

#define GPT2_ALLOW_SPECIAL 1  /* encode "<|endoftext|>" in text as its special id */

/* Encodes text[0, len) (any bytes; invalid UTF-8 is kept, see tokenizer.c). Returns a
 * malloc'd array of *n_tokens ids that the caller frees, or NULL if out of memory. */
int *gpt2_tokenize(const gpt2_model *model, const char *text, size_t len, int flags, size_t *n_tokens);
/* The bytes of one token (not NUL-terminated; they may be part of a UTF-8 character, and
 * padding ids have none). Returns NULL for an id outside [0, vocab_size). */
const char *gpt2_token_bytes(const gpt2_model *model, int token, size_t *len);
/* How many trailing bytes of buf[0, n) are the start of a UTF-8 character that more bytes
 * could complete (0..3). A streaming printer holds those back until the next token. */
size_t gpt2_utf8_incomplete_tail(const char *buf, size_t n);
/* The length of the longest prefix of buf[0, n) that is well-formed UTF-8 (no overlongs,
 * surrogates or code points past U+10FFFF): n when all of it is. */
size_t gpt2_utf8_valid_prefix(const char *buf, size_t n);

/* ---- threads -------------------------------------------------------------------------- */

/* A pool of n_threads threads in all, counting the caller of each task (0 = the available
 * cores). Contexts that share a pool take turns for each step of their forward passes, so a
 * server with many contexts runs no more threads than cores. Free it after its contexts. */
gpt2_pool *gpt2_pool_new(int n_threads, char *err, size_t errlen);
void gpt2_pool_free(gpt2_pool *pool);
int gpt2_pool_threads(const gpt2_pool *pool);
int gpt2_available_cores(void);  /* the cores this process may run on */
/* the kernels this CPU runs best: "amx", "avx512bf16", "avx512", "avx2", "neondot", "neon" or "scalar" */
const char *gpt2_kernel_name(void);
const char *gpt2_kernels_available(void);  /* the kernel sets of this build, space-separated */
/* Bytes of weights a decoding step reads: every matrix once (the token embeddings twice over:
 * one row in, all of them as the LM head), the vectors, a position's row. */
size_t gpt2_decode_bytes(const gpt2_model *model);
/* The rate, in GB/s, at which n_threads threads (0: the available cores) can read the model's
 * weights where they are (RAM, or cache for a small model): the ceiling for decoding, which
 * reads them all for every token. Best of a few passes. */
double gpt2_memory_bandwidth(const gpt2_model *model, int n_threads);

/* ---- contexts and the forward pass ---------------------------------------------------- */

typedef struct {
    int n_ctx;        /* positions the KV cache holds; 0 = the model's n_ctx (more is an error) */
    int n_threads;    /* threads of the context's own pool; 0 = the available cores */
    gpt2_pool *pool;  /* or run on this shared pool (n_threads is then ignored) */
    const char *kernels;  /* NULL: the fastest this CPU can run; or one of gpt2_kernels_available() */
    gpt2_dtype kv_type;   /* the KV cache's: GPT2_F32 (0, the default: exact) or GPT2_F16 (half its memory,
                           * and half the bytes a token reads from it deep in a context; keys and
                           * values rounded to 11 significant bits) */
} gpt2_context_params;

/* A context for one sequence. params may be NULL (the defaults: all positions, own pool on
 * every core). The model, and the pool if one is given, must outlive the context. */
gpt2_context *gpt2_context_new(const gpt2_model *model, const gpt2_context_params *params, char *err, size_t errlen);
void gpt2_context_free(gpt2_context *ctx);
const gpt2_model *gpt2_context_model(const gpt2_context *ctx);
const char *gpt2_context_kernels(const gpt2_context *ctx);  /* the kernel set it computes with */
int gpt2_context_threads(const gpt2_context *ctx);
int gpt2_context_size(const gpt2_context *ctx);      /* positions it holds */
size_t gpt2_context_kv_bytes(const gpt2_context *ctx);  /* memory of its KV cache */

/* The sequence so far. Positions [0, gpt2_context_position) are in the KV cache. After
 * gpt2_next, the token it returned is *pending*: chosen but not yet in the cache, at position
 * gpt2_context_position. Whatever runs the model next (gpt2_next, gpt2_forward) feeds the
 * pending token first, so a caller can continue a conversation by passing only the new
 * tokens; nothing is computed for a token that is never continued. */
int gpt2_context_position(const gpt2_context *ctx);
int gpt2_context_pending(const gpt2_context *ctx);   /* the pending token, or -1 if none */
/* The ids at positions [0, position) and the pending one if any, in order; *n_tokens gets
 * their count. Valid until the context next changes. */
const int *gpt2_context_tokens(const gpt2_context *ctx, int *n_tokens);
/* Forgets positions >= position and the pending token (position is clamped to [0, current]). */
void gpt2_context_rewind(gpt2_context *ctx, int position);

/* Runs the pending token (if any) and tokens[0, n) at the next positions, as one batch,
 * appending to the KV cache. Returns the logits of the last of them (vocab_size floats owned
 * by ctx, valid until the next call), and, if all_logits is not NULL, writes the logits of each
 * of tokens[0, n) (not of the pending token) to all_logits[n][vocab_size]. Returns NULL,
 * changing nothing, if n < 1, an id is outside [0, vocab_size) or the positions do not fit. */
const float *gpt2_forward(gpt2_context *ctx, const int *tokens, int n, float *all_logits);

/* ---- sampling ------------------------------------------------------------------------- */

/* Sampling parameters. A zero-initialized struct is greedy decoding. Otherwise the logits
 * are divided by the temperature and the filters apply in this order, each to the
 * distribution renormalized over the tokens the filters before it kept:
 *   top-k  keeps the k most likely tokens;
 *   min-p  keeps tokens at least min_p times as likely as the most likely one;
 *   top-p  keeps the smallest set of the most likely tokens whose probability reaches top_p;
 * then a token is drawn from what is left, renormalized. The most likely token always stays. */
typedef struct {
    float temperature;  /* 0 = greedy (argmax); otherwise in (0, 1e6] */
    int top_k;          /* 0 = off; k >= vocab_size is off too */
    float top_p;        /* 0 or 1 = off; otherwise in (0, 1) */
    float min_p;        /* 0 = off; in [0, 1] */
    uint64_t seed;      /* same seed and parameters = same tokens, on any thread count */
} gpt2_sampling;

/* Returns NULL with a message if a parameter is out of range. */
gpt2_sampler *gpt2_sampler_new(const gpt2_model *model, const gpt2_sampling *params, char *err, size_t errlen);
void gpt2_sampler_free(gpt2_sampler *sampler);
/* Draws a token from vocab_size logits. NaN logits are impossible tokens, +inf certain ones. */
int gpt2_sample(gpt2_sampler *sampler, const float *logits);

/* ---- one token at a time ---------------------------------------------------------------- */

#define GPT2_TOP_MAX 20

/* What the model thought of a chosen token: probabilities of the model's own distribution
 * (softmax of the logits: no temperature, no filters), as OpenAI's logprobs report them. */
typedef struct {
    int token;
    float logprob;                      /* ln p(token) */
    int n_top;                          /* entries filled below, most likely first */
    int top_tokens[GPT2_TOP_MAX];
    float top_logprobs[GPT2_TOP_MAX];
} gpt2_token_info;

/* ln p(token) under softmax(logits) (vocab_size of them), and the n_top (0..GPT2_TOP_MAX) most
 * likely tokens with theirs, into info: what gpt2_next reports, for logits from gpt2_forward. */
void gpt2_logprobs(const gpt2_model *model, const float *logits, int token, int n_top, gpt2_token_info *info);

/* The next token: feeds the pending token (if any), then draws one from the logits of the
 * last position and makes it the pending token. Call it after gpt2_forward has run the
 * prompt. If info is not NULL it receives the token's log-probability and the n_top
 * (0..GPT2_TOP_MAX) most likely tokens. Returns the id, or -1 if there is nothing to predict
 * from (no position run yet) or the pending token does not fit in the context. */
int gpt2_next(gpt2_context *ctx, gpt2_sampler *sampler, int n_top, gpt2_token_info *info);

/* ---- generation ----------------------------------------------------------------------- */

/* Receives the continuation as it is produced, in chunks that never split a UTF-8
 * character (the bytes of an incomplete one are held back until the next token completes
 * it or generation ends). Return non-zero to stop. */
typedef int (*gpt2_text_fn)(void *user, const char *text, size_t len);

typedef enum {
    GPT2_STOP_LENGTH = 0,   /* max_new_tokens produced */
    GPT2_STOP_EOT,          /* the model produced <|endoftext|> */
    GPT2_STOP_CONTEXT,      /* the context is full */
    GPT2_STOP_CALLBACK,     /* the callback returned non-zero */
    GPT2_STOP_ERROR         /* the prompt was empty or did not fit in the context */
} gpt2_stop_reason;

typedef struct {
    int n_prompt, n_generated;
    double prefill_ms, decode_ms;  /* wall time of the prompt's forward pass and of the rest */
    gpt2_stop_reason stop;
} gpt2_stats;

/* Feeds prompt[0, n_prompt) after whatever ctx holds, then draws up to max_new_tokens tokens
 * with gpt2_next (-1 = until <|endoftext|> or the context is full), stopping at <|endoftext|>
 * unless ignore_eot, and streams their text to on_text (may be NULL). The last token drawn
 * is left pending. Returns the number of tokens generated (<|endoftext|> is not counted), or
 * -1 on error (see stats->stop). stats may be NULL. */
int gpt2_generate(gpt2_context *ctx, gpt2_sampler *sampler, const int *prompt, int n_prompt,
                  int max_new_tokens, int ignore_eot, gpt2_text_fn on_text, void *user,
                  gpt2_stats *stats);

/* ---- writing model files (the converter and the trainer) -------------------------------- */

/* The tokenizer as stored in the file: token i is bytes[offsets[i], offsets[i+1]). */
typedef struct {
    int n_tokens;                 /* must equal config.vocab_size */
    const uint32_t *offsets;      /* [n_tokens + 1], non-decreasing, offsets[0] = 0 */
    const unsigned char *bytes;   /* [offsets[n_tokens]] */
    int n_merges;
    const uint32_t *merges;       /* [n_merges][2]: left and right token id, rank order */
    int n_special;
    const uint32_t *special;      /* [n_special]: ids of special tokens (<|endoftext|>) */
} gpt2_vocab;

/* Number of tensors, and tensor i's name (as in HuggingFace's GPT-2: "wte.weight",
 * "h.3.attn.c_attn.weight", "ln_f.bias", ...) and shape [rows][cols] in our orientation
 * (vectors have rows = 1). Returns -1 if i is out of range. */
int gpt2_tensor_count(const gpt2_config *config);
int gpt2_tensor_info(const gpt2_config *config, int i, char *name, size_t name_len, int *rows, int *cols);

/* A loaded model's tokenizer as its file stores it (pointers into the model: valid while it is). */
void gpt2_model_vocab(const gpt2_model *model, gpt2_vocab *vocab);
/* Tensor i of a loaded model (numbered as gpt2_tensor_info does), rows × cols floats widened
 * from its stored type into out; its type into *dtype if not NULL. Returns -1 if i is out of range. */
int gpt2_tensor_read(const gpt2_model *model, int i, float *out, gpt2_dtype *dtype);

/* Writes a model file: open, then gpt2_writer_tensor once per tensor in table order with
 * rows × cols floats each, then close. Output goes to "path.tmp"; close checks that it loads
 * (gpt2_load) and only then renames it to path, so a failed or invalid write never replaces
 * what was there. Functions return 0, or -1 with the message in err. */
typedef struct gpt2_writer gpt2_writer;
gpt2_writer *gpt2_writer_open(const char *path, const gpt2_config *config, const gpt2_vocab *vocab,
                              char *err, size_t errlen);
/* The same, storing the weights in other types (docs/FORMAT.md): gpt2_writer_tensor still takes
 * floats and converts them. Vectors (biases, layer norms) stay f32. */
typedef struct {
    gpt2_dtype matrices;    /* the blocks' four weight matrices */
    gpt2_dtype embeddings;  /* wte (which is also the LM head) and wpe */
} gpt2_weight_types;
/* What `export/convert --dtype` writes for a type: everything in it, except that q4_0 models
 * keep their embeddings and LM head in q8_0 (the head is where 4 bits cost most accuracy). */
gpt2_weight_types gpt2_default_types(gpt2_dtype matrices);
gpt2_writer *gpt2_writer_open_typed(const char *path, const gpt2_config *config, const gpt2_vocab *vocab,
                                    const gpt2_weight_types *types, char *err, size_t errlen);
int gpt2_writer_tensor(gpt2_writer *w, const float *data, char *err, size_t errlen);
int gpt2_writer_close(gpt2_writer *w, char *err, size_t errlen);  /* frees w, even on error */
void gpt2_writer_abort(gpt2_writer *w);  /* frees w and removes the temporary file */

#ifdef __cplusplus
}
#endif
#endif /* GPT2_H */
