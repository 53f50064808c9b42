/* reactor's C accelerator, part 3: the benchmark's reference server.
 *
 * `python -m reactor bench --peers c` measures this next to reactor and the
 * other peers: the same close and echo servers as reactor/tools/peers/, in
 * the fewest syscalls Linux allows, so the table shows the physical floor --
 * what the kernel charges per connection or round trip before any event loop
 * adds its own. reactor/tools/peers/c_server.py binds the sockets, prints the
 * "listening on" line and calls reactor_cserver_run(), which serves until
 * stop_fd is readable (cffi releases the GIL for the whole call).
 *
 * One thread, one level-triggered epoll set:
 * - the listener: drained with accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) until
 *   EAGAIN on every wake-up (one epoll_wait per batch, not per connection).
 *   close mode closes each connection at once (FIN), echo mode registers it.
 * - echo connections: one recv() per readiness, one send() of what came; the
 *   rare partial send keeps the rest, waits for EPOLLOUT and stops reading
 *   until it is flushed (the peer cannot make us buffer without bound).
 * - the idle listener (optional): its connections are read and discarded, as
 *   the Python peers' --idle-listener does, so idle fds sit in the same set.
 *
 * What the kernel can return, and what we do:
 * - accept4: EAGAIN/EWOULDBLOCK ends the batch; ECONNABORTED, EPROTO, EPERM
 *   (a firewall) and the network errnos Linux passes through from the new
 *   socket (ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
 *   EOPNOTSUPP, ENETUNREACH, ETIMEDOUT, ECONNRESET) cost that connection
 *   only: skip it; EMFILE, ENFILE, ENOBUFS, ENOMEM end the batch (the queue
 *   is kept; level-triggered epoll reports it again); EINTR retries. The same
 *   sets as ACCEPT_SKIP and ACCEPT_CAPACITY in reactor/_net/accept.py
 *   (tests/test_drift.py holds cs_skip equal to ACCEPT_SKIP).
 * - recv: 0 is the peer's FIN: close. EAGAIN: nothing after all. Any other
 *   error (ECONNRESET, ETIMEDOUT): close.
 * - send: MSG_NOSIGNAL, so a reset peer is EPIPE, not SIGPIPE; EAGAIN keeps
 *   the bytes for EPOLLOUT; any other error closes.
 * - epoll_wait: EINTR (a signal: how the Python side learns of SIGTERM, whose
 *   handler writes to stop_fd) retries.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define REACTOR_CSERVER_CLOSE 0
#define REACTOR_CSERVER_ECHO 1

/* Events per epoll_wait; the bytes one recv() may take (as the Python
 * peers' 64 KiB reads). */
#define CSERVER_EVENTS 512
#define CSERVER_READ 65536

struct reactor_cserver_stats {
    long long accepted;
    long long skipped;
    long long wakeups;
    long long deferred;
    long long open_at_end;
};

/* What an epoll event is about: a listener, the stop fd, a served connection, an idle one. */
enum { K_LISTEN, K_IDLE_LISTEN, K_STOP, K_CONN, K_IDLE };

struct cs_conn {
    int kind;
    int fd;
    unsigned char *pending;    /* echo: bytes a send() could not take yet */
    size_t npending;
    struct cs_conn *prev, *next;   /* every open connection, for the final close */
};

struct cserver {
    int ep;
    int mode;
    struct cs_conn listen, idle_listen, stop;
    struct cs_conn *conns;
    unsigned char buf[CSERVER_READ];
    struct reactor_cserver_stats *stats;
};

static int cs_skip(int err)
{
    switch (err) {
    case ECONNABORTED: case EPROTO: case EPERM: case ENETDOWN: case ENOPROTOOPT:
    case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH:
    case ETIMEDOUT: case ECONNRESET:
        return 1;
    default:
        return 0;
    }
}

static void cs_close(struct cserver *s, struct cs_conn *c)
{
    close(c->fd);  /* closing the fd also removes it from the epoll set */
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->pending);
    free(c);
}

static int cs_watch(struct cserver *s, struct cs_conn *c, int op, uint32_t events)
{
    struct epoll_event ev;
    ev.events = events;
    ev.data.ptr = c;
    return epoll_ctl(s->ep, op, c->fd, &ev);
}

static void cs_accept(struct cserver *s, int lfd, int kind)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR)
                continue;
            if (cs_skip(errno)) {
                s->stats->skipped++;
                continue;
            }
            return;  /* EAGAIN: the queue is empty; EMFILE and kin: wait for the next wake-up */
        }
        s->stats->accepted++;
        if (kind == K_CONN && s->mode == REACTOR_CSERVER_CLOSE) {
            close(fd);
            continue;
        }
        struct cs_conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->kind = kind;
        c->fd = fd;
        if (cs_watch(s, c, EPOLL_CTL_ADD, EPOLLIN) < 0) {
            close(fd);
            free(c);
            continue;
        }
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
    }
}

/* Send what is pending; 0 when all of it went, 1 when some waits for EPOLLOUT, -1 on error. */
static int cs_flush(struct cserver *s, struct cs_conn *c)
{
    size_t done = 0;
    while (done < c->npending) {
        ssize_t n = send(c->fd, c->pending + done, c->npending - done, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        done += (size_t)n;
    }
    memmove(c->pending, c->pending + done, c->npending - done);
    c->npending -= done;
    if (c->npending == 0) {
        free(c->pending);
        c->pending = NULL;
        return cs_watch(s, c, EPOLL_CTL_MOD, EPOLLIN) < 0 ? -1 : 0;
    }
    return cs_watch(s, c, EPOLL_CTL_MOD, EPOLLOUT) < 0 ? -1 : 1;
}

static void cs_readable(struct cserver *s, struct cs_conn *c)
{
    ssize_t n = recv(c->fd, s->buf, sizeof s->buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        cs_close(s, c);
        return;
    }
    if (c->kind == K_IDLE)
        return;
    ssize_t sent = 0;
    while (sent < n) {
        ssize_t m = send(c->fd, s->buf + sent, (size_t)(n - sent), MSG_NOSIGNAL);
        if (m < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            cs_close(s, c);
            return;
        }
        sent += m;
    }
    if (sent == n)
        return;
    c->npending = (size_t)(n - sent);
    c->pending = malloc(c->npending);
    if (c->pending == NULL) {
        cs_close(s, c);
        return;
    }
    memcpy(c->pending, s->buf + sent, c->npending);
    s->stats->deferred++;
    if (cs_watch(s, c, EPOLL_CTL_MOD, EPOLLOUT) < 0)
        cs_close(s, c);
}

int reactor_cserver_run(int lfd, int idle_lfd, int mode, int stop_fd, struct reactor_cserver_stats *stats)
{
    if (mode != REACTOR_CSERVER_CLOSE && mode != REACTOR_CSERVER_ECHO)
        return EINVAL;
    struct cserver *s = calloc(1, sizeof *s);
    if (s == NULL)
        return ENOMEM;
    memset(stats, 0, sizeof *stats);
    s->stats = stats;
    s->mode = mode;
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    if (s->ep < 0) {
        int err = errno;
        free(s);
        return err;
    }
    s->listen.kind = K_LISTEN;
    s->listen.fd = lfd;
    s->idle_listen.kind = K_IDLE_LISTEN;
    s->idle_listen.fd = idle_lfd;
    s->stop.kind = K_STOP;
    s->stop.fd = stop_fd;
    int err = 0;
    if (cs_watch(s, &s->listen, EPOLL_CTL_ADD, EPOLLIN) < 0
        || (stop_fd >= 0 && cs_watch(s, &s->stop, EPOLL_CTL_ADD, EPOLLIN) < 0)
        || (idle_lfd >= 0 && cs_watch(s, &s->idle_listen, EPOLL_CTL_ADD, EPOLLIN) < 0))
        err = errno;
    struct epoll_event events[CSERVER_EVENTS];
    int running = err == 0;
    while (running) {
        int n = epoll_wait(s->ep, events, CSERVER_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        stats->wakeups++;
        for (int i = 0; i < n; i++) {
            struct cs_conn *c = events[i].data.ptr;
            switch (c->kind) {
            case K_STOP:
                running = 0;
                break;
            case K_LISTEN:
                cs_accept(s, lfd, K_CONN);
                break;
            case K_IDLE_LISTEN:
                cs_accept(s, idle_lfd, K_IDLE);
                break;
            default:
                /* An earlier event of this batch may not have closed this one:
                 * each connection appears at most once per epoll_wait. */
                if (c->npending) {
                    if (cs_flush(s, c) < 0)
                        cs_close(s, c);
                } else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    cs_readable(s, c);
                }
                break;
            }
        }
    }
    while (s->conns) {
        stats->open_at_end++;
        cs_close(s, s->conns);
    }
    close(s->ep);
    free(s);
    return err;
}
