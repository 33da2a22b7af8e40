/*
 * loadgen: a WebSocket fan-out load generator (one process, epoll, non-blocking).
 *
 * Opens N client connections to a WebSocket server, upgrades them (optionally
 * offering permessage-deflate), sends one masked subscribe text frame on each
 * (or several: --subscribe repeated, sent in order),
 * then counts what arrives, without parsing JSON:
 *   - data messages and bytes per second (a text frame whose payload starts
 *     with {"type":"data"; control replies such as welcome/subscribed are not
 *     counted as data);
 *   - latency: now - the first "timestamp": number of the payload (the
 *     orderbook data's own timestamp, which is the upstream l2Book `time` in
 *     ms), in microseconds, into a log-linear histogram;
 *   - broadcast completion: for each tick (one timestamp value), the spread
 *     between the first and the last reading client receiving it;
 *   - first receipt: for each tick, the first client's latency (the way from
 *     the pump through the server to one socket, without the fan-out's spread);
 *   - per-connection message counts (min / median / max: is anyone starved?);
 *   - its own CPU time (getrusage), so a run can show it is not the bottleneck.
 * Receiving (--io): "epoll" (level-triggered epoll_wait, then one recv() per ready
 * socket) or "uring" (an open connection's reads are one io_uring multishot recv
 * into a ring of provided buffers, the ring set up with DEFER_TASKRUN: the kernel
 * reads every ready socket in one io_uring_enter and the completions are taken
 * from shared memory, so a message costs no epoll_wait item and no recv syscall).
 * The clients stand in for remote machines: the cheaper their side of loopback,
 * the more of a tick's completion is the server's. Both count the same frames
 * with the same code (parse_frames); only how the bytes arrive differs.
 * Pings are answered with masked pongs. A completed tick's timestamp is sent as
 * an 8-byte datagram to a UDP feedback port (the tick pump's window, if any).
 *
 * Protocol with the harness: progress lines (JSON) on stderr; the line
 * {"event":"ready",...} once every connection is open and subscribed (or the
 * connect deadline passed); then "go\n" on stdin starts warmup + measurement
 * (phase "measure", then phase "slow" if slow consumers are configured); EOF on
 * stdin, or the end of the measurement, prints one JSON object on stdout and
 * exits.
 *
 * Build: cc -O2 -o loadgen loadgen.c -lz
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#if defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#define HAVE_URING 1
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#endif
#endif
#ifndef NO_ZLIB
#include <zlib.h>
#endif

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ---------------------------------------------------------------- options */
#define MAX_SUBSCRIBE 8
static struct {
    const char *host;
    int port;
    const char *path;
    int n;
    double warmup;
    double duration;
    const char *subscribe[MAX_SUBSCRIBE];
    int n_subscribe; /* --subscribe given so far: the first replaces the default */
    int deflate;
    int slow;
    double slow_after;
    int slow_rcvbuf;
    int feedback_port;
    int src_first;
    int per_src;
    int concurrency;
    double connect_timeout;
    double max_seconds;
    int sample;
    int ctrl_frames;
    int autogo;
    int detail;
    int uring; /* --io uring: multishot recv on io_uring for open connections */
} opt = {
    .host = "127.0.0.1",
    .port = 8080,
    .path = "/ws",
    .n = 100,
    .warmup = 2.0,
    .duration = 5.0,
    .subscribe[0] = "{\"type\":\"subscribe\",\"channel\":\"orderbook\",\"params\":{\"depth\":1,\"symbol\":\"BTC\"}}",
    .deflate = 0,
    .slow = 0,
    .slow_after = 5.0,
    .slow_rcvbuf = 0,
    .feedback_port = 0,
    .src_first = 2,
    .per_src = 10000,
    .concurrency = 200,
    .connect_timeout = 60.0,
    .max_seconds = 600.0,
    .sample = 64,
    .ctrl_frames = 2,
};

/* ---------------------------------------------------------------- time */
static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------------- histogram */
#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define HBUCKETS (SUB * 48)

typedef struct {
    uint64_t b[HBUCKETS];
    uint64_t count;
    uint64_t negative;
    double sum;
    int64_t max;
} hist_t;

static int hidx(uint64_t v) {
    if (v < SUB) return (int)v;
    int e = 63 - __builtin_clzll(v);
    int idx = (e - SUB_BITS + 1) * SUB + (int)((v >> (e - SUB_BITS)) & (SUB - 1));
    return idx < HBUCKETS ? idx : HBUCKETS - 1;
}

static double hmid(int idx) {
    if (idx < SUB) return idx;
    int e = idx / SUB + SUB_BITS - 1;
    int m = idx % SUB;
    double lower = (double)((uint64_t)(SUB + m) << (e - SUB_BITS));
    double width = (double)((uint64_t)1 << (e - SUB_BITS));
    return lower + width / 2;
}

static void hadd(hist_t *h, int64_t v) {
    if (v < 0) {
        h->negative++;
        v = 0;
    }
    h->b[hidx((uint64_t)v)]++;
    h->count++;
    h->sum += (double)v;
    if (v > h->max) h->max = v;
}

static double hpct(const hist_t *h, double q) {
    if (h->count == 0) return 0;
    uint64_t want = (uint64_t)(q * (double)h->count);
    if (want >= h->count) want = h->count - 1;
    uint64_t seen = 0;
    for (int i = 0; i < HBUCKETS; i++) {
        seen += h->b[i];
        if (seen > want) {
            double mid = hmid(i);
            return mid > (double)h->max ? (double)h->max : mid;
        }
    }
    return (double)h->max;
}

/* ---------------------------------------------------------------- phases */
enum { PH_CONNECT = 0, PH_WARMUP, PH_MEASURE, PH_SLOW, PH_DONE };
static const char *phase_names[] = {"connect", "warmup", "measure", "slow", "done"};

typedef struct {
    int used;
    double t_start, t_end;
    double cpu_start, cpu_end;
    uint64_t msgs, ctrl, bytes, wire_bytes, compressed_frames, other_frames;
    uint64_t ticks_complete, ticks_incomplete, ticks_open_at_end;
    uint64_t pings, disconnects;
    hist_t lat, comp, first; /* first: per tick, the first client's latency */
    uint64_t *conn_start; /* per-connection data message count at phase start */
    uint64_t conn_min, conn_p50, conn_max;
} phase_t;

static phase_t phases[PH_DONE + 1];
static int phase = PH_CONNECT;

/* ---------------------------------------------------------------- connections */
enum { C_IDLE = 0, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_CLOSED };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t slow;
    uint8_t sampled;
    uint8_t deflate;
    uint8_t nctx; /* server_no_context_takeover negotiated */
    uint8_t subscribed;
    uint8_t reading;
    uint8_t counted; /* counts in `expected` */
    uint8_t armed;   /* --io uring: a multishot recv is in flight for this socket */
    uint32_t text_frames;
    uint64_t msgs;
    char *carry;
    uint32_t carry_len, carry_cap;
#ifndef NO_ZLIB
    z_stream *zs;
#else
    void *zs; /* always NULL: compressed frames are counted, never inflated */
#endif
} conn_t;

static conn_t *conns;
static int epfd;
static int n_started, n_inflight, n_open, n_failed, n_subscribed, n_closed;
static int n_deflate, n_nctx;
static int expected; /* reading, subscribed, open (and sampled, in deflate mode) connections */
static int fb_fd = -1;
static char *rbuf;
static size_t rbuf_cap = 1 << 20;
static unsigned char *zbuf;
static size_t zbuf_cap = 1 << 20;
static uint64_t close_codes[5000];
static uint64_t close_other;
static uint64_t fail_errno[140];
static uint64_t fail_http;
static uint64_t fail_eof;
static uint64_t fail_status[600]; /* refusals by HTTP status (a full server's 503, ...) */
static uint64_t total_msgs;
static double t_begin, t_ready = -1, t_go = -1;
static int sampling; /* deflate mode: only sampled connections feed latency/completion */

static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
}

/* ---------------------------------------------------------------- ticks */
#define RING (1 << 16)
typedef struct {
    int64_t ts;
    int64_t first, last;
    uint32_t count;
    uint8_t done;
    uint8_t phase; /* phase of the first receipt */
} tick_t;
static tick_t ring[RING];

static void tick_finish(tick_t *t, int complete) {
    if (t->done || t->ts == 0) return;
    t->done = 1;
    phase_t *p = &phases[t->phase];
    if (t->phase == PH_MEASURE || t->phase == PH_SLOW) {
        if (complete) {
            p->ticks_complete++;
            hadd(&p->comp, t->last - t->first);
            hadd(&p->first, t->first - t->ts * 1000);
        } else {
            p->ticks_incomplete++;
        }
    }
    if (complete && fb_fd >= 0) {
        int64_t ts = t->ts;
        (void)send(fb_fd, &ts, sizeof ts, MSG_DONTWAIT);
    }
}

static void tick_seen(int64_t ts, int64_t now) {
    tick_t *t = &ring[(uint64_t)ts & (RING - 1)];
    if (t->ts != ts) {
        tick_finish(t, 0);
        t->ts = ts;
        t->first = t->last = now;
        t->count = 0;
        t->done = 0;
        t->phase = (uint8_t)phase;
    }
    t->count++;
    t->last = now;
    if (!t->done && (int)t->count >= expected) tick_finish(t, 1);
}

/* ---------------------------------------------------------------- helpers */
static void set_expected(conn_t *c) {
    int want = c->state == C_OPEN && c->subscribed && c->reading && (!sampling || c->sampled);
    if (want && !c->counted) {
        c->counted = 1;
        expected++;
    } else if (!want && c->counted) {
        c->counted = 0;
        expected--;
    }
}

static void conn_close(conn_t *c, int failed) {
    if (c->state == C_CLOSED) return;
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE) {
        n_inflight--;
        if (failed) n_failed++;
    } else if (c->state == C_OPEN) {
        n_open--;
        if (c->subscribed) n_subscribed--;
        phases[phase].disconnects++;
    }
    c->state = C_CLOSED;
    n_closed++;
    set_expected(c);
    if (c->fd >= 0) {
        /* An armed multishot recv holds its own reference to the socket: a shutdown
           ends it (its last completion comes back without F_MORE and is ignored). */
        if (c->armed) shutdown(c->fd, SHUT_RDWR);
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    free(c->carry);
    c->carry = NULL;
    c->carry_len = c->carry_cap = 0;
#ifndef NO_ZLIB
    if (c->zs) {
        inflateEnd(c->zs);
        free(c->zs);
        c->zs = NULL;
    }
#endif
}

/* A masked client frame. Small frames only (control replies, subscribe). */
static void send_frame(conn_t *c, int opcode, const void *payload, size_t len) {
    unsigned char frame[1024];
    size_t h = 0;
    if (len > sizeof frame - 14) return;
    frame[h++] = (unsigned char)(0x80 | opcode);
    if (len < 126) {
        frame[h++] = (unsigned char)(0x80 | len);
    } else {
        frame[h++] = 0x80 | 126;
        frame[h++] = (unsigned char)(len >> 8);
        frame[h++] = (unsigned char)(len & 0xff);
    }
    uint32_t r = (uint32_t)rand();
    unsigned char mask[4] = {(unsigned char)r, (unsigned char)(r >> 8), (unsigned char)(r >> 16),
                             (unsigned char)(r >> 24)};
    memcpy(frame + h, mask, 4);
    h += 4;
    const unsigned char *p = payload;
    for (size_t i = 0; i < len; i++) frame[h + i] = p[i] ^ mask[i & 3];
    /* Best effort: a client frame this small only fails if the socket is dead. */
    (void)send(c->fd, frame, h + len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void start_connect(int i);

static void fill_connects(void) {
    while (n_started < opt.n && n_inflight < opt.concurrency) start_connect(n_started++);
}

static void start_connect(int i) {
    conn_t *c = &conns[i];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (errno < 140) fail_errno[errno]++;
        n_failed++;
        c->state = C_CLOSED;
        n_closed++;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->slow && opt.slow_rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &opt.slow_rcvbuf, sizeof opt.slow_rcvbuf);
    if (opt.src_first > 0) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        int k = opt.src_first + i / opt.per_src;
        src.sin_addr.s_addr = htonl((127u << 24) | (uint32_t)(k & 0xffffff));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            /* fall back to the default source address */
        }
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, opt.host, &dst.sin_addr);
    c->fd = fd;
    c->state = C_CONNECTING;
    n_inflight++;
    int rc = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    if (rc < 0 && errno != EINPROGRESS) {
        if (errno < 140) fail_errno[errno]++;
        conn_close(c, 1);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void send_request(conn_t *c) {
    char req[4096];
    int len = snprintf(req, sizeof req,
                       "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n%s\r\n",
                       opt.path, opt.host, opt.port,
                       opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate; "
                                     "server_no_context_takeover; client_no_context_takeover\r\n"
                                   : "");
    if (send(c->fd, req, (size_t)len, MSG_NOSIGNAL) != len) {
        if (errno < 140) fail_errno[errno]++;
        conn_close(c, 1);
        return;
    }
    c->state = C_HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void carry_set(conn_t *c, const char *p, size_t len) {
    if (len > c->carry_cap) {
        size_t cap = len < 256 ? 256 : len;
        char *nb = realloc(c->carry, cap);
        if (!nb) abort();
        c->carry = nb;
        c->carry_cap = (uint32_t)cap;
    }
    memmove(c->carry, p, len);
    c->carry_len = (uint32_t)len;
    if (len == 0 && c->carry_cap > 4096) {
        free(c->carry);
        c->carry = NULL;
        c->carry_cap = 0;
    }
}

static int64_t find_ts(const char *p, size_t len) {
    static const char key[] = "\"timestamp\":";
    const char *hit = memmem(p, len, key, sizeof key - 1);
    if (!hit) return -1;
    const char *q = hit + sizeof key - 1;
    const char *end = p + len;
    while (q < end && *q == ' ') q++;
    int64_t v = 0;
    int digits = 0;
    while (q < end && *q >= '0' && *q <= '9') {
        v = v * 10 + (*q - '0');
        q++;
        digits++;
    }
    return digits ? v : -1;
}

static int is_data(const char *p, size_t len) {
    static const char key[] = "\"type\":\"data\"";
    size_t look = len < 48 ? len : 48;
    return memmem(p, look, key, sizeof key - 1) != NULL;
}

static void on_data_message(conn_t *c, const char *p, size_t len, int64_t now, int parsed) {
    phase_t *ph = &phases[phase];
    c->msgs++;
    total_msgs++;
    ph->msgs++;
    ph->bytes += len;
    if (!parsed) return;
    int64_t ts = find_ts(p, len);
    if (ts <= 0) return;
    if (phase == PH_MEASURE || phase == PH_SLOW) hadd(&ph->lat, now - ts * 1000);
    if (c->counted) tick_seen(ts, now);
}

static void on_text(conn_t *c, const char *p, size_t len, int rsv1, int64_t now) {
    phase_t *ph = &phases[phase];
    c->text_frames++;
    if (rsv1) {
        ph->compressed_frames++;
        if (!c->zs) {
            /* Not inflated: the first ctrl_frames text frames are the replies. */
            if (c->text_frames <= (uint32_t)opt.ctrl_frames) {
                ph->ctrl++;
                if (c->text_frames == (uint32_t)opt.ctrl_frames && !c->subscribed) {
                    c->subscribed = 1;
                    n_subscribed++;
                    set_expected(c);
                }
                return;
            }
            on_data_message(c, p, len, now, 0);
            return;
        }
#ifndef NO_ZLIB
        static const unsigned char tail[4] = {0, 0, 0xff, 0xff};
        c->zs->next_in = (unsigned char *)p;
        c->zs->avail_in = (uInt)len;
        c->zs->next_out = zbuf;
        c->zs->avail_out = (uInt)zbuf_cap;
        int rc = inflate(c->zs, Z_SYNC_FLUSH);
        if (rc == Z_OK || rc == Z_BUF_ERROR) {
            c->zs->next_in = (unsigned char *)tail;
            c->zs->avail_in = 4;
            rc = inflate(c->zs, Z_SYNC_FLUSH);
        }
        size_t outlen = zbuf_cap - c->zs->avail_out;
        if (c->nctx) inflateReset(c->zs);
        if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END) {
            ph->other_frames++;
            return;
        }
        p = (const char *)zbuf;
        len = outlen;
#endif
    }
    if (is_data(p, len)) {
        on_data_message(c, p, len, now, 1);
    } else {
        ph->ctrl++;
        if (!c->subscribed && memmem(p, len, "\"type\":\"subscribed\"", 19)) {
            c->subscribed = 1;
            n_subscribed++;
            set_expected(c);
        }
    }
}

/* Parse frames in buf[0..len); returns bytes consumed. */
static size_t parse_frames(conn_t *c, char *buf, size_t len, int64_t now) {
    size_t off = 0;
    phase_t *ph = &phases[phase];
    while (len - off >= 2) {
        unsigned char b0 = (unsigned char)buf[off], b1 = (unsigned char)buf[off + 1];
        size_t h = 2;
        uint64_t plen = b1 & 0x7f;
        if (plen == 126) {
            if (len - off < 4) break;
            plen = ((uint64_t)(unsigned char)buf[off + 2] << 8) | (unsigned char)buf[off + 3];
            h = 4;
        } else if (plen == 127) {
            if (len - off < 10) break;
            plen = 0;
            for (int k = 0; k < 8; k++) plen = (plen << 8) | (unsigned char)buf[off + 2 + k];
            h = 10;
        }
        int masked = b1 & 0x80;
        if (masked) h += 4;
        if (plen > rbuf_cap / 2) { /* absurd: protocol error */
            conn_close(c, 0);
            return len;
        }
        if (len - off < h + plen) break;
        char *payload = buf + off + h;
        if (masked) {
            unsigned char *mk = (unsigned char *)buf + off + h - 4;
            for (uint64_t k = 0; k < plen; k++) payload[k] ^= (char)mk[k & 3];
        }
        int op = b0 & 0x0f;
        ph->wire_bytes += h + plen;
        switch (op) {
            case 1:
                on_text(c, payload, (size_t)plen, b0 & 0x40, now);
                break;
            case 9:
                ph->pings++;
                send_frame(c, 10, payload, (size_t)plen);
                break;
            case 10:
                break;
            case 8: {
                int code = plen >= 2 ? (((unsigned char)payload[0] << 8) | (unsigned char)payload[1])
                                     : 1005;
                if (code >= 0 && code < 5000)
                    close_codes[code]++;
                else
                    close_other++;
                unsigned char reply[2] = {(unsigned char)(code >> 8), (unsigned char)code};
                send_frame(c, 8, reply, 2);
                conn_close(c, 0);
                return len;
            }
            default:
                ph->other_frames++;
                break;
        }
        off += h + plen;
    }
    return off;
}

static void on_handshake(conn_t *c, int64_t now) {
    size_t have = c->carry_len;
    if (have) memcpy(rbuf, c->carry, have);
    ssize_t r = recv(c->fd, rbuf + have, rbuf_cap - have - 1, 0);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (r < 0 && errno < 140) fail_errno[errno]++;
        if (r == 0) fail_eof++; /* closed without an answer */
        conn_close(c, 1);
        return;
    }
    have += (size_t)r;
    rbuf[have] = 0;
    char *end = memmem(rbuf, have, "\r\n\r\n", 4);
    if (!end) {
        if (have > 8192) {
            fail_http++;
            conn_close(c, 1);
            return;
        }
        carry_set(c, rbuf, have);
        return;
    }
    if (strncmp(rbuf, "HTTP/1.1 101", 12) != 0) {
        int status = strncmp(rbuf, "HTTP/1.", 7) == 0 ? atoi(rbuf + 9) : 0;
        if (status > 0 && status < 600) fail_status[status]++;
        fail_http++;
        conn_close(c, 1);
        return;
    }
    *end = 0;
    for (char *q = rbuf; *q; q++) *q = (*q >= 'A' && *q <= 'Z') ? (char)(*q + 32) : *q;
    char *ext = strstr(rbuf, "sec-websocket-extensions:");
    if (ext) {
        char *eol = strstr(ext, "\r\n");
        if (eol) *eol = 0;
        if (strstr(ext, "permessage-deflate")) {
            c->deflate = 1;
            n_deflate++;
            if (strstr(ext, "server_no_context_takeover")) {
                c->nctx = 1;
                n_nctx++;
            }
        }
        if (eol) *eol = '\r';
    }
#ifndef NO_ZLIB
    if (c->deflate && c->sampled) {
        c->zs = calloc(1, sizeof *c->zs);
        if (!c->zs || inflateInit2(c->zs, -15) != Z_OK) abort();
    }
#endif
    c->state = C_OPEN;
    n_inflight--;
    n_open++;
    size_t body = (size_t)(end + 4 - rbuf);
    for (int s = 0; s < MAX_SUBSCRIBE && opt.subscribe[s]; s++)
        send_frame(c, 1, opt.subscribe[s], strlen(opt.subscribe[s]));
    size_t rest = have - body;
    if (rest) {
        memmove(rbuf, rbuf + body, rest);
        size_t used = parse_frames(c, rbuf, rest, now);
        if (c->state == C_OPEN) carry_set(c, rbuf + used, rest - used);
    } else {
        carry_set(c, rbuf, 0);
    }
    fill_connects();
}

static void on_readable(conn_t *c, int64_t now) {
    size_t have = c->carry_len;
    if (have) memcpy(rbuf, c->carry, have);
    ssize_t r = recv(c->fd, rbuf + have, rbuf_cap - have, 0);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        close_other++;
        conn_close(c, 0);
        return;
    }
    have += (size_t)r;
    size_t used = parse_frames(c, rbuf, have, now);
    if (c->state == C_OPEN) carry_set(c, rbuf + used, have - used);
}


/* ---------------------------------------------------------------- io_uring (--io uring) */
#ifdef HAVE_URING
#define UR_SQ 4096
#define UR_CQ 65536
#define UR_BUFS 16384 /* provided buffers (a power of two) */
#define UR_BUFSZ 4096
#define UR_EPOLL UINT64_MAX /* user_data of the multishot poll on the epoll fd */

static struct {
    int fd;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array, sq_entries;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    unsigned sq_local_tail; /* queued, not yet published */
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned short br_tail;
    int epoll_armed;
} ur = {.fd = -1};
static uint64_t ur_rearms, ur_nobufs, ur_enters;

static int ur_enter(unsigned to_submit, unsigned min_complete, unsigned flags, void *arg, size_t argsz) {
    return (int)syscall(__NR_io_uring_enter, ur.fd, to_submit, min_complete, flags, arg, argsz);
}

static void ur_buf_give(unsigned short bid) {
    struct io_uring_buf *b = &ur.br->bufs[ur.br_tail & (UR_BUFS - 1)];
    b->addr = (uint64_t)(uintptr_t)(ur.bufs + (size_t)bid * UR_BUFSZ);
    b->len = UR_BUFSZ;
    b->bid = bid;
    ur.br_tail++;
    __atomic_store_n(&ur.br->tail, ur.br_tail, __ATOMIC_RELEASE);
}

static struct io_uring_sqe *ur_sqe(void) {
    unsigned head = __atomic_load_n(ur.sq_head, __ATOMIC_ACQUIRE);
    if (ur.sq_local_tail - head >= ur.sq_entries) {
        /* Full: hand what is queued to the kernel first. */
        ur_enter(ur.sq_local_tail - head, 0, 0, NULL, 0);
    }
    unsigned idx = ur.sq_local_tail & *ur.sq_mask;
    struct io_uring_sqe *sqe = &ur.sqes[idx];
    memset(sqe, 0, sizeof *sqe);
    ur.sq_array[idx] = idx;
    ur.sq_local_tail++;
    __atomic_store_n(ur.sq_tail, ur.sq_local_tail, __ATOMIC_RELEASE);
    return sqe;
}

static void ur_arm(conn_t *c) {
    struct io_uring_sqe *sqe = ur_sqe();
    sqe->opcode = IORING_OP_RECV;
    sqe->fd = c->fd;
    sqe->ioprio = IORING_RECV_MULTISHOT;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    sqe->user_data = (uint64_t)(c - conns);
    c->armed = 1;
}

static void ur_arm_epoll(void) {
    struct io_uring_sqe *sqe = ur_sqe();
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = epfd;
    sqe->poll32_events = EPOLLIN;
    sqe->len = IORING_POLL_ADD_MULTI;
    sqe->user_data = UR_EPOLL;
    ur.epoll_armed = 1;
}

/* 0 if the ring is set up (else the caller receives with epoll). */
static int ur_setup(void) {
    struct io_uring_params pr;
    memset(&pr, 0, sizeof pr);
    pr.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    pr.cq_entries = UR_CQ;
    ur.fd = (int)syscall(__NR_io_uring_setup, UR_SQ, &pr);
    if (ur.fd < 0) return -1;
    size_t sq_sz = pr.sq_off.array + pr.sq_entries * sizeof(unsigned);
    size_t cq_sz = pr.cq_off.cqes + pr.cq_entries * sizeof(struct io_uring_cqe);
    if (pr.features & IORING_FEAT_SINGLE_MMAP) sq_sz = cq_sz = sq_sz > cq_sz ? sq_sz : cq_sz;
    char *sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ur.fd, IORING_OFF_SQ_RING);
    if (sq == MAP_FAILED) return -1;
    char *cq = sq;
    if (!(pr.features & IORING_FEAT_SINGLE_MMAP)) {
        cq = mmap(NULL, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ur.fd, IORING_OFF_CQ_RING);
        if (cq == MAP_FAILED) return -1;
    }
    ur.sqes = mmap(NULL, pr.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, ur.fd, IORING_OFF_SQES);
    if (ur.sqes == MAP_FAILED) return -1;
    ur.sq_head = (unsigned *)(sq + pr.sq_off.head);
    ur.sq_tail = (unsigned *)(sq + pr.sq_off.tail);
    ur.sq_mask = (unsigned *)(sq + pr.sq_off.ring_mask);
    ur.sq_array = (unsigned *)(sq + pr.sq_off.array);
    ur.sq_entries = pr.sq_entries;
    ur.sq_local_tail = *ur.sq_tail;
    ur.cq_head = (unsigned *)(cq + pr.cq_off.head);
    ur.cq_tail = (unsigned *)(cq + pr.cq_off.tail);
    ur.cq_mask = (unsigned *)(cq + pr.cq_off.ring_mask);
    ur.cqes = (struct io_uring_cqe *)(cq + pr.cq_off.cqes);
    size_t br_sz = UR_BUFS * sizeof(struct io_uring_buf);
    ur.br = mmap(NULL, br_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ur.bufs = malloc((size_t)UR_BUFS * UR_BUFSZ);
    if (ur.br == MAP_FAILED || !ur.bufs) return -1;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)ur.br;
    reg.ring_entries = UR_BUFS;
    reg.bgid = 0;
    if (syscall(__NR_io_uring_register, ur.fd, IORING_REGISTER_PBUF_RING, &reg, 1) < 0) return -1;
    ur.br_tail = 0;
    for (unsigned i = 0; i < UR_BUFS; i++) ur_buf_give((unsigned short)i);
    ur_arm_epoll();
    return 0;
}

/* Bytes a multishot recv put into a provided buffer: the same parsing as on_readable. */
static void ur_data(conn_t *c, char *data, size_t n, int64_t now) {
    if (c->carry_len) {
        size_t have = c->carry_len;
        memcpy(rbuf, c->carry, have);
        memcpy(rbuf + have, data, n);
        have += n;
        size_t used = parse_frames(c, rbuf, have, now);
        if (c->state == C_OPEN) carry_set(c, rbuf + used, have - used);
        return;
    }
    size_t used = parse_frames(c, data, n, now);
    if (c->state == C_OPEN && used < n) carry_set(c, data + used, n - used);
}

static int handle_epoll(struct epoll_event *evs, int k, double now);

/* Submits what is queued, waits up to timeout_ms for a completion (the kernel runs the
   deferred receives of every ready socket meanwhile), and handles every completion.
   Returns what handle_epoll returned (nonzero: the run is over). */
static int ur_poll(int timeout_ms, struct epoll_event *evs, int maxev) {
    struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (timeout_ms % 1000) * 1000000L};
    struct io_uring_getevents_arg arg = {.ts = (uint64_t)(uintptr_t)&ts};
    unsigned head = *ur.cq_head;
    /* Wait only if nothing is there yet; GETEVENTS always (it runs the deferred receives). */
    unsigned wait = __atomic_load_n(ur.cq_tail, __ATOMIC_ACQUIRE) == head ? 1 : 0;
    unsigned pending = ur.sq_local_tail - __atomic_load_n(ur.sq_head, __ATOMIC_ACQUIRE);
    int rc = ur_enter(pending, wait, IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, &arg, sizeof arg);
    ur_enters++;
    if (rc < 0 && errno != ETIME && errno != EINTR && errno != EBUSY && errno != EAGAIN)
        out("{\"event\":\"error\",\"message\":\"io_uring_enter: %s\"}\n", strerror(errno));
    double now = mono();
    int epoll_ready = 0;
    for (;;) {
        unsigned tail = __atomic_load_n(ur.cq_tail, __ATOMIC_ACQUIRE);
        if (head == tail) break;
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &ur.cqes[head & *ur.cq_mask];
            uint64_t ud = cqe->user_data;
            int res = cqe->res;
            uint32_t fl = cqe->flags;
            if (ud == UR_EPOLL) {
                epoll_ready = 1;
                if (!(fl & IORING_CQE_F_MORE)) ur.epoll_armed = 0;
                continue;
            }
            conn_t *c = &conns[ud];
            if (!(fl & IORING_CQE_F_MORE)) c->armed = 0;
            if (fl & IORING_CQE_F_BUFFER) {
                unsigned short bid = (unsigned short)(fl >> IORING_CQE_BUFFER_SHIFT);
                if (res > 0 && c->state == C_OPEN && c->reading)
                    ur_data(c, ur.bufs + (size_t)bid * UR_BUFSZ, (size_t)res, wall_us());
                ur_buf_give(bid);
            }
            if (c->state != C_OPEN) continue;
            if (res == -ENOBUFS) { /* every buffer was taken: read again once they are back */
                ur_nobufs++;
                if (!c->armed) {
                    ur_rearms++;
                    ur_arm(c);
                }
            } else if (res == 0 || (res < 0 && res != -EAGAIN && res != -EINTR)) {
                close_other++;
                conn_close(c, 0);
            } else if (!c->armed) {
                ur_rearms++;
                ur_arm(c);
            }
        }
        __atomic_store_n(ur.cq_head, head, __ATOMIC_RELEASE);
    }
    if (!ur.epoll_armed) ur_arm_epoll();
    if (epoll_ready) {
        int k = epoll_wait(epfd, evs, maxev, 0);
        if (k > 0) return handle_epoll(evs, k, now);
    }
    return 0;
}

/* An open, reading connection: from epoll to a multishot recv. */
static void ur_adopt(conn_t *c) {
    if (ur.fd < 0 || c->state != C_OPEN || c->armed || !c->reading) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    ur_arm(c);
}
#else
static struct { int fd; } ur = {.fd = -1};
static uint64_t ur_rearms, ur_nobufs, ur_enters;
static int ur_setup(void) { return -1; }
static void ur_adopt(conn_t *c) { (void)c; }
#endif

/* ---------------------------------------------------------------- phases */
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void phase_begin(int p, double now) {
    phase = p;
    phase_t *ph = &phases[p];
    ph->used = 1;
    ph->t_start = now;
    ph->cpu_start = cpu_seconds();
    if (p == PH_MEASURE || p == PH_SLOW) {
        ph->conn_start = calloc((size_t)opt.n, sizeof(uint64_t));
        for (int i = 0; i < opt.n; i++) ph->conn_start[i] = conns[i].msgs;
    }
}

static void phase_end(int p, double now) {
    phase_t *ph = &phases[p];
    if (!ph->used || ph->t_end > 0) return;
    ph->t_end = now;
    ph->cpu_end = cpu_seconds();
    if (ph->conn_start) {
        uint64_t *v = malloc(sizeof(uint64_t) * (size_t)opt.n);
        int k = 0;
        for (int i = 0; i < opt.n; i++) {
            if (conns[i].slow && p == PH_SLOW) continue;
            v[k++] = conns[i].msgs - ph->conn_start[i];
        }
        if (k) {
            qsort(v, (size_t)k, sizeof *v, cmp_u64);
            ph->conn_min = v[0];
            ph->conn_p50 = v[k / 2];
            ph->conn_max = v[k - 1];
        }
        free(v);
    }
}

static void stop_slow_readers(void) {
    for (int i = 0; i < opt.n; i++) {
        conn_t *c = &conns[i];
        if (!c->slow || c->state != C_OPEN) continue;
        c->reading = 0;
        set_expected(c);
        struct epoll_event ev = {.events = EPOLLRDHUP, .data.u32 = (uint32_t)i};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void print_hist(FILE *f, const char *name, const hist_t *h) {
    fprintf(f,
            "\"%s\":{\"count\":%llu,\"negative\":%llu,\"mean\":%.1f,\"p50\":%.1f,\"p90\":%.1f,"
            "\"p99\":%.1f,\"p999\":%.1f,\"max\":%lld}",
            name, (unsigned long long)h->count, (unsigned long long)h->negative,
            h->count ? h->sum / (double)h->count : 0.0, hpct(h, 0.50), hpct(h, 0.90),
            hpct(h, 0.99), hpct(h, 0.999), (long long)h->max);
}

/* --detail: the nonzero buckets [index, count], so that several processes' histograms
   can be added up exactly (the harness knows the bucket layout: SUB_BITS). */
static void print_buckets(FILE *f, const char *name, const hist_t *h) {
    fprintf(f, "\"%s\":[", name);
    int first = 1;
    for (int i = 0; i < HBUCKETS; i++)
        if (h->b[i]) {
            fprintf(f, "%s[%d,%llu]", first ? "" : ",", i, (unsigned long long)h->b[i]);
            first = 0;
        }
    fputc(']', f);
}

static void report(void) {
    double now = mono();
    for (int p = PH_CONNECT; p < PH_DONE; p++) phase_end(p, now);
    /* Ticks still being delivered when the run ends are neither complete nor lost. */
    for (int i = 0; i < RING; i++)
        if (ring[i].ts && !ring[i].done) {
            ring[i].done = 1;
            phases[ring[i].phase].ticks_open_at_end++;
        }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    FILE *f = stdout;
    fprintf(f,
            "{\"n\":%d,\"open\":%d,\"subscribed\":%d,\"failed\":%d,\"fail_http\":%llu,"
            "\"connect_seconds\":%.3f,\"deflate_negotiated\":%d,\"server_no_context_takeover\":%d,"
            "\"expected_readers\":%d,\"total_msgs\":%llu,\"cpu_seconds\":%.3f,\"maxrss_kb\":%ld,"
            "\"io\":\"%s\",\"uring_rearms\":%llu,\"uring_nobufs\":%llu,\"uring_enters\":%llu,",
            opt.n, n_open, n_subscribed, n_failed, (unsigned long long)fail_http,
            t_ready > 0 ? t_ready - t_begin : now - t_begin, n_deflate, n_nctx, expected,
            (unsigned long long)total_msgs, cpu_seconds(), ru.ru_maxrss, opt.uring ? "uring" : "epoll",
            (unsigned long long)ur_rearms, (unsigned long long)ur_nobufs, (unsigned long long)ur_enters);
    fprintf(f, "\"fail_errno\":{");
    int first = 1;
    for (int e = 0; e < 140; e++)
        if (fail_errno[e]) {
            fprintf(f, "%s\"%s\":%llu", first ? "" : ",", strerrorname_np(e) ? strerrorname_np(e) : "?",
                    (unsigned long long)fail_errno[e]);
            first = 0;
        }
    fprintf(f, "},\"fail_eof\":%llu,\"fail_status\":{", (unsigned long long)fail_eof);
    first = 1;
    for (int code = 0; code < 600; code++)
        if (fail_status[code]) {
            fprintf(f, "%s\"%d\":%llu", first ? "" : ",", code, (unsigned long long)fail_status[code]);
            first = 0;
        }
    fprintf(f, "},\"close_codes\":{");
    first = 1;
    for (int code = 0; code < 5000; code++)
        if (close_codes[code]) {
            fprintf(f, "%s\"%d\":%llu", first ? "" : ",", code, (unsigned long long)close_codes[code]);
            first = 0;
        }
    fprintf(f, "},\"closed_without_close_frame\":%llu,\"phases\":{", (unsigned long long)close_other);
    first = 1;
    for (int p = PH_WARMUP; p < PH_DONE; p++) {
        phase_t *ph = &phases[p];
        if (!ph->used) continue;
        double secs = ph->t_end - ph->t_start;
        double cpu = ph->cpu_end - ph->cpu_start;
        fprintf(f,
                "%s\"%s\":{\"seconds\":%.3f,\"msgs\":%llu,\"msgs_per_s\":%.1f,\"ctrl\":%llu,"
                "\"bytes\":%llu,\"wire_bytes\":%llu,\"compressed_frames\":%llu,\"other_frames\":%llu,"
                "\"ticks_complete\":%llu,\"ticks_incomplete\":%llu,\"ticks_open_at_end\":%llu,\"pings\":%llu,\"disconnects\":%llu,"
                "\"cpu_seconds\":%.3f,\"cpu_util\":%.4f,\"per_conn_msgs\":{\"min\":%llu,\"p50\":%llu,"
                "\"max\":%llu},",
                first ? "" : ",", phase_names[p], secs, (unsigned long long)ph->msgs,
                secs > 0 ? (double)ph->msgs / secs : 0.0, (unsigned long long)ph->ctrl,
                (unsigned long long)ph->bytes, (unsigned long long)ph->wire_bytes,
                (unsigned long long)ph->compressed_frames, (unsigned long long)ph->other_frames,
                (unsigned long long)ph->ticks_complete, (unsigned long long)ph->ticks_incomplete,
                (unsigned long long)ph->ticks_open_at_end,
                (unsigned long long)ph->pings, (unsigned long long)ph->disconnects, cpu,
                secs > 0 ? cpu / secs : 0.0, (unsigned long long)ph->conn_min,
                (unsigned long long)ph->conn_p50, (unsigned long long)ph->conn_max);
        print_hist(f, "latency_us", &ph->lat);
        fputc(',', f);
        print_hist(f, "completion_us", &ph->comp);
        fputc(',', f);
        print_hist(f, "first_us", &ph->first);
        if (opt.detail) {
            fputc(',', f);
            print_buckets(f, "latency_buckets", &ph->lat);
            /* Every tick first seen in this phase: [ts ms, first us, last us, receipts]. */
            fprintf(f, ",\"ticks\":[");
            int tf = 1;
            for (int i = 0; i < RING; i++)
                if (ring[i].ts && ring[i].phase == p) {
                    fprintf(f, "%s[%lld,%lld,%lld,%u]", tf ? "" : ",", (long long)ring[i].ts,
                            (long long)ring[i].first, (long long)ring[i].last, ring[i].count);
                    tf = 0;
                }
            fputc(']', f);
        }
        fputc('}', f);
        first = 0;
    }
    fprintf(f, "}}\n");
    fflush(f);
}

static double t_warm_end, t_measure_end, t_slow;

static void go(double now) {
    if (t_go >= 0) return;
    t_go = now;
    phase_end(PH_CONNECT, now);
    phase_begin(PH_WARMUP, now);
    t_warm_end = now + opt.warmup;
    t_measure_end = t_warm_end + opt.duration;
    t_slow = opt.slow > 0 ? t_warm_end + opt.slow_after : 0;
}

/* The events of one epoll_wait. Returns 1 when stdin closed (the report is printed). */
static int handle_epoll(struct epoll_event *evs, int k, double now) {
    for (int e = 0; e < k; e++) {
        int64_t wnow = wall_us();
        uint32_t id = evs[e].data.u32;
        if (id == UINT32_MAX) {
            char cmd[256];
            ssize_t r = read(0, cmd, sizeof cmd - 1);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
                report();
                return 1;
            }
            if (r > 0) {
                cmd[r] = 0;
                if (strstr(cmd, "go")) go(now);
            }
            continue;
        }
        conn_t *c = &conns[id];
        uint32_t ev = evs[e].events;
        if (c->state == C_CONNECTING) {
            if (ev & (EPOLLERR | EPOLLHUP)) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err > 0 && err < 140) fail_errno[err]++;
                conn_close(c, 1);
                fill_connects();
                continue;
            }
            if (ev & EPOLLOUT) send_request(c);
            continue;
        }
        if (c->state == C_HANDSHAKE) {
            on_handshake(c, wnow);
            if (c->state == C_CLOSED) fill_connects();
            else if (opt.uring) ur_adopt(c);
            continue;
        }
        if (c->state != C_OPEN || c->armed) continue; /* armed: io_uring reads it */
        if (!c->reading) {
            /* A slow reader: it only notices the server hanging up or resetting. */
            if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                close_other++;
                conn_close(c, 0);
            }
            continue;
        }
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c, wnow);
    }
    return 0;
}

/* ---------------------------------------------------------------- main */
static void usage(void) {
    fprintf(stderr,
            "usage: loadgen [--host IP] [--port P] [--path /ws?token=..] [-n N] [--warmup S]\n"
            "  [--duration S] [--subscribe JSON]... [--deflate] [--slow K] [--slow-after S]\n"
            "  [--slow-rcvbuf BYTES] [--feedback-port P] [--src-first K] [--per-src N]\n"
            "  [--concurrency N] [--connect-timeout S] [--max-seconds S] [--sample N] [--go]\n"
            "  [--detail] [--io epoll|uring]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && ++i)
        if (ARG("--host")) opt.host = v;
        else if (ARG("--port")) opt.port = atoi(v);
        else if (ARG("--path")) opt.path = v;
        else if (ARG("-n")) opt.n = atoi(v);
        else if (ARG("--warmup")) opt.warmup = atof(v);
        else if (ARG("--duration")) opt.duration = atof(v);
        else if (ARG("--subscribe")) {
            if (opt.n_subscribe == MAX_SUBSCRIBE) usage();
            opt.subscribe[opt.n_subscribe++] = v;
        }
        else if (strcmp(a, "--deflate") == 0) opt.deflate = 1;
        else if (strcmp(a, "--go") == 0) opt.autogo = 1;
        else if (strcmp(a, "--detail") == 0) opt.detail = 1;
        else if (ARG("--slow")) opt.slow = atoi(v);
        else if (ARG("--slow-after")) opt.slow_after = atof(v);
        else if (ARG("--slow-rcvbuf")) opt.slow_rcvbuf = atoi(v);
        else if (ARG("--feedback-port")) opt.feedback_port = atoi(v);
        else if (ARG("--src-first")) opt.src_first = atoi(v);
        else if (ARG("--per-src")) opt.per_src = atoi(v);
        else if (ARG("--concurrency")) opt.concurrency = atoi(v);
        else if (ARG("--connect-timeout")) opt.connect_timeout = atof(v);
        else if (ARG("--max-seconds")) opt.max_seconds = atof(v);
        else if (ARG("--sample")) opt.sample = atoi(v);
        else if (ARG("--io")) {
            if (strcmp(v, "uring") == 0) opt.uring = 1;
            else if (strcmp(v, "epoll") == 0) opt.uring = 0;
            else usage();
        }
        else usage();
#undef ARG
    }
    if (opt.n < 1 || opt.per_src < 1 || opt.concurrency < 1) usage();
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)getpid());

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)opt.n + 16 > rl.rlim_cur) {
        out("{\"event\":\"error\",\"message\":\"RLIMIT_NOFILE %llu is too low for %d connections\"}\n",
            (unsigned long long)rl.rlim_cur, opt.n);
        return 1;
    }

    conns = calloc((size_t)opt.n, sizeof *conns);
    rbuf = malloc(rbuf_cap + 1);
    zbuf = malloc(zbuf_cap);
    if (!conns || !rbuf || !zbuf) return 1;
    sampling = opt.deflate;
    int step = opt.sample > 0 && opt.n > opt.sample ? opt.n / opt.sample : 1;
    int slow_step = opt.slow > 0 ? (opt.n / opt.slow > 0 ? opt.n / opt.slow : 1) : 0;
    int slow_marked = 0;
    for (int i = 0; i < opt.n; i++) {
        conns[i].fd = -1;
        conns[i].reading = 1;
        conns[i].sampled = ((opt.n - 1 - i) % step) == 0;
        if (slow_step && i % slow_step == 0 && slow_marked < opt.slow) {
            conns[i].slow = 1;
            slow_marked++;
        }
    }
    if (slow_marked) { /* a slow reader is never a sampled one: sampling measures the healthy */
        for (int i = 0; i < opt.n; i++)
            if (conns[i].slow) conns[i].sampled = 0;
    }

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (opt.feedback_port > 0) {
        fb_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.feedback_port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        if (connect(fb_fd, (struct sockaddr *)&a, sizeof a) < 0) {
            close(fb_fd);
            fb_fd = -1;
        }
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    (void)epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev); /* fails for /dev/null: then --go */
    /* Slow readers stop reading through epoll (stop_slow_readers): they stay on epoll. */
    if (opt.uring && (opt.slow > 0 || ur_setup() < 0)) {
        out("{\"event\":\"note\",\"message\":\"io_uring %s: receiving with epoll\"}\n",
            opt.slow > 0 ? "not used with --slow" : strerror(errno));
        opt.uring = 0;
        if (ur.fd >= 0) close(ur.fd);
        ur.fd = -1;
    }

    t_begin = mono();
    phase_begin(PH_CONNECT, t_begin);
    fill_connects();
    struct epoll_event evs[512];
    double next_progress = t_begin + 1.0;
    uint64_t last_msgs = 0;
    double last_progress = t_begin;

    for (;;) {
        double now;
        if (ur.fd >= 0) {
            if (ur_poll(50, evs, 512)) return 0;
            now = mono();
        } else {
            int k = epoll_wait(epfd, evs, 512, 50);
            now = mono();
            if (k > 0 && handle_epoll(evs, k, now)) return 0;
        }
        if (phase == PH_CONNECT && t_ready < 0 &&
            ((n_started == opt.n && n_inflight == 0 && n_subscribed == n_open) ||
             now - t_begin > opt.connect_timeout)) {
            t_ready = now;
            out("{\"event\":\"ready\",\"open\":%d,\"subscribed\":%d,\"failed\":%d,\"seconds\":%.3f}\n",
                n_open, n_subscribed, n_failed, now - t_begin);
            if (opt.autogo) go(now);
        }
        if (phase == PH_WARMUP && now >= t_warm_end) {
            phase_end(PH_WARMUP, now);
            phase_begin(PH_MEASURE, now);
        }
        if (phase == PH_MEASURE && t_slow > 0 && now >= t_slow) {
            phase_end(PH_MEASURE, now);
            phase_begin(PH_SLOW, now);
            stop_slow_readers();
        }
        if ((phase == PH_MEASURE || phase == PH_SLOW) && now >= t_measure_end) {
            report();
            return 0;
        }
        if (now >= next_progress) {
            double dt = now - last_progress;
            out("{\"event\":\"progress\",\"phase\":\"%s\",\"t\":%.1f,\"open\":%d,\"subscribed\":%d,"
                "\"failed\":%d,\"closed\":%d,\"inflight\":%d,\"started\":%d,\"msgs_per_s\":%.0f,\"cpu\":%.2f}\n",
                phase_names[phase], now - t_begin, n_open, n_subscribed, n_failed, n_closed, n_inflight, n_started,
                dt > 0 ? (double)(total_msgs - last_msgs) / dt : 0.0, cpu_seconds());
            last_msgs = total_msgs;
            last_progress = now;
            next_progress = now + 1.0;
        }
        if (now - t_begin > opt.max_seconds) {
            out("{\"event\":\"error\",\"message\":\"max-seconds reached\"}\n");
            report();
            return 3;
        }
    }
}
