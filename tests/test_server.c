/* `gpt2 --serve` over real sockets: every endpoint and parameter, the errors, concurrency.
 *
 *   test_server GPT2_BINARY MODEL.bin SCRATCH_DIR [VALGRIND_GPT2_BINARY]
 *
 * Starts the server on a free loopback port and checks:
 *   - /health, /v1/models, the page (self-contained: no external scripts, styles or fonts),
 *     CORS headers and preflight;
 *   - completions: greedy text = `gpt2 MODEL "PROMPT" -t 0`; logprobs (the chosen token's and
 *     the top alternatives, and with echo the prompt's) = log-softmax of the logits that
 *     `gpt2 --ids ... --logits` writes; text_offset; usage; seeds; every stop sequence cut
 *     exactly, in one request and streamed; streaming = non-streaming, [DONE] last; token-id
 *     prompts; max_tokens 0 with echo;
 *   - every kind of bad request: malformed HTTP, oversized headers (431) and bodies (413), no
 *     Content-Length (411), HTTP/2 (505), slow clients (408), bad JSON, wrong types,
 *     out-of-range values, unknown fields, prompts past the context: OpenAI-shaped errors;
 *   - a client that closes mid-request stops its generation (the log says 499) and the server
 *     goes on; 8 clients x 50 requests with no failure and no growth of memory; with one slot,
 *     a bounded queue and 503s;
 *   - SIGTERM: in-flight requests end, the process exits 0 (under valgrind: no leaks).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../export/json.h"

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (!(cond)) { printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); failures++; } } while (0)

static const char *gpt2_bin, *model, *scratch;
static int port;
static pid_t server_pid;
static char log_path[512];

/* ---- the server process -------------------------------------------------------------------- */

static void start_server(const char *binary, const char *extra, const char *wrapper) {
    char cmd[2048], out_path[512];
    snprintf(out_path, sizeof out_path, "%s/server.out", scratch);
    snprintf(log_path, sizeof log_path, "%s/server.log", scratch);
    remove(out_path);
    server_pid = fork();
    if (server_pid == 0) {
        snprintf(cmd, sizeof cmd, "exec %s %s %s --serve --port 0 --threads 2 %s >%s 2>%s", wrapper ? wrapper : "", binary, model,
                 extra ? extra : "", out_path, log_path);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 600 && port == 0; i++) {  /* up to a minute (valgrind is slow to start) */
        usleep(100000);
        FILE *f = fopen(out_path, "r");
        char line[512] = "";
        if (f && fgets(line, sizeof line, f)) {
            char *at = strstr(line, "http://127.0.0.1:");
            if (at) port = atoi(at + 17);
        }
        if (f) fclose(f);
    }
    if (!port) { printf("FAIL the server did not start (see %s)\n", log_path); exit(1); }
}

static int stop_server(void) {
    kill(server_pid, SIGTERM);
    int status = 0;
    waitpid(server_pid, &status, 0);
    port = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static long server_rss_kb(void) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", server_pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
    if (f) fclose(f);
    return kb;
}

/* ---- a minimal HTTP client --------------------------------------------------------------------- */

static int connect_server(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return -1; }
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

typedef struct { int status; char *head, *body; size_t body_len; } Response;

static void response_free(Response *r) { free(r->head); free(r->body); }

/* Sends raw bytes on a new connection and reads until the server closes it or a whole response
 * (by Content-Length) has come. */
static Response exchange(const char *raw, size_t n) {
    Response r = {0};
    int fd = connect_server();
    if (fd < 0) return r;
    if (n && send(fd, raw, n, MSG_NOSIGNAL) < 0) { close(fd); return r; }
    size_t cap = 1 << 16, have = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (have + 4096 > cap) buf = realloc(buf, cap *= 2);
        ssize_t got = recv(fd, buf + have, cap - have - 1, 0);
        if (got <= 0) break;
        have += (size_t)got;
        buf[have] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        char *cl = end ? strcasestr(buf, "Content-Length:") : NULL;
        if (end && cl && cl < end && have >= (size_t)(end + 4 - buf) + (size_t)atol(cl + 15)) break;
    }
    close(fd);
    buf[have] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (!end) { free(buf); return r; }
    r.status = atoi(buf + 9);
    r.head = strndup(buf, (size_t)(end - buf));
    r.body_len = have - (size_t)(end + 4 - buf);
    r.body = malloc(r.body_len + 1);
    memcpy(r.body, end + 4, r.body_len + 1);
    free(buf);
    return r;
}

static Response post(const char *path, const char *json) {
    char *req;
    int n = asprintf(&req, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     path, strlen(json), json);
    Response r = exchange(req, (size_t)n);
    free(req);
    return r;
}

static Response get(const char *path) {
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    return exchange(req, (size_t)n);
}

/* ---- JSON helpers ------------------------------------------------------------------------------- */

typedef struct { json_doc doc; const json_value *root; } Json;

static Json parse(const char *text, size_t n) {
    Json j = {0};
    char err[128];
    j.root = json_parse(text, n, &j.doc, err, sizeof err);
    return j;
}
static const json_value *path_get(const json_value *v, const char *path) {  /* "choices.0.text" */
    char key[64];
    while (v && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        if (v->type == JSON_ARRAY) {
            int i = atoi(key);
            for (v = v->first; v && i > 0; i--) v = v->next;
        } else v = json_get(v, key);
        path += n + (path[n] == '.');
    }
    return v;
}
static const char *str_at(const Json *j, const char *path) {
    const json_value *v = path_get(j->root, path);
    return v && v->type == JSON_STRING ? v->string : NULL;
}

/* ---- references from the command line -------------------------------------------------------------- */

static char *run(const char *cmd, size_t *len) {
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    for (size_t got; p && (got = fread(out + n, 1, cap - n - 1, p)) > 0;) {
        n += got;
        if (n + 1 >= cap) out = realloc(out, cap *= 2);
    }
    if (p) pclose(p);
    out[n] = 0;
    if (len) *len = n;
    return out;
}

/* The greedy continuation the CLI prints for prompt (without the prompt and the final newline). */
static char *cli_greedy(const char *prompt, int n) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s '%s' -n %d -t 0 -q", gpt2_bin, model, prompt, n);
    size_t len;
    char *out = run(cmd, &len);
    if (len && out[len - 1] == '\n') out[--len] = 0;
    memmove(out, out + strlen(prompt), len - strlen(prompt) + 1);
    return out;
}

/* log-softmax of the logits `gpt2 --ids ids --logits` writes, row t, token id. */
static float *cli_logits(const int *ids, int n, int *V) {
    char cmd[4096], path[512];
    snprintf(path, sizeof path, "%s/ref.f32", scratch);
    int off = snprintf(cmd, sizeof cmd, "%s %s -n 0 --logits %s --ids ", gpt2_bin, model, path);
    for (int i = 0; i < n; i++) off += snprintf(cmd + off, sizeof cmd - (size_t)off, i ? ",%d" : "%d", ids[i]);
    free(run(cmd, NULL));
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    *V = (int)(bytes / 4 / n);
    float *l = malloc((size_t)bytes);
    if (fread(l, 1, (size_t)bytes, f) != (size_t)bytes) { printf("FAIL reading %s\n", path); exit(1); }
    fclose(f);
    return l;
}
static double log_softmax(const float *row, int V, int id) {
    double max = row[0], z = 0;
    for (int v = 1; v < V; v++) if (row[v] > max) max = row[v];
    for (int v = 0; v < V; v++) z += exp(row[v] - max);
    return row[id] - max - log(z);
}

/* ---- the checks -------------------------------------------------------------------------------- */

static void test_endpoints(void) {
    Response r = get("/health");
    CHECK(r.status == 200 && strstr(r.body, "\"ok\""), "/health: %d %s", r.status, r.body);
    CHECK(r.head && strcasestr(r.head, "Access-Control-Allow-Origin: *"), "CORS header");
    response_free(&r);
    r = get("/v1/models");
    Json j = parse(r.body, r.body_len);
    CHECK(r.status == 200 && j.root && str_at(&j, "data.0.id") && !strcmp(str_at(&j, "object"), "list"), "/v1/models: %s", r.body);
    json_free(&j.doc);
    response_free(&r);
    r = get("/");
    CHECK(r.status == 200 && strcasestr(r.head, "text/html") && strstr(r.body, "<title>gpt2.c</title>"), "the page");
    CHECK(!strstr(r.body, "http://") && !strstr(r.body, "https://") && !strstr(r.body, "<link") && !strstr(r.body, "src="),
          "the page loads nothing from elsewhere");
    response_free(&r);
    const char *preflight = "OPTIONS /v1/completions HTTP/1.1\r\nHost: x\r\nOrigin: http://elsewhere\r\nConnection: close\r\n\r\n";
    r = exchange(preflight, strlen(preflight));
    CHECK(r.status == 204 && strcasestr(r.head, "Access-Control-Allow-Methods") && strcasestr(r.head, "Content-Type"),
          "CORS preflight: %d", r.status);
    response_free(&r);
}

static void test_greedy_and_logprobs(void) {
    const char *prompt = "Hello world, this is";
    char *want = cli_greedy(prompt, 12);
    char body[512];
    snprintf(body, sizeof body, "{\"model\":\"any\",\"prompt\":\"%s\",\"max_tokens\":12,\"temperature\":0,\"logprobs\":3}", prompt);
    Response r = post("/v1/completions", body);
    Json j = parse(r.body, r.body_len);
    const char *text = str_at(&j, "choices.0.text");
    CHECK(r.status == 200 && text && !strcmp(text, want), "greedy: '%s', the CLI says '%s'", text ? text : r.body, want);
    CHECK(!strcmp(str_at(&j, "object"), "text_completion") && !strncmp(str_at(&j, "id"), "cmpl-", 5), "object and id");
    const json_value *usage = path_get(j.root, "usage");
    CHECK(usage && json_get(usage, "completion_tokens")->integer + json_get(usage, "prompt_tokens")->integer ==
                       json_get(usage, "total_tokens")->integer, "usage adds up");
    /* each chosen token's logprob and alternatives = log-softmax of the CLI's logits */
    int ids[64], n = 0, V;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | %s %s --tokenize -", prompt, gpt2_bin, model);
    char *tok = run(cmd, NULL);
    for (char *p = tok; *p && n < 32;) { ids[n++] = (int)strtol(p, &p, 10); while (*p == ' ' || *p == '\n') p++; }
    free(tok);
    const int n_prompt = n;
    const json_value *lp = path_get(j.root, "choices.0.logprobs");
    const json_value *tokens = json_get(lp, "tokens"), *logprobs = json_get(lp, "token_logprobs"), *tops = json_get(lp, "top_logprobs");
    const json_value *offsets = json_get(lp, "text_offset");
    CHECK(tokens && tokens->count == 12 && logprobs->count == 12 && tops->count == 12 && offsets->count == 12, "12 logprobs entries");
    /* the chosen ids: greedy = the argmax, found from the logits of the growing sequence */
    float *logits = NULL;
    double worst = 0;
    size_t chars = strlen(prompt);
    const json_value *t = tokens->first, *l = logprobs->first, *top = tops->first, *o = offsets->first;
    for (int k = 0; k < 12 && t; k++, t = t->next, l = l->next, top = top->next, o = o->next) {
        free(logits);
        logits = cli_logits(ids, n, &V);
        const float *row = logits + (size_t)(n - 1) * V;
        int best = 0;
        for (int v = 1; v < V; v++) if (row[v] > row[best]) best = v;
        double d = fabs(l->number - log_softmax(row, V, best));
        if (d > worst) worst = d;
        CHECK(top->type == JSON_OBJECT && top->count >= 3, "top_logprobs %d has %zu entries", k, top->count);
        for (const json_value *alt = top->first; alt; alt = alt->next)
            CHECK(alt->number <= l->number + 1e-4, "an alternative more likely than the greedy choice");
        CHECK((size_t)o->integer == chars, "text_offset %d is %lld, expected %zu", k, (long long)o->integer, chars);
        chars += strlen(t->string);  /* (this model's tokens here are ASCII) */
        ids[n++] = best;
    }
    CHECK(worst < 1e-4, "logprobs differ from log-softmax of --logits by %g", worst);
    json_free(&j.doc);
    response_free(&r);

    /* echo: the prompt comes back first, its first token with no logprob, the rest predicted */
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":2,\"temperature\":0,\"logprobs\":1,\"echo\":true}", prompt);
    r = post("/v1/completions", body);
    j = parse(r.body, r.body_len);
    text = str_at(&j, "choices.0.text");
    CHECK(text && !strncmp(text, prompt, strlen(prompt)) && !strncmp(text + strlen(prompt), want, 3), "echo: '%s'", text ? text : "");
    lp = path_get(j.root, "choices.0.logprobs");
    CHECK(json_get(lp, "token_logprobs")->first->type == JSON_NULL && json_get(lp, "top_logprobs")->first->type == JSON_NULL,
          "echo: the first prompt token has no logprob");
    worst = 0;
    free(logits);
    logits = cli_logits(ids, n_prompt, &V);
    const json_value *e = json_get(lp, "token_logprobs")->first->next;
    for (int k = 1; k < n_prompt && e; k++, e = e->next) {
        double d = fabs(e->number - log_softmax(logits + (size_t)(k - 1) * V, V, ids[k]));
        if (d > worst) worst = d;
    }
    CHECK(worst < 1e-4, "echo: prompt logprobs differ from --logits by %g", worst);
    json_free(&j.doc);
    response_free(&r);
    free(logits);

    /* max_tokens 0 with echo: the prompt alone; a prompt of token ids */
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":0,\"echo\":true}", prompt);
    r = post("/v1/completions", body);
    j = parse(r.body, r.body_len);
    CHECK(str_at(&j, "choices.0.text") && !strcmp(str_at(&j, "choices.0.text"), prompt), "max_tokens 0, echo: the prompt");
    json_free(&j.doc);
    response_free(&r);
    snprintf(body, sizeof body, "{\"prompt\":[%d,%d,%d,%d,%d],\"max_tokens\":12,\"temperature\":0}", ids[0], ids[1], ids[2], ids[3], ids[4]);
    r = post("/v1/completions", body);
    j = parse(r.body, r.body_len);
    CHECK(str_at(&j, "choices.0.text") && !strcmp(str_at(&j, "choices.0.text"), want), "a prompt of token ids");
    json_free(&j.doc);
    response_free(&r);
    free(want);
}

/* The concatenated texts of a streamed completion; false if the stream is malformed. */
static bool stream_text(const char *body, char *out, size_t cap, int *n_chunks, const char **finish) {
    static char finish_reason[32];
    size_t len = 0;
    *n_chunks = 0, *finish = NULL;
    bool done = false;
    for (const char *p = body; *p;) {
        const char *end = strstr(p, "\n\n");
        if (!end || strncmp(p, "data: ", 6)) return false;
        if (done) return false;  /* nothing after [DONE] */
        if (!strncmp(p + 6, "[DONE]", 6)) done = true;
        else {
            Json j = parse(p + 6, (size_t)(end - p - 6));
            if (!j.root) return false;
            const char *t = str_at(&j, "choices.0.text");
            const json_value *f = path_get(j.root, "choices.0.finish_reason");
            if (t) {
                if (*finish) { json_free(&j.doc); return false; }  /* text after the finish */
                size_t n = strlen(t);
                if (len + n >= cap) { json_free(&j.doc); return false; }
                memcpy(out + len, t, n), len += n;
                (*n_chunks)++;
            }
            if (f && f->type == JSON_STRING) snprintf(finish_reason, sizeof finish_reason, "%s", f->string), *finish = finish_reason;
            json_free(&j.doc);
        }
        p = end + 2;
    }
    out[len] = 0;
    return done;
}

/* s[0, n) starts and ends on character boundaries (the text it is cut from is valid UTF-8). */
static bool whole_utf8(const char *s, size_t n) {
    if (((unsigned char)s[0] & 0xC0) == 0x80) return false;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (i + len > n) return false;
        i += len;
    }
    return true;
}

static void test_stream_and_stops(void) {
    const char *base = "{\"prompt\":\"Once upon a time\",\"max_tokens\":30,\"temperature\":1,\"top_k\":50,\"seed\":7";
    char body[1024], full[4096], streamed[4096];
    snprintf(body, sizeof body, "%s}", base);
    Response r = post("/v1/completions", body);
    Json j = parse(r.body, r.body_len);
    snprintf(full, sizeof full, "%s", str_at(&j, "choices.0.text") ? str_at(&j, "choices.0.text") : "");
    CHECK(r.status == 200 && strlen(full) > 20, "seeded sample: %s", r.body);
    json_free(&j.doc);
    response_free(&r);
    r = post("/v1/completions", body);
    j = parse(r.body, r.body_len);
    CHECK(str_at(&j, "choices.0.text") && !strcmp(str_at(&j, "choices.0.text"), full), "the same seed, the same text");
    json_free(&j.doc);
    response_free(&r);
    snprintf(body, sizeof body, "%s,\"stream\":true}", base);
    r = post("/v1/completions", body);
    int chunks;
    const char *finish;
    bool ok = stream_text(r.body, streamed, sizeof streamed, &chunks, &finish);
    CHECK(r.status == 200 && strcasestr(r.head, "text/event-stream") && ok, "stream is well formed");
    CHECK(!strcmp(streamed, full) && chunks >= 10 && finish && !strcmp(finish, "length"),
          "streamed = not streamed (%d chunks, finish %s)", chunks, finish ? finish : "none");
    response_free(&r);

    /* stop sequences: every cut point, in one request and streamed, alone and among 4 */
    const size_t n = strlen(full);
    int tried = 0;
    for (size_t at = 1; at + 2 < n; at += 3) {
        for (size_t len = 1; len <= 6 && at + len <= n; len += 5) {
            char stop[16], escaped[64], expect[4096];
            memcpy(stop, full + at, len), stop[len] = 0;
            if (!whole_utf8(stop, len)) continue;  /* a cut inside a character is no text to send */
            size_t first = (size_t)(strstr(full, stop) - full);  /* the first occurrence cuts */
            memcpy(expect, full, first), expect[first] = 0;
            size_t e = 0;
            for (size_t i = 0; i < len; i++) {
                if (stop[i] == '"' || stop[i] == '\\') escaped[e++] = '\\';
                if ((unsigned char)stop[i] < 0x20) { e += (size_t)sprintf(escaped + e, "\\u%04x", stop[i]); continue; }
                escaped[e++] = stop[i];
            }
            escaped[e] = 0;
            for (int streaming = 0; streaming <= 1; streaming++) {
                snprintf(body, sizeof body, "%s,\"stream\":%s,\"stop\":%s\"%s\"%s}", base, streaming ? "true" : "false",
                         tried % 2 ? "[\"zzzq\"," : "", escaped, tried % 2 ? ",\"qqqz\",\"\\u0001\"]" : "");
                r = post("/v1/completions", body);
                const char *got = NULL;
                if (streaming) {
                    stream_text(r.body, streamed, sizeof streamed, &chunks, &finish);
                    got = streamed;
                } else {
                    j = parse(r.body, r.body_len);
                    got = str_at(&j, "choices.0.text");
                    finish = str_at(&j, "choices.0.finish_reason");
                }
                CHECK(got && !strcmp(got, expect) && finish && !strcmp(finish, "stop"), "stop \"%s\" (%s): '%s', expected '%s'", stop,
                      streaming ? "streamed" : "one response", got ? got : r.body, expect);
                if (!streaming) json_free(&j.doc);
                response_free(&r);
            }
            tried++;
        }
    }
    printf("stop sequences: %d, each cut exactly, streamed and not\n", tried);

    snprintf(body, sizeof body, "%s,\"stream\":true,\"stream_options\":{\"include_usage\":true}}", base);
    r = post("/v1/completions", body);
    CHECK(strstr(r.body, "\"usage\":{\"prompt_tokens\":") && strstr(r.body, "\"choices\":[]"), "stream_options.include_usage");
    response_free(&r);
}

typedef struct { const char *raw; int status; const char *in_message; const char *param; } BadRequest;

static void test_errors(void) {
    static const BadRequest cases[] = {
        {"{\"prompt\":\"hi\",\"bogus\":1}", 400, "Unrecognized request argument supplied: bogus", NULL},
        {"{\"prompt\":\"hi\",\"temperature\":\"hot\"}", 400, "temperature must be a number", "temperature"},
        {"{\"prompt\":\"hi\",\"temperature\":2.5}", 400, "temperature must be in", "temperature"},
        {"{\"prompt\":\"hi\",\"temperature\":-1}", 400, "temperature", "temperature"},
        {"{\"prompt\":\"hi\",\"top_p\":1.5}", 400, "top_p", "top_p"},
        {"{\"prompt\":\"hi\",\"top_k\":-1}", 400, "top_k", "top_k"},
        {"{\"prompt\":\"hi\",\"top_k\":1.5}", 400, "integer", "top_k"},
        {"{\"prompt\":\"hi\",\"min_p\":2}", 400, "min_p", "min_p"},
        {"{\"prompt\":\"hi\",\"max_tokens\":-1}", 400, "max_tokens", "max_tokens"},
        {"{\"prompt\":\"hi\",\"max_tokens\":\"5\"}", 400, "max_tokens must be an integer", "max_tokens"},
        {"{\"prompt\":\"hi\",\"logprobs\":6}", 400, "logprobs", "logprobs"},
        {"{\"prompt\":\"hi\",\"n\":2}", 400, "one completion", "n"},
        {"{\"prompt\":\"hi\",\"best_of\":3}", 400, "one completion", "best_of"},
        {"{\"prompt\":\"hi\",\"stream\":\"yes\"}", 400, "stream must be a boolean", "stream"},
        {"{\"prompt\":\"hi\",\"echo\":1}", 400, "echo must be a boolean", "echo"},
        {"{\"prompt\":\"hi\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "at most 4", "stop"},
        {"{\"prompt\":\"hi\",\"stop\":[1]}", 400, "stop must be", "stop"},
        {"{\"prompt\":\"hi\",\"seed\":1.5}", 400, "seed must be an integer", "seed"},
        {"{\"prompt\":\"hi\",\"presence_penalty\":0.5}", 400, "not supported", "presence_penalty"},
        {"{\"prompt\":\"hi\",\"logit_bias\":{\"50256\":-100}}", 400, "not supported", "logit_bias"},
        {"{\"prompt\":\"hi\",\"stream_options\":{\"include_usage\":true}}", 400, "only allowed when stream", "stream_options"},
        {"{\"prompt\":[\"a\",\"b\"]}", 400, "prompt must be", "prompt"},
        {"{\"prompt\":[1,99999999]}", 400, "not an id", "prompt"},
        {"{\"prompt\":{}}", 400, "prompt must be a string or an array", "prompt"},
        {"{\"prompt\":\"hi\",\"max_tokens\":100000}", 400, "maximum context length", NULL},
        {"{\"prompt\":\"hi\"", 400, "could not parse the JSON", NULL},
        {"[1,2]", 400, "must be a JSON object", NULL},
        {"", 400, "could not parse", NULL},
        {"{\"prompt\":\"\\ud800\"}", 400, "could not parse", NULL},
        {"{\"prompt\":\"a\",\"prompt\":\"b\"}", 400, "could not parse", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Response r = post("/v1/completions", cases[i].raw);
        Json j = parse(r.body ? r.body : "", r.body_len);
        const char *message = str_at(&j, "error.message"), *type = str_at(&j, "error.type");
        const json_value *param = path_get(j.root, "error.param");
        CHECK(r.status == cases[i].status && message && strstr(message, cases[i].in_message) && type &&
              !strcmp(type, "invalid_request_error") &&
              (cases[i].param ? param && param->type == JSON_STRING && !strcmp(param->string, cases[i].param)
                              : param && param->type == JSON_NULL),
              "%s: %d %s", cases[i].raw, r.status, r.body ? r.body : "(nothing)");
        json_free(&j.doc);
        response_free(&r);
    }
    /* HTTP itself */
    char big[20000];
    memset(big, 'a', sizeof big);
    big[sizeof big - 1] = 0;
    struct { const char *what; char *raw; int status; } http[] = {
        {"no Host", strdup("GET /health HTTP/1.1\r\n\r\n"), 400},
        {"garbage", strdup("HELLO\r\n\r\n"), 400},
        {"lowercase method", strdup("get /health HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
        {"HTTP/2.0", strdup("GET /health HTTP/2.0\r\nHost: x\r\n\r\n"), 505},
        {"bad header line", strdup("GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"), 400},
        {"two Content-Lengths", strdup("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"), 400},
        {"POST without length", strdup("POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n{}"), 411},
        {"chunked", strdup("POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), 411},
        {"huge body", strdup("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"), 413},
        {"unknown path", strdup("GET /v2/other HTTP/1.1\r\nHost: x\r\n\r\n"), 404},
        {"wrong method", strdup("DELETE /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n"), 405},
        {"GET completions", strdup("GET /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n"), 405},
    };
    for (size_t i = 0; i < sizeof http / sizeof *http; i++) {
        Response r = exchange(http[i].raw, strlen(http[i].raw));
        CHECK(r.status == http[i].status && r.body && strstr(r.body, "\"error\""), "%s: %d", http[i].what, r.status);
        response_free(&r);
        free(http[i].raw);
    }
    Response icon = exchange("GET /favicon.ico HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 57);
    CHECK(icon.status == 204, "/favicon.ico: %d (no content, so browsers log no error)", icon.status);
    response_free(&icon);
    char *huge;
    int n = asprintf(&huge, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", big);
    Response r = exchange(huge, (size_t)n);
    CHECK(r.status == 431, "a 20 KB header: %d", r.status);
    response_free(&r);
    free(huge);
    /* a slow client: half a request, then silence past the timeout (1 s here) */
    r = exchange("GET /health HTTP/1.1\r\nHo", 24);
    CHECK(r.status == 408, "a request that stops arriving: %d", r.status);
    response_free(&r);
    /* keep-alive: two requests on one connection, and a pipelined pair */
    const char *two = "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd = connect_server();
    send(fd, two, strlen(two), MSG_NOSIGNAL);
    char buf[8192];
    size_t have = 0;
    for (ssize_t got; (got = recv(fd, buf + have, sizeof buf - 1 - have, 0)) > 0;) have += (size_t)got;
    buf[have] = 0;
    close(fd);
    CHECK(strstr(buf, "{\"status\":\"ok\"}") && strstr(buf, "\"object\":\"list\""), "two pipelined requests on one connection");
    printf("errors: %zu bad requests, %zu kinds of bad HTTP, a 431, a 408, keep-alive\n", sizeof cases / sizeof *cases,
           sizeof http / sizeof *http);
}

/* A client that sends a request and closes at once: the generation stops and the server goes on. */
static void test_disconnect(void) {
    char *body;
    int n = asprintf(&body, "{\"prompt\":\"%s\",\"max_tokens\":40,\"stream\":true}",
                     "one two three four five six seven eight nine ten eleven twelve");
    char *req;
    int m = asprintf(&req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, body);
    int fd = connect_server();
    send(fd, req, (size_t)m, MSG_NOSIGNAL);
    close(fd);
    free(req);
    free(body);
    usleep(300000);
    Response r = get("/health");
    CHECK(r.status == 200, "the server goes on after a client vanished");
    response_free(&r);
    /* the server logs the request (499) when it notices, at its next token: on a loaded
     * machine that can take longer than the wait above */
    size_t len = 0;
    char cmd[600], *log = NULL;
    snprintf(cmd, sizeof cmd, "grep ' 499 ' %s", log_path);
    for (int tries = 0; tries < 100 && len == 0; tries++) {
        if (log) usleep(100000);
        free(log);
        log = run(cmd, &len);
    }
    CHECK(len > 0 && !strstr(log, "+ 40 tokens"), "the vanished client's generation stopped early: %s", log);
    free(log);
}

typedef struct { int ok, failed, busy; } LoadResult;
static void *load_client(void *arg) {
    LoadResult *res = arg;
    for (int i = 0; i < 50; i++) {
        Response r = post("/v1/completions", "{\"prompt\":\"The king\",\"max_tokens\":8,\"temperature\":0.8}");
        Json j = parse(r.body ? r.body : "", r.body_len);
        if (r.status == 200 && str_at(&j, "choices.0.text")) res->ok++;
        else if (r.status == 503 && str_at(&j, "error.message")) res->busy++;
        else res->failed++;
        json_free(&j.doc);
        response_free(&r);
    }
    return NULL;
}

static void run_load(int clients, LoadResult *total) {
    pthread_t t[8];
    LoadResult res[8] = {{0}};
    for (int i = 0; i < clients; i++) pthread_create(&t[i], NULL, load_client, &res[i]);
    for (int i = 0; i < clients; i++) pthread_join(t[i], NULL);
    *total = (LoadResult){0};
    for (int i = 0; i < clients; i++) total->ok += res[i].ok, total->failed += res[i].failed, total->busy += res[i].busy;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) { fprintf(stderr, "usage: test_server GPT2_BINARY MODEL.bin SCRATCH_DIR [VALGRIND_GPT2]\n"); return 2; }
    gpt2_bin = argv[1], model = argv[2], scratch = argv[3];
    signal(SIGPIPE, SIG_IGN);

    start_server(gpt2_bin, "--timeout 1", NULL);
    test_endpoints();
    test_greedy_and_logprobs();
    test_stream_and_stops();
    test_errors();
    test_disconnect();
    /* 8 clients x 50 requests: no failures, no growth (after a first round has warmed every slot) */
    LoadResult load;
    run_load(8, &load);
    long before = server_rss_kb();
    run_load(8, &load);
    long after = server_rss_kb();
    CHECK(load.ok == 400 && load.failed == 0 && load.busy == 0, "8 x 50: %d ok, %d failed, %d busy", load.ok, load.failed, load.busy);
    if (!strstr(gpt2_bin, "-san"))  /* (AddressSanitizer holds freed memory in quarantine: RSS grows there) */
        CHECK(after - before < 2048, "memory grew from %ld to %ld KB over 400 requests", before, after);
    printf("load: 8 clients x 50 requests: %d ok; server RSS %ld KB before, %ld KB after\n", load.ok, before, after);
    CHECK(stop_server() == 0, "SIGTERM: exit status 0");

    /* one slot: a bounded queue, then 503 with an error body */
    start_server(gpt2_bin, "--parallel 1 -q", NULL);
    run_load(8, &load);
    CHECK(load.failed == 0 && load.ok + load.busy == 400 && load.ok > 0, "one slot: %d ok, %d busy, %d failed", load.ok, load.busy,
          load.failed);
    printf("one slot, 8 clients: %d served, %d told 503 (busy)\n", load.ok, load.busy);
    CHECK(stop_server() == 0, "SIGTERM: exit status 0");

    if (argc == 5) {  /* under valgrind: the requests that exercise most paths, then SIGTERM */
        char wrapper[256];
        snprintf(wrapper, sizeof wrapper, "valgrind -q --error-exitcode=3 --leak-check=full --errors-for-leak-kinds=definite,indirect");
        start_server(argv[4], "--timeout 1 --parallel 2", wrapper);
        Response r = post("/v1/completions", "{\"prompt\":\"Hi there\",\"max_tokens\":4,\"logprobs\":2,\"echo\":true,\"stop\":\"zz\"}");
        CHECK(r.status == 200, "valgrind: a completion");
        response_free(&r);
        r = post("/v1/completions", "{\"prompt\":\"Hi\",\"max_tokens\":4,\"stream\":true,\"logprobs\":1}");
        CHECK(r.status == 200, "valgrind: a stream");
        response_free(&r);
        r = post("/v1/completions", "{\"prompt\":\"Hi\",\"bogus\":true}");
        response_free(&r);
        r = get("/");
        response_free(&r);
        test_disconnect();
        int status = stop_server();
        CHECK(status == 0, "valgrind: exit status %d (3: memory errors or leaks; see %s)", status, log_path);
        if (status == 0) printf("valgrind: no memory errors or leaks in the server\n");
    }
    if (failures) { printf("test_server: %d of %d checks failed\n", failures, checks); return 1; }
    printf("test_server: ok, %d checks\n", checks);
    return 0;
}
