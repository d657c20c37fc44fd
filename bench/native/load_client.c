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
    fprintf(stderr, "usage: load_client pingpong PORT CONNS WARMUP_MS DURATION_MS REQUEST_HEX [HELLO_HEX]\n"
                    "       load_client idle PORT CONNS [HELLO_HEX]\n"
                    "       load_client churn PORT COUNT fin|rst REQUEST_HEX [HELLO_HEX]\n");
    return 2;
}
