/* reactor's C accelerator, part 1: the accept drain (DESIGN.md section 4).
 *
 * One call from Python drains a whole batch of the listening socket's accept
 * queue, so the Python <-> C crossing is paid once per batch, not per
 * connection. The semantics are those of drain_pure() in reactor/_net/accept.py,
 * the reference; tests/net/test_accept.py holds the two to each other.
 *
 * Why accept4(SOCK_NONBLOCK | SOCK_CLOEXEC): the new socket is created with
 * both flags atomically, which saves the fcntl() calls a plain accept() would
 * need, and no fork()+exec() in another thread can inherit the fd in between.
 *
 * What accept4() can return on Linux, and what we do (the policy itself, the
 * list of skipped errnos, is passed in from reactor/_net/accept.py ACCEPT_SKIP so
 * there is one list, not two):
 *   EAGAIN/EWOULDBLOCK  the queue is empty: the normal end of a drain
 *   EINTR               a signal handler ran: retry, it costs nothing
 *   skip set            that one connection died in the queue (ECONNABORTED,
 *                       EPROTO, EPERM, ETIMEDOUT, ECONNRESET, network
 *                       errors): count it, go on
 *   anything else       capacity (EMFILE, ENFILE, ENOBUFS, ENOMEM) or a
 *                       broken listener (EBADF, EINVAL, ENOTSOCK): stop and
 *                       return the errno with what was already accepted, so
 *                       no accepted fd is ever lost.
 * A connection reset by the client while it waited in the queue is still
 * returned by Linux's accept(); that is the transport's business, not ours.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Bumped whenever the functions below change shape, so reactor/native.py can
 * refuse a stale build instead of calling it with the wrong arguments.
 * 1: placeholder; 2: accept drain and load generator. */
#define REACTOR_ACCEL_ABI 2
int reactor_accel_abi_version(void) { return REACTOR_ACCEL_ABI; }

#define REACTOR_ADDR_STRIDE 128
_Static_assert(sizeof(struct sockaddr_storage) == REACTOR_ADDR_STRIDE, "one slot holds any sockaddr");

#define REACTOR_DRAIN_HEAD 3

struct reactor_drain {
    int capacity;
    unsigned int *out;
    unsigned int *addrlens;
    unsigned char *addrs;
    const int *skip;
    int nskip;
};

static int drain_is_skipped(const struct reactor_drain *d, int e)
{
    /* Only reached on an error; the list has about a dozen entries. */
    for (int i = 0; i < d->nskip; i++)
        if (d->skip[i] == e)
            return 1;
    return 0;
}

int reactor_accept_drain(struct reactor_drain *d, int lfd, int max_accepts)
{
    int n = 0, attempts = 0, skipped = 0, err = 0, family = 0;
    unsigned int *slot = d->out + REACTOR_DRAIN_HEAD;

    if (max_accepts > d->capacity)
        max_accepts = d->capacity;   /* never write past the buffers */
    while (attempts < max_accepts) {
        /* The kernel writes the peer address straight into the slot Python
         * will read: no copy on this side. */
        struct sockaddr *sa = (struct sockaddr *)(d->addrs + (size_t)n * REACTOR_ADDR_STRIDE);
        socklen_t len = REACTOR_ADDR_STRIDE;
        int fd = accept4(lfd, sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EINTR)
                continue;            /* not an attempt: drain_pure retries it too */
            if (e == EAGAIN || e == EWOULDBLOCK) {
                err = EAGAIN;
                break;
            }
            attempts++;
            if (drain_is_skipped(d, e)) {
                skipped++;
                continue;
            }
            err = e;
            break;
        }
        attempts++;
        /* A family the kernel did not write (len too short) is reported as
         * AF_UNSPEC, which Python decodes as "no address". */
        int fam = len >= sizeof(sa_family_t) ? sa->sa_family : AF_UNSPEC;
        if (n == 0)
            family = fam;
        else if (fam != family)
            family = -1;
        d->addrlens[n] = len;
        slot[0] = (unsigned int)fd;
        if (fam == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
            slot[1] = ntohl(in->sin_addr.s_addr);
            slot[2] = ntohs(in->sin_port);
        } else if (fam == AF_INET6) {
            slot[1] = 0;
            slot[2] = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
        } else {
            slot[1] = 0;
            slot[2] = 0;
        }
        slot += 3;
        n++;
    }
    d->out[0] = (unsigned int)err;
    d->out[1] = (unsigned int)skipped;
    d->out[2] = (unsigned int)family;
    return n;
}
