/* bench_builds: builds of the engine timed side by side, in one process.
 *
 *   bench_builds [--threads N] [--rounds R] MODEL.bin LIB.so LIB.so [LIB.so ...]
 *
 * On a shared machine the memory bandwidth, which sets decoding's pace, drifted 20-30% within
 * minutes, so two builds timed one after the other, even in alternating runs, differed by more
 * than the few percent between them. Here every build (a shared library of gpt2.c, e.g. the
 * native and the portable one) loads MODEL, and then they take turns, round after round, at
 * short pieces of work: a prompt of 128 tokens, then 16 tokens decoded after one; who goes
 * first moves each round. Drift then reaches every build alike. Prints each build's tokens/s,
 * the median of its rounds, and its ratio to the first build's.
 *
 * dlopen's RTLD_LOCAL keeps the builds' symbols apart: each library's gpt2_* functions are
 * looked up in it by name (the engine has no global state, so the copies do not meet). */
#define _POSIX_C_SOURCE 200809L  /* clock_gettime, dlopen */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../gpt2.h"

#define MAX_BUILDS 8
#define MAX_ROUNDS 1000
#define PROMPT 128  /* tokens of a prefill (fewer if the model's context is short) */
#define DECODED 16  /* tokens of a decode */

typedef struct {
    const char *path;
    void *lib;
    gpt2_model *model;
    const gpt2_config *config;
    gpt2_context *ctx;
    gpt2_sampler *greedy;
    void (*free_model)(gpt2_model *);
    void (*free_context)(gpt2_context *);
    void (*free_sampler)(gpt2_sampler *);
    void (*rewind)(gpt2_context *, int);
    const float *(*forward)(gpt2_context *, const int *, int, float *);
    int (*next)(gpt2_context *, gpt2_sampler *, int, gpt2_token_info *);
    int prompt, decoded;  /* PROMPT and DECODED, or what the model's context holds */
    double prefill[MAX_ROUNDS], decode[MAX_ROUNDS];  /* tokens/s of each round */
} Build;

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_builds: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static void *symbol(Build *b, const char *name) {
    void *p = dlsym(b->lib, name);
    if (!p) die("%s: no %s (is it a build of gpt2.c?)", b->path, name);
    return p;
}

static void open_build(Build *b, const char *model_path, int threads) {
    char err[GPT2_ERR_MAX];
    if (!(b->lib = dlopen(b->path, RTLD_NOW | RTLD_LOCAL))) die("%s", dlerror());
    gpt2_model *(*load)(const char *, char *, size_t) = symbol(b, "gpt2_load");
    gpt2_context *(*new_context)(const gpt2_model *, const gpt2_context_params *, char *, size_t) = symbol(b, "gpt2_context_new");
    gpt2_sampler *(*new_sampler)(const gpt2_model *, const gpt2_sampling *, char *, size_t) = symbol(b, "gpt2_sampler_new");
    b->free_model = symbol(b, "gpt2_free");
    b->free_context = symbol(b, "gpt2_context_free");
    b->free_sampler = symbol(b, "gpt2_sampler_free");
    b->rewind = symbol(b, "gpt2_context_rewind");
    b->forward = symbol(b, "gpt2_forward");
    b->next = symbol(b, "gpt2_next");
    if (!(b->model = load(model_path, err, sizeof err))) die("%s: %s", b->path, err);
    b->config = ((const gpt2_config *(*)(const gpt2_model *))symbol(b, "gpt2_model_config"))(b->model);
    const int n_ctx = b->config->n_ctx;
    if (n_ctx < 8) die("%s: the model's context is too short for a round", model_path);
    b->prompt = n_ctx >= PROMPT + DECODED + 2 ? PROMPT : n_ctx / 2;
    b->decoded = n_ctx >= PROMPT + DECODED + 2 ? DECODED : n_ctx / 4;
    if (!(b->ctx = new_context(b->model, &(gpt2_context_params){.n_ctx = b->prompt + b->decoded + 2, .n_threads = threads}, err, sizeof err)) ||
        !(b->greedy = new_sampler(b->model, &(gpt2_sampling){0}, err, sizeof err)))
        die("%s: %s", b->path, err);
}

/* One round of build b: its tokens/s prefilling `prompt`, and decoding after its first token. */
static bool run_round(Build *b, const int *prompt, int round) {
    b->rewind(b->ctx, 0);
    double t0 = now_s();
    if (!b->forward(b->ctx, prompt, b->prompt, NULL)) return false;
    b->prefill[round] = b->prompt / (now_s() - t0);
    b->rewind(b->ctx, 0);
    if (!b->forward(b->ctx, prompt, 1, NULL) || b->next(b->ctx, b->greedy, 0, NULL) < 0) return false;
    t0 = now_s();
    for (int i = 0; i < b->decoded; i++)
        if (b->next(b->ctx, b->greedy, 0, NULL) < 0) return false;
    b->decode[round] = b->decoded / (now_s() - t0);
    return true;
}

static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    int threads = 0, rounds = 30, argi = 1;
    for (; argi < argc && argv[argi][0] == '-'; argi += 2) {
        if (argi + 1 >= argc) die("%s needs a value", argv[argi]);
        char *end;
        long v = strtol(argv[argi + 1], &end, 10);
        if (*end || end == argv[argi + 1]) die("%s: not a number: %s", argv[argi], argv[argi + 1]);
        if (!strcmp(argv[argi], "--threads") && v >= 0 && v <= 1024) threads = (int)v;
        else if (!strcmp(argv[argi], "--rounds") && v >= 1 && v <= MAX_ROUNDS) rounds = (int)v;
        else die("unknown option or value out of range: %s %s", argv[argi], argv[argi + 1]);
    }
    const int n_builds = argc - argi - 1;
    if (n_builds < 1 || n_builds > MAX_BUILDS)
        die("usage: bench_builds [--threads N] [--rounds R] MODEL.bin LIB.so [LIB.so ...] (up to 8 builds)");
    static Build builds[MAX_BUILDS];
    for (int i = 0; i < n_builds; i++) {
        builds[i].path = argv[argi + 1 + i];
        open_build(&builds[i], argv[argi], threads);
    }
    int prompt[PROMPT];
    for (int i = 0; i < PROMPT; i++) prompt[i] = (int)((i * 7919L + 13) % builds[0].config->vocab_size);

    for (int i = 0; i < n_builds; i++)  /* a warm-up: faults the weights in */
        if (!run_round(&builds[i], prompt, 0)) die("%s: the forward pass failed", builds[i].path);
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < n_builds; k++) {
            Build *b = &builds[(k + r) % n_builds];
            if (!run_round(b, prompt, r)) die("%s: the forward pass failed", b->path);
        }

    const char *(*dtype_name)(gpt2_dtype) = symbol(&builds[0], "gpt2_dtype_name");
    gpt2_dtype (*model_dtype)(const gpt2_model *) = symbol(&builds[0], "gpt2_model_dtype");
    int (*context_threads)(const gpt2_context *) = symbol(&builds[0], "gpt2_context_threads");
    printf("%s: %s weights, %d threads, %d rounds of prefill %d and decode %d tokens; tokens/s (x the first build)\n", argv[argi],
           dtype_name(model_dtype(builds[0].model)), context_threads(builds[0].ctx), rounds, builds[0].prompt, builds[0].decoded);
    double prefill0 = 0, decode0 = 0;
    for (int i = 0; i < n_builds; i++) {
        Build *b = &builds[i];
        const double prefill = median(b->prefill, rounds), decode = median(b->decode, rounds);
        if (i == 0) prefill0 = prefill, decode0 = decode;
        const char *(*kernels)(const gpt2_context *) = symbol(b, "gpt2_context_kernels");
        printf("  %-36s %-11s prefill %8.1f (x%.3f)   decode %7.1f (x%.3f)\n", b->path, kernels(b->ctx), prefill, prefill / prefill0, decode,
               decode / decode0);
    }
    for (int i = 0; i < n_builds; i++) {
        builds[i].free_sampler(builds[i].greedy);
        builds[i].free_context(builds[i].ctx);
        builds[i].free_model(builds[i].model);
        dlclose(builds[i].lib);
    }
    return 0;
}
