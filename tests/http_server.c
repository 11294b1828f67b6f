/* http_server.c — a static file server for testing export/download.sh without a network.
 *
 *     build/http_server ROOT PREFIX
 *
 * Listens on 127.0.0.1 at a port the system picks and prints that port on stdout. Answers
 * GET PREFIX/NAME with ROOT/NAME, the way the HuggingFace hub answers
 * /REPO/resolve/main/NAME: small files directly, *.safetensors through a 302 redirect to
 * /cdn/NAME (the hub sends large files to its CDN, so the client must follow redirects).
 * NAME is a plain file name; anything else is 404. One request per connection, no Range
 * support. Exits after 120 seconds, so a test that dies never leaves it running.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define LIFETIME_SECONDS 120
#define REQUEST_MAX 8192

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void respond_status(int client, int code, const char *reason, const char *extra_header) {
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
                     code, reason, extra_header, strlen(reason) + 1, reason);
    write_all(client, head, (size_t)n);
}

static void respond_file(int client, const char *path) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        respond_status(client, 404, "Not Found", "");
        return;
    }
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %lld\r\n"
                     "Connection: close\r\n\r\n",
                     (long long)st.st_size);
    if (write_all(client, head, (size_t)n) == 0) {
        char buf[1 << 16];
        ssize_t r;
        while ((r = read(fd, buf, sizeof buf)) > 0)
            if (write_all(client, buf, (size_t)r) != 0) break;
    }
    close(fd);
}

/* A plain file name: no slashes, not "." or "..", nothing hidden. */
static int is_plain_name(const char *name) {
    return name[0] != 0 && name[0] != '.' && strchr(name, '/') == NULL && strchr(name, '\\') == NULL;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static void serve(int client, const char *root, const char *prefix) {
    char request[REQUEST_MAX + 1];
    size_t got = 0;
    while (got < REQUEST_MAX) {  /* the request head: up to the blank line */
        ssize_t r = read(client, request + got, REQUEST_MAX - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
        request[got] = 0;
        if (strstr(request, "\r\n\r\n")) break;
    }
    request[got] = 0;
    char method[16], target[4096];
    if (sscanf(request, "%15s %4095s", method, target) != 2) {
        respond_status(client, 400, "Bad Request", "");
        return;
    }
    if (strcmp(method, "GET") != 0) {
        respond_status(client, 405, "Method Not Allowed", "Allow: GET\r\n");
        return;
    }
    size_t prefix_len = strlen(prefix);
    char path[8192];
    if (strncmp(target, "/cdn/", 5) == 0 && is_plain_name(target + 5)) {
        snprintf(path, sizeof path, "%s/%s", root, target + 5);
        respond_file(client, path);
    } else if (strncmp(target, prefix, prefix_len) == 0 && is_plain_name(target + prefix_len)) {
        const char *name = target + prefix_len;
        if (ends_with(name, ".safetensors")) {
            char location[4200];
            snprintf(location, sizeof location, "Location: /cdn/%s\r\n", name);
            respond_status(client, 302, "Found", location);
        } else {
            snprintf(path, sizeof path, "%s/%s", root, name);
            respond_file(client, path);
        }
    } else {
        respond_status(client, 404, "Not Found", "");
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: http_server ROOT PREFIX\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);  /* a client that hangs up is not our failure */
    alarm(LIFETIME_SECONDS);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;  /* any free port */
    socklen_t len = sizeof addr;
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 16) != 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
        perror("http_server");
        return 1;
    }
    printf("%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    for (;;) {
        int client = accept(listener, NULL, NULL);
        if (client < 0) {
            if (errno == EINTR) continue;
            perror("http_server: accept");
            return 1;
        }
        serve(client, argv[1], argv[2]);
        close(client);
    }
}
