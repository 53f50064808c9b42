/* reactor's C accelerator, part 2: a load generator for the benchmarks.
 *
 * A single-threaded epoll loop that keeps `concurrency` non-blocking
 * connections in flight against an IPv4 loopback address, for a bounded time
 * (and optionally a bounded count), and reports completions, errors by errno,
 * latency histograms and its own CPU time. Python calls it through cffi, which
 * releases the GIL for the whole run, so a benchmark can drive it from a
 * thread while the server runs in the same process or another one.
 *
 * Kernel behaviour this relies on:
 * - A non-blocking connect() returns EINPROGRESS; the socket becomes writable
 *   when the handshake completes. If it failed, epoll also reports EPOLLERR and
 *   SO_ERROR holds the errno (ECONNREFUSED, ETIMEDOUT, ...). Without EPOLLERR
 *   the connection is established, so the common path needs no getsockopt().
 * - Every client connection needs a unique (src addr, src port, dst addr, dst
 *   port); a closed connection's tuple sits in TIME_WAIT for 60 s on the side
 *   that closed first. One source address gives ~28000 ephemeral ports, so we
 *   spread connections over 127.0.0.2, 127.0.0.3, ... (all of 127/8 is local
 *   on Linux). IP_BIND_ADDRESS_NO_PORT (Linux 4.2) makes bind() leave the port
 *   to connect(), which then picks one unique for the full 4-tuple instead of
 *   reserving it for every destination.
 * - close() with SO_LINGER {1, 0} sends RST instead of FIN and leaves no
 *   TIME_WAIT behind.
 * - send() on a connection the peer reset raises SIGPIPE unless MSG_NOSIGNAL.
 * - epoll_wait() sleeps in whole milliseconds (rounded up). A fixed rate of
 *   15,000 starts per second needs one every 67 us, so with a rate the loop
 *   also watches a timerfd armed (absolute, CLOCK_MONOTONIC, nanoseconds) for
 *   the next start: without it starts would leave in 1 ms bursts.
 *
 * With a rate the load is open-loop: start k is due at start + k / rate,
 * whatever happened to the earlier ones, and its latency is measured from
 * when it was due, not from when a free slot let it start (a server that
 * stalls would otherwise hold back the very starts that would have seen the
 * stall: "coordinated omission"). A start that leaves 1 ms or more after it
 * was due, or never left, is counted in `late`: the client (out of slots,
 * or out of CPU) did not keep the offered load. In echo mode the rate paces requests over the
 * `concurrency` connections, which are opened at once; a connection waits
 * idle (S_IDLE, first in first out) between its requests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define REACTOR_LOAD_CONNECT_CLOSE 0
#define REACTOR_LOAD_CLIENT_CLOSE 1
#define REACTOR_LOAD_RST 2
#define REACTOR_LOAD_ECHO 3
#define REACTOR_LOAD_HOLD 4

#define REACTOR_LOAD_BY_DURATION 1
#define REACTOR_LOAD_BY_COUNT 2
#define REACTOR_LOAD_BY_STOP 3

#define REACTOR_LOAD_NERRNO 256
/* Latency buckets: 0..31 us exactly, then 16 buckets per power of two up to
 * 2^31 us (relative error under 1/16). */
#define REACTOR_LOAD_NBUCKETS 464

/* Hard limits, so a typo cannot run for hours or allocate gigabytes. */
#define LOAD_MAX_DURATION 3600.0
#define LOAD_MAX_CONCURRENCY 1000000
#define LOAD_MAX_SIZE (16 * 1024 * 1024)
/* How often in-flight operations are checked against their timeout. */
#define LOAD_SCAN_NS 50000000ULL
#define LOAD_EVENTS 512
#define STOP_TOKEN UINT32_MAX
#define TIMER_TOKEN (UINT32_MAX - 1)
/* A scheduled start this late is counted in reactor_load_result.late. */
#define LOAD_LATE_NS 1000000ULL

struct reactor_load_config {
    unsigned int host;
    int port;
    int mode;
    int concurrency;
    double duration;
    long long count;
    int size;
    int nsources;
    unsigned int source_base;
    double rate;
    double timeout;
    int stop_fd;
};

struct reactor_load_result {
    long long completed;
    long long connected;
    long long started;
    long long open_at_end;
    long long timeouts;
    long long eofs;
    long long mismatches;
    long long late;
    long long errors[REACTOR_LOAD_NERRNO];
    long long connect_hist[REACTOR_LOAD_NBUCKETS];
    long long op_hist[REACTOR_LOAD_NBUCKETS];
    double wall_s;
    double cpu_s;
    int stopped_by;
    int setup_errno;
};

enum { S_FREE, S_CONNECTING, S_WAIT_EOF, S_SEND, S_RECV, S_HOLD, S_IDLE };

struct load_slot {
    int fd;
    int state;
    uint32_t events;       /* what epoll watches for this fd now */
    int done;              /* echo: bytes sent (S_SEND) or received (S_RECV) */
    int offset;            /* echo: where in the pattern this request starts */
    uint64_t t_connect;    /* connect() time */
    uint64_t t_op;         /* start of the current unit of work */
    uint64_t deadline;
    int idle_prev, idle_next;  /* echo with a rate: the idle list (S_IDLE), -1 ends it */
};

struct load {
    const struct reactor_load_config *cfg;
    struct reactor_load_result *res;
    int ep;
    struct load_slot *slots;
    uint32_t *free_slots;  /* stack of free slot indices */
    uint32_t nfree;
    long long active;      /* slots working towards one unit each */
    long long opened;      /* hold: connections opened, for the count cap */
    unsigned char *pattern;  /* echo payload: size + 256 bytes */
    unsigned char *scratch;
    size_t scratch_len;
    uint32_t next_source;
    uint64_t timeout_ns;
    uint64_t start;        /* the run's start: the schedule's origin */
    long long scheduled;   /* with a rate: starts taken from the schedule so far */
    int idle_head, idle_tail;  /* echo with a rate: connections waiting for their next request */
    long long nidle;
    int timer_fd;          /* with a rate: wakes the loop for the next start; -1 without */
    uint64_t timer_armed;  /* the absolute time it is armed for, 0 if not */
    int sync_failures;     /* connects that failed at once in this fill round */
};

static uint64_t clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* When the next scheduled start is due (a rate is set). */
static uint64_t next_due(const struct load *g)
{
    return g->start + (uint64_t)((double)g->scheduled * 1e9 / g->cfg->rate);
}

int reactor_load_bucket(unsigned long long us)
{
    if (us < 32)
        return (int)us;
    if (us >= (1ULL << 32))
        return REACTOR_LOAD_NBUCKETS - 1;
    int msb = 63 - __builtin_clzll(us);             /* 5..31 */
    int sub = (int)((us >> (msb - 4)) & 15);
    return 32 + (msb - 5) * 16 + sub;
}

static void record(long long *hist, uint64_t from_ns, uint64_t to_ns)
{
    hist[reactor_load_bucket((to_ns - from_ns) / 1000)]++;
}

static void count_errno(struct load *g, int e)
{
    g->res->errors[(e > 0 && e < REACTOR_LOAD_NERRNO) ? e : REACTOR_LOAD_NERRNO - 1]++;
}

static void set_events(struct load *g, struct load_slot *s, uint32_t idx, uint32_t events)
{
    if (s->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.u32 = idx};
    epoll_ctl(g->ep, EPOLL_CTL_MOD, s->fd, &ev);
    s->events = events;
}

/* Echo with a rate: the connection waits, watched for input (an early close,
 * or bytes nobody asked for), at the end of the idle list. */
static void idle_push(struct load *g, struct load_slot *s, uint32_t idx)
{
    s->state = S_IDLE;
    s->deadline = UINT64_MAX;
    s->idle_next = -1;
    s->idle_prev = g->idle_tail;
    if (g->idle_tail >= 0)
        g->slots[g->idle_tail].idle_next = (int)idx;
    else
        g->idle_head = (int)idx;
    g->idle_tail = (int)idx;
    g->nidle++;
    set_events(g, s, idx, EPOLLIN | EPOLLRDHUP);
}

static void idle_unlink(struct load *g, struct load_slot *s)
{
    if (s->idle_prev >= 0)
        g->slots[s->idle_prev].idle_next = s->idle_next;
    else
        g->idle_head = s->idle_next;
    if (s->idle_next >= 0)
        g->slots[s->idle_next].idle_prev = s->idle_prev;
    else
        g->idle_tail = s->idle_prev;
    s->idle_prev = s->idle_next = -1;
    g->nidle--;
}

/* Close the slot's connection and give the slot back. close() also removes
 * the fd from the epoll set (we never dup it). */
static void release(struct load *g, struct load_slot *s, uint32_t idx, int rst)
{
    if (rst) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (s->state == S_IDLE)
        idle_unlink(g, s);
    close(s->fd);
    s->fd = -1;
    s->state = S_FREE;
    g->free_slots[g->nfree++] = idx;
    g->active--;
}

static void fail(struct load *g, struct load_slot *s, uint32_t idx, int e)
{
    count_errno(g, e);
    release(g, s, idx, 0);
}

/* May this slot start another unit of work? */
static int may_start(const struct load *g)
{
    const struct reactor_load_config *c = g->cfg;
    if (c->count <= 0)
        return 1;
    if (c->mode == REACTOR_LOAD_HOLD)
        return g->opened < c->count;
    /* idle connections (echo with a rate) work towards nothing */
    return g->res->completed + g->active - g->nidle < c->count;
}

static void open_one(struct load *g, uint64_t now, uint64_t due)
{
    const struct reactor_load_config *c = g->cfg;
    uint32_t idx = g->free_slots[--g->nfree];
    struct load_slot *s = &g->slots[idx];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int e;

    g->res->started++;
    g->opened++;
    if (fd < 0) {
        e = errno;
        goto failed_early;
    }
    if (c->nsources > 0) {
        int one = 1;
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(c->source_base + g->next_source);
        g->next_source = (g->next_source + 1) % (uint32_t)c->nsources;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
            e = errno;
            close(fd);
            goto failed_early;
        }
    }
    if (c->mode == REACTOR_LOAD_ECHO) {
        /* Request/response: a small write must not wait for an ACK (Nagle). */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    dst.sin_addr.s_addr = htonl(c->host);
    if (connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) {
        e = errno;
        close(fd);
        goto failed_early;
    }
    /* Established or in progress: either way writability says when. */
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = idx};
    if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        e = errno;
        close(fd);
        goto failed_early;
    }
    s->fd = fd;
    s->state = S_CONNECTING;
    s->events = EPOLLOUT;
    s->t_connect = now;
    s->t_op = due;  /* now, or (with a rate) when the schedule wanted it */
    s->deadline = now + g->timeout_ns;
    g->active++;
    return;

failed_early:
    count_errno(g, e);
    g->free_slots[g->nfree++] = idx;
    g->sync_failures++;
}

static void echo_start(struct load *g, struct load_slot *s, uint32_t idx, uint64_t now);
static void echo_send(struct load *g, struct load_slot *s, uint32_t idx, uint64_t now);
static void echo_recv(struct load *g, struct load_slot *s, uint32_t idx, uint64_t now);

/* Read and drop what the server sent; returns 1 at EOF, 0 when there is
 * nothing more for now (or after 16 reads, so a server that never stops
 * sending cannot keep the loop from its deadline), -errno on error. */
static int drain_input(struct load *g, int fd)
{
    for (int reads = 0; reads < 16;) {
        ssize_t n = recv(fd, g->scratch, g->scratch_len, 0);
        if (n > 0) {
            reads++;
            continue;
        }
        if (n == 0)
            return 1;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
    return 0;
}

static void on_connected(struct load *g, struct load_slot *s, uint32_t idx, uint32_t revents, uint64_t now)
{
    struct reactor_load_result *r = g->res;
    r->connected++;
    record(r->connect_hist, s->t_connect, now);
    switch (g->cfg->mode) {
    case REACTOR_LOAD_CONNECT_CLOSE:
    case REACTOR_LOAD_RST:
        r->completed++;
        record(r->op_hist, s->t_op, now);
        release(g, s, idx, g->cfg->mode == REACTOR_LOAD_RST);
        return;
    case REACTOR_LOAD_CLIENT_CLOSE:
        s->state = S_WAIT_EOF;
        set_events(g, s, idx, EPOLLIN | EPOLLRDHUP);
        break;
    case REACTOR_LOAD_HOLD:
        r->completed++;
        s->state = S_HOLD;
        s->deadline = UINT64_MAX;
        set_events(g, s, idx, EPOLLIN | EPOLLRDHUP);
        break;
    case REACTOR_LOAD_ECHO:
        if (g->cfg->rate > 0)
            idle_push(g, s, idx);  /* its first request leaves when the schedule says */
        else
            echo_start(g, s, idx, now);
        return;
    }
    /* The server may already have closed (or written): handle it now rather
     * than after one more epoll_wait(). */
    if (revents & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) {
        int rc = drain_input(g, s->fd);
        if (rc == 1 && s->state == S_WAIT_EOF) {
            r->completed++;
            record(r->op_hist, s->t_op, now);
            release(g, s, idx, 0);
        } else if (rc == 1) {
            r->eofs++;
            release(g, s, idx, 0);
        } else if (rc < 0) {
            fail(g, s, idx, -rc);
        }
    }
}

/* Start a request; `now` is when it was due (with a rate: maybe earlier than
 * the clock, and its latency counts from then). */
static void echo_start(struct load *g, struct load_slot *s, uint32_t idx, uint64_t now)
{
    /* Each request starts at a different place in the pattern, so a reply
     * that repeats an earlier one does not verify. */
    s->offset = (int)((uint64_t)(g->res->completed + idx) % 251);
    s->done = 0;
    s->t_op = now;
    s->deadline = now + g->timeout_ns;
    s->state = S_SEND;
    echo_send(g, s, idx, now);
}

static void echo_send(struct load *g, struct load_slot *s, uint32_t idx, uint64_t now)
{
    int size = g->cfg->size;
    while (s->done < size) {
        ssize_t n = send(s->fd, g->pattern + s->offset + s->done, (size_t)(size - s->done), MSG_NOSIGNAL);
        if (n > 0) {
            s->done += (int)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            set_events(g, s, idx, EPOLLOUT);
            return;
        }
        fail(g, s, idx, errno);
        return;
    }
    s->state = S_RECV;
    s->done = 0;
    set_events(g, s, idx, EPOLLIN | EPOLLRDHUP);
    (void)now;
}

static void echo_recv(struct load *g, struct load_slot *s, uint32_t idx, uint64_t now)
{
    struct reactor_load_result *r = g->res;
    int size = g->cfg->size;
    while (s->done < size) {
        size_t want = (size_t)(size - s->done);
        if (want > g->scratch_len)
            want = g->scratch_len;
        ssize_t n = recv(s->fd, g->scratch, want, 0);
        if (n > 0) {
            if (memcmp(g->scratch, g->pattern + s->offset + s->done, (size_t)n) != 0) {
                r->mismatches++;
                release(g, s, idx, 1);
                return;
            }
            s->done += (int)n;
            continue;
        }
        if (n == 0) {
            r->eofs++;
            release(g, s, idx, 0);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        fail(g, s, idx, errno);
        return;
    }
    r->completed++;
    record(r->op_hist, s->t_op, now);
    if (g->cfg->rate > 0) {
        idle_push(g, s, idx);  /* the schedule says when its next request leaves */
        return;
    }
    /* This unit is done: may the connection take another one? */
    g->active--;
    int again = may_start(g);
    g->active++;
    if (again)
        echo_start(g, s, idx, now);
    else
        release(g, s, idx, 0);
}

static void on_event(struct load *g, uint32_t idx, uint32_t revents, uint64_t now)
{
    struct load_slot *s = &g->slots[idx];
    int rc;

    switch (s->state) {
    case S_CONNECTING:
        if (revents & EPOLLERR) {
            int e = 0;
            socklen_t len = sizeof e;
            getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &e, &len);
            fail(g, s, idx, e ? e : ECONNRESET);
        } else if (revents & (EPOLLOUT | EPOLLHUP)) {
            on_connected(g, s, idx, revents, now);
        }
        return;
    case S_WAIT_EOF:
        rc = drain_input(g, s->fd);
        if (rc == 1) {
            g->res->completed++;
            record(g->res->op_hist, s->t_op, now);
            release(g, s, idx, 0);
        } else if (rc < 0) {
            fail(g, s, idx, -rc);
        }
        return;
    case S_HOLD:
    case S_IDLE:
        /* Nothing was asked: an EOF is an early close; bytes are a bad
         * reply on an idle echo connection (a held one just drains them). */
        rc = drain_input(g, s->fd);
        if (rc == 1) {
            g->res->eofs++;
            release(g, s, idx, 0);
        } else if (rc < 0) {
            fail(g, s, idx, -rc);
        } else if (s->state == S_IDLE) {
            g->res->mismatches++;
            release(g, s, idx, 1);
        }
        return;
    case S_SEND:
        echo_send(g, s, idx, now);
        return;
    case S_RECV:
        echo_recv(g, s, idx, now);
        return;
    default:
        return;
    }
}

static void expire(struct load *g, uint64_t now)
{
    for (uint32_t i = 0; i < (uint32_t)g->cfg->concurrency; i++) {
        struct load_slot *s = &g->slots[i];
        if (s->state != S_FREE && now >= s->deadline) {
            g->res->timeouts++;
            release(g, s, i, 0);
        }
    }
}

/* Open connections in free slots, as far as the count limit and the rate
 * allow. At most one pass over the free slots: if connects fail at once (no
 * server, no ports) the loop sleeps instead of spinning. With a rate, take
 * every start that is due (echo: a request on the longest-idle connection;
 * other modes: a connection), each with the time it was due. */
static void fill(struct load *g, uint64_t now)
{
    const struct reactor_load_config *c = g->cfg;
    uint32_t budget = g->nfree;
    int paced = c->rate > 0;
    int echo = c->mode == REACTOR_LOAD_ECHO;

    g->sync_failures = 0;
    /* echo with a rate opens every connection at once: the rate is its requests' */
    while (budget-- > 0 && g->nfree > 0 && ((paced && echo) || may_start(g))) {
        uint64_t due = now;
        if (paced && !echo) {
            due = next_due(g);
            if (due > now)
                break;
            g->scheduled++;
            if (now - due >= LOAD_LATE_NS)
                g->res->late++;
        }
        open_one(g, now, due);
    }
    if (!paced || !echo)
        return;
    while (g->idle_head >= 0 && may_start(g)) {
        uint64_t due = next_due(g);
        if (due > now)
            break;
        g->scheduled++;
        if (now - due >= LOAD_LATE_NS)
            g->res->late++;
        uint32_t idx = (uint32_t)g->idle_head;
        struct load_slot *s = &g->slots[idx];
        idle_unlink(g, s);
        echo_start(g, s, idx, due);
        if (s->state != S_FREE)
            s->deadline = now + g->timeout_ns;  /* the timeout runs from the send */
    }
}

/* With a rate: can a scheduled start leave as soon as it is due? */
static int start_waiting(const struct load *g)
{
    if (g->cfg->mode == REACTOR_LOAD_ECHO)
        return g->idle_head >= 0 && may_start(g);
    return g->nfree > 0 && may_start(g);
}

static int validate(const struct reactor_load_config *c)
{
    if (c->mode < REACTOR_LOAD_CONNECT_CLOSE || c->mode > REACTOR_LOAD_HOLD)
        return EINVAL;
    if (!(c->duration > 0 && c->duration <= LOAD_MAX_DURATION))
        return EINVAL;
    if (c->concurrency < 1 || c->concurrency > LOAD_MAX_CONCURRENCY)
        return EINVAL;
    if (c->port < 1 || c->port > 65535 || c->count < 0 || !(c->timeout > 0) || c->rate < 0)
        return EINVAL;
    if (c->mode == REACTOR_LOAD_ECHO && (c->size < 1 || c->size > LOAD_MAX_SIZE))
        return EINVAL;
    /* Loopback only: this tool must never load anything but this host. */
    if ((c->host >> 24) != 127)
        return EINVAL;
    if (c->nsources < 0 || c->nsources > 65536 || (c->nsources > 0 && (c->source_base >> 24) != 127) ||
        (c->nsources > 0 && ((c->source_base + (unsigned int)c->nsources - 1) >> 24) != 127))
        return EINVAL;
    return 0;
}

int reactor_load_run(const struct reactor_load_config *cfg, struct reactor_load_result *res)
{
    struct load g;
    struct epoll_event *events = NULL;
    uint64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    uint64_t start = clock_ns(CLOCK_MONOTONIC);
    int err;

    memset(res, 0, sizeof *res);
    memset(&g, 0, sizeof g);
    g.ep = -1;
    g.timer_fd = -1;  /* before any `goto out`: 0 would be stdin, and out closes it */
    if ((err = validate(cfg)) != 0)
        goto out;
    g.cfg = cfg;
    g.res = res;
    g.timeout_ns = (uint64_t)(cfg->timeout * 1e9);
    g.start = start;
    g.idle_head = g.idle_tail = -1;
    g.slots = calloc((size_t)cfg->concurrency, sizeof *g.slots);
    g.free_slots = calloc((size_t)cfg->concurrency, sizeof *g.free_slots);
    events = calloc(LOAD_EVENTS, sizeof *events);
    g.scratch_len = 65536;
    g.scratch = malloc(g.scratch_len);
    if (cfg->mode == REACTOR_LOAD_ECHO)
        g.pattern = malloc((size_t)cfg->size + 256);
    if (!g.slots || !g.free_slots || !events || !g.scratch || (cfg->mode == REACTOR_LOAD_ECHO && !g.pattern)) {
        err = ENOMEM;
        goto out;
    }
    if (g.pattern)
        for (int i = 0; i < cfg->size + 256; i++)
            g.pattern[i] = (unsigned char)(i * 7 + (i >> 8));
    /* Lowest index on top, so slots fill from 0 (nicer to debug). */
    for (int i = 0; i < cfg->concurrency; i++) {
        g.slots[i].fd = -1;
        g.slots[i].idle_prev = g.slots[i].idle_next = -1;
        g.free_slots[i] = (uint32_t)(cfg->concurrency - 1 - i);
    }
    g.nfree = (uint32_t)cfg->concurrency;
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    if (g.ep < 0) {
        err = errno;
        goto out;
    }
    if (cfg->rate > 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = TIMER_TOKEN};
        g.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (g.timer_fd < 0 || epoll_ctl(g.ep, EPOLL_CTL_ADD, g.timer_fd, &ev) < 0) {
            err = errno;
            goto out;
        }
    }
    if (cfg->stop_fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = STOP_TOKEN};
        if (epoll_ctl(g.ep, EPOLL_CTL_ADD, cfg->stop_fd, &ev) < 0) {
            err = errno;
            goto out;
        }
    }

    uint64_t end = start + (uint64_t)(cfg->duration * 1e9);
    uint64_t next_scan = start + LOAD_SCAN_NS;
    for (;;) {
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        if (now >= end) {
            res->stopped_by = REACTOR_LOAD_BY_DURATION;
            break;
        }
        if (cfg->count > 0 && cfg->mode != REACTOR_LOAD_HOLD && res->completed >= cfg->count) {
            res->stopped_by = REACTOR_LOAD_BY_COUNT;
            break;
        }
        if (now >= next_scan) {
            expire(&g, now);
            next_scan = now + LOAD_SCAN_NS;
        }
        fill(&g, now);
        /* Sleep until the next thing that can happen without an event: the
         * end, the next timeout scan, the next scheduled start; 1 ms after
         * connects that failed at once, so they are retried without a spin. */
        uint64_t wake = end < next_scan ? end : next_scan;
        if (g.sync_failures && now + 1000000 < wake)
            wake = now + 1000000;
        if (cfg->rate > 0) {
            uint64_t due = start_waiting(&g) ? next_due(&g) : 0;
            if (due && due < wake)
                wake = due;
            /* the timerfd wakes us to the nanosecond; epoll_wait's own
             * timeout (whole ms, rounded up) stays behind it as a backstop */
            if (wake != g.timer_armed && wake > now) {
                struct itimerspec its = {.it_value = {.tv_sec = (time_t)(wake / 1000000000ULL),
                                                      .tv_nsec = (long)(wake % 1000000000ULL)}};
                timerfd_settime(g.timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
                g.timer_armed = wake;
            }
        }
        /* epoll_wait() has a 1 ms resolution: round up, never spin on 0. */
        int timeout_ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
        int n = epoll_wait(g.ep, events, LOAD_EVENTS, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        now = clock_ns(CLOCK_MONOTONIC);
        for (int i = 0; i < n; i++) {
            if (events[i].data.u32 == STOP_TOKEN) {
                res->stopped_by = REACTOR_LOAD_BY_STOP;
                goto done;
            }
            if (events[i].data.u32 == TIMER_TOKEN) {
                uint64_t expirations;
                if (read(g.timer_fd, &expirations, sizeof expirations) < 0) {
                    /* EAGAIN: already read; nothing else can fail here */
                }
                g.timer_armed = 0;
                continue;
            }
            on_event(&g, events[i].data.u32, events[i].events, now);
        }
    }
done:
    /* Starts that were due (1 ms or more before the end) but never left are
     * late too: the client could not offer the load it was asked for. With
     * a count the schedule stops on purpose, so nothing is missed. */
    if (cfg->rate > 0 && cfg->count <= 0) {
        uint64_t stop = clock_ns(CLOCK_MONOTONIC);
        if (stop > end)
            stop = end;
        if (stop >= start + LOAD_LATE_NS) {
            long long due = (long long)((double)(stop - LOAD_LATE_NS - start) * cfg->rate / 1e9) + 1;
            if (due > g.scheduled)
                res->late += due - g.scheduled;
        }
    }
    /* Whatever is still open ends with the run. */
    for (int i = 0; i < cfg->concurrency; i++) {
        if (g.slots[i].state != S_FREE) {
            res->open_at_end++;
            close(g.slots[i].fd);
        }
    }

out:
    if (g.timer_fd >= 0)
        close(g.timer_fd);
    if (g.ep >= 0)
        close(g.ep);
    free(g.slots);
    free(g.free_slots);
    free(events);
    free(g.scratch);
    free(g.pattern);
    res->wall_s = (double)(clock_ns(CLOCK_MONOTONIC) - start) / 1e9;
    res->cpu_s = (double)(clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0) / 1e9;
    res->setup_errno = err;
    return err;
}
