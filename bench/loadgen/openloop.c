/*
 * openloop: a fixed-rate (open-loop) HTTP/1.1 load generator that corrects for coordinated
 * omission.
 *
 * Why it exists: wrk is closed-loop (a connection sends its next request only after the previous
 * response), so a slow server quietly lowers the offered load and hides the queueing delay a real
 * client would see. Here every request has an *intended* send time on a fixed schedule
 * (rate / connections per connection, staggered across connections). Latency is measured from
 * that intended time, not from the moment the request actually left, so a stall is charged to
 * every request it delayed. The raw (uncorrected) latency is reported too, to show the difference.
 *
 * Single thread, epoll, non-blocking sockets, one request in flight per connection (no
 * pipelining), a timerfd with 1 ns timer slack for the schedule. Responses are framed by
 * Content-Length or chunked transfer-encoding; a response with `Connection: close` or an early EOF
 * makes the connection reconnect.
 *
 * Usage: openloop -a HOST -p PORT -u PATH -r RATE -c CONNS -d SECONDS [-g GRACE_SECONDS]
 * Prints one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 16384
#define READ_CHUNK 65536

enum phase { P_HEAD, P_BODY_LEN, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_CRLF, P_TRAILER };

struct conn {
    int fd;
    int busy;                /* a request is in flight */
    int close_after;         /* response said Connection: close */
    uint64_t k;              /* index of the next request on this connection's schedule */
    int64_t intended_ns;     /* intended send time of the in-flight request */
    int64_t sent_ns;         /* actual send time of the in-flight request */
    enum phase phase;
    char head[HEAD_MAX];
    size_t head_len;
    uint64_t remaining;      /* body or chunk bytes still expected */
    char line[64];           /* chunk-size or trailer line being assembled */
    size_t line_len;
    int status;
};

struct samples {
    int64_t *v;
    size_t n, cap;
};

static const char *g_host;
static int g_port;
static char g_request[1024];
static size_t g_request_len;
static int g_epfd;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void push(struct samples *s, int64_t v) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = realloc(s->v, s->cap * sizeof(int64_t));
        if (!s->v) {
            fprintf(stderr, "openloop: out of memory\n");
            exit(2);
        }
    }
    s->v[s->n++] = v;
}

static int cmp64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(struct samples *s, double p) {
    if (s->n == 0) return 0.0;
    size_t idx = (size_t)(p / 100.0 * (double)s->n);
    if (idx >= s->n) idx = s->n - 1;
    return (double)s->v[idx] / 1000.0;
}

static int connect_one(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    if (inet_pton(AF_INET, g_host, &sa.sin_addr) != 1) {
        fprintf(stderr, "openloop: bad address %s\n", g_host);
        exit(2);
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* RST on close: no TIME_WAIT pile-up */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    return fd;
}

static void reset_parser(struct conn *c) {
    c->phase = P_HEAD;
    c->head_len = 0;
    c->remaining = 0;
    c->line_len = 0;
    c->status = 0;
    c->close_after = 0;
}

static int attach(struct conn *c, int idx) {
    c->fd = connect_one();
    if (c->fd < 0) return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)idx};
    epoll_ctl(g_epfd, EPOLL_CTL_ADD, c->fd, &ev);
    reset_parser(c);
    return 0;
}

static void detach(struct conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(g_epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

/* The request is tiny, so a blocking-style full write on a fresh socket buffer succeeds. */
static int send_request(struct conn *c) {
    size_t off = 0;
    while (off < g_request_len) {
        ssize_t w = write(c->fd, g_request + off, g_request_len - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* Parse the header block; returns 0 on success, -1 on a malformed response. */
static int parse_head(struct conn *c) {
    c->head[c->head_len] = '\0';
    if (strncmp(c->head, "HTTP/1.", 7) != 0) return -1;
    c->status = atoi(c->head + 9);
    int chunked = 0;
    int64_t length = -1;
    char *line = strstr(c->head, "\r\n");
    while (line && line[2] != '\r') {
        line += 2;
        char *end = strstr(line, "\r\n");
        if (!end) break;
        char *colon = memchr(line, ':', (size_t)(end - line));
        if (colon) {
            size_t name_len = (size_t)(colon - line);
            char *val = colon + 1;
            while (*val == ' ' || *val == '\t') val++;
            size_t val_len = (size_t)(end - val);
            if (name_len == 14 && strncasecmp(line, "content-length", 14) == 0) {
                length = strtoll(val, NULL, 10);
            } else if (name_len == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
                if (val_len >= 7 && strncasecmp(val + val_len - 7, "chunked", 7) == 0) chunked = 1;
            } else if (name_len == 10 && strncasecmp(line, "connection", 10) == 0) {
                if (val_len >= 5 && strncasecmp(val, "close", 5) == 0) c->close_after = 1;
            }
        }
        line = end;
    }
    if (chunked) {
        c->phase = P_CHUNK_SIZE;
        c->line_len = 0;
    } else if (length >= 0) {
        c->phase = P_BODY_LEN;
        c->remaining = (uint64_t)length;
    } else {
        return -1; /* read-until-close bodies are not used by any scenario */
    }
    return 0;
}

/* Feed bytes; returns 1 when a full response was consumed, 0 if more is needed, -1 on error.
 * *used is set to the number of bytes consumed. */
static int feed(struct conn *c, const char *p, size_t n, size_t *used) {
    size_t i = 0;
    while (i < n) {
        switch (c->phase) {
        case P_HEAD: {
            while (i < n) {
                if (c->head_len >= HEAD_MAX - 1) return -1;
                c->head[c->head_len++] = p[i++];
                if (c->head_len >= 4 && memcmp(c->head + c->head_len - 4, "\r\n\r\n", 4) == 0) {
                    if (parse_head(c) < 0) return -1;
                    break;
                }
            }
            if (c->phase == P_BODY_LEN && c->remaining == 0) {
                *used = i;
                return 1;
            }
            break;
        }
        case P_BODY_LEN: {
            size_t take = n - i;
            if (take > c->remaining) take = (size_t)c->remaining;
            c->remaining -= take;
            i += take;
            if (c->remaining == 0) {
                *used = i;
                return 1;
            }
            break;
        }
        case P_CHUNK_SIZE:
        case P_TRAILER: {
            char ch = p[i++];
            if (c->line_len >= sizeof c->line - 1) {
                if (c->phase == P_CHUNK_SIZE) return -1;
                c->line_len = 0; /* long trailer line: only its end matters */
            }
            c->line[c->line_len++] = ch;
            if (c->line_len >= 2 && c->line[c->line_len - 2] == '\r' && ch == '\n') {
                if (c->phase == P_TRAILER) {
                    int empty = c->line_len == 2;
                    c->line_len = 0;
                    if (empty) {
                        *used = i;
                        return 1;
                    }
                    break;
                }
                c->line[c->line_len] = '\0';
                c->remaining = strtoull(c->line, NULL, 16);
                c->line_len = 0;
                c->phase = c->remaining == 0 ? P_TRAILER : P_CHUNK_DATA;
            }
            break;
        }
        case P_CHUNK_DATA: {
            size_t take = n - i;
            if (take > c->remaining) take = (size_t)c->remaining;
            c->remaining -= take;
            i += take;
            if (c->remaining == 0) {
                c->phase = P_CHUNK_CRLF;
                c->remaining = 2;
            }
            break;
        }
        case P_CHUNK_CRLF: {
            size_t take = n - i;
            if (take > c->remaining) take = (size_t)c->remaining;
            c->remaining -= take;
            i += take;
            if (c->remaining == 0) c->phase = P_CHUNK_SIZE;
            break;
        }
        }
    }
    *used = i;
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: openloop -a HOST -p PORT -u PATH -r RATE -c CONNS -d SECONDS [-g GRACE]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *path = "/";
    double rate = 0, duration = 0, grace = 5.0;
    int conns = 0, opt;
    g_host = "127.0.0.1";
    while ((opt = getopt(argc, argv, "a:p:u:r:c:d:g:")) != -1) {
        switch (opt) {
        case 'a': g_host = optarg; break;
        case 'p': g_port = atoi(optarg); break;
        case 'u': path = optarg; break;
        case 'r': rate = atof(optarg); break;
        case 'c': conns = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'g': grace = atof(optarg); break;
        default: usage();
        }
    }
    if (g_port <= 0 || rate <= 0 || conns <= 0 || duration <= 0) usage();
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    g_request_len = (size_t)snprintf(g_request, sizeof g_request,
                                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: openloop\r\n\r\n",
                                     path, g_host, g_port);

    g_epfd = epoll_create1(0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(g_epfd, EPOLL_CTL_ADD, tfd, &tev);

    struct conn *cs = calloc((size_t)conns, sizeof(struct conn));
    for (int i = 0; i < conns; i++) {
        if (attach(&cs[i], i) < 0) {
            fprintf(stderr, "openloop: connect to %s:%d failed: %s\n", g_host, g_port,
                    strerror(errno));
            return 1;
        }
    }

    const int64_t interval = (int64_t)(1e9 * conns / rate); /* per-connection period */
    const int64_t t0 = now_ns() + 1000000;                  /* 1 ms to settle */
    const int64_t t_end = t0 + (int64_t)(duration * 1e9);
    const int64_t t_give_up = t_end + (int64_t)(grace * 1e9);
    struct samples corrected = {0}, raw = {0}, lag = {0};
    uint64_t errors = 0, non2xx = 0, reconnects = 0, timeouts = 0, completed = 0;
    uint64_t bytes = 0;
    static char buf[READ_CHUNK];
    struct epoll_event events[256];

#define INTENDED(i, k) (t0 + (int64_t)(i) * interval / conns + (int64_t)(k) * interval)

    for (;;) {
        int64_t now = now_ns();
        /* Send every due request on idle connections; find the earliest future one. */
        int64_t next_due = INT64_MAX;
        int active = 0;
        for (int i = 0; i < conns; i++) {
            struct conn *c = &cs[i];
            int64_t due = INTENDED(i, c->k);
            if (c->busy) {
                active = 1;
                continue;
            }
            if (due >= t_end) continue;
            active = 1;
            if (now >= t_give_up) continue;
            if (due <= now) {
                if (c->fd < 0 && attach(c, i) < 0) {
                    errors++;
                    c->k++;
                    continue;
                }
                c->intended_ns = due;
                c->sent_ns = now;
                if (send_request(c) < 0) {
                    errors++;
                    detach(c);
                    c->k++;
                    continue;
                }
                c->busy = 1;
                push(&lag, now - due);
            } else if (due < next_due) {
                next_due = due;
            }
        }
        if (!active) break;
        if (now >= t_give_up) {
            /* Whatever is still owed is charged up to now, and counted as timed out. */
            for (int i = 0; i < conns; i++) {
                struct conn *c = &cs[i];
                while (INTENDED(i, c->k) < t_end) {
                    push(&corrected, now - INTENDED(i, c->k));
                    timeouts++;
                    c->k++;
                }
            }
            break;
        }
        if (next_due == INT64_MAX) next_due = t_give_up;
        struct itimerspec its = {.it_value = {.tv_sec = next_due / 1000000000LL,
                                              .tv_nsec = next_due % 1000000000LL}};
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        int n = epoll_wait(g_epfd, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int e = 0; e < n; e++) {
            uint32_t idx = events[e].data.u32;
            if (idx == UINT32_MAX) {
                uint64_t expirations;
                ssize_t r = read(tfd, &expirations, sizeof expirations);
                (void)r;
                continue;
            }
            struct conn *c = &cs[idx];
            if (c->fd < 0) continue;
            for (;;) {
                ssize_t r = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) {
                    /* EOF or error: a request in flight is lost. */
                    if (c->busy) {
                        errors++;
                        c->busy = 0;
                        c->k++;
                    }
                    detach(c);
                    reconnects++;
                    break;
                }
                bytes += (uint64_t)r;
                size_t off = 0;
                while (off < (size_t)r) {
                    size_t used = 0;
                    int done = feed(c, buf + off, (size_t)r - off, &used);
                    off += used;
                    if (done < 0 || !c->busy) {
                        errors++;
                        if (c->busy) {
                            c->busy = 0;
                            c->k++;
                        }
                        detach(c);
                        reconnects++;
                        break;
                    }
                    if (done == 1) {
                        int64_t t = now_ns();
                        push(&corrected, t - c->intended_ns);
                        push(&raw, t - c->sent_ns);
                        completed++;
                        if (c->status < 200 || c->status > 299) non2xx++;
                        c->busy = 0;
                        c->k++;
                        int must_close = c->close_after;
                        reset_parser(c);
                        if (must_close) {
                            detach(c);
                            reconnects++;
                            break;
                        }
                    }
                }
                if (c->fd < 0) break;
            }
        }
    }
    int64_t t_done = now_ns();
    /* Achieved rate: over the window, or longer if the backlog took longer to drain, so a peer
     * that cannot keep up shows a rate below the target. */
    double elapsed = (double)(t_done - t0) / 1e9;
    if (elapsed < duration) elapsed = duration;

    qsort(corrected.v, corrected.n, sizeof(int64_t), cmp64);
    qsort(raw.v, raw.n, sizeof(int64_t), cmp64);
    qsort(lag.v, lag.n, sizeof(int64_t), cmp64);
    double mean = 0;
    for (size_t i = 0; i < corrected.n; i++) mean += (double)corrected.v[i];
    mean = corrected.n ? mean / (double)corrected.n / 1000.0 : 0.0;
    printf("{\"rate\": %.1f, \"connections\": %d, \"duration_s\": %.3f, \"elapsed_s\": %.3f, "
           "\"completed\": %llu, \"errors\": %llu, \"timeouts\": %llu, \"non2xx\": %llu, "
           "\"reconnects\": %llu, \"bytes\": %llu, \"achieved_rps\": %.1f, "
           "\"latency_us\": {\"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, \"p999\": %.1f, "
           "\"max\": %.1f, \"mean\": %.1f}, "
           "\"uncorrected_us\": {\"p50\": %.1f, \"p99\": %.1f, \"p999\": %.1f}, "
           "\"send_lag_us\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f}}\n",
           rate, conns, duration, (double)(t_done - t0) / 1e9, (unsigned long long)completed,
           (unsigned long long)errors, (unsigned long long)timeouts, (unsigned long long)non2xx,
           (unsigned long long)reconnects, (unsigned long long)bytes,
           (double)completed / elapsed, pct_us(&corrected, 50), pct_us(&corrected, 90),
           pct_us(&corrected, 99), pct_us(&corrected, 99.9), pct_us(&corrected, 100), mean,
           pct_us(&raw, 50), pct_us(&raw, 99), pct_us(&raw, 99.9), pct_us(&lag, 50),
           pct_us(&lag, 99), pct_us(&lag, 100));
    for (int i = 0; i < conns; i++) detach(&cs[i]);
    return 0;
}
