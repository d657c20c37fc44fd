/*
 * The fan-out benchmark's reference: the least a server can do to run the game's rooms, on one epoll thread, so
 * that its CPU per update is the machine's floor. It speaks just enough of protocol version 1 for the load client:
 * Hello is answered with Welcome (a 24-character session id, as the game server's), JoinRoom puts the player in a
 * room, Ping is answered with Pong, anything else is read and ignored. Every 1/TICK_HZ s each room's StateUpdate is
 * encoded once, in the same shape and encoding as the game server's ([tick, serverTimeUnixMs, [[id, x, y, lastSeq],
 * ...]], smallest integers, float32 coordinates), and sent with one send() per member. A member whose socket could
 * not take a whole update keeps the rest queued and gets no new update until it has drained (the game server
 * likewise skips a member that is not writable), so no frame is ever cut.
 *
 *   fanout_server PORT [TICK_HZ]      prints "listening on PORT" once it accepts
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define RBUF 4096
#define ID_LEN 24
#define MAX_ROOMS 65536

struct room;

struct conn {
    int fd;
    char id[ID_LEN];
    struct room *room;
    size_t slot; /* index in room->members */
    size_t have;
    unsigned char rbuf[RBUF];
    unsigned char *pending; /* the unsent rest of one update */
    size_t pending_len, pending_off;
};

struct room {
    char name[65];
    struct conn **members;
    size_t count, cap;
};

static struct room *rooms[MAX_ROOMS];
static uint64_t next_id, tick;
static int ep;

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* MessagePack's smallest encoding of a non-negative integer, as MessagePack-CSharp writes it. */
static size_t put_uint(unsigned char *out, uint64_t v)
{
    if (v <= 0x7f) {
        out[0] = (unsigned char)v;
        return 1;
    }
    size_t n = v <= 0xff ? 1 : v <= 0xffff ? 2 : v <= 0xffffffffu ? 4 : 8;
    out[0] = n == 1 ? 0xcc : n == 2 ? 0xcd : n == 4 ? 0xce : 0xcf;
    for (size_t i = 0; i < n; i++)
        out[1 + i] = (unsigned char)(v >> (8 * (n - 1 - i)));
    return 1 + n;
}

static void frame_length(unsigned char *frame, size_t payload)
{
    frame[0] = (unsigned char)(payload >> 24), frame[1] = (unsigned char)(payload >> 16);
    frame[2] = (unsigned char)(payload >> 8), frame[3] = (unsigned char)payload;
}

static void drop(struct conn *c)
{
    if (c->room) {
        struct room *r = c->room;
        r->members[c->slot] = r->members[--r->count];
        r->members[c->slot]->slot = c->slot;
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

/* Sends what was queued; returns 0 when nothing is left, 1 while some is, -1 when the connection died. */
static int flush_pending(struct conn *c)
{
    while (c->pending_off < c->pending_len) {
        ssize_t n = send(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 1;
        if (n <= 0)
            return -1;
        c->pending_off += (size_t)n;
    }
    free(c->pending);
    c->pending = NULL;
    c->pending_len = c->pending_off = 0;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

/* Sends a whole frame or queues its rest; -1 when the connection died. */
static int send_frame(struct conn *c, const unsigned char *frame, size_t len)
{
    ssize_t n;
    do
        n = send(c->fd, frame, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN)
        return -1;
    size_t sent = n < 0 ? 0 : (size_t)n;
    if (sent == len)
        return 0;
    c->pending = malloc(len - sent);
    if (c->pending == NULL)
        return -1;
    memcpy(c->pending, frame + sent, len - sent);
    c->pending_len = len - sent;
    c->pending_off = 0;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

static struct room *find_room(const unsigned char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ name[i]) * 16777619u;
    for (uint32_t i = 0; i < MAX_ROOMS; i++) {
        struct room **slot = &rooms[(h + i) % MAX_ROOMS];
        if (*slot == NULL) {
            *slot = calloc(1, sizeof **slot);
            memcpy((*slot)->name, name, len);
            return *slot;
        }
        if (strlen((*slot)->name) == len && memcmp((*slot)->name, name, len) == 0)
            return *slot;
    }
    return NULL;
}

/* One frame from a client; returns -1 to drop the connection. */
static int on_frame(struct conn *c, const unsigned char *body, size_t len)
{
    if (len < 3 || body[0] != 0x92)
        return -1;
    switch (body[1]) {
    case 0x00: { /* Hello -> Welcome [id, 5000, now] */
        unsigned char w[64], *q = w + 4;
        *q++ = 0x92, *q++ = 0x01, *q++ = 0x93, *q++ = 0xa0 | ID_LEN;
        memcpy(q, c->id, ID_LEN);
        q += ID_LEN;
        q += put_uint(q, 5000);
        q += put_uint(q, wall_ms());
        frame_length(w, (size_t)(q - w - 4));
        return c->pending ? 0 : send_frame(c, w, (size_t)(q - w));
    }
    case 0x02: { /* Ping -> Pong, the same body */
        unsigned char p[64];
        if (len + 4 > sizeof p || c->pending)
            return 0;
        frame_length(p, len);
        memcpy(p + 4, body, len);
        p[5] = 0x03;
        return send_frame(c, p, len + 4);
    }
    case 0x05: { /* JoinRoom [name] (fixstr or str8) */
        if (len < 4 || body[2] != 0x91 || c->room)
            return 0;
        size_t n, at;
        if ((body[3] & 0xe0) == 0xa0)
            n = body[3] & 0x1f, at = 4;
        else if (body[3] == 0xd9 && len >= 5)
            n = body[4], at = 5;
        else
            return -1;
        if (n == 0 || n > 64 || at + n > len)
            return -1;
        struct room *r = find_room(body + at, n);
        if (r == NULL)
            return -1;
        if (r->count == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 8;
            r->members = realloc(r->members, r->cap * sizeof *r->members);
        }
        c->room = r;
        c->slot = r->count;
        r->members[r->count++] = c;
        return 0;
    }
    default:
        return 0;
    }
}

static void on_readable(struct conn *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->have, RBUF - c->have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            drop(c);
            return;
        }
        c->have += (size_t)n;
        size_t off = 0;
        while (c->have - off >= 4) {
            unsigned char *f = c->rbuf + off;
            size_t len = (size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3];
            if (len == 0 || len + 4 > RBUF) {
                drop(c);
                return;
            }
            if (c->have - off < len + 4)
                break;
            if (on_frame(c, f + 4, len) < 0) {
                drop(c);
                return;
            }
            off += 4 + len;
        }
        memmove(c->rbuf, c->rbuf + off, c->have - off);
        c->have -= off;
    }
}

static void tick_rooms(void)
{
    static unsigned char *update;
    static size_t update_cap;
    uint64_t now = wall_ms();
    tick++;
    for (size_t i = 0; i < MAX_ROOMS; i++) {
        struct room *r = rooms[i];
        if (r == NULL || r->count == 0)
            continue;
        size_t need = 32 + r->count * (ID_LEN + 24);
        if (need > update_cap) {
            update_cap = need * 2;
            update = realloc(update, update_cap);
        }
        unsigned char *q = update + 4;
        *q++ = 0x92, *q++ = 0x07, *q++ = 0x93;
        q += put_uint(q, tick);
        q += put_uint(q, now);
        if (r->count < 16) {
            *q++ = (unsigned char)(0x90 | r->count);
        } else {
            *q++ = 0xdc, *q++ = (unsigned char)(r->count >> 8), *q++ = (unsigned char)r->count;
        }
        for (size_t m = 0; m < r->count; m++) {
            /* [id, x, y, lastSeq]: nobody moves in the benchmark, so 0.0f, 0.0f, 0 */
            *q++ = 0x94, *q++ = 0xa0 | ID_LEN;
            memcpy(q, r->members[m]->id, ID_LEN);
            q += ID_LEN;
            *q++ = 0xca, *q++ = 0, *q++ = 0, *q++ = 0, *q++ = 0;
            *q++ = 0xca, *q++ = 0, *q++ = 0, *q++ = 0, *q++ = 0;
            *q++ = 0x00;
        }
        size_t len = (size_t)(q - update);
        frame_length(update, len - 4);
        /* A send that fails is left to the read side: the same epoll batch may still name this connection, so it
           is dropped only from its own event (EPOLLERR, EOF). */
        for (size_t m = 0; m < r->count; m++) {
            struct conn *c = r->members[m];
            if (!c->pending)
                (void)send_frame(c, update, len);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fanout_server PORT [TICK_HZ]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int port = atoi(argv[1]), hz = argc > 2 ? atoi(argv[2]) : 20;
    if (hz < 2 || hz > 1000) {
        fprintf(stderr, "TICK_HZ must be from 2 to 1000\n");
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 4096) != 0) {
        perror("listen");
        return 1;
    }
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec every = { .it_interval = { 0, 1000000000L / hz }, .it_value = { 0, 1000000000L / hz } };
    if (tfd < 0 || timerfd_settime(tfd, 0, &every, NULL) != 0) {
        perror("timerfd");
        return 1;
    }
    ep = epoll_create1(0);
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &lfd }, tev = { .events = EPOLLIN, .data.ptr = &tfd };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);
    printf("listening on %d\n", port);
    fflush(stdout);
    struct epoll_event events[1024];
    for (;;) {
        int n = epoll_wait(ep, events, 1024, -1);
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == &lfd) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    snprintf(c->id, sizeof c->id, "%023llu", (unsigned long long)++next_id); /* 23 digits + 'c' */
                    c->id[ID_LEN - 1] = 'c';
                    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
            } else if (events[i].data.ptr == &tfd) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) == sizeof expirations)
                    tick_rooms();
            } else {
                struct conn *c = events[i].data.ptr;
                if ((events[i].events & EPOLLOUT) && flush_pending(c) < 0) {
                    drop(c);
                    continue;
                }
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    on_readable(c);
            }
        }
    }
}
