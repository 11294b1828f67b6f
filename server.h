/* server.h — `gpt2 MODEL.bin --serve`: a web page and OpenAI's legacy completions API over HTTP.
 *
 * The server is part of the command-line program (main.c calls gpt2_serve), not of the engine:
 * gpt2.c knows nothing of sockets. It uses the engine through gpt2.h alone. */
#ifndef GPT2_SERVER_H
#define GPT2_SERVER_H

#include "gpt2.h"

typedef struct {
    const char *host;        /* address to listen on (default 127.0.0.1: this machine only) */
    int port;                /* 0: any free port (the URL printed says which) */
    int parallel;            /* generations at once; twice as many may wait, more get 503 */
    int threads;             /* threads of the pool every generation shares (0: all cores) */
    const char *model_name;  /* what /v1/models calls the model */
    int quiet;               /* no log line per request */
    int timeout_ms;          /* for a request to arrive once begun (0: 10 s); idle connections get 3 times it */
    const char *kernels;     /* NULL: the best this CPU runs */
    gpt2_dtype kv_type;      /* the KV caches': GPT2_F32 (default) or GPT2_F16 */
} gpt2_serve_options;

/* Serves until SIGINT or SIGTERM, then lets in-flight requests end and frees everything.
 * Returns 0, or 1 with a message on stderr if it cannot start. */
int gpt2_serve(const gpt2_model *model, const gpt2_serve_options *options);

/* ---- the request parsers, exposed for the fuzz target and the tests --------------------------- */

typedef struct {
    char method[16];
    char path[1024];         /* the target without its query string */
    int minor_version;       /* HTTP/1.x */
    long content_length;     /* -1 if absent */
    int keep_alive;          /* what the client asked for, with HTTP/1.x's default */
    int expect_continue;     /* Expect: 100-continue */
    int chunked;             /* Transfer-Encoding: chunked (not supported: 411) */
    size_t header_length;    /* bytes up to and including the blank line */
} http_request;

/* Parses a request head from buf[0, len). Returns 1 when complete (req filled), 0 if more bytes
 * are needed, or an HTTP status (400, 414, 417, 431, 505) for a request that cannot be served. */
int http_parse_request(const char *buf, size_t len, size_t max_header, http_request *req);

#endif /* GPT2_SERVER_H */
