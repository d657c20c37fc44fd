/*
 * The machine's limit: a byte echo on one epoll thread, level-triggered, non-blocking, no framing, no allocation
 * after start. What the .NET servers in the benchmark are measured against; not part of the product.
 *
 * usage: echo_server PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define BUF_SIZE 65536

/* Bytes read but not yet written back, per descriptor (only when a write was short). */
struct pending {
    char *data;
    size_t len;
};

static struct pending *pendings;
static int max_fds;

static void close_fd(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(pendings[fd].data);
    pendings[fd].data = NULL;
    pendings[fd].len = 0;
}

/* Writes what it can; keeps the rest and waits for EPOLLOUT, reading nothing more from this peer until then. */
static int echo_out(int ep, int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -1;
            struct pending *p = &pendings[fd];
            p->data = realloc(p->data, len);
            memcpy(p->data, data, len);
            p->len = len;
            struct epoll_event ev = { .events = EPOLLOUT, .data.fd = fd };
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
            return 0;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: echo_server PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    max_fds = 65536;
    pendings = calloc((size_t)max_fds, sizeof *pendings);

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(listener, 4096) != 0) {
        perror("bind/listen");
        return 1;
    }

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = listener };
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    printf("listening on %s\n", argv[1]);
    fflush(stdout);

    static char buf[BUF_SIZE];
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == listener) {
                for (;;) {
                    int c = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0)
                        break;
                    if (c >= max_fds) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = { .events = EPOLLIN, .data.fd = c };
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            if (events[i].events & EPOLLOUT) {
                struct pending *p = &pendings[fd];
                char *data = p->data;
                size_t len = p->len;
                p->data = NULL;
                p->len = 0;
                struct epoll_event rev = { .events = EPOLLIN, .data.fd = fd };
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &rev);
                int failed = echo_out(ep, fd, data, len);
                free(data);
                if (failed)
                    close_fd(ep, fd);
                continue;
            }
            ssize_t r = recv(fd, buf, sizeof buf, 0);
            if (r > 0) {
                if (echo_out(ep, fd, buf, (size_t)r) != 0)
                    close_fd(ep, fd);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                close_fd(ep, fd);
            }
        }
    }
}
