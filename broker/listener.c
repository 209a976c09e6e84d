/*
 * listener.c - the listening socket, on the main thread's listener loop.
 *
 * We create the socket ourselves and watch it with a uv_poll_t, because a
 * libuv stream cannot hand an accepted socket to another loop. On each
 * readable event up to ACCEPT_BATCH sockets are accepted (non-blocking,
 * close-on-exec) and each is given to the worker loop with the fewest
 * connections (ties round robin) as an ITEM_ACCEPT through the listener's
 * outboxes, flushed once per callback. max_connections is enforced here
 * with the broker-wide atomic connection count.
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
static void hand_off(broker_t *b, int fd)
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
    loop_item_t it = {.kind = ITEM_ACCEPT, .fd = fd};
    loop__items_append(&b->lout[k], &it); /* flushed after the batch */
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    broker_t *b = h->data;
    (void)events;
    if (status < 0) {
        log_warn("listening socket: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH && !b->stopping; i++) {
        int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            hand_off(b, fd);
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

int listener__start(broker_t *b)
{
    const broker_config_t *cfg = b->cfg;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(struct sockaddr_in);
    char name[96];
    int rc = uv_ip4_addr(cfg->bind, cfg->port, (struct sockaddr_in *)&ss);
    if (rc != 0) {
        rc = uv_ip6_addr(cfg->bind, cfg->port, (struct sockaddr_in6 *)&ss);
        len = sizeof(struct sockaddr_in6);
    }
    if (rc != 0) {
        log_error("invalid bind address \"%s\" (expected an IPv4 or IPv6 literal)",
                  cfg->bind);
        return ERR_CONFIG;
    }
    rc = open_socket((struct sockaddr *)&ss, len);
    if (rc < 0) {
        log_error("cannot listen on %s port %u: %s", cfg->bind, cfg->port,
                  uv_strerror(rc));
        return rc;
    }
    b->lfd = rc;
    uv_poll_init(&b->luv, &b->lpoll, b->lfd);
    b->lpoll.data = b;
    uv_poll_start(&b->lpoll, UV_READABLE, on_listen);
    bound_name(b->lfd, name, sizeof name);
    log_info("uvmq %s listening on %s (mqtt), data dir %s", UVMQ_VERSION, name,
             cfg->data_dir);
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    broker_t *b = h->data;
    close(b->lfd); /* only once libuv has stopped watching it */
    b->lfd = -1;
}

void listener__stop(broker_t *b)
{
    if (b->lfd < 0 || uv_is_closing((uv_handle_t *)&b->lpoll)) return;
    uv_poll_stop(&b->lpoll);
    uv_close((uv_handle_t *)&b->lpoll, on_poll_closed);
}
