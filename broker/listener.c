/*
 * listener.c - the listening sockets, on the main thread's listener loop:
 * MQTT on `port` and, unless http_port is 0, HTTP/2 (h2c) on `http_port`.
 *
 * We create the socket ourselves and watch it with a uv_poll_t, because a
 * libuv stream cannot hand an accepted socket to another loop. On each
 * readable event up to ACCEPT_BATCH sockets are accepted (non-blocking,
 * close-on-exec) and each is given to the worker loop with the fewest
 * connections (ties round robin) as an ITEM_ACCEPT through the listener's
 * outboxes, flushed once per callback, with the kind of the socket it
 * came from (enum listener_kind). max_connections is enforced here with
 * the broker-wide atomic connection count, HTTP/2 connections included.
 */
#include "broker_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../common/log.h"

#define LISTEN_BACKLOG 511
#define ACCEPT_BATCH 64

/* The worker with the fewest connections; ties go round robin. */
static unsigned pick_loop(broker_t *b)
{
    unsigned best = b->rr % b->n_loops;
    unsigned best_load = atomic_load_explicit(&b->loops[best].load, memory_order_relaxed);
    for (unsigned k = 1; k < b->n_loops; k++) {
        unsigned i = (b->rr + k) % b->n_loops;
        unsigned ld = atomic_load_explicit(&b->loops[i].load, memory_order_relaxed);
        if (ld < best_load) {
            best = i;
            best_load = ld;
        }
    }
    b->rr++;
    return best;
}

/* max_connections reached: close at once, log at most once per 10 s. */
static void refuse(broker_t *b, int fd)
{
    uint64_t now = uv_now(&b->luv);
    close(fd);
    CNT_INC(b, refused);
    b->refused_since_log++;
    if (b->last_refuse_log == 0 || now - b->last_refuse_log >= 10000) {
        log_warn("max_connections (%u) reached: refused %llu connection(s)",
                 b->cfg->max_connections,
                 (unsigned long long)b->refused_since_log);
        b->last_refuse_log = now;
        b->refused_since_log = 0;
    }
}

/* Counts fd in and hands it to a worker, or refuses it. */
static void hand_off(broker_t *b, int fd, uint8_t kind)
{
    unsigned max = b->cfg->max_connections;
    unsigned n = atomic_fetch_add_explicit(&b->n_conns, 1, memory_order_relaxed) + 1;
    if (max != 0 && n > max) {
        atomic_fetch_sub_explicit(&b->n_conns, 1, memory_order_relaxed);
        refuse(b, fd);
        return;
    }
    unsigned k = pick_loop(b);
    atomic_fetch_add_explicit(&b->loops[k].load, 1, memory_order_relaxed);
    loop_item_t it = {.kind = ITEM_ACCEPT, .fd = fd, .listener = kind};
    loop__items_append(&b->lout[k], &it); /* flushed after the batch */
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    broker_t *b = h->data;
    uint8_t kind = h == &b->hpoll ? LISTENER_HTTP : LISTENER_MQTT;
    int lfd = kind == LISTENER_HTTP ? b->hfd : b->lfd;
    (void)events;
    if (status < 0) {
        log_warn("listening socket: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && !b->stopping; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            hand_off(b, fd, kind);
        } else if (errno == EINTR || errno == ECONNABORTED) {
            continue;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept failed: %s", strerror(errno));
            break;
        }
    }
    loop__flush_outboxes(b, b->lout);
}

/* Formats the bound address for the start-up line. */
static void bound_name(int fd, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    snprintf(out, cap, "?");
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    }
}

/* socket + SO_REUSEADDR + bind + listen; returns the fd or -errno. */
static int open_socket(const struct sockaddr *sa, socklen_t len)
{
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, sa, len) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* Listens on cfg->bind:port and starts watching with poll; *fd is the
 * socket. what names it in the log. Returns 0 or a negative error. */
static int listen_on(broker_t *b, uint16_t port, int *fd, uv_poll_t *poll,
                     const char *what)
{
    const broker_config_t *cfg = b->cfg;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(struct sockaddr_in);
    char name[96];
    int rc = uv_ip4_addr(cfg->bind, port, (struct sockaddr_in *)&ss);
    if (rc != 0) {
        rc = uv_ip6_addr(cfg->bind, port, (struct sockaddr_in6 *)&ss);
        len = sizeof(struct sockaddr_in6);
    }
    if (rc != 0) {
        log_error("invalid bind address \"%s\" (expected an IPv4 or IPv6 literal)",
                  cfg->bind);
        return ERR_CONFIG;
    }
    rc = open_socket((struct sockaddr *)&ss, len);
    if (rc < 0) {
        log_error("cannot listen on %s port %u (%s): %s", cfg->bind, port, what,
                  uv_strerror(rc));
        return rc;
    }
    *fd = rc;
    uv_poll_init(&b->luv, poll, *fd);
    poll->data = b;
    uv_poll_start(poll, UV_READABLE, on_listen);
    bound_name(*fd, name, sizeof name);
    if (poll == &b->lpoll)
        log_info("uvmq %s listening on %s (%s), data dir %s", UVMQ_VERSION, name, what,
                 cfg->data_dir);
    else
        log_info("listening on %s (%s)", name, what);
    return 0;
}

int listener__start(broker_t *b)
{
    int rc = listen_on(b, b->cfg->port, &b->lfd, &b->lpoll, "mqtt");
    if (rc == 0 && b->cfg->http_port != 0)
        rc = listen_on(b, b->cfg->http_port, &b->hfd, &b->hpoll, "http/2 h2c");
    return rc;
}

static void on_poll_closed(uv_handle_t *h)
{
    broker_t *b = h->data;
    int *fd = h == (uv_handle_t *)&b->hpoll ? &b->hfd : &b->lfd;
    close(*fd); /* only once libuv has stopped watching it */
    *fd = -1;
}

/* Stops watching one listening socket; on_poll_closed closes it. */
static void stop_one(int fd, uv_poll_t *poll)
{
    if (fd < 0 || uv_is_closing((uv_handle_t *)poll)) return;
    uv_poll_stop(poll);
    uv_close((uv_handle_t *)poll, on_poll_closed);
}

void listener__stop(broker_t *b)
{
    stop_one(b->lfd, &b->lpoll);
    stop_one(b->hfd, &b->hpoll);
}
