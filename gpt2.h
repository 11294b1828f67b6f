/* gpt2.h — the public interface of gpt2.c, a dependency-free GPT-2 runtime.
 *
 * Build: compile gpt2.c (it #includes tokenizer.c) together with your program, with
 * -DGPT2_NO_MAIN so the command-line tool's main() is left out, and link -lpthread -lm.
 *
 * Conventions: every function that can fail returns NULL or a negative number and, where
 * it takes `char *err, size_t errlen`, writes a one-line message there. The library never
 * calls exit() and never prints. All *_free functions accept NULL. No global mutable state:
 * any number of models and contexts may live in one process.
 *
 * The weight file (docs/FORMAT.md has the full specification), all little-endian:
 *   [0, 256)          header: magic "GPT2", version 1, config, section offsets, file size
 *   [256, ...)        tensor table: n_tensors entries of 32 bytes {dtype, rows, cols, 0, offset, nbytes}
 *   tokenizer         vocab as raw bytes (u32 offsets + blob), BPE merges by rank, special ids
 *   tensors           each at a 64-byte aligned offset, in the order the forward pass reads
 *                     them, matrices stored [out][in] so a row is one output's weights:
 *                     wte [V][C], wpe [n_ctx][C], then per layer
 *                     ln_1.w/b [C], attn.c_attn.w [3C][C] + b [3C], attn.c_proj.w [C][C] + b [C],
 *                     ln_2.w/b [C], mlp.c_fc.w [4C][C] + b [4C], mlp.c_proj.w [C][4C] + b [C],
 *                     then ln_f.w/b [C]. The LM head is tied: logits = ln_f(x) · wteᵀ.
 */
#ifndef GPT2_H
#define GPT2_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPT2_MAGIC 0x32545047u   /* the bytes "GPT2" read as a little-endian u32 */
#define GPT2_VERSION 1
#define GPT2_HEADER_SIZE 256
#define GPT2_TENSOR_ENTRY_SIZE 32
#define GPT2_ALIGN 64             /* every tensor starts at a multiple of this */
#define GPT2_FLAG_TIED_HEAD 1u    /* LM head = wte; required by version 1 */
#define GPT2_ERR_MAX 256          /* a buffer this big holds any error message */

enum gpt2_dtype { GPT2_F32 = 0 };  /* values 1.. are reserved for f16, bf16, int8 blocks */

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
typedef struct gpt2_context gpt2_context;  /* activations, KV cache and threads for one sequence */
typedef struct gpt2_sampler gpt2_sampler;  /* sampling parameters, PRNG state and scratch */

/* ---- model ---------------------------------------------------------------------------- */

/* Maps and validates a model file. The weights are not copied: load time does not grow
 * with the model. Returns NULL with a message in err on any problem with the file. */
gpt2_model *gpt2_load(const char *path, char *err, size_t errlen);
void gpt2_free(gpt2_model *model);
const gpt2_config *gpt2_model_config(const gpt2_model *model);
double gpt2_model_load_ms(const gpt2_model *model);
size_t gpt2_model_file_size(const gpt2_model *model);

/* ---- tokenizer (GPT-2 byte-level BPE, identical to tiktoken's "gpt2") ---------------- */

#define GPT2_ALLOW_SPECIAL 1  /* encode "<|endoftext|>" in text as its special id */

/* Encodes text[0, len) (any bytes; invalid UTF-8 is kept, see tokenizer.c). Returns a
 * malloc'd array of *n_tokens ids that the caller frees, or NULL if out of memory. */
int *gpt2_tokenize(const gpt2_model *model, const char *text, size_t len, int flags, size_t *n_tokens);
/* The bytes of one token (not NUL-terminated; they may be part of a UTF-8 character).
 * Returns NULL for an id outside [0, vocab_size). */
const char *gpt2_token_bytes(const gpt2_model *model, int token, size_t *len);
/* How many trailing bytes of buf[0, n) are the start of a UTF-8 character that more bytes
 * could complete (0..3). A streaming printer holds those back until the next token. */
size_t gpt2_utf8_incomplete_tail(const char *buf, size_t n);

/* ---- forward pass --------------------------------------------------------------------- */

/* A context for sequences of up to n_ctx positions (0 = the model's n_ctx; more is an
 * error) computed by n_threads threads (0 = the available cores). The model must outlive
 * the context; several contexts may share one model. */
gpt2_context *gpt2_context_new(const gpt2_model *model, int n_ctx, int n_threads, char *err, size_t errlen);
void gpt2_context_free(gpt2_context *ctx);
int gpt2_context_threads(const gpt2_context *ctx);
int gpt2_context_size(const gpt2_context *ctx);  /* positions it holds */
int gpt2_position(const gpt2_context *ctx);      /* positions filled so far */
void gpt2_rewind(gpt2_context *ctx, int position);  /* forget positions >= position */

/* Runs tokens[0, n) at the next n positions, as one batch, appending to the KV cache.
 * Returns the logits of the last of them (vocab_size floats owned by ctx, valid until the
 * next call). If all_logits is not NULL it receives the logits of every one of the n
 * positions, [n][vocab_size]. Returns NULL, changing nothing, if n < 1, an id is outside
 * [0, vocab_size) or the positions do not fit in the context. */
const float *gpt2_forward(gpt2_context *ctx, const int *tokens, int n, float *all_logits);

/* ---- sampling ------------------------------------------------------------------------- */

typedef struct {
    float temperature;  /* 0 = greedy (argmax); logits are divided by it otherwise */
    int top_k;          /* keep the k most likely tokens; 0 = all */
    float top_p;        /* keep the smallest set with probability mass >= top_p; 1 = all */
    float min_p;        /* drop tokens less likely than min_p × the most likely one; 0 = none */
    uint64_t seed;      /* same seed and parameters = same tokens, on any thread count */
} gpt2_sampling;

/* Returns NULL with a message if a parameter is out of range. */
gpt2_sampler *gpt2_sampler_new(const gpt2_model *model, const gpt2_sampling *params, char *err, size_t errlen);
void gpt2_sampler_free(gpt2_sampler *sampler);
int gpt2_sample(gpt2_sampler *sampler, const float *logits);

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

/* Feeds prompt[0, n_prompt) after whatever ctx already holds, then samples up to
 * max_new_tokens tokens (-1 = until <|endoftext|> or the context is full), stopping at
 * <|endoftext|> unless ignore_eot. Returns the number of tokens generated, or -1 on error
 * (see stats->stop). stats may be NULL. */
int gpt2_generate(gpt2_context *ctx, gpt2_sampler *sampler, const int *prompt, int n_prompt,
                  int max_new_tokens, int ignore_eot, gpt2_text_fn on_text, void *user,
                  gpt2_stats *stats);

/* ---- writing model files (used by export/convert and the trainer) -------------------- */

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

/* Writes a model file: open, then gpt2_writer_tensor once per tensor in table order with
 * rows × cols floats each, then close. Output goes to "path.tmp" and is renamed to path
 * only by a successful close, so a failed write never leaves a partial model behind.
 * Functions return 0, or -1 with the message in err. */
typedef struct gpt2_writer gpt2_writer;
gpt2_writer *gpt2_writer_open(const char *path, const gpt2_config *config, const gpt2_vocab *vocab,
                              char *err, size_t errlen);
int gpt2_writer_tensor(gpt2_writer *w, const float *data, char *err, size_t errlen);
int gpt2_writer_close(gpt2_writer *w, char *err, size_t errlen);  /* frees w, even on error */
void gpt2_writer_abort(gpt2_writer *w);  /* frees w and removes the temporary file */

#ifdef __cplusplus
}
#endif
#endif /* GPT2_H */
