/*
 * floor: the least any WebSocket server can do for the fan-out benchmark, in C.
 *
 * What a tick costs a server on this machine when nothing but the unavoidable
 * is done: one epoll process (or N of them on one port with SO_REUSEPORT), the
 * same upgrade our load generator sends answered, and per tick ONE frame built
 * once and written to every subscribed socket with one send() each. Nothing
 * else: no token check, no JSON parsing beyond finding the tick's fields, no
 * per-client state but the socket and what the kernel would not take.
 *
 *   - listening: accept4() until EAGAIN; past the open-file limit, the next
 *     client gets "HTTP/1.1 503" (a reserved descriptor is freed for it), so the
 *     limit is a clear refusal, never a crash or a busy loop;
 *   - a client: reads the request head, answers 101 with the RFC 6455 accept
 *     key (SHA-1 + base64 of the client's key), sends {"type":"welcome"}; its
 *     first text frame (the subscribe) is answered {"type":"subscribed",...}
 *     and makes it a receiver; pings get pongs, a close is echoed;
 *   - the tick: one upstream WebSocket connection to the tick pump, subscribed
 *     to l2Book; each book becomes the gateway's orderbook message (best bid and
 *     ask, the book's time as data.timestamp, now as timestamp), framed once,
 *     and sent to every receiver. What a socket does not take waits in a
 *     per-client buffer (EPOLLOUT) and later ticks queue behind it; a client
 *     with more than 4 MiB waiting is dropped.
 *
 * Usage: floor --port P --upstream-port U [--host 127.0.0.1] [--depth 1]
 *              [--procs N] [--coin BTC]
 * Prints {"event":"ready","port":P,"procs":N} on stdout once every process is
 * listening and subscribed upstream. SIGTERM/SIGINT stop every process.
 *
 * Build: cc -O2 -o floor floor.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 8192
#define PENDING_MAX (4u << 20)
#define UPSTREAM_ID UINT32_MAX
#define LISTEN_ID (UINT32_MAX - 1)

static struct {
    const char *host;
    int port;
    int upstream_port;
    int depth;
    int procs;
    const char *coin;
} opt = {"127.0.0.1", 0, 0, 1, 1, "BTC"};

/* ---------------------------------------------------------------- SHA-1 (RFC 3174) */
typedef struct {
    uint32_t h[5];
    uint64_t len;
    unsigned char buf[64];
    size_t n;
} sha1_t;

#define ROL(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

static void sha1_block(sha1_t *s, const unsigned char *p) {
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
               p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else f = b ^ c ^ d, k = 0xCA62C1D6;
        uint32_t t = ROL(a, 5) + f + e + k + w[i];
        e = d, d = c, c = ROL(b, 30), b = a, a = t;
    }
    s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d, s->h[4] += e;
}

static void sha1_update(sha1_t *s, const void *data, size_t len) {
    const unsigned char *p = data;
    s->len += len;
    while (len--) {
        s->buf[s->n++] = *p++;
        if (s->n == 64) {
            sha1_block(s, s->buf);
            s->n = 0;
        }
    }
}

static void sha1(const void *data, size_t len, unsigned char out[20]) {
    sha1_t s = {{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}, 0, {0}, 0};
    sha1_update(&s, data, len);
    uint64_t bits = s.len * 8;
    unsigned char pad = 0x80, zero = 0;
    sha1_update(&s, &pad, 1);
    while (s.n != 56) sha1_update(&s, &zero, 1);
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_update(&s, lenbuf, 8);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (unsigned char)(s.h[i] >> (24 - 8 * j));
}

static void base64(const unsigned char *in, size_t len, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < len ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
    out[o] = 0;
}

/* ---------------------------------------------------------------- clients */
enum { C_FREE = 0, C_HEAD, C_OPEN };

typedef struct {
    int fd;
    uint8_t state;
    int32_t slot; /* index in `receivers`, or -1 */
    char *in;     /* the request head, then unparsed client frames */
    uint32_t in_len;
    char *out; /* what the socket did not take yet */
    uint32_t out_len, out_cap;
} client_t;

static client_t *clients; /* indexed by fd */
static int max_fds;
static int *receivers; /* fds of subscribed clients: the tick's loop walks this array */
static int n_receivers;
static int epfd, listen_fd, reserve_fd = -1;
static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
    (void)sig;
    stopping = 1;
}

static void receiver_remove(client_t *c) {
    if (c->slot < 0) return;
    int last = receivers[--n_receivers];
    receivers[c->slot] = last;
    clients[last].slot = c->slot;
    c->slot = -1;
}

static void client_close(int fd) {
    client_t *c = &clients[fd];
    receiver_remove(c);
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(c->in);
    free(c->out);
    memset(c, 0, sizeof *c);
    c->slot = -1;
}

static void want_writable(int fd, int on) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

/* Queue behind what is already waiting; returns 0 if the client had to be dropped. */
static int pend(int fd, const char *p, size_t len) {
    client_t *c = &clients[fd];
    if (c->out_len + len > PENDING_MAX) {
        client_close(fd);
        return 0;
    }
    if (c->out_len + len > c->out_cap) {
        uint32_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + len) cap *= 2;
        char *nb = realloc(c->out, cap);
        if (!nb) abort();
        c->out = nb;
        c->out_cap = cap;
    }
    if (c->out_len == 0) want_writable(fd, 1);
    memcpy(c->out + c->out_len, p, len);
    c->out_len += (uint32_t)len;
    return 1;
}

/* The hot path: one send() per client; what it does not take waits. */
static int client_send(int fd, const char *p, size_t len) {
    client_t *c = &clients[fd];
    if (c->out_len) return pend(fd, p, len);
    ssize_t w = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w == (ssize_t)len) return 1;
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            client_close(fd);
            return 0;
        }
        w = 0;
    }
    return pend(fd, p + w, len - (size_t)w);
}

static void client_drain(int fd) {
    client_t *c = &clients[fd];
    if (!c->out_len) return;
    ssize_t w = send(fd, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) client_close(fd);
        return;
    }
    memmove(c->out, c->out + w, c->out_len - (size_t)w);
    c->out_len -= (uint32_t)w;
    if (!c->out_len) want_writable(fd, 0);
}

static size_t frame_header(unsigned char *h, int opcode, size_t len) {
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

static void send_text(int fd, int opcode, const char *payload, size_t len) {
    char buf[256];
    if (len > sizeof buf - 10) return;
    size_t h = frame_header((unsigned char *)buf, opcode, len);
    memcpy(buf + h, payload, len);
    client_send(fd, buf, h + len);
}

static void on_upgrade(int fd, char *head) {
    char *key = NULL;
    for (char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "Sec-WebSocket-Key:", 18) == 0) {
            key = line + 20;
            while (*key == ' ') key++;
            break;
        }
    }
    if (!key || strncmp(head, "GET ", 4) != 0) {
        static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        (void)send(fd, bad, sizeof bad - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        client_close(fd);
        return;
    }
    size_t klen = strcspn(key, "\r\n ");
    char material[128];
    if (klen > 60) klen = 60;
    memcpy(material, key, klen);
    memcpy(material + klen, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    unsigned char digest[20];
    sha1(material, klen + 36, digest);
    char accept_key[32];
    base64(digest, 20, accept_key);
    char reply[256];
    int n = snprintf(reply, sizeof reply,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept_key);
    clients[fd].state = C_OPEN;
    if (!client_send(fd, reply, (size_t)n)) return;
    static const char welcome[] = "{\"type\":\"welcome\"}";
    send_text(fd, 1, welcome, sizeof welcome - 1);
}

/* Client frames (masked): the first text frame subscribes; ping -> pong; close -> echo. */
static void on_frames(int fd) {
    client_t *c = &clients[fd];
    uint32_t off = 0;
    while (c->in_len - off >= 6) {
        unsigned char *b = (unsigned char *)c->in + off;
        uint64_t len = b[1] & 0x7f;
        uint32_t h = 2;
        if (len == 126) {
            if (c->in_len - off < 8) break;
            len = (uint64_t)b[2] << 8 | b[3];
            h = 4;
        } else if (len == 127) {
            client_close(fd); /* nothing a subscribing client sends is that long */
            return;
        }
        if (!(b[1] & 0x80) || len > HEAD_MAX) {
            client_close(fd);
            return;
        }
        h += 4;
        if (c->in_len - off < h + len) break;
        unsigned char *mask = b + h - 4, *p = b + h;
        for (uint64_t i = 0; i < len; i++) p[i] ^= mask[i & 3];
        int op = b[0] & 0x0f;
        if (op == 1 && c->slot < 0) {
            static const char subscribed[] = "{\"type\":\"subscribed\",\"channel\":\"orderbook\"}";
            send_text(fd, 1, subscribed, sizeof subscribed - 1);
            if (clients[fd].state != C_OPEN) return;
            c->slot = n_receivers;
            receivers[n_receivers++] = fd;
        } else if (op == 9) {
            send_text(fd, 10, (const char *)p, (size_t)len);
        } else if (op == 8) {
            send_text(fd, 8, (const char *)p, len >= 2 ? 2 : 0);
            client_close(fd);
            return;
        }
        if (clients[fd].state != C_OPEN) return;
        off += h + (uint32_t)len;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void on_readable(int fd) {
    client_t *c = &clients[fd];
    if (!c->in) c->in = malloc(HEAD_MAX + 1);
    if (!c->in) abort();
    ssize_t r = recv(fd, c->in + c->in_len, HEAD_MAX - c->in_len, 0);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        client_close(fd);
        return;
    }
    c->in_len += (uint32_t)r;
    if (c->state == C_HEAD) {
        c->in[c->in_len] = 0;
        char *end = strstr(c->in, "\r\n\r\n");
        if (!end) {
            if (c->in_len >= HEAD_MAX) client_close(fd);
            return;
        }
        uint32_t body = (uint32_t)(end + 4 - c->in);
        *end = 0;
        on_upgrade(fd, c->in);
        if (clients[fd].state != C_OPEN) return;
        memmove(c->in, c->in + body, c->in_len - body);
        c->in_len -= body;
    }
    on_frames(fd);
    if (clients[fd].state == C_OPEN && c->in_len == 0) { /* idle: hold no input buffer */
        free(c->in);
        c->in = NULL;
    }
}

static void on_accept(void) {
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                /* At the open-file limit: free the reserve, say so, close, reserve again. */
                if (reserve_fd >= 0) close(reserve_fd);
                fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) {
                    static const char full[] =
                        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                        "Retry-After: 5\r\nConnection: close\r\n\r\n";
                    (void)send(fd, full, sizeof full - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
                    close(fd);
                }
                reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd >= 0) continue;
            }
            return;
        }
        if (fd >= max_fds) { /* cannot happen below RLIMIT_NOFILE; refuse rather than overflow */
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        client_t *c = &clients[fd];
        c->fd = fd;
        c->state = C_HEAD;
        c->slot = -1;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)fd};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

/* ---------------------------------------------------------------- the tick */
static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copy the first `depth` levels of one side ("[{"px":"1","sz":"2","n":3},...]") as [[px,sz],..]. */
static const char *side(const char *p, const char *end, char **out, int depth) {
    char *o = *out;
    *o++ = '[';
    for (int i = 0; i < depth; i++) {
        const char *px = memmem(p, (size_t)(end - p), "\"px\":\"", 6);
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!px || (close && close < px)) break;
        px += 6;
        const char *pe = memchr(px, '"', (size_t)(end - px));
        const char *sz = pe ? memmem(pe, (size_t)(end - pe), "\"sz\":\"", 6) : NULL;
        if (!sz) break;
        sz += 6;
        const char *se = memchr(sz, '"', (size_t)(end - sz));
        if (!se) break;
        o += sprintf(o, "%s[%.*s,%.*s]", i ? "," : "", (int)(pe - px), px, (int)(se - sz), sz);
        p = se;
    }
    *o++ = ']';
    *out = o;
    const char *close = memchr(p, ']', (size_t)(end - p));
    return close ? close + 1 : end;
}

static char *tick_buf;

static void on_book(const char *p, size_t len) {
    const char *end = p + len;
    const char *t = memmem(p, len, "\"time\":", 7);
    const char *lv = memmem(p, len, "\"levels\":[", 10);
    if (!t || !lv) return;
    long long book_time = strtoll(t + 7, NULL, 10);
    char *o = tick_buf + 10; /* room for the frame header */
    char *payload = o;
    o += sprintf(o,
                 "{\"type\":\"data\",\"channel\":\"orderbook\",\"params\":{\"depth\":%d,\"symbol\":\"%s\"},"
                 "\"data\":{\"symbol\":\"%s\",\"bids\":",
                 opt.depth, opt.coin, opt.coin);
    const char *q = side(lv + 10, end, &o, opt.depth);
    o += sprintf(o, ",\"asks\":");
    const char *second = memchr(q, '[', (size_t)(end - q));
    side(second ? second : end, end, &o, opt.depth);
    o += sprintf(o, ",\"timestamp\":%lld},\"timestamp\":%lld}", book_time, (long long)now_ms());
    size_t plen = (size_t)(o - payload);
    unsigned char h[10];
    size_t hl = frame_header(h, 1, plen);
    char *frame = payload - hl;
    memcpy(frame, h, hl);
    size_t flen = hl + plen;
    /* The floor: the same bytes to every receiver, one send() each. A client dropped
       here is swapped out of `receivers`, so walk from the end. */
    for (int i = n_receivers - 1; i >= 0; i--) {
        if (i >= n_receivers) continue;
        client_send(receivers[i], frame, flen);
    }
}

/* ---------------------------------------------------------------- upstream (the pump) */
static int up_fd = -1;
static char *up_buf;
static size_t up_len, up_cap = 1 << 20;
static int up_open, up_ready;

static void upstream_send(const char *payload, size_t len) {
    unsigned char frame[512];
    size_t h = frame_header(frame, 1, len);
    frame[1] |= 0x80;
    static const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    memcpy(frame + h, mask, 4);
    for (size_t i = 0; i < len; i++) frame[h + 4 + i] = (unsigned char)payload[i] ^ mask[i & 3];
    (void)send(up_fd, frame, h + 4 + len, MSG_NOSIGNAL);
}

static int upstream_connect(void) {
    up_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.upstream_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(up_fd, (struct sockaddr *)&a, sizeof a) < 0) return -1;
    int one = 1;
    setsockopt(up_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.upstream_port);
    if (send(up_fd, req, (size_t)n, MSG_NOSIGNAL) != n) return -1;
    fcntl(up_fd, F_SETFL, fcntl(up_fd, F_GETFL) | O_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UPSTREAM_ID};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, up_fd, &ev);
}

/* Returns -1 when the upstream is gone (the process then exits: the run is over). */
static int upstream_readable(void) {
    for (;;) {
        if (up_len == up_cap) return -1;
        ssize_t r = recv(up_fd, up_buf + up_len, up_cap - up_len, 0);
        if (r == 0) return -1;
        if (r < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        up_len += (size_t)r;
        size_t off = 0;
        if (!up_open) {
            char *end = memmem(up_buf, up_len, "\r\n\r\n", 4);
            if (!end) continue;
            if (strncmp(up_buf, "HTTP/1.1 101", 12) != 0) return -1;
            up_open = 1;
            off = (size_t)(end + 4 - up_buf);
            char sub[160];
            int n = snprintf(sub, sizeof sub,
                             "{\"method\":\"subscribe\",\"subscription\":{\"type\":\"l2Book\",\"coin\":\"%s\"}}",
                             opt.coin);
            upstream_send(sub, (size_t)n);
        }
        while (up_len - off >= 2) {
            unsigned char *b = (unsigned char *)up_buf + off;
            uint64_t len = b[1] & 0x7f;
            size_t h = 2;
            if (len == 126) {
                if (up_len - off < 4) break;
                len = (uint64_t)b[2] << 8 | b[3];
                h = 4;
            } else if (len == 127) {
                if (up_len - off < 10) break;
                len = 0;
                for (int i = 0; i < 8; i++) len = len << 8 | b[2 + i];
                h = 10;
            }
            if (len > up_cap / 2) return -1;
            if (up_len - off < h + len) break;
            const char *p = (const char *)b + h;
            int op = b[0] & 0x0f;
            if (op == 1) {
                if (memmem(p, len < 40 ? len : 40, "\"channel\":\"l2Book\"", 18)) on_book(p, (size_t)len);
                else if (!up_ready && memmem(p, len, "subscriptionResponse", 20)) up_ready = 1;
            } else if (op == 8) {
                return -1;
            }
            off += h + (size_t)len;
        }
        memmove(up_buf, up_buf + off, up_len - off);
        up_len -= off;
    }
}

/* ---------------------------------------------------------------- one process */
static int serve(int ready_pipe) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    max_fds = (int)(rl.rlim_cur > 4000000 ? 4000000 : rl.rlim_cur);
    clients = calloc((size_t)max_fds, sizeof *clients);
    receivers = calloc((size_t)max_fds, sizeof *receivers);
    up_buf = malloc(up_cap);
    tick_buf = malloc(65536);
    if (!clients || !receivers || !up_buf || !tick_buf) return 1;
    for (int i = 0; i < max_fds; i++) clients[i].slot = -1;
    reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, opt.host, &a.sin_addr);
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(listen_fd, 4096) < 0) {
        perror("floor: listen");
        return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = LISTEN_ID};
    epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev);
    if (upstream_connect() < 0) {
        perror("floor: upstream");
        return 1;
    }
    struct epoll_event evs[512];
    while (!stopping) {
        int k = epoll_wait(epfd, evs, 512, 200);
        for (int i = 0; i < k; i++) {
            uint32_t id = evs[i].data.u32;
            if (id == LISTEN_ID) {
                on_accept();
            } else if (id == UPSTREAM_ID) {
                if (upstream_readable() < 0) {
                    fprintf(stderr, "floor: upstream closed\n");
                    return 0;
                }
                if (up_ready == 1) {
                    up_ready = 2;
                    char c = 'r';
                    (void)write(ready_pipe, &c, 1);
                }
            } else {
                int fd = (int)id;
                if (clients[fd].state == C_FREE) continue;
                if (evs[i].events & EPOLLOUT) client_drain(fd);
                if (clients[fd].state != C_FREE && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                    on_readable(fd);
            }
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && ++i)
        if (ARG("--host")) opt.host = v;
        else if (ARG("--port")) opt.port = atoi(v);
        else if (ARG("--upstream-port")) opt.upstream_port = atoi(v);
        else if (ARG("--depth")) opt.depth = atoi(v);
        else if (ARG("--procs")) opt.procs = atoi(v);
        else if (ARG("--coin")) opt.coin = v;
        else {
            fprintf(stderr, "usage: floor --port P --upstream-port U [--host IP] [--depth D] [--procs N] [--coin C]\n");
            return 2;
        }
#undef ARG
    }
    if (opt.port <= 0 || opt.upstream_port <= 0 || opt.procs < 1 || opt.depth < 1 || opt.depth > 100) {
        fprintf(stderr, "floor: --port and --upstream-port are required (a fixed port: the processes share it)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int pipefd[2];
    if (pipe(pipefd) < 0) return 1;
    pid_t *kids = calloc((size_t)opt.procs, sizeof *kids);
    for (int i = 0; i < opt.procs; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            close(pipefd[0]);
            _exit(serve(pipefd[1]));
        }
        kids[i] = pid;
    }
    close(pipefd[1]);
    int ready = 0;
    char c;
    while (ready < opt.procs && !stopping && read(pipefd[0], &c, 1) == 1) ready++;
    if (ready == opt.procs) {
        printf("{\"event\":\"ready\",\"port\":%d,\"procs\":%d}\n", opt.port, opt.procs);
        fflush(stdout);
    }
    int status, code = 0;
    while (!stopping) {
        pid_t pid = wait(&status);
        if (pid < 0 && errno == EINTR) continue;
        if (pid > 0) code = 1; /* a process ended on its own: stop the rest */
        break;
    }
    for (int i = 0; i < opt.procs; i++) kill(kids[i], SIGTERM);
    while (wait(&status) > 0 || errno == EINTR) {
    }
    return code;
}
