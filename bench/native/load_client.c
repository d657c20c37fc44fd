/*
 * The benchmark's load client: one epoll thread, so that it costs as little CPU as possible and reports what it
 * costs. Frames are opaque: a request is sent as given, and any frame of the same length that comes back is its
 * answer (an echo), so the same client measures byte echoes and the game server's Echo message alike.
 *
 *   load_client pingpong PORT CONNS WARMUP_MS DURATION_MS REQUEST_HEX [HELLO_HEX]
 *       CONNS connections, each with one request in flight. With HELLO_HEX, each sends it first and waits for one
 *       frame (the Welcome) before its first request. Prints "warm" when the measured window starts, then one
 *       result line: messages seconds p50_us p99_us p999_us client_cpu_us errors.
 *   load_client idle PORT CONNS [HELLO_HEX]
 *       Opens CONNS connections (each says Hello and waits for its Welcome if given), prints "open N", then holds them
 *       until standard input closes.
 *   load_client churn PORT COUNT fin|rst REQUEST_HEX [HELLO_HEX]
 *       COUNT connections, 16 at a time: connect, (Hello, Welcome), one request and its answer, then close with FIN
 *       or with RST (SO_LINGER 0). Prints: connections seconds errors client_cpu_us.
 *   load_client fanout PORT PLAYERS ROOM_SIZE WARMUP_MS DURATION_MS
 *       PLAYERS game connections (protocol version 1): each sends Hello and JoinRoom("rK", K = its index / ROOM_SIZE),
 *       answers every Ping with a Pong and reads StateUpdates. An update's lateness is this machine's wall clock when
 *       the update was read minus its serverTimeUnixMs (the same clock, so no offset). The measured window opens
 *       WARMUP_MS after every player has had its first update; "joined N" is printed when they have (or after 60 s,
 *       with N short), then "warm" when the window opens, then one result line: updates seconds p50_us p99_us
 *       p999_us max_us bytes client_cpu_us errors joined late_reads. late_reads counts epoll passes that found more
 *       than a tick's worth (50 ms) between two waits: the client itself fell behind, so its figures are a floor.
 *
 * Frames on the wire are 4-byte big-endian length + payload; REQUEST_HEX and HELLO_HEX are whole frames.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF 65536

struct conn {
    int fd;
    int welcomed;
    uint64_t sent_at;
    size_t have;
    unsigned char buf[RBUF];
};

static unsigned char request[4096], hello[4096];
static size_t request_len, hello_len;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u + (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static size_t unhex(const char *hex, unsigned char *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    if (n > cap) {
        fprintf(stderr, "frame too long\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        sscanf(hex + 2 * i, "%2hhx", &out[i]);
    return n;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_all(int fd, const unsigned char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            poll(&p, 1, 1000);
            continue;
        }
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Blocking read of one whole frame; returns its total length (header included) or -1. */
static ssize_t read_frame(int fd, unsigned char *buf, size_t cap)
{
    size_t have = 0, need = 4;
    while (have < need) {
        ssize_t n = recv(fd, buf + have, need - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
        if (have == 4 && need == 4) {
            need = 4 + ((size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3]);
            if (need > cap)
                return -1;
        }
    }
    return (ssize_t)have;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int pingpong(int port, int conns, int warmup_ms, int duration_ms)
{
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    int ep = epoll_create1(0);
    long errors = 0;
    for (int i = 0; i < conns; i++) {
        cs[i].fd = dial(port);
        if (cs[i].fd < 0) {
            perror("connect");
            return 1;
        }
        if (hello_len && send_all(cs[i].fd, hello, hello_len) != 0)
            errors++;
    }
    for (int i = 0; i < conns; i++) {
        int nonblocking = 1;
        ioctl(cs[i].fd, FIONBIO, &nonblocking);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cs[i] };
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        if (!hello_len) {
            cs[i].welcomed = 1;
            cs[i].sent_at = now_ns();
            if (send_all(cs[i].fd, request, request_len) != 0)
                errors++;
        }
    }

    size_t cap = 1 << 20, count = 0;
    uint32_t *samples = malloc(cap * sizeof *samples);
    uint64_t start = now_ns(), warm_at = start + (uint64_t)warmup_ms * 1000000u, end_at = warm_at + (uint64_t)duration_ms * 1000000u;
    int warm = 0;
    uint64_t cpu_start = 0, measured_start = 0;
    struct epoll_event events[512];
    for (;;) {
        uint64_t t = now_ns();
        if (!warm && t >= warm_at) {
            warm = 1;
            cpu_start = cpu_us();
            measured_start = t;
            printf("warm\n");
            fflush(stdout);
        }
        if (t >= end_at)
            break;
        int n = epoll_wait(ep, events, 512, 10);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            ssize_t r = recv(c->fd, c->buf + c->have, RBUF - c->have, 0);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->have += (size_t)r;
            size_t off = 0;
            while (c->have - off >= 4) {
                unsigned char *f = c->buf + off;
                size_t len = 4 + ((size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3]);
                if (c->have - off < len)
                    break;
                off += len;
                if (!c->welcomed) {
                    c->welcomed = 1;
                } else if (len == request_len) {
                    uint64_t done = now_ns();
                    if (warm) {
                        if (count == cap) {
                            cap *= 2;
                            samples = realloc(samples, cap * sizeof *samples);
                        }
                        uint64_t us = (done - c->sent_at) / 1000u;
                        samples[count++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
                    }
                } else {
                    continue; /* not an answer (a Ping, say) */
                }
                c->sent_at = now_ns();
                if (send_all(c->fd, request, request_len) != 0)
                    errors++;
            }
            memmove(c->buf, c->buf + off, c->have - off);
            c->have -= off;
        }
    }
    uint64_t cpu = cpu_us() - cpu_start;
    double seconds = (double)(now_ns() - measured_start) / 1e9;
    qsort(samples, count, sizeof *samples, cmp_u32);
    uint32_t p50 = count ? samples[count / 2] : 0, p99 = count ? samples[(size_t)(count * 0.99)] : 0,
             p999 = count ? samples[(size_t)(count * 0.999)] : 0;
    printf("result %zu %.3f %u %u %u %llu %ld\n", count, seconds, p50, p99, p999, (unsigned long long)cpu, errors);
    fflush(stdout);
    return 0;
}

static int idle(int port, int conns)
{
    int opened = 0;
    unsigned char frame[RBUF];
    int *fds = calloc((size_t)conns, sizeof *fds);
    for (int i = 0; i < conns; i++) {
        fds[i] = dial(port);
        if (fds[i] < 0) {
            perror("connect");
            break;
        }
        if (hello_len && (send_all(fds[i], hello, hello_len) != 0 || read_frame(fds[i], frame, sizeof frame) < 0)) {
            close(fds[i]);
            break;
        }
        opened++;
    }
    printf("open %d\n", opened);
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    return 0;
}

static int churn(int port, long count, int rst)
{
    unsigned char frame[RBUF];
    long errors = 0, done = 0;
    uint64_t start = now_ns(), cpu0 = cpu_us();
    int inflight = 16;
    int *fds = malloc(sizeof(int) * (size_t)inflight);
    while (done < count) {
        int batch = (int)(count - done < inflight ? count - done : inflight);
        for (int i = 0; i < batch; i++) {
            fds[i] = dial(port);
            if (fds[i] >= 0 && hello_len && send_all(fds[i], hello, hello_len) == 0 && read_frame(fds[i], frame, sizeof frame) < 0) {
                close(fds[i]);
                fds[i] = -1;
            }
            if (fds[i] >= 0 && send_all(fds[i], request, request_len) != 0) {
                close(fds[i]);
                fds[i] = -1;
            }
        }
        for (int i = 0; i < batch; i++) {
            if (fds[i] < 0 || read_frame(fds[i], frame, sizeof frame) < 0)
                errors++;
            if (fds[i] >= 0) {
                if (rst) {
                    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
                    setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                }
                close(fds[i]);
            }
        }
        done += batch;
    }
    printf("result %ld %.3f %ld %llu\n", done, (double)(now_ns() - start) / 1e9, errors, (unsigned long long)(cpu_us() - cpu0));
    fflush(stdout);
    return 0;
}

/* ---- fanout: reads StateUpdates and measures each one's lateness from its serverTimeUnixMs ---- */

#define LATE_BUCKET_US 100u
#define LATE_BUCKETS (600000u) /* 100 us buckets up to 60 s; later is counted in the last */

struct player {
    int fd;
    int updates; /* seen since connecting; the first marks the player as joined */
    size_t have;
    unsigned char *buf;
};

static uint64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* A MessagePack unsigned or signed integer at p (no more than end); returns bytes used or 0. */
static size_t mp_int(const unsigned char *p, const unsigned char *end, int64_t *value)
{
    if (p >= end)
        return 0;
    unsigned char b = *p;
    size_t need;
    if (b <= 0x7f) {
        *value = b;
        return 1;
    }
    if (b >= 0xe0) {
        *value = (int8_t)b;
        return 1;
    }
    switch (b) {
    case 0xcc: case 0xd0: need = 1; break;
    case 0xcd: case 0xd1: need = 2; break;
    case 0xce: case 0xd2: need = 4; break;
    case 0xcf: case 0xd3: need = 8; break;
    default: return 0;
    }
    if ((size_t)(end - p) < 1 + need)
        return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < need; i++)
        v = v << 8 | p[1 + i];
    if (b >= 0xd0 && need < 8 && (v >> (need * 8 - 1)) & 1)
        v |= ~(uint64_t)0 << (need * 8); /* sign-extend */
    *value = (int64_t)v;
    return 1 + need;
}

static uint64_t *late_hist;
static uint64_t late_count, late_max_us, measured_bytes;
static long fan_errors;
static int fan_joined;

static void late_record(uint64_t us)
{
    uint64_t bucket = us / LATE_BUCKET_US;
    late_hist[bucket < LATE_BUCKETS ? bucket : LATE_BUCKETS - 1]++;
    late_count++;
    if (us > late_max_us)
        late_max_us = us;
}

static uint64_t late_percentile(double q)
{
    if (late_count == 0)
        return 0;
    uint64_t rank = (uint64_t)((double)late_count * q), seen = 0;
    for (uint32_t b = 0; b < LATE_BUCKETS; b++) {
        seen += late_hist[b];
        if (seen > rank) {
            uint64_t edge = (uint64_t)(b + 1) * LATE_BUCKET_US; /* the bucket's upper edge: never flattering */
            return edge < late_max_us ? edge : late_max_us;
        }
    }
    return late_max_us;
}

static void player_drop(int ep, struct player *p)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    p->fd = -1;
    fan_errors++;
}

/* One frame from the server: a Ping is answered, a StateUpdate timed; everything else (Welcome) is skipped. */
static void player_frame(int ep, struct player *p, const unsigned char *f, size_t len, int measuring)
{
    const unsigned char *body = f + 4, *end = f + len;
    if (len < 7 || body[0] != 0x92)
        return;
    if (body[1] == 0x02) { /* Ping [seq, sentAt] -> Pong, same body */
        unsigned char pong[64];
        if (len > sizeof pong)
            return;
        memcpy(pong, f, len);
        pong[5] = 0x03;
        if (send(p->fd, pong, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
            player_drop(ep, p);
        return;
    }
    if (body[1] != 0x07 || body[2] != 0x93)
        return;
    int64_t tick, server_ms;
    size_t used = mp_int(body + 3, end, &tick);
    if (used == 0 || mp_int(body + 3 + used, end, &server_ms) == 0) {
        fan_errors++;
        return;
    }
    if (p->updates++ == 0)
        fan_joined++;
    if (measuring) {
        int64_t late = (int64_t)wall_us() - server_ms * 1000;
        late_record(late < 0 ? 0 : (uint64_t)late);
        measured_bytes += len;
    }
}

static void player_read(int ep, struct player *p, int measuring)
{
    for (;;) {
        ssize_t r = recv(p->fd, p->buf + p->have, RBUF - p->have, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) {
            player_drop(ep, p);
            return;
        }
        p->have += (size_t)r;
        size_t off = 0;
        while (p->have - off >= 4) {
            unsigned char *f = p->buf + off;
            size_t len = 4 + ((size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3]);
            if (len > RBUF) {
                player_drop(ep, p);
                return;
            }
            if (p->have - off < len)
                break;
            player_frame(ep, p, f, len, measuring);
            if (p->fd < 0)
                return;
            off += len;
        }
        memmove(p->buf, p->buf + off, p->have - off);
        p->have -= off;
        if ((size_t)r < RBUF / 2)
            return; /* drained for now; level-triggered epoll brings us back */
    }
}

static uint64_t last_wait_ns, late_reads;

static void fan_poll(int ep, int timeout_ms, int measuring)
{
    static struct epoll_event events[1024];
    uint64_t t = now_ns();
    if (measuring && last_wait_ns && t - last_wait_ns > 50000000u)
        late_reads++;
    int n = epoll_wait(ep, events, 1024, timeout_ms);
    last_wait_ns = now_ns();
    for (int i = 0; i < n; i++) {
        struct player *p = events[i].data.ptr;
        if (p->fd >= 0)
            player_read(ep, p, measuring);
    }
}

static size_t put_str(unsigned char *out, const char *s)
{
    size_t n = strlen(s);
    out[0] = (unsigned char)(0xa0 | n); /* fixstr: every string here is under 32 bytes */
    memcpy(out + 1, s, n);
    return 1 + n;
}

/* One frame: length header, head bytes, a fixstr, tail bytes; returns its whole length. */
static size_t put_frame(unsigned char *out, const unsigned char *head, size_t head_len, const char *str, const unsigned char *tail, size_t tail_len)
{
    unsigned char *q = out + 4;
    memcpy(q, head, head_len);
    q += head_len;
    q += put_str(q, str);
    if (tail_len)
        memcpy(q, tail, tail_len);
    q += tail_len;
    size_t payload = (size_t)(q - out - 4);
    out[0] = 0, out[1] = 0, out[2] = (unsigned char)(payload >> 8), out[3] = (unsigned char)payload;
    return (size_t)(q - out);
}

static int fanout(int port, int players, int room_size, int warmup_ms, int duration_ms)
{
    struct player *ps = calloc((size_t)players, sizeof *ps);
    late_hist = calloc(LATE_BUCKETS, sizeof *late_hist);
    int ep = epoll_create1(0);
    for (int i = 0; i < players; i++) {
        ps[i].fd = dial(port);
        if (ps[i].fd < 0) {
            fan_errors++; /* counted: a server that refuses players has not held the step */
            continue;
        }
        ps[i].buf = malloc(RBUF);
        if (ps[i].buf == NULL) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        /* Hello [1, "fanN", nil] and JoinRoom ["rK"] in one write: the server handles frames in order. */
        unsigned char out[128], *q = out;
        char name[24], room[24];
        snprintf(name, sizeof name, "fan%d", i);
        snprintf(room, sizeof room, "r%d", i / room_size);
        const unsigned char hello_head[] = { 0x92, 0x00, 0x93, 0x01 }, join_head[] = { 0x92, 0x05, 0x91 }, nil = 0xc0;
        q += put_frame(q, hello_head, sizeof hello_head, name, &nil, 1);
        q += put_frame(q, join_head, sizeof join_head, room, NULL, 0);
        if (send_all(ps[i].fd, out, (size_t)(q - out)) != 0) {
            close(ps[i].fd);
            ps[i].fd = -1;
            fan_errors++;
            continue;
        }
        int nonblocking = 1;
        ioctl(ps[i].fd, FIONBIO, &nonblocking);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &ps[i] };
        epoll_ctl(ep, EPOLL_CTL_ADD, ps[i].fd, &ev);
        if (i % 64 == 63)
            fan_poll(ep, 0, 0); /* keep reading the players already in while the rest connect */
    }
    uint64_t give_up = now_ns() + 60000000000u;
    while (fan_joined + fan_errors < players && now_ns() < give_up)
        fan_poll(ep, 10, 0);
    printf("joined %d\n", fan_joined);
    fflush(stdout);
    uint64_t warm_at = now_ns() + (uint64_t)warmup_ms * 1000000u;
    while (now_ns() < warm_at)
        fan_poll(ep, 10, 0);
    uint64_t cpu_start = cpu_us(), start = now_ns(), end_at = start + (uint64_t)duration_ms * 1000000u;
    printf("warm\n");
    fflush(stdout);
    last_wait_ns = 0;
    while (now_ns() < end_at)
        fan_poll(ep, 10, 1);
    uint64_t cpu = cpu_us() - cpu_start;
    double seconds = (double)(now_ns() - start) / 1e9;
    printf("result %llu %.3f %llu %llu %llu %llu %llu %llu %ld %d %llu\n", (unsigned long long)late_count, seconds,
           (unsigned long long)late_percentile(0.50), (unsigned long long)late_percentile(0.99),
           (unsigned long long)late_percentile(0.999), (unsigned long long)late_max_us, (unsigned long long)measured_bytes,
           (unsigned long long)cpu, fan_errors, fan_joined, (unsigned long long)late_reads);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 5 && strcmp(argv[1], "pingpong") == 0 && argc >= 7) {
        request_len = unhex(argv[6], request, sizeof request);
        if (argc >= 8)
            hello_len = unhex(argv[7], hello, sizeof hello);
        return pingpong(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    }
    if (argc >= 4 && strcmp(argv[1], "idle") == 0) {
        if (argc >= 5)
            hello_len = unhex(argv[4], hello, sizeof hello);
        return idle(atoi(argv[2]), atoi(argv[3]));
    }
    if (argc >= 6 && strcmp(argv[1], "churn") == 0) {
        request_len = unhex(argv[5], request, sizeof request);
        if (argc >= 7)
            hello_len = unhex(argv[6], hello, sizeof hello);
        return churn(atoi(argv[2]), atol(argv[3]), strcmp(argv[4], "rst") == 0);
    }
    if (argc >= 7 && strcmp(argv[1], "fanout") == 0)
        return fanout(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    fprintf(stderr, "usage: load_client pingpong PORT CONNS WARMUP_MS DURATION_MS REQUEST_HEX [HELLO_HEX]\n"
                    "       load_client idle PORT CONNS [HELLO_HEX]\n"
                    "       load_client churn PORT COUNT fin|rst REQUEST_HEX [HELLO_HEX]\n"
                    "       load_client fanout PORT PLAYERS ROOM_SIZE WARMUP_MS DURATION_MS\n");
    return 2;
}
