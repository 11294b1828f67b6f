/* main.c — the gpt2 command-line program: generation, scripting modes and the benchmark.
 *
 * It uses the engine through gpt2.h only, as any program embedding gpt2.c would. All
 * messages for the user are here; the library never prints. Bad input of any kind gets one
 * line on stderr ("gpt2: ...") and exit status 1; usage errors with no arguments, 2.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "gpt2.h"
#include "server.h"

/* GPT2_KERNELS=amx|avx512bf16|avx512|avx2|neondot|neon|scalar forces a kernel set (default: the best
 * this CPU runs), so that every path can be tried on one machine. Read once, in main. */
static const char *kernels;
static gpt2_dtype kv_type = GPT2_F32;  /* --kv */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("gpt2: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void usage(FILE *out) {
    fputs(
        "usage: gpt2 MODEL.bin [PROMPT] [options]\n"
        "Generates a continuation of PROMPT (default: none, start from <|endoftext|>).\n"
        "\n"
        "  -n, --n-predict N    tokens to generate (default 256)\n"
        "  -t, --temp T         temperature, 0 = greedy (default 0.8)\n"
        "  -k, --top-k K        sample from the K most likely tokens, 0 = all (default 40)\n"
        "  -p, --top-p P        then from the most likely tokens up to probability P; 0 or 1 = all (default 0.95)\n"
        "      --min-p P        drop tokens less likely than P x the most likely, in [0, 1] (default 0)\n"
        "  -s, --seed S         random seed (default: from the clock, printed in the stats)\n"
        "      --threads N      worker threads (default: the available cores)\n"
        "      --kv f32|f16     the KV cache's type (default f32; f16 halves its memory and what a token reads of it)\n"
        "  -f, --file FILE      read the prompt from FILE (- = stdin)\n"
        "      --ignore-eot     keep going after <|endoftext|>\n"
        "      --allow-special  '<|endoftext|>' in the prompt is the special token, not text\n"
        "  -q, --quiet          no stats on stderr\n"
        "  -h, --help           this help\n"
        "\n"
        "Sampling applies temperature, then top-k, min-p and top-p, each to what the one before kept.\n"
        "\n"
        "Serving (a web page and OpenAI's completions API):\n"
        "      --serve          serve MODEL over HTTP until Ctrl-C\n"
        "      --host H         address to listen on (default 127.0.0.1: this machine only)\n"
        "      --port P         port (default 8080; 0 = any free one, printed)\n"
        "      --parallel N     generations at once (default 8); twice as many may wait, more get 503\n"
        "      --timeout S      seconds a request may take to arrive (default 10; idle connections 3 times it)\n"
        "\n"
        "Environment: GPT2_KERNELS=amx|avx512bf16|avx512|avx2|neondot|neon|scalar forces a kernel set\n"
        "(default: the best the CPU has; a build carries those of its architecture).\n"
        "\n"
        "Machine-readable modes:\n"
        "      --ids A,B,C      the prompt as token ids instead of text\n"
        "      --logits OUT     write the prompt's logits, float32 [T][vocab], to OUT (with -n 0, stdout stays empty)\n"
        "      --tokenize FILE  print the token ids of FILE's bytes (- = stdin) and exit\n"
        "      --bench          measure load time, prefill and decode speed, bandwidth and memory (1 thread, all)\n"
        "      --json           --bench's results as one JSON line per thread count\n"
        "      --ppl FILE       the model's loss on FILE: nats per token, perplexity, bits per byte\n"
        "      --ctx N          --ppl's window (default: the model's context); windows overlap by half\n",
        out);
}

/* Strict number parsing: the whole argument must be a number within [lo, hi]. */
static long parse_long(const char *flag, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) die("%s expects a whole number in [%ld, %ld], got '%s'", flag, lo, hi, s);
    return v;
}

static float parse_float(const char *flag, const char *s, float lo, float hi) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi) die("%s expects a number in [%g, %g], got '%s'", flag, lo, hi, s);
    return v;
}

static uint64_t parse_seed(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *s == '-' || *end || errno) die("-s expects a whole number in [0, 2^64), got '%s'", s);
    return v;
}

/* Reads a whole file ("-" = stdin) into a malloc'd buffer. */
static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) die("%s: out of memory", path);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *grown = realloc(buf, cap *= 2);
        if (!grown) free(buf);
        buf = grown;
    }
    if (ferror(f)) die("%s: read error", path);
    if (f != stdin) fclose(f);
    *len = n;
    return buf;
}

static int *parse_ids(const char *list, int vocab_size, int n_ctx, int *n_out) {
    int n = 0, cap = 16;
    int *ids = malloc(cap * sizeof *ids);
    for (const char *s = list; ids;) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        const char *problem = end == s || errno || (*end && *end != ',') ? "expects comma-separated token ids"
                              : v < 0 || v >= vocab_size                  ? "has an id outside the vocabulary"
                              : n == n_ctx                                ? "has more ids than the model's context"
                                                                          : NULL;
        if (problem) {
            free(ids);
            die("--ids %s (vocabulary [0, %d), context %d): '%.*s'", problem, vocab_size, n_ctx, (int)(end - s + (end == s)), s);
        }
        if (n == cap) {
            int *grown = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!grown) free(ids);
            ids = grown;
            if (!ids) break;
        }
        ids[n++] = (int)v;
        if (!*end) break;
        s = end + 1;
    }
    if (!ids) die("out of memory");
    *n_out = n;
    return ids;
}

static int print_text(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static double clock_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}


/* --ppl: the mean loss of the model on a text, in sliding windows. The tokens are
 * <|endoftext|> followed by the text's, so every token of the text is predicted. A window holds
 * `window` tokens and starts half a window after the one before; it scores the tokens the
 * previous window did not reach, so each token but the first half-window's is predicted from
 * at least half a window of context. */
static void perplexity(gpt2_model *model, const char *path, const char *text, size_t len, int window, int threads) {
    const gpt2_config *c = gpt2_model_config(model);
    char err[GPT2_ERR_MAX];
    size_t n_text;
    int *text_ids = gpt2_tokenize(model, text, len, 0, &n_text);
    if (!text_ids) die("out of memory");
    if (n_text == 0) die("%s is empty", path);
    const size_t n = n_text + 1;
    int *ids = malloc(n * sizeof *ids);
    float *logits = malloc((size_t)64 * c->vocab_size * sizeof *logits);
    if (!ids || !logits) die("out of memory");
    ids[0] = c->eot_token;
    memcpy(ids + 1, text_ids, n_text * sizeof *ids);
    free(text_ids);
    if (window < 2) die("--ctx %d: a window needs at least 2 tokens", window);
    gpt2_context *ctx = gpt2_context_new(model, &(gpt2_context_params){.n_ctx = window, .n_threads = threads, .kernels = kernels, .kv_type = kv_type},
                                         err, sizeof err);
    if (!ctx) die("%s", err);
    const int stride = window / 2;
    double nats = 0;
    size_t scored_to = 1, windows = 0;  /* targets [1, scored_to) are scored */
    for (size_t start = 0; scored_to < n; start += (size_t)stride, windows++) {
        const size_t end = start + (size_t)window < n ? start + (size_t)window : n;
        /* targets [scored_to, end) need the logits of positions [scored_to - 1, end - 1) */
        gpt2_context_rewind(ctx, 0);
        if (scored_to - 1 > start) gpt2_forward(ctx, ids + start, (int)(scored_to - 1 - start), NULL);
        for (size_t p = scored_to - 1; p < end - 1; p += 64) {
            const int chunk = (int)(end - 1 - p < 64 ? end - 1 - p : 64);
            gpt2_forward(ctx, ids + p, chunk, logits);
            for (int t = 0; t < chunk; t++) {
                const float *row = logits + (size_t)t * c->vocab_size;
                double max = row[0], z = 0;
                for (int v = 1; v < c->vocab_size; v++) if (row[v] > max) max = row[v];
                for (int v = 0; v < c->vocab_size; v++) z += exp(row[v] - max);
                nats += max + log(z) - row[ids[p + t + 1]];
            }
        }
        scored_to = end;
    }
    const double per_token = nats / (double)n_text;
    printf("%s: %zu bytes, %zu tokens, %zu windows of %d (stride %d): %.4f nats per token, perplexity %.3f, %.4f bits per byte\n",
           path, len, n_text, windows, window, stride, per_token, exp(per_token), nats / log(2.0) / (double)len);
    gpt2_context_free(ctx);
    free(ids);
    free(logits);
}

/* The CPU's name, for the bench's first line. */
static void cpu_name(char *out, size_t n) {
    snprintf(out, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (colon && (!strncmp(line, "model name", 10) || !strncmp(line, "Model", 5))) {
            snprintf(out, n, "%s", colon + 2);
            out[strcspn(out, "\n")] = 0;
            break;
        }
    }
    if (f) fclose(f);
}

typedef struct {
    int threads;
    double prefill128, prefill512, decode, decode512, decode_gbps, machine_gbps, rss_mb;  /* NAN: not measured */
} BenchResult;

static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* tokens/s of prefilling n arbitrary tokens into an empty context: the median of 5 runs (one
 * run of a short prompt is a fraction of a second, at the mercy of whatever else the machine does) */
#define PREFILL_RUNS 5
static double bench_prefill(gpt2_context *ctx, const int *tokens, int n) {
    double tps[PREFILL_RUNS];
    for (int i = 0; i < PREFILL_RUNS; i++) {
        gpt2_context_rewind(ctx, 0);
        double t0 = clock_ms();
        if (!gpt2_forward(ctx, tokens, n, NULL)) return NAN;
        tps[i] = n / ((clock_ms() - t0) / 1e3);
    }
    qsort(tps, PREFILL_RUNS, sizeof *tps, compare_doubles);
    return tps[PREFILL_RUNS / 2];
}

/* tokens/s of drawing n tokens greedily after a prompt of `depth` tokens: the median of 3 runs
 * (a run is seconds long, and the machine's bandwidth, which sets the pace, drifts). With
 * `machine_gbps`, each run is followed by a measure of the rate `threads` threads read the
 * weights at, and the one after the median run is stored there: on a shared machine that rate
 * moved 2x within minutes, so a decode speed is only comparable with the read beside it. */
#define DECODE_RUNS 3
static double bench_decode(gpt2_context *ctx, gpt2_sampler *greedy, const int *tokens, int depth, int n, double *machine_gbps) {
    double tps[DECODE_RUNS], gbps[DECODE_RUNS];
    for (int i = 0; i < DECODE_RUNS; i++) {
        gpt2_context_rewind(ctx, 0);
        if (!gpt2_forward(ctx, tokens, depth, NULL)) return NAN;
        gpt2_next(ctx, greedy, 0, NULL);  /* (the first: its forward pass was the prompt's) */
        double t0 = clock_ms();
        for (int j = 0; j < n; j++)
            if (gpt2_next(ctx, greedy, 0, NULL) < 0) return NAN;
        tps[i] = n / ((clock_ms() - t0) / 1e3);
        if (machine_gbps) gbps[i] = gpt2_memory_bandwidth(gpt2_context_model(ctx), gpt2_context_threads(ctx));
    }
    int order[DECODE_RUNS];  /* the runs from slowest to fastest (insertion) */
    for (int i = 0; i < DECODE_RUNS; i++) {
        int j = i;
        for (; j > 0 && tps[order[j - 1]] > tps[i]; j--) order[j] = order[j - 1];
        order[j] = i;
    }
    if (machine_gbps) *machine_gbps = gbps[order[DECODE_RUNS / 2]];
    return tps[order[DECODE_RUNS / 2]];
}

/* --bench with `threads` threads: prefill 128 and 512 tokens, decode 128 tokens after one, and
 * 64 after 512; the decode's weight traffic beside what the machine can read. */
static BenchResult bench(gpt2_model *model, int threads) {
    const gpt2_config *c = gpt2_model_config(model);
    BenchResult r = {threads, NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    const int n_ctx = c->n_ctx < 640 ? c->n_ctx : 640;
    char err[GPT2_ERR_MAX];
    gpt2_context *ctx = gpt2_context_new(model, &(gpt2_context_params){.n_ctx = n_ctx, .n_threads = threads, .kernels = kernels, .kv_type = kv_type},
                                         err, sizeof err);
    gpt2_sampler *greedy = gpt2_sampler_new(model, &(gpt2_sampling){0}, err, sizeof err);
    if (!ctx || !greedy) die("%s", err);
    r.threads = gpt2_context_threads(ctx);
    int tokens[640];
    for (int i = 0; i < 640; i++) tokens[i] = (int)((i * 7919L + 13) % c->vocab_size);
    bench_prefill(ctx, tokens, n_ctx < 64 ? n_ctx : 64);  /* warm-up: fault the mapped weights in */
    if (n_ctx >= 128) r.prefill128 = bench_prefill(ctx, tokens, 128);
    r.decode = bench_decode(ctx, greedy, tokens, 1, n_ctx - 2 < 128 ? n_ctx - 2 : 128, &r.machine_gbps);
    if (n_ctx >= 640) {
        r.prefill512 = bench_prefill(ctx, tokens, 512);
        r.decode512 = bench_decode(ctx, greedy, tokens, 512, 64, NULL);
    }
    r.decode_gbps = r.decode * (double)gpt2_decode_bytes(model) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r.rss_mb = ru.ru_maxrss / 1024.0;  /* Linux reports kilobytes */
    gpt2_sampler_free(greedy);
    gpt2_context_free(ctx);
    return r;
}

static void json_number(const char *key, double v, bool last) {
    if (isfinite(v)) printf("\"%s\": %.2f%s", key, v, last ? "" : ", ");
    else printf("\"%s\": null%s", key, last ? "" : ", ");
}

static void print_bench(gpt2_model *model, const char *path, int threads, bool json) {
    const gpt2_config *c = gpt2_model_config(model);
    const char *dtype = gpt2_dtype_name(gpt2_model_dtype(model));
    int counts[2] = {1, gpt2_available_cores()}, n_counts = counts[1] > 1 ? 2 : 1;
    if (threads) counts[0] = threads, n_counts = 1;
    if (!json) {
        char cpu[160];
        cpu_name(cpu, sizeof cpu);
        printf("model    %s: %d layers, %d heads, %d channels, context %d, vocabulary %d, %.1fM parameters, %s, %.1f MB\n", path,
               c->n_layer, c->n_head, c->n_embd, c->n_ctx, c->vocab_size, gpt2_parameter_count(c) / 1e6, dtype,
               gpt2_model_file_size(model) / 1e6);
        printf("machine  %s, %d cores available, %s kernels, %s KV cache\n", cpu, gpt2_available_cores(),
               kernels ? kernels : gpt2_kernel_name(), gpt2_dtype_name(kv_type));
        printf("load     %.2f ms (the mapping and the tokenizer's tables)\n", gpt2_model_load_ms(model));
        printf("%-9s%12s%12s%12s%12s%23s%11s\n", "threads", "prefill 128", "prefill 512", "decode", "decode@512", "decode GB/s", "peak RSS");
    }
    for (int k = 0; k < n_counts; k++) {
        BenchResult r = bench(model, counts[k]);
        if (json) {
            printf("{\"threads\": %d, \"dtype\": \"%s\", \"kernels\": \"%s\", \"kv\": \"%s\", ", r.threads, dtype,
                   kernels ? kernels : gpt2_kernel_name(), gpt2_dtype_name(kv_type));
            json_number("load_ms", gpt2_model_load_ms(model), false);
            json_number("prefill128_tps", r.prefill128, false);
            json_number("prefill512_tps", r.prefill512, false);
            json_number("decode_tps", r.decode, false);
            json_number("decode512_tps", r.decode512, false);
            json_number("peak_rss_mb", r.rss_mb, false);
            json_number("decode_gbps", r.decode_gbps, false);
            json_number("machine_gbps", r.machine_gbps, true);
            printf("}\n");
        } else {
            char cells[4][16], gb[32];
            const double v[4] = {r.prefill128, r.prefill512, r.decode, r.decode512};
            for (int i = 0; i < 4; i++) snprintf(cells[i], sizeof cells[i], isfinite(v[i]) ? "%.1f" : "-", v[i]);
            snprintf(gb, sizeof gb, "%.1f of %.1f (%.0f%%)", r.decode_gbps, r.machine_gbps, 100 * r.decode_gbps / r.machine_gbps);
            printf("%-9d%12s%12s%12s%12s%23s%8.0f MB\n", r.threads, cells[0], cells[1], cells[2], cells[3], gb, r.rss_mb);
        }
        fflush(stdout);
    }
    if (!json) printf("(tokens/s; decode GB/s: the weights a token reads x tokens/s, beside the rate all threads read them at)\n");
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt_arg = NULL, *prompt_file = NULL, *ids_arg = NULL, *logits_path = NULL,
               *tokenize_path = NULL, *ppl_path = NULL, *host = "127.0.0.1";
    int n_predict = 256, threads = 0, window = 0, port = 8080, parallel = 8, timeout = 10;
    bool serve = false;
    bool seed_given = false, ignore_eot = false, allow_special = false, quiet = false, run_bench = false, json = false;
    gpt2_sampling sp = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.0f};

    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || a[1] == '\0') {  /* positional ("-" alone is one too) */
            if (!model_path) model_path = a;
            else if (!prompt_arg) prompt_arg = a;
            else die("unexpected argument '%s' (quote the prompt; see --help)", a);
            continue;
        }
        if (!strcmp(a, "--")) { options_done = true; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--ignore-eot")) { ignore_eot = true; continue; }
        if (!strcmp(a, "--allow-special")) { allow_special = true; continue; }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) { quiet = true; continue; }
        if (!strcmp(a, "--bench")) { run_bench = true; continue; }
        if (!strcmp(a, "--json")) { json = true; continue; }
        if (!strcmp(a, "--serve")) { serve = true; continue; }
        /* the rest take a value: "-n 5", "--n-predict 5" or "--n-predict=5" */
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
        const char *v = eq ? eq + 1 : NULL;
#define IS(flag) (strlen(flag) == name_len && !strncmp(a, flag, name_len))
        if (!(IS("-n") || IS("--n-predict") || IS("-t") || IS("--temp") || IS("-k") || IS("--top-k") || IS("-p") ||
              IS("--top-p") || IS("--min-p") || IS("-s") || IS("--seed") || IS("--threads") || IS("-f") ||
              IS("--file") || IS("--ids") || IS("--logits") || IS("--tokenize") || IS("--ppl") || IS("--ctx") || IS("--host") ||
              IS("--port") || IS("--parallel") || IS("--timeout") || IS("--kv")))
            die("unknown option '%s' (see --help)", a);
        if (!v) {
            if (i + 1 >= argc) die("%s needs a value", a);
            v = argv[++i];
        }
        if (IS("-n") || IS("--n-predict")) n_predict = (int)parse_long(a, v, 0, 1 << 30);
        else if (IS("-t") || IS("--temp")) sp.temperature = parse_float(a, v, 0.0f, 1e6f);
        else if (IS("-k") || IS("--top-k")) sp.top_k = (int)parse_long(a, v, 0, 1 << 30);
        else if (IS("-p") || IS("--top-p")) sp.top_p = parse_float(a, v, 0.0f, 1.0f);
        else if (IS("--min-p")) sp.min_p = parse_float(a, v, 0.0f, 1.0f);
        else if (IS("-s") || IS("--seed")) { sp.seed = parse_seed(v); seed_given = true; }
        else if (IS("--threads")) threads = (int)parse_long(a, v, 1, 1024);
        else if (IS("-f") || IS("--file")) prompt_file = v;
        else if (IS("--ids")) ids_arg = v;
        else if (IS("--logits")) logits_path = v;
        else if (IS("--tokenize")) tokenize_path = v;
        else if (IS("--ppl")) ppl_path = v;
        else if (IS("--ctx")) window = (int)parse_long(a, v, 2, 1 << 20);
        else if (IS("--host")) host = v;
        else if (IS("--port")) port = (int)parse_long(a, v, 0, 65535);
        else if (IS("--parallel")) parallel = (int)parse_long(a, v, 1, 256);
        else if (IS("--timeout")) timeout = (int)parse_long(a, v, 1, 3600);
        else if (IS("--kv")) {
            if (!strcmp(v, "f32")) kv_type = GPT2_F32;
            else if (!strcmp(v, "f16")) kv_type = GPT2_F16;
            else die("--kv expects f32 or f16, got '%s'", v);
        }
#undef IS
    }
    if (!model_path) { usage(stderr); return 2; }
    if ((prompt_arg != NULL) + (prompt_file != NULL) + (ids_arg != NULL) > 1)
        die("give the prompt one way: as an argument, with -f, or with --ids");
    if (!seed_given) sp.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(clock_ms() * 1e3);

    kernels = getenv("GPT2_KERNELS");
    if (kernels && !*kernels) kernels = NULL;
    char err[GPT2_ERR_MAX];
    gpt2_model *model = gpt2_load(model_path, err, sizeof err);
    if (!model) die("%s", err);
    const gpt2_config *c = gpt2_model_config(model);

    if (window > c->n_ctx) die("--ctx %d is longer than the model's context of %d positions", window, c->n_ctx);
    if (serve) {
        if (prompt_arg || prompt_file || ids_arg || ppl_path || tokenize_path || run_bench) die("--serve takes no prompt or other mode");
        const char *base = strrchr(model_path, '/') ? strrchr(model_path, '/') + 1 : model_path;
        char name[256];
        snprintf(name, sizeof name, "%s", base);
        size_t n = strlen(name);
        if (n > 4 && !strcmp(name + n - 4, ".bin")) name[n - 4] = 0;
        int status = gpt2_serve(model, &(gpt2_serve_options){host, port, parallel, threads, name, quiet, timeout * 1000, kernels, kv_type});
        gpt2_free(model);
        return status;
    }
    if (ppl_path) {
        if (prompt_arg || prompt_file || ids_arg) die("--ppl reads its text from FILE; give no prompt");
        size_t len;
        char *text = read_all(ppl_path, &len);
        perplexity(model, ppl_path, text, len, window ? window : c->n_ctx, threads);
        free(text);
        gpt2_free(model);
        return 0;
    }
    if (tokenize_path) {
        size_t len, n;
        char *text = read_all(tokenize_path, &len);
        int *ids = gpt2_tokenize(model, text, len, allow_special ? GPT2_ALLOW_SPECIAL : 0, &n);
        if (!ids) die("out of memory");
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
        free(ids); free(text); gpt2_free(model);
        return 0;
    }

    /* the prompt, as token ids */
    char *text = NULL;
    size_t text_len = 0;
    int *tokens = NULL, n_tokens = 0;
    if (ids_arg) {
        tokens = parse_ids(ids_arg, c->vocab_size, c->n_ctx, &n_tokens);
    } else {
        if (prompt_file) text = read_all(prompt_file, &text_len);
        else if (prompt_arg) text = strdup(prompt_arg), text_len = strlen(prompt_arg);
        else text = calloc(1, 1);
        if (!text) die("out of memory");
        size_t valid = gpt2_utf8_valid_prefix(text, text_len);
        if (valid < text_len) die("the prompt is not valid UTF-8 (byte 0x%02x at offset %zu)", (unsigned char)text[valid], valid);
        size_t n;
        tokens = gpt2_tokenize(model, text, text_len, allow_special ? GPT2_ALLOW_SPECIAL : 0, &n);
        if (!tokens) die("out of memory");
        if (n > (size_t)c->n_ctx) die("the prompt is %zu tokens, longer than the model's context of %d", n, c->n_ctx);
        n_tokens = (int)n;
    }
    if (n_tokens == 0) {  /* nothing to condition on: start a new document, as GPT-2 was trained */
        int *eot = realloc(tokens, sizeof *eot);
        if (!eot) die("out of memory");
        tokens = eot;
        tokens[0] = c->eot_token;
        n_tokens = 1;
    }

    if (run_bench) {
        print_bench(model, model_path, threads, json);
        free(tokens); free(text); gpt2_free(model);
        return 0;
    }
    if (json) die("--json goes with --bench");

    FILE *logits_file = NULL;  /* opened before any work, so that a bad path fails at once */
    if (logits_path && !(logits_file = fopen(logits_path, "wb"))) die("%s: %s", logits_path, strerror(errno));
    int ctx_size = n_tokens + n_predict < c->n_ctx ? n_tokens + n_predict : c->n_ctx;
    gpt2_context *ctx = gpt2_context_new(model, &(gpt2_context_params){.n_ctx = ctx_size, .n_threads = threads, .kernels = kernels, .kv_type = kv_type},
                                         err, sizeof err);
    if (!ctx) die("%s", err);

    if (logits_path) {
        size_t count = (size_t)n_tokens * (size_t)c->vocab_size;
        float *logits = malloc(count * sizeof *logits);
        if (!logits) die("out of memory for %d x %d logits", n_tokens, c->vocab_size);
        gpt2_forward(ctx, tokens, n_tokens, logits);
        if (fwrite(logits, sizeof *logits, count, logits_file) != count || fclose(logits_file) != 0) die("%s: write failed", logits_path);
        free(logits);
        gpt2_context_rewind(ctx, 0);
        if (n_predict == 0) {
            gpt2_context_free(ctx); free(tokens); free(text); gpt2_free(model);
            return 0;
        }
    }

    gpt2_sampler *sampler = gpt2_sampler_new(model, &sp, err, sizeof err);
    if (!sampler) die("%s", err);
    if (text && !logits_path) print_text(NULL, text, text_len);  /* echo the prompt as given */
    gpt2_stats st;
    gpt2_generate(ctx, sampler, tokens, n_tokens, n_predict, ignore_eot, print_text, NULL, &st);
    putchar('\n');
    fflush(stdout);
    if (st.stop == GPT2_STOP_CONTEXT) fprintf(stderr, "gpt2: the context is full (%d positions); stopped\n", ctx_size);
    if (!quiet)
        fprintf(stderr, "load %.2f ms | prompt %d tokens, %.1f tok/s | generated %d tokens, %.1f tok/s | %d threads, %s | seed %llu\n",
                gpt2_model_load_ms(model), st.n_prompt, st.n_prompt / (st.prefill_ms / 1e3), st.n_generated,
                st.n_generated / (st.decode_ms > 0 ? st.decode_ms / 1e3 : 1), gpt2_context_threads(ctx), gpt2_context_kernels(ctx),
                (unsigned long long)sp.seed);
    gpt2_sampler_free(sampler);
    gpt2_context_free(ctx);
    free(tokens); free(text);
    gpt2_free(model);
    return 0;
}
